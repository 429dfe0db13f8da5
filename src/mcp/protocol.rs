//! The wire: protocol versions, JSON-RPC messages and the errors the endpoint answers with.

use std::fmt;

use actix_web::http::StatusCode;
use serde_json::{Map, Value, json};

/// The protocol revisions devmesh speaks, oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    V2025_06_18,
    V2025_11_25,
    V2026_07_28,
}

impl Version {
    pub const ALL: [Version; 3] = [Self::V2025_06_18, Self::V2025_11_25, Self::V2026_07_28];
    /// The newest revision with `initialize` and sessions.
    pub const LATEST_SESSION: Version = Self::V2025_11_25;

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::V2025_06_18 => "2025-06-18",
            Self::V2025_11_25 => "2025-11-25",
            Self::V2026_07_28 => "2026-07-28",
        }
    }

    /// Stateless: no `initialize`, no session; every request carries its own `_meta`.
    pub fn is_stateless(self) -> bool {
        self >= Self::V2026_07_28
    }

    pub fn supported() -> Vec<&'static str> {
        Self::ALL.iter().rev().map(|v| v.as_str()).collect()
    }
}

/// What a request names, which a 2026-07-28 request repeats in its `Mcp-Name` header:
/// the tool or prompt, the resource's URI, or the task.
pub fn named_target<'a>(method: &str, params: &'a Map<String, Value>) -> Option<&'a str> {
    match method {
        "tools/call" | "prompts/get" => params.get("name"),
        "resources/read" => params.get("uri"),
        // SEP-2663, "Streamable HTTP: Routing Headers".
        "tasks/get" | "tasks/update" | "tasks/cancel" => params.get("taskId"),
        _ => None,
    }
    .and_then(Value::as_str)
}

/// The longest error message sent, in characters: an error quotes what the client sent
/// (a name, a header), and a client that sent megabytes does not get them back.
pub const MAX_MESSAGE_CHARS: usize = 1000;

/// Text quoted back to a client (in an error's `message` or `data`), cut after `max`
/// characters with a note of how long it was.
pub fn capped(text: String, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text,
        Some((end, _)) => format!("{}… ({} bytes in all)", &text[..end], text.len()),
    }
}

