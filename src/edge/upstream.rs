//! The edge's way to the devmesh server: protocol 2026-07-28 requests (each carries its
//! own `_meta`, so a server restart loses nothing) over Streamable HTTP or WebSocket,
//! and a `subscriptions/listen` stream for notifications.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Map, Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_util::sync::CancellationToken;

use crate::mcp::header_value;
use crate::mcp::protocol::{Version, named_target};

pub const VERSION: Version = Version::V2026_07_28;

/// Messages for the local client (notifications the server sent along).
pub type Sink = mpsc::UnboundedSender<Value>;

#[derive(Debug)]
pub enum UpstreamError {
    /// The server cannot be reached, or the connection broke.
    Unreachable(String),
    /// The server answered with a JSON-RPC error (the error object).
    Rpc(Value),
    /// The server answered something that is not MCP.
    Protocol(String),
}

pub enum Upstream {
    Http(Http),
    Ws(Ws),
}

impl Upstream {
    /// Sends one request; notifications the server sends before the result go to the
    /// local client.
    pub async fn request(
        &self,
        method: &str,
        params: Map<String, Value>,
    ) -> Result<Value, UpstreamError> {
        match self {
            Upstream::Http(h) => h.request(method, params).await,
            Upstream::Ws(w) => w.request(method, params).await,
        }
    }

    /// Opens a listen stream; calls `on_open` once the server acknowledged it, passes its
    /// notifications to the local client, and returns when the stream ends.
    pub async fn listen(
        &self,
        params: Map<String, Value>,
        on_open: impl FnOnce(),
    ) -> UpstreamError {
        match self {
            Upstream::Http(h) => h.listen(params, on_open).await,
            Upstream::Ws(w) => w.listen(params, on_open).await,
        }
    }
}

/// A listen notification without its subscription tag, for the local client.
fn untagged(mut message: Value) -> Value {
    if let Some(meta) = message
        .get_mut("params")
        .and_then(|p| p.get_mut("_meta"))
        .and_then(Value::as_object_mut)
    {
        meta.remove(crate::mcp::protocol::meta::SUBSCRIPTION_ID);
    }
    if message["params"]["_meta"]
        .as_object()
        .is_some_and(Map::is_empty)
        && let Some(params) = message["params"].as_object_mut()
    {
        params.remove("_meta");
    }
    message
}

fn is_answer(message: &Value) -> bool {
    message.get("method").is_none()
        && (message.get("result").is_some() || message.get("error").is_some())
}

fn outcome(message: Value) -> Result<Value, UpstreamError> {
    match message.get("error") {
        Some(error) => Err(UpstreamError::Rpc(error.clone())),
        None => Ok(message.get("result").cloned().unwrap_or(json!({}))),
    }
}

// ---- Streamable HTTP ----

pub struct Http {
    client: reqwest::Client,
    endpoint: String,
    key: String,
    sink: Sink,
    /// Per tool, the arguments its schema asks to repeat in `Mcp-Param-*` headers, as
    /// learned from the last `tools/list` that passed through.
    header_params: Mutex<HashMap<String, Vec<(String, String)>>>,
}

