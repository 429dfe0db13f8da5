//! The tools gateway's cost, measured on loopback:
//!
//! 1. overhead: `tools/call` of a converted operation (protocol 2026-07-28, one POST to
//!    `/mcp` per call) against a local upstream that answers at once, p50 and p99 through
//!    devmesh and directly, with one client and with 64 concurrent ones;
//! 2. `tools/list` (every page) for an organization holding 2,000+ converted tools
//!    (GitHub's REST description registered twice, from `$DEVMESH_GITHUB_OPENAPI`, or
//!    corpus documents when it is not set), p50 and p99 once the catalog is built.
//!
//!   cargo bench --bench gateway_calls -- [CALLS_PER_CLIENT]
//!
//! devmesh runs in this process (embedded shape, SQLite in a temporary directory); the
//! upstream is an actix server on 127.0.0.1. Prints JSON and ends by itself.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use actix_web::{App, HttpResponse, HttpServer, web};
use devmesh::app::Application;
use devmesh::config::{Config, Duration as ConfigDuration, ListenAddr, Quota, SecretString};
use devmesh::jobs::Registry;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const MODERN: &str = "2026-07-28";

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn summary(mut samples: Vec<Duration>) -> Value {
    samples.sort();
    json!({ "n": samples.len(), "p50_ms": percentile(&samples, 0.5), "p99_ms": percentile(&samples, 0.99) })
}

fn meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": { "name": "gateway-bench", "version": "1" },
    })
}

struct Mcp {
    http: reqwest::Client,
    url: String,
    key: String,
}

impl Mcp {
    async fn rpc(&self, method: &str, mut params: Value, name: Option<&str>) -> Value {
        params["_meta"] = meta();
        let body = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
        let mut req = self
            .http
            .post(&self.url)
            .bearer_auth(&self.key)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", MODERN)
            .header("mcp-method", method)
            .json(&body);
        if let Some(name) = name {
            req = req.header("mcp-name", name);
        }
        let answer: Value = req.send().await.unwrap().json().await.unwrap();
        assert!(answer.get("result").is_some(), "{method}: {answer}");
        answer
    }
}

