//! Converted tools as real clients meet them: the official Python SDK listing and calling
//! one in both protocol eras, progress while a slow call is in flight, a cancellation
//! that aborts the upstream request (seen from the upstream's side of the socket), and
//! discovery learning where hosts of one kind keep their description.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

use crate::gateway_tools::{
    create_tool, described_upstream, discovered, gateway_env, upstream_description,
};
use crate::helpers::Shape;
use crate::mcp_client::{McpClient, modern_request};
use crate::rest::register;
use crate::upstream::Upstream;
use crate::ws_client::connect;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_calls_a_converted_tool() {
    let env = gateway_env(Shape::Sqlite).await;
    let app = env.spawn_app().await;
    app.wait_ready().await;
    let tenant = register(&app, "acme").await;
    let (upstream, _dir) = described_upstream("/openapi.json").await;
    let r = create_tool(&app, &tenant, json!({ "name": "up", "base_url": upstream.url("/"), "auth": { "type": "bearer", "token": "sdk-token" } })).await;
    discovered(&app, &tenant, r.body["id"].as_str().unwrap()).await;
    let url = app.mcp_url("/mcp");
    let args = json!({ "name": "n1", "body": { "message": "from python" } }).to_string();
    let seen =
        crate::mcp_interop::run_sdk_with(&["gateway", &url, "up_postEcho", &args], &tenant.key)
            .await;
    for era in ["legacy", "modern"] {
        let s = &seen[era];
        assert_eq!(s["is_error"], false, "{era}: {s}");
        assert_eq!(
            s["schema"]["required"],
            json!(["name", "body"]),
            "{era}: {s}"
        );
        assert_eq!(s["structured"]["path"], "/echo/n1", "{era}: {s}");
        assert_eq!(
            s["structured"]["headers"]["authorization"],
            "Bearer sdk-token"
        );
        let body: Value = serde_json::from_str(s["structured"]["body"].as_str().unwrap()).unwrap();
        assert_eq!(body, json!({ "message": "from python" }));
    }
}

/// A call in flight reports progress to a client that asked for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_call_reports_progress() {
    let env = gateway_env(Shape::Sqlite).await;
    let app = env.spawn_app().await;
    app.wait_ready().await;
    let tenant = register(&app, "acme").await;
    let upstream = Upstream::start().await;
    let r = create_tool(
        &app,
        &tenant,
        json!({ "name": "up", "base_url": upstream.url("/"), "openapi": upstream_description() }),
    )
    .await;
    assert_eq!(r.status, 201);
    let mcp = McpClient::new(&app, Some(&tenant.key));
    let request = modern_request(
        3,
        "tools/call",
        json!({ "name": "up_slow", "arguments": { "ms": 2500 }, "_meta": { "progressToken": "p-1" } }),
    );
    let answer = mcp.post_modern(&request).await;
    assert_eq!(
        answer.result()["structuredContent"]["slept_ms"],
        2500,
        "{:?}",
        answer.message
    );
    let progress: Vec<&Value> = answer
        .before
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .collect();
    assert!(
        !progress.is_empty(),
        "no progress before the answer: {:?}",
        answer.before
    );
    assert_eq!(progress[0]["params"]["progressToken"], "p-1");
    assert!(
        progress[0]["params"]["message"]
            .as_str()
            .unwrap()
            .contains("GET /slow")
    );
}

/// Reads a request's head (up to the blank line); `None` when the client leaves first.
async fn read_head(socket: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    let mut buffer = vec![0u8; 8192];
    let mut seen = Vec::new();
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        match socket.read(&mut buffer).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => seen.extend_from_slice(&buffer[..n]),
        }
    }
    Some(seen)
}

/// An upstream that answers every request at once but `GET /slow`, which it never
/// answers: it tells when that request arrived and when its connection closed.
async fn hanging_upstream() -> (u16, tokio::sync::mpsc::Receiver<&'static str>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let Some(seen) = read_head(&mut socket).await else {
                    return;
                };
                if !seen.starts_with(b"GET /slow") {
                    let _ = socket
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        )
                        .await;
                    return;
                }
                let _ = tx.send("arrived").await;
                // Never answers; a read of 0 bytes is the client closing the connection.
                let mut buffer = [0u8; 1024];
                loop {
                    match socket.read(&mut buffer).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
                let _ = tx.send("closed").await;
            });
        }
    });
    (port, rx)
}