impl Http {
    pub fn new(base: &str, key: &str, sink: Sink) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| format!("cannot make an HTTP client: {e}"))?;
        let base = base.trim_end_matches('/');
        let endpoint = if base.ends_with("/mcp") {
            base.to_string()
        } else {
            format!("{base}/mcp")
        };
        Ok(Self {
            client,
            endpoint,
            key: key.to_string(),
            sink,
            header_params: Mutex::default(),
        })
    }

    /// Remembers which tools take `Mcp-Param-*` headers.
    fn learn_tools(&self, result: &Value) {
        let Some(tools) = result.get("tools").and_then(Value::as_array) else {
            return;
        };
        let mut known = self.header_params.lock().unwrap();
        for tool in tools {
            let (Some(name), Some(schema)) = (
                tool.get("name").and_then(Value::as_str),
                tool.get("inputSchema").and_then(Value::as_object),
            ) else {
                continue;
            };
            let params = header_value::header_params(schema);
            if params.is_empty() {
                known.remove(name);
            } else {
                known.insert(name.to_string(), params);
            }
        }
    }

    async fn post(
        &self,
        method: &str,
        id: Value,
        params: Map<String, Value>,
    ) -> Result<reqwest::Response, UpstreamError> {
        let mut request = self
            .client
            .post(&self.endpoint)
            .bearer_auth(&self.key)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", VERSION.as_str())
            .header("mcp-method", method);
        if let Some(name) = named_target(method, &params) {
            request = request.header("mcp-name", header_value::encode(name).as_ref());
        }
        if method == "tools/call" {
            let name = params.get("name").and_then(Value::as_str).unwrap_or("");
            let arguments = params.get("arguments").and_then(Value::as_object);
            let known = self.header_params.lock().unwrap().get(name).cloned();
            for (property, header) in known.into_iter().flatten() {
                let value = arguments
                    .and_then(|a| a.get(&property))
                    .and_then(header_value::argument_text);
                if let Some(value) = value {
                    request = request.header(header, header_value::encode(&value).as_ref());
                }
            }
        }
        let body = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
        request
            .json(&body)
            .send()
            .await
            .map_err(|e| UpstreamError::Unreachable(describe(&e)))
    }

    async fn request(
        &self,
        method: &str,
        params: Map<String, Value>,
    ) -> Result<Value, UpstreamError> {
        let listing = method == "tools/list";
        let retry = (method == "tools/call").then(|| params.clone());
        let answer = self.answer(method, params).await;
        if let (true, Ok(result)) = (listing, &answer) {
            self.learn_tools(result);
        }
        // A tool that takes Mcp-Param-* headers, called before any tools/list passed
        // through: learn the tools, and send it once more with its headers.
        if let (Some(params), Err(UpstreamError::Rpc(error))) = (retry, &answer)
            && error["code"] == json!(crate::mcp::protocol::code::HEADER_MISMATCH)
        {
            self.learn_all_tools(&params).await;
            return self.answer(method, params).await;
        }
        answer
    }

    /// Walks every page of `tools/list` (with the `_meta` of `like`, a request of the
    /// same client) and learns which tools take `Mcp-Param-*` headers.
    async fn learn_all_tools(&self, like: &Map<String, Value>) {
        let mut cursor: Option<Value> = None;
        for _ in 0..1000 {
            let mut params = Map::new();
            if let Some(Value::Object(meta)) = like.get("_meta") {
                let mut meta = meta.clone();
                meta.remove("progressToken");
                params.insert("_meta".into(), Value::Object(meta));
            }
            if let Some(cursor) = cursor.take() {
                params.insert("cursor".into(), cursor);
            }
            let Ok(page) = self.answer("tools/list", params).await else {
                return;
            };
            self.learn_tools(&page);
            match page.get("nextCursor") {
                Some(next @ Value::String(_)) => cursor = Some(next.clone()),
                _ => return,
            }
        }
    }

    async fn answer(
        &self,
        method: &str,
        params: Map<String, Value>,
    ) -> Result<Value, UpstreamError> {
        let response = self.post(method, json!(1), params).await?;
        let status = response.status();
        if is_event_stream(&response) {
            let mut events = SseReader::new(response);
            while let Some(message) = events.next().await? {
                if is_answer(&message) {
                    return outcome(message);
                }
                let _ = self.sink.send(message);
            }
            return Err(UpstreamError::Unreachable(
                "the answer stream ended early".into(),
            ));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| UpstreamError::Unreachable(describe(&e)))?;
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(message) if is_answer(&message) => outcome(message),
            _ => Err(UpstreamError::Protocol(format!(
                "the server answered HTTP {status} without a JSON-RPC message: {}",
                String::from_utf8_lossy(&bytes)
                    .chars()
                    .take(200)
                    .collect::<String>()
            ))),
        }
    }

    async fn listen(&self, params: Map<String, Value>, on_open: impl FnOnce()) -> UpstreamError {
        let response = match self
            .post("subscriptions/listen", json!("edge-listen"), params)
            .await
        {
            Ok(r) => r,
            Err(e) => return e,
        };
        if !is_event_stream(&response) {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            return match serde_json::from_str::<Value>(&body) {
                Ok(message) if message.get("error").is_some() => {
                    UpstreamError::Rpc(message["error"].clone())
                }
                _ => UpstreamError::Protocol(format!("listen was answered HTTP {status}")),
            };
        }
        let mut events = SseReader::new(response);
        let mut on_open = Some(on_open);
        loop {
            match events.next().await {
                Ok(Some(message)) => {
                    if message["method"] == "notifications/subscriptions/acknowledged" {
                        if let Some(f) = on_open.take() {
                            f();
                        }
                    } else if message.get("method").is_some() {
                        let _ = self.sink.send(untagged(message));
                    }
                }
                Ok(None) => {
                    return UpstreamError::Unreachable(
                        "the server closed the listen stream".into(),
                    );
                }
                Err(e) => return e,
            }
        }
    }
}

