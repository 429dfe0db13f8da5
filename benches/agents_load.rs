//! Task lifecycles end to end, on loopback: N agents, each a real WebSocket MCP client
//! (`/ws`, a session, subscribed to its inbox `devmesh://agents/{id}/tasks`), and M task
//! creators posting to `/api/v1/tasks`. Each agent, told of a task by
//! `notifications/resources/updated`, takes it (`devmesh_task_next`) and finishes it
//! (`devmesh_task_complete`). Reports lifecycles per second and the latency from the
//! start of a create to the agent's notification (p50, p99).
//!
//!   cargo bench --bench agents_load -- [AGENTS] [CREATORS] [TASKS]
//!
//! Embedded shape (SQLite) by default; with `DEVMESH_BENCH_POSTGRES` (an admin URL such
//! as postgres://postgres@127.0.0.1:5432) and `DEVMESH_BENCH_REDIS`, the scale-out shape
//! with two nodes, agents and creators split between them. Prints JSON and ends by itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use devmesh::app::Application;
use devmesh::config::{Config, ListenAddr, Quota, SecretUrl};
use devmesh::jobs::Registry;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_util::sync::CancellationToken;

struct Node {
    api: String,
    ws: String,
}

async fn start(config: Config) -> (Node, CancellationToken) {
    let app = Application::build_with_jobs(config, Registry::new())
        .await
        .unwrap();
    let node = Node {
        api: format!("http://{}", app.addr("api").unwrap()),
        ws: format!("ws://{}/ws", app.addr("mcp").unwrap()),
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(app.run(shutdown.clone()));
    let http = reqwest::Client::new();
    for _ in 0..400 {
        if http
            .get(format!("{}/ready", node.api))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (node, shutdown)
}

fn config(dir: &std::path::Path, name: &str) -> Config {
    let mut config = Config {
        data_dir: dir.join(name),
        ..Config::default()
    };
    config.mcp.listen = ListenAddr("127.0.0.1:0".parse().unwrap());
    config.api.listen = ListenAddr("127.0.0.1:0".parse().unwrap());
    config.log.level = "error".into();
    let unlimited = Quota {
        per_minute: 60_000_000,
        burst: 10_000_000,
    };
    config.rate_limits.key = unlimited;
    config.rate_limits.organization = unlimited;
    config.mcp.ws.max_connections_per_key = 10_000;
    config
}

async fn post(http: &reqwest::Client, url: String, key: &str, body: Value) -> Value {
    let r = http
        .post(url)
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{status}: {v}");
    v
}

type Created = Arc<Mutex<HashMap<String, Instant>>>;

/// One agent: connect, subscribe, then take and finish what it is told of until `total`
/// lifecycles are done. Returns its notification latencies.
async fn agent(
    ws_url: String,
    key: String,
    id: String,
    created: Created,
    done: Arc<std::sync::atomic::AtomicUsize>,
    total: usize,
) -> Vec<Duration> {
    let mut req = ws_url.into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let mut next_id = 0i64;
    let mut send =
        async |ws: &mut tokio_tungstenite::WebSocketStream<_>, method: &str, params: Value| {
            next_id += 1;
            let m = json!({ "jsonrpc": "2.0", "id": next_id, "method": method, "params": params });
            ws.send(Message::Text(m.to_string().into())).await.unwrap();
            next_id
        };
    let inbox = format!("devmesh://agents/{id}/tasks");
    send(&mut ws, "initialize", json!({ "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": { "name": "load", "version": "1" } })).await;
    let _ = ws.next().await;
    ws.send(Message::Text(
        json!({ "jsonrpc": "2.0", "method": "notifications/initialized" })
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    send(&mut ws, "resources/subscribe", json!({ "uri": inbox })).await;
    let mut latencies = Vec::new();
    let mut told_at: Option<Instant> = None;
    let mut pending_next: Option<i64> = None;
    let mut pending_complete: Option<i64> = None;
    // Told of work while a call was out: the call may have looked before it came.
    let mut told_meanwhile = false;
    loop {
        if done.load(std::sync::atomic::Ordering::Relaxed) >= total && pending_complete.is_none() {
            return latencies;
        }
        let Ok(Some(Ok(message))) =
            tokio::time::timeout(Duration::from_millis(500), ws.next()).await
        else {
            continue;
        };
        let Message::Text(text) = message else {
            continue;
        };
        let m: Value = serde_json::from_str(&text).unwrap();
        if m["method"] == "notifications/resources/updated" && m["params"]["uri"] == inbox.as_str()
        {
            if pending_next.is_some() || pending_complete.is_some() {
                told_meanwhile = true;
            } else {
                told_at.get_or_insert_with(Instant::now);
                pending_next = Some(
                    send(
                        &mut ws,
                        "tools/call",
                        json!({ "name": "devmesh_task_next", "arguments": {} }),
                    )
                    .await,
                );
            }
            continue;
        }
        if Some(m["id"].as_i64().unwrap_or(-1)) == pending_next {
            pending_next = None;
            let task = &m["result"]["structuredContent"]["task"];
            let Some(task_id) = task["id"].as_str() else {
                // Nothing after all (a notice for a change that was no new task), unless
                // a notice came while this call was out: look again.
                told_at = None;
                if std::mem::take(&mut told_meanwhile) {
                    told_at = Some(Instant::now());
                    pending_next = Some(
                        send(
                            &mut ws,
                            "tools/call",
                            json!({ "name": "devmesh_task_next", "arguments": {} }),
                        )
                        .await,
                    );
                }
                continue;
            };
            if let (Some(at), Some(started)) = (
                told_at.take(),
                created
                    .lock()
                    .unwrap()
                    .get(task["title"].as_str().unwrap_or("")),
            ) {
                latencies.push(at.saturating_duration_since(*started));
            }
            pending_complete = Some(send(&mut ws, "tools/call", json!({ "name": "devmesh_task_complete", "arguments": { "id": task_id, "output": { "ok": true } } })).await);
            continue;
        }
        if Some(m["id"].as_i64().unwrap_or(-1)) == pending_complete {
            pending_complete = None;
            assert_eq!(m["result"]["isError"], false, "{m}");
            done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            // More may be waiting: ask again (this covers any notice meanwhile).
            told_meanwhile = false;
            pending_next = Some(
                send(
                    &mut ws,
                    "tools/call",
                    json!({ "name": "devmesh_task_next", "arguments": {} }),
                )
                .await,
            );
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let agents = args.first().copied().unwrap_or(100);
    let creators = args.get(1).copied().unwrap_or(8);
    let total = args.get(2).copied().unwrap_or(5_000);
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = Vec::new();
    let mut stops = Vec::new();
    let shape = match std::env::var("DEVMESH_BENCH_POSTGRES") {
        Ok(admin) => {
            let name = format!("devmesh_bench_{}", uuid::Uuid::now_v7().simple());
            let admin = admin.trim_end_matches('/').to_string();
            let made = std::process::Command::new("psql")
                .args([
                    &format!("{admin}/postgres"),
                    "-qc",
                    &format!("CREATE DATABASE {name}"),
                ])
                .status()
                .is_ok_and(|s| s.success());
            assert!(made, "cannot make a database at {admin} (psql)");
            for n in ["one", "two"] {
                let mut c = config(dir.path(), n);
                c.database.url = Some(SecretUrl::new(format!("{admin}/{name}")));
                let redis =
                    std::env::var("DEVMESH_BENCH_REDIS").unwrap_or("redis://127.0.0.1:6379".into());
                c.redis.url = Some(SecretUrl::new(redis));
                c.redis.key_prefix = format!("{name}:");
                let (node, stop) = start(c).await;
                nodes.push(node);
                stops.push(stop);
            }
            "scale-out (PostgreSQL + Redis, two nodes)"
        }
        Err(_) => {
            let (node, stop) = start(config(dir.path(), "data")).await;
            nodes.push(node);
            stops.push(stop);
            "embedded (SQLite)"
        }
    };
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    let registered = post(
        &http,
        format!("{}/api/v1/auth/register/organization", nodes[0].api),
        "",
        json!({ "organization_name": "Bench", "organization_slug": "bench",
            "admin_email": "b@bench.io", "admin_name": "B", "admin_password": "a long bench passphrase" }),
    )
    .await;
    let key = registered["api_key"]["key"].as_str().unwrap().to_string();
    let mut fleet = Vec::new();
    for i in 0..agents {
        let api = &nodes[0].api;
        let a = post(
            &http,
            format!("{api}/api/v1/agents"),
            &key,
            json!({ "name": format!("agent {i}"), "capabilities": [{ "name": "work" }] }),
        )
        .await;
        let id = a["id"].as_str().unwrap().to_string();
        post(
            &http,
            format!("{api}/api/v1/agents/{id}/activate"),
            &key,
            json!({}),
        )
        .await;
        let k = post(
            &http,
            format!("{api}/api/v1/agents/{id}/keys"),
            &key,
            json!({ "name": "k" }),
        )
        .await;
        fleet.push((id, k["key"].as_str().unwrap().to_string()));
    }
    let created: Created = Arc::default();
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut runners = Vec::new();
    for (i, (id, agent_key)) in fleet.iter().enumerate() {
        let node = &nodes[i % nodes.len()];
        runners.push(tokio::spawn(agent(
            node.ws.clone(),
            agent_key.clone(),
            id.clone(),
            created.clone(),
            done.clone(),
            total,
        )));
    }
    // Every agent connected and online before the clock starts.
    let online = async {
        loop {
            let r: Value = http
                .get(format!("{}/api/v1/agents?limit=200", nodes[0].api))
                .bearer_auth(&key)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let n = r["items"].as_array().map_or(0, |a| {
                a.iter().filter(|a| a["presence"]["online"] == true).count()
            });
            if n >= agents.min(200) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), online)
        .await
        .expect("the agents come online");
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut posting = Vec::new();
    for c in 0..creators {
        let (http, key, created, next) = (http.clone(), key.clone(), created.clone(), next.clone());
        let api = nodes[c % nodes.len()].api.clone();
        posting.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    return;
                }
                let title = format!("task {i}");
                created
                    .lock()
                    .unwrap()
                    .insert(title.clone(), Instant::now());
                post(
                    &http,
                    format!("{api}/api/v1/tasks"),
                    &key,
                    json!({ "title": title, "required_capabilities": ["work"] }),
                )
                .await;
            }
        }));
    }
    for p in posting {
        p.await.unwrap();
    }
    let mut latencies = Vec::new();
    for r in runners {
        latencies.extend(
            tokio::time::timeout(Duration::from_secs(600), r)
                .await
                .expect("the agents finish")
                .unwrap(),
        );
    }
    let elapsed = started.elapsed();
    latencies.sort();
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "shape": shape,
            "agents": agents,
            "creators": creators,
            "lifecycles": done.load(std::sync::atomic::Ordering::Relaxed),
            "seconds": elapsed.as_secs_f64(),
            "lifecycles_per_second": done.load(std::sync::atomic::Ordering::Relaxed) as f64 / elapsed.as_secs_f64(),
            "create_to_notification": { "n": latencies.len(), "p50_ms": percentile(&latencies, 0.5), "p99_ms": percentile(&latencies, 0.99) },
        }))
        .unwrap()
    );
    for s in stops {
        s.cancel();
    }
}
