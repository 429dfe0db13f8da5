//! The real binary as a process: its logs, and graceful shutdown with a request in flight.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::black_hole;

/// A running `devmesh serve`, its api address and its JSON log lines as they come.
pub(crate) struct Node {
    pub(crate) child: Child,
    pub(crate) addr: String,
    /// The mcp listener's address.
    pub(crate) mcp: String,
    pub(crate) log: std::sync::mpsc::Receiver<serde_json::Value>,
}

/// Starts `devmesh serve` in `dir`; the api address is read from its log.
pub(crate) fn start(dir: &std::path::Path, env: &[(&str, String)]) -> Node {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_devmesh"));
    cmd.current_dir(dir)
        .env_clear()
        .env("DEVMESH_DATA_DIR", dir.join("data"))
        .env("DEVMESH_API__LISTEN", "127.0.0.1:0")
        .env("DEVMESH_MCP__LISTEN", "127.0.0.1:0")
        .env("DEVMESH_LOG__FORMAT", "json")
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("devmesh starts");
    let stderr = child.stderr.take().unwrap();
    let (tx, log) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let value = serde_json::from_str::<serde_json::Value>(&line)
                .unwrap_or_else(|_| panic!("every log line is JSON: {line}"));
            if tx.send(value).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut addr, mut mcp) = (None, None);
    while addr.is_none() || mcp.is_none() {
        let line = log
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the log says where the api and mcp listeners listen");
        if line["message"] == "listening" {
            let at = Some(line["addr"].as_str().unwrap().to_string());
            match line["listener"].as_str() {
                Some("api") => addr = at,
                Some("mcp") => mcp = at,
                _ => {}
            }
        }
    }
    Node {
        child,
        addr: addr.unwrap(),
        mcp: mcp.unwrap(),
        log,
    }
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("devmesh did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_request_in_flight_finish_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    // Redis that accepts connections and never answers: the readiness check waits on it,
    // so a /ready request stays in flight for about three seconds.
    let (_hole, port) = black_hole();
    let Node {
        mut child,
        addr,
        log: _log,
        ..
    } = start(
        dir.path(),
        &[
            ("DEVMESH_REDIS__URL", format!("redis://127.0.0.1:{port}")),
            ("DEVMESH_HTTP__READY_TIMEOUT", "3s".into()),
            ("DEVMESH_REDIS__COMMAND_TIMEOUT", "3s".into()),
            ("DEVMESH_SHUTDOWN__GRACE_PERIOD", "10s".into()),
        ],
    );
    let client = reqwest::Client::new();
    assert_eq!(
        client
            .get(format!("http://{addr}/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let started = Instant::now();
    let in_flight = tokio::spawn({
        let client = client.clone();
        let url = format!("http://{addr}/ready");
        async move { client.get(url).send().await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    sigterm(&child);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refused = reqwest::Client::new()
        .get(format!("http://{addr}/health"))
        .send()
        .await;
    assert!(refused.is_err(), "no new connections once shutdown began");

    let res = in_flight
        .await
        .unwrap()
        .expect("the request in flight gets its answer");
    assert_eq!(res.status(), 503);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["checks"]["redis"]["status"], "down");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "it was really in flight during the shutdown"
    );

    let status =
        tokio::task::spawn_blocking(move || wait_exit(&mut child, Duration::from_secs(20)))
            .await
            .unwrap();
    assert_eq!(status.code(), Some(0), "graceful shutdown exits 0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_on_an_idle_node_exits_0_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let Node {
        mut child,
        addr,
        log: _log,
        ..
    } = start(dir.path(), &[]);
    let client = reqwest::Client::new();
    crate::helpers::wait_until(Duration::from_secs(10), || async {
        matches!(client.get(format!("http://{addr}/ready")).send().await, Ok(r) if r.status() == 200)
    })
    .await
    .unwrap();
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status =
        tokio::task::spawn_blocking(move || wait_exit(&mut child, Duration::from_secs(10)))
            .await
            .unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_appear_in_the_log_lines_of_their_request() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = start(dir.path(), &[("DEVMESH_LOG__LEVEL", "info".into())]);
    let res = reqwest::Client::new()
        .get(format!("http://{}/ready?probe=1", node.addr))
        .header("X-Request-Id", "deploy-check-42")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "deploy-check-42");
    let deadline = Instant::now() + Duration::from_secs(10);
    let line = loop {
        let line = node
            .log
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("a log line for the request");
        if line["message"] == "request handled" {
            break line;
        }
    };
    assert_eq!(line["span"]["request_id"], "deploy-check-42", "{line}");
    assert_eq!(line["span"]["path"], "/ready");
    assert_eq!(line["status"], res.status().as_u16());
    sigterm(&node.child);
    let status =
        tokio::task::spawn_blocking(move || wait_exit(&mut node.child, Duration::from_secs(10)))
            .await
            .unwrap();
    assert_eq!(status.code(), Some(0));
}

/// Every credential the gateway handles, used on every path (discovery, calls, OAuth
/// tokens and their refresh, a refused token request, own credentials, errors), at debug
/// level: none appears in any log line, nor in `/metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credential_reaches_the_log() {
    use serde_json::json;
    let dir = tempfile::tempdir().unwrap();
    let mut node = start(
        dir.path(),
        &[
            ("DEVMESH_LOG__LEVEL", "debug".into()),
            ("DEVMESH_OUTBOUND__ALLOW_PRIVATE", "true".into()),
            ("DEVMESH_OUTBOUND__ALLOW_PUBLIC", "false".into()),
            (
                "DEVMESH_SECRETS__MASTER_KEY",
                crate::gateway_tools::MASTER_KEY.into(),
            ),
        ],
    );
    let (upstream, _files) = crate::gateway_tools::described_upstream("/openapi.json").await;
    let http = reqwest::Client::new();
    let api = format!("http://{}", node.addr);
    let registered: serde_json::Value = http
        .post(format!("{api}/api/v1/auth/register/organization"))
        .json(&json!({ "organization_name": "Acme", "organization_slug": "acme",
            "admin_email": "o@acme.io", "admin_name": "O", "admin_password": crate::rest::PASSWORD }))
        .send().await.unwrap().json().await.unwrap();
    let key = registered["api_key"]["key"].as_str().unwrap().to_string();
    let secrets = [
        (
            "bearer",
            json!({ "type": "bearer", "token": "zz-bearer-secret" }),
        ),
        (
            "keyed",
            json!({ "type": "api_key", "location": "query", "name": "k", "value": "zz-query-secret" }),
        ),
        (
            "basic",
            json!({ "type": "basic", "username": "u", "password": "zz-basic-secret" }),
        ),
        (
            "extra",
            json!({ "type": "headers", "headers": { "X-Secret": "zz-header-secret" } }),
        ),
        (
            "oauth",
            json!({ "type": "oauth2_client_credentials", "token_url": upstream.url("/oauth/token"),
            "client_id": "client", "client_secret": "client-secret" }),
        ),
        (
            "refused",
            json!({ "type": "oauth2_client_credentials", "token_url": upstream.url("/oauth/token"),
            "client_id": "client", "client_secret": "zz-wrong-secret" }),
        ),
    ];
    let mcp = crate::mcp_client::McpClient {
        http: http.clone(),
        url: format!("http://{}/mcp", node.mcp),
        key: Some(key.clone()),
    };
    for (name, auth) in secrets {
        let r = http
            .post(format!("{api}/api/v1/tools"))
            .bearer_auth(&key)
            .json(&json!({ "name": name, "base_url": upstream.url("/"), "auth": auth, "passthrough": "optional" }))
            .send().await.unwrap();
        assert_eq!(r.status(), 201);
        let id = r.json::<serde_json::Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let tool: serde_json::Value = http
                .get(format!("{api}/api/v1/tools/{id}"))
                .bearer_auth(&key)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if tool["discovery"]["status"] == "ready" || tool["discovery"]["status"] == "failed" {
                break;
            }
            assert!(Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for tool in ["getEcho", "oauthEcho", "status"] {
            let args = if tool == "status" {
                json!({ "code": 401 })
            } else {
                json!({})
            };
            mcp.call_tool(&format!("{name}_{tool}"), args).await;
        }
        let r = http
            .put(format!("{api}/api/v1/tools/{id}/credentials/me"))
            .bearer_auth(&key)
            .json(&json!({ "auth": { "type": "bearer", "token": "zz-own-secret" } }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        mcp.call_tool(&format!("{name}_getEcho"), json!({})).await;
    }
    // An OAuth token refused once: refreshed, and the new one never logged either.
    upstream.oauth.revoke_all();
    mcp.call_tool("oauth_oauthEcho", json!({})).await;
    let metrics = http
        .get(format!("{api}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    sigterm(&node.child);
    let status = tokio::task::spawn_blocking(move || {
        let status = wait_exit(&mut node.child, Duration::from_secs(10));
        let lines: Vec<String> = node.log.iter().map(|l| l.to_string()).collect();
        (status, lines)
    })
    .await
    .unwrap();
    let (status, lines) = status;
    assert_eq!(status.code(), Some(0));
    assert!(
        lines.len() > 10,
        "the log was captured: {} lines",
        lines.len()
    );
    let issued = upstream
        .oauth
        .issued
        .load(std::sync::atomic::Ordering::SeqCst);
    assert!(issued >= 2);
    let mut forbidden: Vec<String> = [
        "zz-bearer-secret",
        "zz-query-secret",
        "zz-basic-secret",
        "zz-header-secret",
        "client-secret",
        "zz-wrong-secret",
        "zz-own-secret",
        "dTp6ei1iYXNpYy1zZWNyZXQ",
        "dmsealed",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    forbidden.extend((1..=issued).map(|n| format!("tok-{n}\"")));
    for secret in &forbidden {
        for line in &lines {
            assert!(
                !line.contains(secret.as_str()),
                "{secret} is in the log: {line}"
            );
        }
        assert!(
            !metrics.contains(secret.as_str()),
            "{secret} is in /metrics"
        );
    }
}