fn is_event_stream(response: &reqwest::Response) -> bool {
    response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"))
}

fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The JSON messages of an event stream's `data:` lines.
struct SseReader {
    body: std::pin::Pin<
        Box<dyn futures_util::Stream<Item = reqwest::Result<actix_web::web::Bytes>> + Send>,
    >,
    buffer: Vec<u8>,
}

impl SseReader {
    fn new(response: reqwest::Response) -> Self {
        Self {
            body: Box::pin(response.bytes_stream()),
            buffer: Vec::new(),
        }
    }

    async fn next(&mut self) -> Result<Option<Value>, UpstreamError> {
        loop {
            if let Some(end) = find_event_end(&self.buffer) {
                let event: Vec<u8> = self.buffer.drain(..end.1).collect();
                let text = String::from_utf8_lossy(&event[..end.0]);
                let data: Vec<&str> = text
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(|d| d.strip_prefix(' ').unwrap_or(d))
                    .collect();
                if data.is_empty() {
                    continue;
                }
                return serde_json::from_str(&data.join("\n"))
                    .map(Some)
                    .map_err(|e| UpstreamError::Protocol(format!("an event is not JSON: {e}")));
            }
            match self.body.next().await {
                Some(Ok(chunk)) => self.buffer.extend_from_slice(&chunk),
                Some(Err(e)) => return Err(UpstreamError::Unreachable(describe(&e))),
                None => return Ok(None),
            }
        }
    }
}

/// Where the first event in `buffer` ends: (end of its text, end including the blank line).
fn find_event_end(buffer: &[u8]) -> Option<(usize, usize)> {
    let lf = buffer
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|i| (i, i + 2));
    let crlf = buffer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 < b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

// ---- WebSocket ----

type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<Value>>>>;

/// One live connection to `/ws`.
struct WsConnection {
    tx: mpsc::UnboundedSender<Message>,
    pending: Pending,
    sink: Sink,
    closed: CancellationToken,
}

pub struct Ws {
    url: String,
    key: String,
    sink: Sink,
    next: AtomicU64,
    live: tokio::sync::Mutex<Option<Arc<WsConnection>>>,
}

impl Ws {
    pub fn new(base: &str, key: &str, sink: Sink) -> Self {
        let base = base.trim_end_matches('/');
        let base = base.strip_suffix("/mcp").unwrap_or(base);
        let url = if let Some(rest) = base.strip_prefix("https://") {
            format!("wss://{rest}/ws")
        } else if let Some(rest) = base.strip_prefix("http://") {
            format!("ws://{rest}/ws")
        } else if base.ends_with("/ws") {
            base.to_string()
        } else {
            format!("{base}/ws")
        };
        Self {
            url,
            key: key.to_string(),
            sink,
            next: AtomicU64::new(1),
            live: tokio::sync::Mutex::new(None),
        }
    }

    /// The live connection, connecting when there is none.
    async fn connection(&self) -> Result<Arc<WsConnection>, UpstreamError> {
        let mut live = self.live.lock().await;
        if let Some(c) = live.as_ref()
            && !c.closed.is_cancelled()
        {
            return Ok(c.clone());
        }
        let mut request = self.url.as_str().into_client_request().map_err(|e| {
            UpstreamError::Unreachable(format!("bad WebSocket URL {}: {e}", self.url))
        })?;
        let auth = format!("Bearer {}", self.key).parse().map_err(|_| {
            UpstreamError::Unreachable("the API key is not a valid header value".into())
        })?;
        request.headers_mut().insert("authorization", auth);
        let connecting = tokio_tungstenite::connect_async(request);
        let (stream, _) = tokio::time::timeout(Duration::from_secs(10), connecting)
            .await
            .map_err(|_| UpstreamError::Unreachable("the WebSocket upgrade timed out".into()))?
            .map_err(|e| UpstreamError::Unreachable(e.to_string()))?;
        let (mut write, mut read) = stream.split();
        let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
        let connection = Arc::new(WsConnection {
            tx,
            pending: Arc::default(),
            sink: self.sink.clone(),
            closed: CancellationToken::new(),
        });
        tokio::spawn(async move {
            while let Some(m) = rx.recv().await {
                if write.send(m).await.is_err() {
                    break;
                }
            }
        });
        let reader = connection.clone();
        tokio::spawn(async move {
            while let Some(Ok(frame)) = read.next().await {
                let message = match frame {
                    Message::Text(t) => serde_json::from_str::<Value>(&t).ok(),
                    Message::Binary(b) => crate::mcp::ws::frame::decode(&b, 64 << 20)
                        .ok()
                        .and_then(|(json, _)| serde_json::from_slice(&json).ok()),
                    Message::Close(_) => break,
                    _ => None,
                };
                if let Some(message) = message {
                    reader.route(message);
                }
            }
            reader.closed.cancel();
            // Every waiting request learns the connection is gone.
            reader.pending.lock().unwrap().clear();
        });
        *live = Some(connection.clone());
        Ok(connection)
    }

