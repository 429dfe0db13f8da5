//! Configuration of the MCP endpoint.

use serde::{Deserialize, Serialize};

use super::types::{Duration, ListenAddr};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpConfig {
    /// Address of the MCP listener (Streamable HTTP at `/mcp`).
    pub listen: ListenAddr,
    /// Browser origins allowed to call the endpoint (`https://app.example.com`), besides
    /// `http(s)://localhost`, `127.0.0.1` and `[::1]` on any port, which are always allowed.
    /// A request with any other `Origin` header is refused with 403 (DNS-rebinding
    /// protection); requests without `Origin` (not from a browser) are not affected.
    pub allowed_origins: Vec<String>,
    /// The slug of an organization that requests without credentials act for, as a
    /// member; created if missing. Unset (the default): every request needs a key.
    /// For one developer on one machine, and for the conformance suite.
    pub anonymous_tenant: Option<String>,
    /// Serve the tools, resources and prompts that the official MCP conformance suite
    /// expects (`test_simple_text`, `test://static-text`, ...). Off in production.
    pub conformance_fixtures: bool,
    /// A session (protocols 2025-06-18 and 2025-11-25) unused for this long ends; the
    /// client gets 404 and starts a new one.
    pub session_idle_timeout: Duration,
    /// Largest JSON-RPC message accepted, in bytes.
    pub max_message_bytes: usize,
    /// Items per page of `tools/list`, `resources/list` and `prompts/list`.
    pub page_size: usize,
    /// The `ttlMs` caching hint on list results and resource reads (protocol 2026-07-28).
    pub list_cache_ttl: Duration,
    /// Server messages kept per session stream, replayed to a client that reconnects
    /// with `Last-Event-ID`.
    pub replay_buffer: usize,
    /// How often an idle SSE stream gets a comment line, so that proxies keep it open.
    pub sse_keepalive: Duration,
    /// How long a request devmesh sends a client in a session (elicitation, sampling,
    /// roots) waits for its answer; then the tool call goes on without it.
    pub client_request_timeout: Duration,
    /// The WebSocket endpoint at `/ws`.
    #[serde(default)]
    pub ws: WsConfig,
    /// Tool calls that run as tasks (the `io.modelcontextprotocol/tasks` extension).
    #[serde(default)]
    pub tasks: TasksConfig,
}

/// Configuration of MCP tasks (extension `io.modelcontextprotocol/tasks`, SEP-2663).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TasksConfig {
    /// How long a task can be read after it was created (its `ttlMs`); then it is gone.
    pub ttl: Duration,
    /// The `pollIntervalMs` a client is asked to keep between two `tasks/get`.
    pub poll_interval: Duration,
    /// Tasks one API key or user has working or waiting for input at once; one more is
    /// refused with -31029 until one ends.
    pub max_active_per_principal: usize,
}

impl Default for TasksConfig {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(60 * 60),
            poll_interval: Duration::from_secs(1),
            max_active_per_principal: 100,
        }
    }
}

/// Configuration of MCP over WebSocket (`/ws` on the mcp listener).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WsConfig {
    /// How often the server pings each connection; one that has not answered the
    /// previous ping by the next is closed (code 4002).
    pub ping_interval: Duration,
    /// Messages waiting to be written to one connection; a client that stops reading
    /// until this fills up is closed (code 4001).
    pub outbound_queue: usize,
    /// WebSocket connections this node holds at once; more are refused with 503.
    pub max_connections: usize,
    /// WebSocket connections one API key or user holds on this node; more are refused
    /// with 429.
    pub max_connections_per_key: usize,
}

impl Default for WsConfig {
    fn default() -> Self {
        Self {
            ping_interval: Duration::from_secs(30),
            outbound_queue: 1024,
            max_connections: 10_000,
            max_connections_per_key: 100,
        }
    }
}

impl Default for McpConfig {
    fn default() -> Self {
        Self {
            listen: ListenAddr(([127, 0, 0, 1], 8080).into()),
            allowed_origins: Vec::new(),
            anonymous_tenant: None,
            conformance_fixtures: false,
            session_idle_timeout: Duration::from_secs(30 * 60),
            max_message_bytes: 4 * 1024 * 1024,
            page_size: 100,
            list_cache_ttl: Duration::from_secs(60),
            replay_buffer: 256,
            sse_keepalive: Duration::from_secs(15),
            client_request_timeout: Duration::from_secs(10 * 60),
            ws: WsConfig::default(),
            tasks: TasksConfig::default(),
        }
    }
}
