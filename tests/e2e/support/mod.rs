//! What the end-to-end tests share: the app on port 0 with its HTTP client and `eventually`
//! ([`app`]), a WebSocket client that speaks only the documented protocol ([`ws`]), the fake
//! provider ([`provider`]), MCP peers ([`mcp_peers`], [`oauth_server`]), the real binary
//! ([`binary`]), and the toolchains provisioned for real peers ([`python`], [`node`],
//! [`browser`], [`engine`], [`postgres`], installed the same way: [`staged`]).

pub mod app;
pub mod binary;
pub mod browser;
pub mod engine;
pub mod mcp_peers;
pub mod node;
pub mod oauth_server;
pub mod postgres;
pub mod provider;
pub mod python;
pub mod staged;
pub mod ws;

pub use app::{
    TestApp, create_key, eventually, get_json, raw_request, spawn_app, spawn_app_with,
    streamed_usage,
};
pub use binary::{
    BIN, assert_one_clear_line, config_for, run_to_completion, run_with_env, start_server,
    write_config,
};
pub use mcp_peers::{
    TEST_TOOLS, call, everything_app, host, http_test_server, mcp_status, open_mcp_session, ready,
    server_health, stdio_entry, tool_app, wait_ready, wait_state,
};
pub use oauth_server::{TOKEN_LIFE, remote_entry, start_auth_server};
pub use postgres::postgres;
pub use provider::{
    Fake, KEY, ask, calls, chat_bodies, collect, entry, fake, message_contents, provider,
    result_read, tool_result, with_backup,
};
pub use ws::{
    Socket, chat, chat_app, close_code, connect, connect_with_key, connect_with_small_buffer,
    next_frame, next_frame_within, send, text_of, tool_frames, turn_frames, turn_frames_within,
};