async fn upstream() -> (String, actix_web::dev::ServerHandle) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = HttpServer::new(|| {
        App::new().route(
            "/ping",
            web::get().to(|| async { HttpResponse::Ok().json(json!({ "ok": true })) }),
        )
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    (format!("http://{addr}"), handle)
}

/// Sequential calls of `call` by each of `clients` tasks; every latency.
async fn load<F, Fut>(clients: usize, calls: usize, call: F) -> Vec<Duration>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::with_capacity(calls);
            for _ in 0..calls {
                let t = Instant::now();
                call().await;
                out.push(t.elapsed());
            }
            out
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

fn big_descriptions() -> Vec<(String, String)> {
    if let Ok(path) = std::env::var("DEVMESH_GITHUB_OPENAPI") {
        let text = std::fs::read_to_string(&path).expect("the GitHub description");
        return vec![("gha".into(), text.clone()), ("ghb".into(), text)];
    }
    let corpus = std::env::var("DEVMESH_CORPUS")
        .map(|c| std::path::PathBuf::from(c).join("openapi"))
        .unwrap_or_else(|_| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/openapi")
        });
    let mut out = Vec::new();
    for (i, entry) in std::fs::read_dir(&corpus).unwrap().enumerate() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json" || e == "yaml") {
            out.push((format!("c{i}"), std::fs::read_to_string(path).unwrap()));
        }
    }
    out
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let calls: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(2000);
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: dir.path().join("data"),
        ..Config::default()
    };
    config.mcp.listen = ListenAddr("127.0.0.1:0".parse().unwrap());
    config.api.listen = ListenAddr("127.0.0.1:0".parse().unwrap());
    config.log.level = "error".into();
    config.outbound.allow_private = true;
    config.outbound.allow_public = false;
    config.secrets.master_key = Some(SecretString::new(
        "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=",
    ));
    config.gateway.health_interval = ConfigDuration::from_secs(3600);
    let unlimited = Quota {
        per_minute: 60_000_000,
        burst: 10_000_000,
    };
    config.rate_limits.key = unlimited;
    config.rate_limits.organization = unlimited;
    config.rate_limits.anonymous = unlimited;
    let app = Application::build_with_jobs(config, Registry::new())
        .await
        .unwrap();
    let api = format!("http://{}", app.addr("api").unwrap());
    let mcp_url = format!("http://{}/mcp", app.addr("mcp").unwrap());
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(app.run(shutdown.clone()));
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(128)
        .build()
        .unwrap();
    for _ in 0..200 {
        if http
            .get(format!("{api}/ready"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let registered: Value = http
        .post(format!("{api}/api/v1/auth/register/organization"))
        .json(&json!({ "organization_name": "Bench", "organization_slug": "bench",
            "admin_email": "b@bench.io", "admin_name": "B", "admin_password": "a long bench passphrase" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = registered["api_key"]["key"].as_str().unwrap().to_string();
    let (upstream_url, upstream_handle) = upstream().await;
    let description = json!({
        "openapi": "3.1.0", "info": { "title": "ping", "version": "1" },
        "paths": { "/ping": { "get": { "operationId": "ping", "responses": { "200": { "description": "ok" } } } } }
    });
    let r = http
        .post(format!("{api}/api/v1/tools"))
        .bearer_auth(&key)
        .json(
            &json!({ "name": "up", "base_url": format!("{upstream_url}/"), "openapi": description,
            "auth": { "type": "bearer", "token": "bench-token" } }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let mcp = std::sync::Arc::new(Mcp {
        http: http.clone(),
        url: mcp_url,
        key: key.clone(),
    });
    let call = {
        let mcp = mcp.clone();
        move || {
            let mcp = mcp.clone();
            async move {
                let a = mcp
                    .rpc(
                        "tools/call",
                        json!({ "name": "up_ping", "arguments": {} }),
                        Some("up_ping"),
                    )
                    .await;
                assert_eq!(a["result"]["isError"], false, "{a}");
            }
        }
    };
    let direct = {
        let (http, url) = (http.clone(), format!("{upstream_url}/ping"));
        move || {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let r = http
                    .get(&url)
                    .bearer_auth("bench-token")
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                r.bytes().await.unwrap();
            }
        }
    };
    // Warm both paths (connections, the catalog).
    load(4, 50, call.clone()).await;
    load(4, 50, direct.clone()).await;
    let mut overhead = Vec::new();
    for clients in [1usize, 64] {
        let per_client = (calls / clients).max(50);
        let through = summary(load(clients, per_client, call.clone()).await);
        let straight = summary(load(clients, per_client, direct.clone()).await);
        overhead.push(json!({
            "clients": clients,
            "through_devmesh": through,
            "direct": straight,
            "overhead_p50_ms": through["p50_ms"].as_f64().unwrap() - straight["p50_ms"].as_f64().unwrap(),
            "overhead_p99_ms": through["p99_ms"].as_f64().unwrap() - straight["p99_ms"].as_f64().unwrap(),
        }));
    }

    // tools/list with 2,000+ tools.
    let mut registered_ops = 0;
    for (name, text) in big_descriptions() {
        if registered_ops >= 2000 {
            break;
        }
        let r = http
            .post(format!("{api}/api/v1/tools"))
            .bearer_auth(&key)
            .json(&json!({ "name": name, "base_url": format!("{upstream_url}/"), "openapi": text }))
            .send()
            .await
            .unwrap();
        if r.status() == 201 {
            let body: Value = r.json().await.unwrap();
            registered_ops += body["discovery"]["tool_count"].as_u64().unwrap_or(0) as usize;
        }
    }
    let list_all = || {
        let mcp = mcp.clone();
        async move {
            let mut cursor: Option<String> = None;
            let mut n = 0;
            loop {
                let params = match &cursor {
                    Some(c) => json!({ "cursor": c }),
                    None => json!({}),
                };
                let a = mcp.rpc("tools/list", params, None).await;
                n += a["result"]["tools"].as_array().unwrap().len();
                match a["result"]["nextCursor"].as_str() {
                    Some(c) => cursor = Some(c.to_string()),
                    None => return n,
                }
            }
        }
    };
    let built = Instant::now();
    let listed = list_all().await;
    let first_build_ms = built.elapsed().as_secs_f64() * 1000.0;
    let mut samples = Vec::new();
    for _ in 0..30 {
        let t = Instant::now();
        list_all().await;
        samples.push(t.elapsed());
    }
    let first_page = {
        let mcp = mcp.clone();
        move || {
            let mcp = mcp.clone();
            async move {
                mcp.rpc("tools/list", json!({}), None).await;
            }
        }
    };
    let page = summary(load(1, 200, first_page).await);
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "tools_call_overhead": overhead,
            "tools_list": {
                "tools": listed,
                "first_listing_ms (catalog built)": first_build_ms,
                "every_page": summary(samples),
                "first_page": page,
            },
        }))
        .unwrap()
    );
    shutdown.cancel();
    let _ = running.await;
    upstream_handle.stop(false).await;
}
