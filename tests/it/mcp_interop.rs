//! The official MCP Python SDK (PyPI `mcp` 2.x) against devmesh: a 2025-11-25 session
//! through `streamable_http_client` + `ClientSession`, and a 2026-07-28 exchange through
//! `mcp.Client`. `scripts/test.sh` installs the SDK and sets `DEVMESH_TEST_PYTHON`.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::{Shape, TestEnv};
use crate::rest::{self, register};

pub fn python() -> String {
    std::env::var("DEVMESH_TEST_PYTHON").expect(
        "DEVMESH_TEST_PYTHON names a Python with the official MCP SDK; scripts/test.sh installs one",
    )
}

/// Runs `tests/interop/python_sdk.py MODE URL` with a key; returns what it printed.
async fn run_sdk(mode: &str, url: &str, key: &str) -> Value {
    run_sdk_with(&[mode, url], key).await
}

/// Runs `tests/interop/python_sdk.py ARGS...` with a key; returns what it printed.
pub async fn run_sdk_with(args: &[&str], key: &str) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/python_sdk.py");
    let output = tokio::time::timeout(
        Duration::from_secs(90),
        tokio::process::Command::new(python())
            .arg(script)
            .args(args)
            .env("DEVMESH_API_KEY", key)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the SDK finishes")
    .expect("python runs");
    assert!(
        output.status.success(),
        "the SDK failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the SDK prints JSON")
}

async fn python_sdk_in_both_eras(shape: Shape) {
    let env = TestEnv::new(shape).await;
    let app = env.spawn_app().await;
    app.wait_ready().await;
    let tenant = register(&app, "acme").await;
    let url = app.mcp_url("/mcp");

    for (mode, version) in [("legacy", "2025-11-25"), ("modern", "2026-07-28")] {
        let seen = run_sdk(mode, &url, &tenant.key).await;
        assert_eq!(seen["protocol_version"], version, "{mode}: {seen}");
        let tools: Vec<&str> = seen["tools"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(
            tools.contains(&"devmesh_context_append"),
            "{mode}: {tools:?}"
        );
        let id = seen["context_id"].as_str().unwrap();
        let resource: Value =
            serde_json::from_str(seen["resource_text"].as_str().unwrap()).unwrap();
        assert_eq!(resource["items"][0]["content"], "hello", "{mode}");
        let uri = format!("devmesh://contexts/{id}");
        assert!(
            seen["updates"]
                .as_array()
                .unwrap()
                .iter()
                .any(|u| u.as_str().unwrap().contains(&uri)),
            "{mode}: the SDK heard of its own append: {seen}"
        );
        // The SDK's writes landed in the caller's tenant.
        let stored = rest::call(
            &app,
            "GET",
            &format!("/api/v1/contexts/{id}"),
            Some(&tenant.key),
            None,
        )
        .await;
        assert_eq!(stored.status, 200);
        assert_eq!(stored.body["items"][1]["content"], "hi", "{mode}");
    }
}

for_shapes!([python_sdk_in_both_eras] on sqlite => Sqlite, redis => PostgresRedis);
