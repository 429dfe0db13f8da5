//! The real binary as a process: its logs, and graceful shutdown with a request in flight.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::black_hole;

/// A running `devmesh serve`, its api address and its JSON log lines as they come.
struct Node {
    child: Child,
    addr: String,
    log: std::sync::mpsc::Receiver<serde_json::Value>,
}

/// Starts `devmesh serve` in `dir`; the api address is read from its log.
fn start(dir: &std::path::Path, env: &[(&str, String)]) -> Node {
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
    let addr = loop {
        let line = log
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the log says where the api listens");
        if line["message"] == "listening" && line["listener"] == "api" {
            break line["addr"].as_str().unwrap().to_string();
        }
    };
    Node { child, addr, log }
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
