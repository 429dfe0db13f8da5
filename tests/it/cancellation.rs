//! A write that has started runs to its end or rolls back at once, whoever cancels it: a
//! cancelled MCP append never leaves the SQLite database locked for other writers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{Shape, TestApp, TestEnv};
use crate::rest::{call, register};
use crate::ws_client::connect;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_appends_never_lock_the_database() {
    let env = TestEnv::new(Shape::Sqlite).await;
    let mut config = env.config.clone();
    // A lock held past this shows up as a failed write at once.
    config.database.sqlite_busy_timeout = devmesh::config::Duration::from_secs(1);
    // As in production: the job runner does not poll the pool every few milliseconds
    // (its frequent checkouts would discard a broken connection sooner).
    config.jobs.poll_interval = devmesh::config::Duration::from_secs(5);
    let app = TestApp::spawn(config, devmesh::jobs::Registry::new()).await;
    app.wait_ready().await;
    let acme = register(&app, "acme").await;
    let made = call(
        &app,
        "POST",
        "/api/v1/contexts",
        Some(&acme.key),
        Some(&json!({ "name": "busy" })),
    )
    .await;
    assert_eq!(made.status, 201);
    let id = made.body["id"].as_str().unwrap().to_string();
    let items_path = format!("/api/v1/contexts/{id}/items");

    // Another client appends over REST every 50 ms meanwhile.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (app_http, url, key, stop) = (
            app.http.clone(),
            app.api_url(&items_path),
            acme.key.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let mut outcomes = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let started = std::time::Instant::now();
                let status = app_http
                    .post(&url)
                    .bearer_auth(&key)
                    .json(&json!({ "items": [{ "role": "user", "content": format!("tick {n}") }] }))
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0);
                outcomes.push((status, started.elapsed()));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            outcomes
        })
    };

    let mut ws = connect(&app, &acme.key).await;
    ws.initialize().await;
    let content = "x".repeat(16_000);
    let items: Vec<_> = (0..100)
        .map(|_| json!({ "role": "assistant", "content": content }))
        .collect();
    let append = |request_id: i64| {
        json!({
            "jsonrpc": "2.0", "id": request_id, "method": "tools/call",
            "params": { "name": "devmesh_context_append", "arguments": { "id": id, "items": items } }
        })
    };
    // How long one append takes here: the cancellations are spread over it, so that some
    // land before the transaction, some inside it, some after.
    let started = std::time::Instant::now();
    let first = ws
        .call(99, "tools/call", append(99)["params"].clone())
        .await;
    assert_eq!(first["result"]["isError"], false, "{first}");
    let one = started.elapsed();
    // The client reads while it writes, as real clients do: an append that finished
    // before its cancellation is answered with all its items.
    let (mut sink, mut frames) = ws.stream.split();
    let reader = tokio::spawn(async move {
        while let Some(Ok(frame)) = frames.next().await {
            if let Message::Text(text) = frame {
                let message: serde_json::Value = serde_json::from_str(&text).unwrap();
                if message["id"] == 1 {
                    return message;
                }
            }
        }
        panic!("the connection ended before the last answer");
    });
    let send = |message: serde_json::Value| Message::text(message.to_string());
    for n in 0..60u32 {
        let request_id = 100 + i64::from(n);
        sink.send(send(append(request_id))).await.unwrap();
        tokio::time::sleep(one * n / 50).await;
        let cancel = json!({ "jsonrpc": "2.0", "method": "notifications/cancelled", "params": { "requestId": request_id } });
        sink.send(send(cancel)).await.unwrap();
    }
    // The socket still answers, after every append it was sent.
    let whoami = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": { "name": "devmesh_whoami" } });
    sink.send(send(whoami)).await.unwrap();
    let whoami = tokio::time::timeout(Duration::from_secs(60), reader)
        .await
        .expect("the last request is answered")
        .unwrap();
    assert_eq!(whoami["result"]["isError"], false, "{whoami}");
    stop.store(true, Ordering::Relaxed);
    let outcomes = writer.await.unwrap();

    let failed: Vec<_> = outcomes.iter().filter(|(s, _)| *s != 201).collect();
    assert!(failed.is_empty(), "every REST append lands: {failed:?}");
    // Each append landed whole or not at all.
    let context = call(
        &app,
        "GET",
        &format!("/api/v1/contexts/{id}?last=1"),
        Some(&acme.key),
        None,
    )
    .await;
    let count = context.body["item_count"].as_i64().unwrap();
    let from_ws = count - outcomes.len() as i64;
    assert!(
        from_ws >= 0 && from_ws % 100 == 0,
        "{count} items: {} from REST and whole runs of 100 from the socket",
        outcomes.len()
    );
}
