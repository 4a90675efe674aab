//! `chat` (WebSocket limits, turn service, repository) and `retention` sections.

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChatConfig {
    pub websocket: WebSocketConfig,
    pub service: ServiceConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebSocketConfig {
    /// Open sockets at most; past it the upgrade is refused with 503 and `Retry-After`.
    pub max_connections: usize,
    /// Largest inbound frame in bytes.
    pub max_message_size: usize,
    #[serde(with = "super::duration")]
    pub ping_interval: Duration,
    #[serde(with = "super::duration")]
    pub ping_timeout: Duration,
    /// Outbound frames waiting to be written that make a socket's queue count as full (it
    /// stays full until it drains to half).
    pub send_queue: usize,
    /// Outbound bytes waiting per socket at most; a frame past it closes the socket as a slow
    /// reader (1008). Turns never wait on their socket: they read their provider at its pace.
    pub send_buffer: usize,
    /// How long the queue may stay full before the client counts as too slow: its socket is
    /// closed (1008) and its turns cancelled (they store what was answered).
    #[serde(with = "super::duration")]
    pub slow_reader_timeout: Duration,
    /// Turns one socket may have in flight at once; past it a new turn gets `busy`.
    pub max_turns_per_connection: usize,
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        Self {
            max_connections: 1000,
            max_message_size: 65536,
            ping_interval: Duration::from_secs(20),
            ping_timeout: Duration::from_secs(20),
            send_queue: 256,
            send_buffer: 4 << 20,
            slow_reader_timeout: Duration::from_secs(10),
            max_turns_per_connection: 4,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceConfig {
    pub system_prompt: String,
    /// Model ↔ tool rounds per turn at most.
    pub max_tool_hops: u32,
    /// Tool calls run per model reply at most; the rest get an error result the model reads.
    pub max_tool_calls_per_reply: usize,
    /// A whole turn (every model round and tool call) takes at most this long; past it the
    /// turn ends with `turn_timeout`, what was answered stored.
    #[serde(with = "super::duration")]
    pub turn_timeout: std::time::Duration,
    pub context: ContextConfig,
    pub streaming: StreamingConfig,
    /// Deprecated: read as `database.url` (its `path`) and `database.sqlite` (the rest).
    #[serde(skip_serializing)]
    pub repository: Option<super::database::LegacyRepositoryConfig>,
    /// When a turn's tool loop is stopped as going in circles.
    pub loop_guard: LoopGuardConfig,
    /// What a closed socket does to its turns: `detach` (they go on; `attach` from another
    /// socket follows them) or `cancel` (the behaviour before turns outlived sockets).
    pub on_disconnect: OnDisconnect,
    /// How long a turn goes on without a socket watching it, and how long a finished turn's
    /// frames are kept for `attach`.
    #[serde(with = "super::duration")]
    pub detached_turn_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnDisconnect {
    Detach,
    Cancel,
}

/// A turn's tool loop ends (the model answers without tools) when it repeats itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoopGuardConfig {
    /// The same tool with the same arguments this many times in one turn (0: never).
    pub repeated_calls: u32,
    /// This many tool errors in a row (0: never).
    pub consecutive_errors: u32,
}

impl Default for LoopGuardConfig {
    fn default() -> Self {
        Self {
            repeated_calls: 3,
            consecutive_errors: 3,
        }
    }
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            system_prompt: "You are a helpful assistant. Use the available tools when they help \
                            answer the user's request."
                .into(),
            max_tool_hops: 8,
            max_tool_calls_per_reply: 32,
            turn_timeout: std::time::Duration::from_secs(600),
            context: ContextConfig::default(),
            streaming: StreamingConfig::default(),
            repository: None,
            loop_guard: LoopGuardConfig::default(),
            on_disconnect: OnDisconnect::Detach,
            detached_turn_timeout: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ContextConfig {
    /// Token budget of the prompt sent to the model (system prompt + history + message).
    pub max_tokens: u32,
    /// Tokens kept free for the model's answer, out of `max_tokens`.
    pub reserve_tokens: u32,
}

impl Default for ContextConfig {
    fn default() -> Self {
        Self {
            max_tokens: 16000,
            reserve_tokens: 2000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamingConfig {
    pub enabled: bool,
}

impl Default for StreamingConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    pub policy: RetentionPolicy,
    /// `token_limit`: tokens kept per conversation, oldest messages deleted first.
    pub max_tokens: u64,
    /// `message_count`: messages kept per conversation.
    pub max_messages: u64,
    /// `time_based`: messages older than this are deleted.
    #[serde(with = "super::duration")]
    pub max_age: Duration,
    /// How often the retention task runs.
    #[serde(with = "super::duration")]
    pub interval: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            policy: RetentionPolicy::Unlimited,
            max_tokens: 200_000,
            max_messages: 2000,
            max_age: Duration::from_secs(90 * 24 * 3600),
            interval: Duration::from_secs(3600),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetentionPolicy {
    TokenLimit,
    MessageCount,
    TimeBased,
    Unlimited,
}
