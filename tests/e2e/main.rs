//! End-to-end tests: the real application on port 0 with a temporary database, driven over
//! HTTP as a client would; and the real binary for start-up failures and crash recovery.

mod api;
mod approvals;
mod auth;
mod binary;
mod binary_keys;
mod browser;
mod chat;
mod chat_conversations;
mod chat_sockets;
mod chat_tools;
mod chat_turns;
mod conformance;
mod everything;
mod health;
mod helpers;
mod http_limits;
mod library;
mod loose_ends;
mod mcp_host;
mod mcp_interop;
mod mcp_limits;
mod mcp_server;
mod memory;
mod no_silent_closes;
mod node;
mod openai_sdk;
mod page;
mod page_browser;
mod provider_limits;
mod providers;
mod python;
mod security;
mod shutdown;
mod turn_limits;
mod ws;