/// `notifications/cancelled` aborts the request to the upstream at once, instead of
/// leaving it to the tool's timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_aborts_the_upstream_request() {
    let env = gateway_env(Shape::Sqlite).await;
    let app = env.spawn_app().await;
    app.wait_ready().await;
    let tenant = register(&app, "acme").await;
    let (port, mut heard) = hanging_upstream().await;
    let r = create_tool(
        &app,
        &tenant,
        json!({ "name": "up", "base_url": format!("http://127.0.0.1:{port}/"), "openapi": upstream_description(), "timeout": 60 }),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let mut ws = connect(&app, &tenant.key).await;
    ws.initialize().await;
    let (mut sink, _frames) = ws.stream.split();
    let call = json!({ "jsonrpc": "2.0", "id": 41, "method": "tools/call", "params": { "name": "up_slow", "arguments": {} } });
    sink.send(Message::text(call.to_string())).await.unwrap();
    let arrived = tokio::time::timeout(Duration::from_secs(10), heard.recv())
        .await
        .unwrap();
    assert_eq!(arrived, Some("arrived"));
    let cancelled_at = Instant::now();
    let cancel = json!({ "jsonrpc": "2.0", "method": "notifications/cancelled", "params": { "requestId": 41 } });
    sink.send(Message::text(cancel.to_string())).await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(10), heard.recv())
        .await
        .expect("the upstream connection is closed well before the 60 s timeout");
    assert_eq!(closed, Some("closed"));
    assert!(cancelled_at.elapsed() < Duration::from_secs(10));
}

/// A description found at an unusual path is tried first for the next host of the same
/// pattern (here the same address, another port).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_learns_where_hosts_keep_their_description() {
    let env = gateway_env(Shape::Sqlite).await;
    let app = env.spawn_app().await;
    app.wait_ready().await;
    let tenant = register(&app, "acme").await;
    let (first, _d1) = described_upstream("/internal/spec/v9.json").await;
    let (second, _d2) = described_upstream("/internal/spec/v9.json").await;

    // Nothing learned yet, and the path is no well-known one: discovery fails, saying
    // what it tried.
    let r = create_tool(
        &app,
        &tenant,
        json!({ "name": "blind", "base_url": first.url("/") }),
    )
    .await;
    let blind = discovered(&app, &tenant, r.body["id"].as_str().unwrap()).await;
    assert_eq!(blind["discovery"]["status"], "failed");
    assert!(blind["discovery"]["tried"].as_array().unwrap().len() >= 20);
    assert!(blind["discovery"]["tried"].to_string().contains("HTTP 404"));

    let r = create_tool(
        &app,
        &tenant,
        json!({ "name": "told", "base_url": first.url("/"), "openapi_url": first.url("/internal/spec/v9.json") }),
    )
    .await;
    let told = discovered(&app, &tenant, r.body["id"].as_str().unwrap()).await;
    assert_eq!(told["discovery"]["status"], "ready", "{told}");

    let r = create_tool(
        &app,
        &tenant,
        json!({ "name": "learnt", "base_url": second.url("/") }),
    )
    .await;
    let learnt = discovered(&app, &tenant, r.body["id"].as_str().unwrap()).await;
    assert_eq!(learnt["discovery"]["status"], "ready", "{learnt}");
    let tried = learnt["discovery"]["tried"].as_array().unwrap();
    assert_eq!(tried.len(), 1, "the learned path first: {tried:?}");
    assert_eq!(tried[0]["url"], second.url("/internal/spec/v9.json"));

    // The failed one, rediscovered, finds it now too.
    let id = blind["id"].as_str().unwrap();
    let r = crate::rest::call(
        &app,
        "POST",
        &format!("/api/v1/tools/{id}/rediscover"),
        Some(&tenant.key),
        None,
    )
    .await;
    assert_eq!(r.status, 202);
    assert_eq!(
        discovered(&app, &tenant, id).await["discovery"]["status"],
        "ready"
    );
}

