//! A small MCP client for the tests: raw JSON-RPC over Streamable HTTP, so that every
//! header and status can be checked, in both protocol eras.

use std::time::Duration;

use devmesh::mcp::header_value;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use crate::helpers::TestApp;

pub const MODERN: &str = "2026-07-28";
pub const LEGACY: &str = "2025-11-25";

/// One answer: status, headers, the JSON-RPC message that ends it, and the messages
/// streamed before it.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub message: Value,
    pub before: Vec<Value>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn result(&self) -> &Value {
        assert!(
            self.message.get("result").is_some(),
            "expected a result, got {} {}",
            self.status,
            self.message
        );
        &self.message["result"]
    }
    pub fn error_code(&self) -> i64 {
        self.message["error"]["code"]
            .as_i64()
            .unwrap_or_else(|| panic!("expected an error, got {} {}", self.status, self.message))
    }
    pub fn error_message(&self) -> &str {
        self.message["error"]["message"].as_str().unwrap_or("")
    }
}

/// Reads server-sent events from a response, one JSON message at a time.
pub struct Events {
    response: reqwest::Response,
    buffer: String,
}

impl Events {
    pub fn new(response: reqwest::Response) -> Self {
        Self {
            response,
            buffer: String::new(),
        }
    }

    /// The next message (with its event id), or `None` when the stream ends or nothing
    /// arrives within `wait`.
    pub async fn next(&mut self, wait: Duration) -> Option<(Option<String>, Value)> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let event: String = self.buffer.drain(..end + 2).collect();
                let mut id = None;
                let mut data = String::new();
                for line in event.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if !data.is_empty() {
                    return Some((id, serde_json::from_str(&data).expect("events carry JSON")));
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .ok()?
                .ok()??;
            self.buffer
                .push_str(std::str::from_utf8(&chunk).expect("UTF-8 events"));
        }
    }
}

#[derive(Clone)]
pub struct McpClient {
    pub http: reqwest::Client,
    pub url: String,
    pub key: Option<String>,
}

impl McpClient {
    pub fn new(app: &TestApp, key: Option<&str>) -> Self {
        Self {
            http: app.http.clone(),
            url: app.mcp_url("/mcp"),
            key: key.map(str::to_string),
        }
    }

    pub fn request(&self, method: reqwest::Method) -> reqwest::RequestBuilder {
        let mut req = self.http.request(method, &self.url);
        if let Some(key) = &self.key {
            req = req.bearer_auth(key);
        }
        req
    }

    /// POSTs a raw body with the standard headers plus `headers`, without reading the answer.
    pub async fn send(&self, body: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut req = self
            .request(reqwest::Method::POST)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body.to_string());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().await.expect("the MCP endpoint answers")
    }

    /// POSTs and reads the whole answer (an SSE stream to its end).
    pub async fn post(&self, body: &str, headers: &[(&str, &str)]) -> Answer {
        read(self.send(body, headers).await).await
    }

    /// A 2026-07-28 request with its `_meta` and headers.
    pub async fn modern(&self, method: &str, params: Value) -> Answer {
        self.post_modern(&modern_request(1, method, params)).await
    }

    /// Sends a request made by [`modern_request`], without reading the answer.
    pub async fn send_modern(&self, request: &ModernRequest) -> reqwest::Response {
        self.send(&request.body.to_string(), &request.headers())
            .await
    }

    /// Sends a request made by [`modern_request`] and reads the whole answer.
    pub async fn post_modern(&self, request: &ModernRequest) -> Answer {
        read(self.send_modern(request).await).await
    }

    /// Calls a tool under protocol 2026-07-28 and returns its result.
    pub async fn call_tool(&self, name: &str, arguments: Value) -> Value {
        let a = self
            .modern(
                "tools/call",
                json!({ "name": name, "arguments": arguments }),
            )
            .await;
        assert_eq!(a.status, 200, "{}", a.message);
        a.result().clone()
    }

    /// Opens a session of `version`; returns its id.
    pub async fn initialize(&self, version: &str) -> String {
        let body = json!({
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {
                "protocolVersion": version,
                "capabilities": { "sampling": {} },
                "clientInfo": { "name": "devmesh-tests", "version": "1" }
            }
        });
        let a = self.post(&body.to_string(), &[]).await;
        assert_eq!(a.status, 200, "{}", a.message);
        assert_eq!(a.result()["protocolVersion"], version);
        let id = a
            .header("mcp-session-id")
            .expect("a session id")
            .to_string();
        let initialized = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
        let r = self
            .send(&initialized.to_string(), &session_headers(&id, version))
            .await;
        assert_eq!(r.status(), 202);
        id
    }

    /// A request in a session.
    pub async fn in_session(
        &self,
        session: &str,
        version: &str,
        id: i64,
        method: &str,
        params: Value,
    ) -> Answer {
        let body = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
        self.post(&body.to_string(), &session_headers(session, version))
            .await
    }

    /// Opens the session's GET stream.
    pub async fn open_stream(
        &self,
        session: &str,
        last_event_id: Option<&str>,
    ) -> reqwest::Response {
        let mut req = self
            .request(reqwest::Method::GET)
            .header("accept", "text/event-stream")
            .header("mcp-session-id", session);
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        req.send().await.expect("the MCP endpoint answers")
    }
}