/// A value the client sent, as an error's `data` quotes it: cut after 200 characters.
pub fn quoted(value: &str) -> String {
    capped(value.to_string(), 200)
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `_meta` keys of protocol 2026-07-28.
pub mod meta {
    pub const PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
    pub const CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
    pub const CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
    pub const LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";
    pub const SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";
    pub const SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";
}

/// Every JSON-RPC error code devmesh sends, on any transport and in any protocol era;
/// `docs/json-rpc-errors.md` is the table of them, with the rule each follows.
///
/// JSON-RPC 2.0 (section 5.1) reserves -32768..=-32000 for codes defined by the
/// specification; MCP 2026-07-28 defines its own in -32020..=-32099 and asks new
/// implementations not to use -32000..=-32019, which older MCP revisions and SDKs used
/// loosely. devmesh's own codes therefore sit outside the reserved range (-31xxx), with
/// the HTTP status of the same condition in the last two digits where there is one.
pub mod code {
    /// JSON-RPC 2.0: the message is not JSON.
    pub const PARSE_ERROR: i32 = -32700;
    /// JSON-RPC 2.0: the message is not a valid request.
    pub const INVALID_REQUEST: i32 = -32600;
    /// JSON-RPC 2.0: no such method (or not in this era).
    pub const METHOD_NOT_FOUND: i32 = -32601;
    /// JSON-RPC 2.0: the params are wrong; from 2026-07-28 also an unknown resource.
    pub const INVALID_PARAMS: i32 = -32602;
    /// JSON-RPC 2.0: the server failed (or its database is away: `data.reason`).
    pub const INTERNAL_ERROR: i32 = -32603;
    /// MCP 2025-06-18 and 2025-11-25: the resource does not exist.
    pub const RESOURCE_NOT_FOUND_LEGACY: i32 = -32002;
    /// MCP 2026-07-28 (SEP-2243): an `Mcp-*` header does not match the body.
    pub const HEADER_MISMATCH: i32 = -32020;
    /// MCP 2026-07-28 (SEP-2575): the request needs a capability the client did not declare.
    pub const MISSING_CLIENT_CAPABILITY: i32 = -32021;
    /// MCP 2026-07-28 (SEP-2575): the request's protocol version is not supported.
    pub const UNSUPPORTED_PROTOCOL_VERSION: i32 = -32022;
    /// devmesh: the request has no valid credential, or its credential was revoked or
    /// expired (HTTP 401).
    pub const UNAUTHENTICATED: i32 = -31001;
    /// devmesh: the caller may not do this, or its scopes were reduced (HTTP 403).
    pub const FORBIDDEN: i32 = -31003;
    /// devmesh: the caller's rate limit refused the request (HTTP 429);
    /// `data.retryAfterMs` says when to retry.
    pub const RATE_LIMITED: i32 = -31029;

    /// Every code above, with its name as `docs/json-rpc-errors.md` spells it.
    pub const ALL: [(i32, &str); 12] = [
        (PARSE_ERROR, "PARSE_ERROR"),
        (INVALID_REQUEST, "INVALID_REQUEST"),
        (METHOD_NOT_FOUND, "METHOD_NOT_FOUND"),
        (INVALID_PARAMS, "INVALID_PARAMS"),
        (INTERNAL_ERROR, "INTERNAL_ERROR"),
        (RESOURCE_NOT_FOUND_LEGACY, "RESOURCE_NOT_FOUND_LEGACY"),
        (HEADER_MISMATCH, "HEADER_MISMATCH"),
        (MISSING_CLIENT_CAPABILITY, "MISSING_CLIENT_CAPABILITY"),
        (UNSUPPORTED_PROTOCOL_VERSION, "UNSUPPORTED_PROTOCOL_VERSION"),
        (UNAUTHENTICATED, "UNAUTHENTICATED"),
        (FORBIDDEN, "FORBIDDEN"),
        (RATE_LIMITED, "RATE_LIMITED"),
    ];
}

/// A JSON-RPC request or notification id.
pub type Id = Value;

/// What a client sent, one message.
#[derive(Debug, Clone)]
pub enum Incoming {
    Request {
        id: Id,
        method: String,
        params: Map<String, Value>,
    },
    Notification {
        method: String,
        params: Map<String, Value>,
    },
    /// The client's answer to a request the server sent it.
    Response {
        id: Id,
        outcome: Result<Value, Value>,
    },
}

impl Incoming {
    /// Reads one JSON-RPC message, on every transport; an array (a batch) is refused, and
    /// so is an object naming a key twice (which `id` or `method` would count?).
    pub fn parse(body: &[u8]) -> Result<Self, RpcError> {
        let value: Value = crate::decode::parse(body).map_err(|e| {
            RpcError::new(
                code::PARSE_ERROR,
                format!("the body is not valid JSON: {e}"),
            )
        })?;
        Self::from_value(value)
    }

    pub fn from_value(value: Value) -> Result<Self, RpcError> {
        let Value::Object(mut obj) = value else {
            return Err(if value.is_array() {
                RpcError::invalid_request(
                    "JSON-RPC batches are not supported: send one message per request",
                )
            } else {
                RpcError::invalid_request("a JSON-RPC message must be a JSON object")
            });
        };
        if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
            let id = obj.get("id").cloned().unwrap_or(Value::Null);
            return Err(RpcError::invalid_request("\"jsonrpc\" must be \"2.0\"").with_id(id));
        }
        let id = match obj.remove("id") {
            None => None,
            Some(id @ (Value::String(_) | Value::Number(_))) => Some(id),
            Some(_) => {
                return Err(RpcError::invalid_request(
                    "\"id\" must be a string or a number",
                ));
            }
        };
        match obj.remove("method") {
            Some(Value::String(method)) => {
                let params = match obj.remove("params") {
                    None | Some(Value::Null) => Map::new(),
                    Some(Value::Object(p)) => p,
                    Some(_) => {
                        return Err(RpcError::invalid_params("\"params\" must be an object")
                            .with_id(id.unwrap_or(Value::Null)));
                    }
                };
                Ok(match id {
                    Some(id) => Self::Request { id, method, params },
                    None => Self::Notification { method, params },
                })
            }
            Some(_) => Err(RpcError::invalid_request("\"method\" must be a string")
                .with_id(id.unwrap_or(Value::Null))),
            None => {
                let Some(id) = id else {
                    return Err(RpcError::invalid_request(
                        "a message needs a \"method\" (request or notification) or an \"id\" with \"result\" or \"error\" (response)",
                    ));
                };
                let outcome = match (obj.remove("result"), obj.remove("error")) {
                    (Some(result), None) => Ok(result),
                    (None, Some(error)) => Err(error),
                    _ => {
                        return Err(RpcError::invalid_request(
                            "a response needs exactly one of \"result\" and \"error\"",
                        )
                        .with_id(id));
                    }
                };
                Ok(Self::Response { id, outcome })
            }
        }
    }
}

