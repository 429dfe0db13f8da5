//! Load tool for MCP over WebSocket (`benches/ws-load.sh` runs it against a release node).
//!
//!   ws_load throughput URL KEY SECONDS INFLIGHT FRAMES   # FRAMES: text, zstd or gzip
//!       `tools/call devmesh_whoami` (protocol 2026-07-28) on ONE connection, INFLIGHT
//!       requests kept in flight; prints calls/s, p50 and p99 as JSON.
//!   ws_load idle URL KEY CONNECTIONS SECONDS
//!       opens CONNECTIONS authenticated connections, each initializes a session, holds
//!       them SECONDS (answering pings) and closes them; prints "open" once all are open.
//!
//! It only targets the URL given (the scripts give loopback addresses) and ends by itself.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use devmesh::mcp::ws::frame::{self, Compression};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(url: &str, key: &str) -> Socket {
    let mut request = url.into_client_request().expect("a ws:// URL");
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    let (socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("the upgrade is accepted");
    socket
}

fn call(id: u64) -> Value {
    json!({
        "jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {
            "name": "devmesh_whoami", "arguments": {},
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {},
            }
        }
    })
}

fn encode(message: &Value, frames: Option<Compression>) -> Message {
    let json = serde_json::to_vec(message).unwrap();
    match frames {
        None => Message::text(String::from_utf8(json).unwrap()),
        Some(c) => Message::binary(frame::encode(&json, c)),
    }
}

fn decode(message: Message) -> Option<Value> {
    match message {
        Message::Text(t) => serde_json::from_str(&t).ok(),
        Message::Binary(b) => {
            let (json, _) = frame::decode(&b, 64 << 20).expect("a valid frame");
            serde_json::from_slice(&json).ok()
        }
        _ => None,
    }
}

async fn throughput(url: &str, key: &str, seconds: u64, inflight: usize, frames: &str) {
    let compression = match frames {
        "text" => None,
        other => Some(Compression::parse(other).expect("text, zstd or gzip")),
    };
    let socket = connect(url, key).await;
    let (mut write, mut read) = socket.split();
    let (sent_tx, mut sent_rx) = tokio::sync::mpsc::unbounded_channel::<(u64, Instant)>();
    let (slot_tx, mut slot_rx) = tokio::sync::mpsc::channel::<()>(inflight);
    for _ in 0..inflight {
        slot_tx.send(()).await.unwrap();
    }
    let end = Instant::now() + Duration::from_secs(seconds);
    let writer = tokio::spawn(async move {
        let mut id = 0u64;
        while Instant::now() < end {
            if slot_rx.recv().await.is_none() {
                break;
            }
            id += 1;
            sent_tx.send((id, Instant::now())).unwrap();
            write.send(encode(&call(id), compression)).await.unwrap();
        }
        write
    });
    let started = Instant::now();
    let mut waiting: HashMap<u64, Instant> = HashMap::new();
    let mut latencies: Vec<Duration> = Vec::with_capacity(1 << 20);
    let mut errors = 0u64;
    while Instant::now() < end {
        let Ok(Some(Ok(message))) = tokio::time::timeout(Duration::from_secs(5), read.next()).await
        else {
            panic!("the server stopped answering");
        };
        let Some(answer) = decode(message) else {
            continue;
        };
        while let Ok((id, at)) = sent_rx.try_recv() {
            waiting.insert(id, at);
        }
        let id = answer["id"].as_u64().expect("an answer with an id");
        if answer.get("error").is_some() || answer["result"]["isError"] == true {
            errors += 1;
        }
        if let Some(at) = waiting.remove(&id) {
            latencies.push(at.elapsed());
        }
        let _ = slot_tx.try_send(());
    }
    let elapsed = started.elapsed().as_secs_f64();
    drop(slot_tx);
    let _ = writer.await;
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "{}",
        json!({
            "frames": frames,
            "inflight": inflight,
            "calls": latencies.len(),
            "errors": errors,
            "calls_per_s": (latencies.len() as f64 / elapsed).round(),
            "p50_ms": pct(0.50),
            "p99_ms": pct(0.99),
        })
    );
}

async fn idle(url: &str, key: &str, connections: usize, seconds: u64) {
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(200));
    let mut opening = Vec::with_capacity(connections);
    for _ in 0..connections {
        let (url, key, gate) = (url.to_string(), key.to_string(), gate.clone());
        opening.push(tokio::spawn(async move {
            let _permit = gate.acquire().await.unwrap();
            let mut socket = connect(&url, &key).await;
            let init = json!({ "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": "2025-11-25", "capabilities": {},
                "clientInfo": { "name": "ws-load", "version": "1" } } });
            socket.send(Message::text(init.to_string())).await.unwrap();
            loop {
                match socket.next().await {
                    Some(Ok(Message::Text(_))) => break,
                    Some(Ok(_)) => continue,
                    other => panic!("initialize failed: {other:?}"),
                }
            }
            socket
        }));
    }
    let mut sockets = Vec::with_capacity(connections);
    for task in opening {
        sockets.push(task.await.expect("a connection opens"));
    }
    println!("open {}", sockets.len());
    // Hold them, reading (which answers the server's pings).
    let holders: Vec<_> = sockets
        .into_iter()
        .map(|mut socket| {
            tokio::spawn(async move {
                let until = tokio::time::Instant::now() + Duration::from_secs(seconds);
                while let Ok(Some(Ok(_))) = tokio::time::timeout_at(until, socket.next()).await {}
                let _ = socket.close(None).await;
            })
        })
        .collect();
    for h in holders {
        let _ = h.await;
    }
    println!("closed");
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["throughput", url, key, seconds, inflight, frames] => runtime.block_on(throughput(
            url,
            key,
            seconds.parse().unwrap(),
            inflight.parse().unwrap(),
            frames,
        )),
        ["idle", url, key, connections, seconds] => runtime.block_on(idle(
            url,
            key,
            connections.parse().unwrap(),
            seconds.parse().unwrap(),
        )),
        [] => eprintln!("ws_load: run it through benches/ws-load.sh"),
        other => {
            eprintln!("ws_load: unknown arguments {other:?}; see the file's header");
            std::process::exit(2);
        }
    }
}