pub fn session_headers<'a>(session: &'a str, version: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("mcp-session-id", session),
        ("mcp-protocol-version", version),
    ]
}

/// A 2026-07-28 request: its body and the headers that go with it.
pub struct ModernRequest {
    pub body: Value,
    headers: Vec<(&'static str, String)>,
}

impl ModernRequest {
    /// Replaces (or, with `None`, removes) a header.
    pub fn set_header(&mut self, name: &'static str, value: Option<&str>) {
        self.headers.retain(|(k, _)| *k != name);
        if let Some(value) = value {
            self.headers.push((name, value.to_string()));
        }
    }

    pub fn headers(&self) -> Vec<(&str, &str)> {
        self.headers.iter().map(|(k, v)| (*k, v.as_str())).collect()
    }
}

/// The body and headers of a 2026-07-28 request.
pub fn modern_request(id: i64, method: &str, mut params: Value) -> ModernRequest {
    let meta = params
        .as_object_mut()
        .expect("params are an object")
        .entry("_meta")
        .or_insert_with(|| json!({}));
    for (k, v) in [
        ("io.modelcontextprotocol/protocolVersion", json!(MODERN)),
        ("io.modelcontextprotocol/clientCapabilities", json!({})),
        (
            "io.modelcontextprotocol/clientInfo",
            json!({ "name": "devmesh-tests", "version": "1" }),
        ),
    ] {
        meta.as_object_mut().unwrap().entry(k).or_insert(v);
    }
    let mut headers = vec![
        ("mcp-protocol-version", MODERN.to_string()),
        ("mcp-method", method.to_string()),
    ];
    let name = match method {
        "tools/call" | "prompts/get" => params.get("name"),
        "resources/read" => params.get("uri"),
        "tasks/get" | "tasks/update" | "tasks/cancel" => params.get("taskId"),
        _ => None,
    };
    if let Some(name) = name.and_then(Value::as_str) {
        headers.push(("mcp-name", header_value::encode(name).into_owned()));
    }
    ModernRequest {
        body: json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }),
        headers,
    }
}

/// Reads an answer: JSON, or an event stream whose last message is the answer.
pub async fn read(response: reqwest::Response) -> Answer {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let is_stream = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if !is_stream {
        let text = response.text().await.unwrap();
        let message = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        return Answer {
            status,
            headers,
            message,
            before: Vec::new(),
        };
    }
    let mut events = Events::new(response);
    let mut all = Vec::new();
    while let Some((_, message)) = events.next(Duration::from_secs(20)).await {
        all.push(message);
    }
    let message = all.pop().unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        message,
        before: all,
    }
}