/// A JSON-RPC error, with the HTTP status the Streamable HTTP transport answers it with.
#[derive(Debug, Clone)]
pub struct RpcError {
    pub id: Option<Id>,
    pub code: i32,
    pub message: String,
    pub data: Option<Value>,
    pub status: StatusCode,
    /// The code the sessions era (2025-06-18, 2025-11-25) uses for the same condition,
    /// where it differs; [`RpcError::in_era`] picks.
    pub legacy_code: Option<i32>,
}

impl RpcError {
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        let status = match code {
            code::METHOD_NOT_FOUND => StatusCode::NOT_FOUND,
            code::INTERNAL_ERROR => StatusCode::INTERNAL_SERVER_ERROR,
            code::RATE_LIMITED => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::BAD_REQUEST,
        };
        Self {
            id: None,
            code,
            message: capped(message.into(), MAX_MESSAGE_CHARS),
            data: None,
            status,
            legacy_code: None,
        }
    }

    /// This error as a request of `version` is answered: the one place where a code that
    /// differs between protocol eras is chosen.
    pub fn in_era(mut self, version: Version) -> Self {
        if let (false, Some(legacy)) = (version.is_stateless(), self.legacy_code) {
            self.code = legacy;
        }
        self
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(code::INVALID_REQUEST, message)
    }

    pub fn invalid_params(message: impl Into<String>) -> Self {
        Self::new(code::INVALID_PARAMS, message)
    }

    pub fn method_not_found(method: &str) -> Self {
        Self::new(
            code::METHOD_NOT_FOUND,
            format!("method not found: {method}"),
        )
        .with_data(json!({ "method": method }))
    }

    /// The request needs a client capability the client did not declare.
    pub fn missing_capability(capability: &str, what: &str) -> Self {
        Self::new(
            code::MISSING_CLIENT_CAPABILITY,
            format!(
                "{what} needs the client capability {capability}, which this client did not declare"
            ),
        )
        .with_data(json!({ "requiredCapabilities": { capability: {} } }))
    }

    pub fn internal() -> Self {
        Self::new(code::INTERNAL_ERROR, "internal error")
    }

    /// The database (or another dependency) cannot serve the request now: retry shortly
    /// (HTTP 503 where the transport has a status).
    pub fn unavailable() -> Self {
        Self::new(
            code::INTERNAL_ERROR,
            "the database is unavailable; retry shortly",
        )
        .with_status(StatusCode::SERVICE_UNAVAILABLE)
        .with_data(json!({ "reason": "unavailable", "retryAfterMs": 1000 }))
    }

    pub fn unsupported_version(requested: &str) -> Self {
        Self::new(
            code::UNSUPPORTED_PROTOCOL_VERSION,
            format!(
                "unsupported protocol version {requested:?}; this server supports {}",
                Version::supported().join(", ")
            ),
        )
        .with_data(json!({ "supported": Version::supported(), "requested": requested }))
    }

    pub fn with_id(mut self, id: Id) -> Self {
        self.id = Some(id);
        self
    }

    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }

    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// The JSON-RPC error object.
    pub fn object(&self) -> Value {
        let mut error = json!({ "code": self.code, "message": self.message });
        if let Some(data) = &self.data {
            error["data"] = data.clone();
        }
        error
    }

    pub fn to_message(&self) -> Value {
        json!({
            "jsonrpc": "2.0",
            "id": self.id.clone().unwrap_or(Value::Null),
            "error": self.object(),
        })
    }
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

pub fn response(id: &Id, result: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "result": result })
}

pub fn notification(method: &str, params: Value) -> Value {
    json!({ "jsonrpc": "2.0", "method": method, "params": params })
}

#[cfg(test)]
mod tests {
    #[test]
    fn quoted_text_is_cut_after_its_limit() {
        assert_eq!(super::capped("short".into(), 10), "short");
        let long = "ł".repeat(300);
        let cut = super::quoted(&long);
        assert!(cut.starts_with(&"ł".repeat(200)), "{cut}");
        assert!(cut.ends_with("… (600 bytes in all)"), "{cut}");
        let message = super::RpcError::invalid_params("x".repeat(5000)).message;
        assert!(message.chars().count() < super::MAX_MESSAGE_CHARS + 30);
    }

    use super::*;