/// A discovery in progress shows what it tried so far; removing the tool stops it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_shows_its_tries_as_it_goes() {
    let env = gateway_env(Shape::Sqlite).await;
    let app = env.spawn_app().await;
    app.wait_ready().await;
    let tenant = register(&app, "acme").await;
    let upstream = Upstream::start().await;
    let r = create_tool(
        &app,
        &tenant,
        json!({ "name": "slow", "base_url": upstream.url("/slowdocs/") }),
    )
    .await;
    assert_eq!(r.status, 201);
    let path = format!("/api/v1/tools/{}", r.body["id"].as_str().unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    let seen = loop {
        let tool = crate::rest::call(&app, "GET", &path, Some(&tenant.key), None)
            .await
            .body;
        let tried = tool["discovery"]["tried"].as_array().map_or(0, Vec::len);
        if tool["discovery"]["status"] == "running" && tried >= 2 {
            break tool;
        }
        assert!(Instant::now() < deadline, "no progress shown: {tool}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let first = &seen["discovery"]["tried"][0];
    assert_eq!(first["url"], upstream.url("/slowdocs/openapi.json"));
    assert!(
        first["outcome"].as_str().unwrap().ends_with("HTTP 404"),
        "{first}"
    );
    let r = crate::rest::call(&app, "DELETE", &path, Some(&tenant.key), None).await;
    assert_eq!(r.status, 204);
}

/// A 2026-07-28 client that hangs up on a slow call: the answer became a stream, the
/// hang-up is noticed, and the upstream request is aborted with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_up_aborts_the_upstream_request() {
    let env = gateway_env(Shape::Sqlite).await;
    let app = env.spawn_app().await;
    app.wait_ready().await;
    let tenant = register(&app, "acme").await;
    let (port, mut heard) = hanging_upstream().await;
    let r = create_tool(
        &app,
        &tenant,
        json!({ "name": "up", "base_url": format!("http://127.0.0.1:{port}/"), "openapi": upstream_description(), "timeout": 60 }),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let mcp = McpClient::new(&app, Some(&tenant.key));
    let request = modern_request(
        5,
        "tools/call",
        json!({ "name": "up_slow", "arguments": {} }),
    );
    let response = mcp.send_modern(&request).await;
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "text/event-stream",
        "a slow answer is a stream"
    );
    let arrived = tokio::time::timeout(Duration::from_secs(10), heard.recv())
        .await
        .unwrap();
    assert_eq!(arrived, Some("arrived"));
    drop(response);
    let closed = tokio::time::timeout(Duration::from_secs(15), heard.recv())
        .await
        .expect("the upstream connection is closed well before the 60 s timeout");
    assert_eq!(closed, Some("closed"));
}

/// A server that serves the upstream's description to any GET and keeps each request's
/// head (request line and headers) as it arrived.
async fn recording_description_server() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let heads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = heads.clone();
    let body = upstream_description().to_string();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let (kept, body) = (kept.clone(), body.clone());
            tokio::spawn(async move {
                let Some(seen) = read_head(&mut socket).await else {
                    return;
                };
                kept.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&seen).to_lowercase());
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            });
        }
    });
    (port, heads)
}

/// The credential goes with discovery only to the API's own origin: a description on
/// another origin is fetched without it; one on the same origin with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_sends_the_credential_to_the_apis_origin_only() {
    let env = gateway_env(Shape::Sqlite).await;
    let app = env.spawn_app().await;
    app.wait_ready().await;
    let tenant = register(&app, "acme").await;
    let (elsewhere, heads) = recording_description_server().await;
    let upstream = Upstream::start().await;
    let r = create_tool(
        &app,
        &tenant,
        json!({ "name": "away", "base_url": upstream.url("/"),
                "openapi_url": format!("http://127.0.0.1:{elsewhere}/openapi.json"),
                "auth": { "type": "bearer", "token": "s-origin-token" } }),
    )
    .await;
    let tool = discovered(&app, &tenant, r.body["id"].as_str().unwrap()).await;
    assert_eq!(tool["discovery"]["status"], "ready", "{tool}");
    let seen = heads.lock().unwrap().clone();
    assert!(
        seen.iter().any(|h| h.starts_with("get /openapi.json")),
        "{seen:?}"
    );
    assert!(
        !seen.iter().any(|h| h.contains("authorization")),
        "{seen:?}"
    );

    // The same server as the API itself: the credential goes along.
    let r = create_tool(
        &app,
        &tenant,
        json!({ "name": "home", "base_url": format!("http://127.0.0.1:{elsewhere}/"),
                "auth": { "type": "bearer", "token": "s-origin-token" } }),
    )
    .await;
    let tool = discovered(&app, &tenant, r.body["id"].as_str().unwrap()).await;
    assert_eq!(tool["discovery"]["status"], "ready", "{tool}");
    let seen = heads.lock().unwrap().clone();
    assert!(
        seen.iter()
            .any(|h| h.contains("authorization: bearer s-origin-token")),
        "{seen:?}"
    );
}
