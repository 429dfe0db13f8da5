//! A real WebSocket client for `/ws`: text and binary frames, close codes, and the
//! JSON-RPC plumbing the tests share.

use std::time::Duration;

use devmesh::mcp::ws::frame::{self, Compression};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::helpers::TestApp;
use crate::mcp_client::{LEGACY, MODERN};

/// One frame from the server, decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Text(Value),
    Binary(Value, Compression),
    Ping,
    Close(u16, String),
}

impl Frame {
    pub fn message(&self) -> &Value {
        match self {
            Frame::Text(v) | Frame::Binary(v, _) => v,
            other => panic!("expected a message, got {other:?}"),
        }
    }
}

pub struct Ws {
    pub stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub connection_id: String,
}

/// Why an upgrade was refused: the HTTP status and the JSON-RPC body.
#[derive(Debug)]
pub struct Refused {
    pub status: u16,
    pub body: Value,
}

pub fn ws_url(app: &TestApp) -> String {
    format!("ws://{}/ws", app.mcp)
}

/// Connects with `Authorization: Bearer key` (none when `key` is `None`).
pub async fn try_connect(url: &str, key: Option<&str>) -> Result<Ws, Refused> {
    let mut request = url.into_client_request().unwrap();
    if let Some(key) = key {
        request.headers_mut().insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {key}")).unwrap(),
        );
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((stream, response)) => Ok(Ws {
            stream,
            connection_id: response
                .headers()
                .get("devmesh-connection-id")
                .expect("the upgrade names the connection")
                .to_str()
                .unwrap()
                .to_string(),
        }),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body = response
                .body()
                .as_ref()
                .map(|b| serde_json::from_slice(b).expect("a JSON body"))
                .unwrap_or(Value::Null);
            Err(Refused {
                status: response.status().as_u16(),
                body,
            })
        }
        Err(e) => panic!("cannot connect: {e}"),
    }
}

pub async fn connect(app: &TestApp, key: &str) -> Ws {
    try_connect(&ws_url(app), Some(key))
        .await
        .expect("the upgrade is accepted")
}

impl Ws {
    pub async fn send_text(&mut self, message: &Value) {
        self.stream
            .send(Message::text(message.to_string()))
            .await
            .expect("the frame is sent");
    }

    pub async fn send_binary(&mut self, message: &Value, c: Compression) {
        let bytes = frame::encode(message.to_string().as_bytes(), c);
        self.send_raw(bytes).await;
    }

    pub async fn send_raw(&mut self, bytes: Vec<u8>) {
        self.stream
            .send(Message::binary(bytes))
            .await
            .expect("the frame is sent");
    }

    /// The next frame (pongs skipped); panics after `wait`.
    pub async fn next(&mut self, wait: Duration) -> Frame {
        loop {
            let message = tokio::time::timeout(wait, self.stream.next())
                .await
                .expect("a frame in time");
            let message = match message {
                Some(Ok(m)) => m,
                Some(Err(e)) => panic!("the connection failed: {e}"),
                None => panic!("the connection ended without a close frame"),
            };
            return match message {
                Message::Text(t) => Frame::Text(serde_json::from_str(&t).expect("JSON text")),
                Message::Binary(b) => {
                    let (json, c) = frame::decode(&b, 64 << 20).expect("a valid binary frame");
                    Frame::Binary(serde_json::from_slice(&json).expect("JSON payload"), c)
                }
                Message::Ping(_) => Frame::Ping,
                Message::Close(reason) => {
                    let reason = reason.expect("the close says why");
                    Frame::Close(reason.code.into(), reason.reason.to_string())
                }
                Message::Pong(_) | Message::Frame(_) => continue,
            };
        }
    }

    /// The next message (pings skipped).
    pub async fn message(&mut self) -> Frame {
        loop {
            match self.next(Duration::from_secs(10)).await {
                Frame::Ping => continue,
                frame => return frame,
            }
        }
    }

    /// Frames until the close frame; returns its code and reason.
    pub async fn closed(&mut self) -> (u16, String) {
        loop {
            if let Frame::Close(code, reason) = self.next(Duration::from_secs(20)).await {
                return (code, reason);
            }
        }
    }

    /// The answer to request `id`; notifications before it are returned too.
    pub async fn answer(&mut self, id: i64) -> (Frame, Vec<Value>) {
        let mut before = Vec::new();
        loop {
            let frame = self.message().await;
            if frame.message()["id"] == json!(id) && frame.message().get("method").is_none() {
                return (frame, before);
            }
            before.push(frame.message().clone());
        }
    }

    /// A request in a text frame, and its answer.
    pub async fn call(&mut self, id: i64, method: &str, params: Value) -> Value {
        self.send_text(&request(id, method, params)).await;
        self.answer(id).await.0.message().clone()
    }

    /// Opens the connection's session.
    pub async fn initialize(&mut self) -> Value {
        let answer = self
            .call(
                0,
                "initialize",
                json!({ "protocolVersion": LEGACY, "capabilities": {}, "clientInfo": { "name": "ws-test", "version": "1" } }),
            )
            .await;
        self.send_text(&json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }))
            .await;
        answer
    }
}

pub fn request(id: i64, method: &str, params: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params })
}

/// A 2026-07-28 request: its `_meta` says the version and capabilities.
pub fn modern(id: i64, method: &str, mut params: Value) -> Value {
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": { "name": "ws-test", "version": "1" },
    });
    request(id, method, params)
}