    #[test]
    fn messages_are_told_apart() {
        let req = Incoming::parse(br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#).unwrap();
        assert!(matches!(req, Incoming::Request { ref method, .. } if method == "tools/list"));
        let note =
            Incoming::parse(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
        assert!(matches!(note, Incoming::Notification { .. }));
        let resp = Incoming::parse(br#"{"jsonrpc":"2.0","id":"s1","result":{}}"#).unwrap();
        assert!(matches!(resp, Incoming::Response { outcome: Ok(_), .. }));
    }

    #[test]
    fn bad_messages_say_what_is_wrong() {
        let batch = Incoming::parse(br#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#).unwrap_err();
        assert_eq!(batch.code, code::INVALID_REQUEST);
        assert!(batch.message.contains("batches"));
        assert_eq!(Incoming::parse(b"{").unwrap_err().code, code::PARSE_ERROR);
        let twice =
            Incoming::parse(br#"{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}"#).unwrap_err();
        assert_eq!(twice.code, code::PARSE_ERROR);
        assert!(
            twice.message.contains("duplicate key `id`"),
            "{}",
            twice.message
        );
        let nested =
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"b"}}"#;
        assert_eq!(Incoming::parse(nested).unwrap_err().code, code::PARSE_ERROR);
        let no_version = Incoming::parse(br#"{"id":7,"method":"ping"}"#).unwrap_err();
        assert_eq!(no_version.id, Some(json!(7)));
        let params =
            Incoming::parse(br#"{"jsonrpc":"2.0","id":2,"method":"x","params":[1]}"#).unwrap_err();
        assert_eq!(params.code, code::INVALID_PARAMS);
    }

    #[test]
    fn versions_round_trip() {
        for v in Version::ALL {
            assert_eq!(Version::parse(v.as_str()), Some(v));
        }
        assert!(Version::V2026_07_28.is_stateless());
        assert!(!Version::V2025_11_25.is_stateless());
        assert_eq!(Version::parse("2024-11-05"), None);
    }

    /// The codes JSON-RPC 2.0 and MCP define, by the revision that defines them.
    const SPECIFIED: [(i32, &str); 9] = [
        (code::PARSE_ERROR, "JSON-RPC 2.0"),
        (code::INVALID_REQUEST, "JSON-RPC 2.0"),
        (code::METHOD_NOT_FOUND, "JSON-RPC 2.0"),
        (code::INVALID_PARAMS, "JSON-RPC 2.0"),
        (code::INTERNAL_ERROR, "JSON-RPC 2.0"),
        (code::RESOURCE_NOT_FOUND_LEGACY, "MCP 2025-11-25"),
        (code::HEADER_MISMATCH, "MCP 2026-07-28"),
        (code::MISSING_CLIENT_CAPABILITY, "MCP 2026-07-28"),
        (code::UNSUPPORTED_PROTOCOL_VERSION, "MCP 2026-07-28"),
    ];

    #[test]
    fn every_code_keeps_to_the_reserved_bands() {
        for (value, name) in code::ALL {
            match SPECIFIED.iter().find(|(c, _)| *c == value) {
                Some((_, "MCP 2026-07-28")) => {
                    assert!((-32099..=-32020).contains(&value), "{name}")
                }
                Some(_) => {}
                // devmesh's own: outside what JSON-RPC reserves for the specifications.
                None => assert!(!(-32768..=-32000).contains(&value), "{name} ({value})"),
            }
            // MCP 2026-07-28 asks new implementations not to use -32000..=-32019: only the
            // sessions era's resource-not-found, and only in that era.
            if (-32019..=-32000).contains(&value) {
                assert_eq!(value, code::RESOURCE_NOT_FOUND_LEGACY, "{name}");
            }
        }
    }

    #[test]
    fn the_documented_table_is_the_list() {
        let table = include_str!("../../docs/json-rpc-errors.md");
        let rows: Vec<&str> = table.lines().filter(|l| l.starts_with("| `-")).collect();
        assert_eq!(rows.len(), code::ALL.len(), "one row per code");
        for (value, name) in code::ALL {
            let row = format!("| `{value}` | `{name}` |");
            assert!(
                rows.iter().any(|r| r.starts_with(&row)),
                "{row} is documented"
            );
        }
    }

    #[test]
    fn an_unknown_resource_is_answered_in_the_era_of_the_request() {
        let error = crate::mcp::catalog::not_found("devmesh://contexts/x");
        assert_eq!(
            error.clone().in_era(Version::V2026_07_28).code,
            code::INVALID_PARAMS
        );
        assert_eq!(
            error.clone().in_era(Version::V2025_11_25).code,
            code::RESOURCE_NOT_FOUND_LEGACY
        );
        assert_eq!(
            error.in_era(Version::V2025_06_18).code,
            code::RESOURCE_NOT_FOUND_LEGACY
        );
        let other = RpcError::invalid_params("x").in_era(Version::V2025_11_25);
        assert_eq!(other.code, code::INVALID_PARAMS);
    }
}
