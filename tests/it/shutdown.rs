//! Graceful shutdown of the real binary: SIGTERM with a request in flight.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::black_hole;

/// Starts `devmesh serve` in `dir` and returns it with its api address, read from its JSON log.
fn start(dir: &std::path::Path, env: &[(&str, String)]) -> (Child, String) {
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
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if v["message"] == "listening" && v["listener"] == "api" {
                let _ = tx.send(v["addr"].as_str().unwrap().to_string());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the log says where the api listens");
    (child, addr)
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
    let (mut child, addr) = start(
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
    let (mut child, addr) = start(dir.path(), &[]);
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