    async fn request(
        &self,
        method: &str,
        params: Map<String, Value>,
    ) -> Result<Value, UpstreamError> {
        let connection = self.connection().await?;
        let id = format!("edge-{}", self.next.fetch_add(1, Ordering::Relaxed));
        let (rx, mut guard) = connection.expect(&id);
        let message = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
        connection.send(&message)?;
        let answer = rx.await;
        guard.done = true;
        match answer {
            Ok(message) => outcome(message),
            Err(_) => Err(closed()),
        }
    }

    async fn listen(&self, params: Map<String, Value>, on_open: impl FnOnce()) -> UpstreamError {
        let connection = match self.connection().await {
            Ok(c) => c,
            Err(e) => return e,
        };
        let id = format!("edge-listen-{}", self.next.fetch_add(1, Ordering::Relaxed));
        let (rx, _guard) = connection.expect(&id);
        let message = json!({ "jsonrpc": "2.0", "id": id, "method": "subscriptions/listen", "params": params });
        if let Err(e) = connection.send(&message) {
            return e;
        }
        on_open();
        tokio::select! {
            _ = connection.closed.cancelled() => closed(),
            answer = rx => match answer {
                // A listen is only answered when it fails.
                Ok(message) => outcome(message).err().unwrap_or(UpstreamError::Protocol("listen ended".into())),
                Err(_) => closed(),
            },
        }
    }
}

fn closed() -> UpstreamError {
    UpstreamError::Unreachable("the WebSocket connection closed".into())
}

impl WsConnection {
    fn route(&self, message: Value) {
        if is_answer(&message) {
            let id = message["id"].as_str().unwrap_or_default().to_string();
            if let Some(tx) = self.pending.lock().unwrap().remove(&id) {
                let _ = tx.send(message);
            }
            return;
        }
        if message.get("id").is_some() {
            // A request from the server: the edge does not take any.
            let refusal = json!({ "jsonrpc": "2.0", "id": message["id"], "error": { "code": -32601, "message": "devmesh edge takes no requests" } });
            let _ = self.tx.send(Message::text(refusal.to_string()));
            return;
        }
        // Progress, log messages and listen notifications: all for the local client.
        let _ = self.sink.send(untagged(message));
    }

    fn send(&self, message: &Value) -> Result<(), UpstreamError> {
        self.tx
            .send(Message::text(message.to_string()))
            .map_err(|_| closed())
    }

    /// Waits for the answer to `id`; the guard forgets it (and cancels it upstream when
    /// dropped before the answer came).
    fn expect(self: &Arc<Self>, id: &str) -> (oneshot::Receiver<Value>, Forget) {
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(id.to_string(), tx);
        let guard = Forget {
            connection: self.clone(),
            id: id.to_string(),
            done: false,
        };
        (rx, guard)
    }
}

/// Forgets a request that ends, and cancels it on the server when it did not finish (the
/// local client cancelled it).
struct Forget {
    connection: Arc<WsConnection>,
    id: String,
    done: bool,
}

impl Drop for Forget {
    fn drop(&mut self) {
        self.connection.pending.lock().unwrap().remove(&self.id);
        if !self.done {
            let cancel = json!({ "jsonrpc": "2.0", "method": "notifications/cancelled", "params": { "requestId": self.id } });
            let _ = self.connection.tx.send(Message::text(cancel.to_string()));
        }
    }
}
