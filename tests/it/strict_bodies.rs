//! Request bodies are strict: unknown fields and wrong types are 400s that name the field.

use serde_json::json;

use crate::helpers::{Shape, TestEnv};
use crate::rest::{call, register};

for_shapes!([bad_bodies_are_named_and_change_nothing, values_the_database_cannot_hold] on sqlite => Sqlite, redis => PostgresRedis);

/// Text with NUL characters and timestamps far out of range: what a database cannot hold
/// is stored faithfully where it can be (SQLite) or refused with 422 saying why
/// (PostgreSQL), never a 500 — on every route, with or without credentials, and over MCP.
async fn values_the_database_cannot_hold(shape: Shape) {
    let env = TestEnv::new(shape).await;
    let app = env.spawn_app().await;
    app.wait_ready().await;
    let t = register(&app, "acme").await;
    let key = Some(t.key.as_str());
    let created = call(
        &app,
        "POST",
        "/api/v1/contexts",
        key,
        Some(&json!({ "name": "nul", "items": [{ "role": "user", "content": "a\u{0}b" }] })),
    )
    .await;
    match created.status {
        201 => {
            let id = created.body["id"].as_str().unwrap();
            let read = call(&app, "GET", &format!("/api/v1/contexts/{id}"), key, None).await;
            assert_eq!(
                read.body["items"][0]["content"], "a\u{0}b",
                "stored as sent"
            );
        }
        422 => assert!(created.message().contains("NUL"), "{:?}", created.body),
        s => panic!("{s}: {:?}", created.body),
    }
    for path in [
        "/api/v1/contexts?agent_id=%00",
        "/api/v1/contexts?type=%00",
        "/api/v1/audit?action=%00",
        "/api/v1/contexts/%00",
        "/api/v1/contexts?since=-9999-01-01T00:00:00Z",
    ] {
        let r = call(&app, "GET", path, key, None).await;
        assert!(r.status < 500, "{path}: {} {:?}", r.status, r.body);
    }
    let login = call(&app, "POST", "/api/v1/auth/login", None, Some(&json!({ "email": "x\u{0}@y.io", "password": "abcdefghijklm", "organization_slug": "acme" }))).await;
    assert!(
        (400..500).contains(&login.status),
        "{} {:?}",
        login.status,
        login.body
    );
    let mcp = crate::mcp_client::McpClient::new(&app, key);
    let tool = mcp
        .call_tool(
            "devmesh_context_create",
            json!({ "name": "nul over MCP", "items": [{ "role": "user", "content": "x\u{0}y" }] }),
        )
        .await;
    assert!(
        tool.get("isError").is_some(),
        "a tool result, not a protocol error: {tool}"
    );
    // Nothing else was harmed.
    let list = call(&app, "GET", "/api/v1/contexts", key, None).await;
    assert_eq!(list.status, 200);
}

async fn bad_bodies_are_named_and_change_nothing(shape: Shape) {
    let mut env = TestEnv::new(shape).await;
    env.config.http.body_limit_bytes = 4096;
    let app = env.spawn_app().await;
    app.wait_ready().await;
    let acme = register(&app, "acme").await;

    // A typo is not silently dropped.
    let r = call(
        &app,
        "POST",
        "/api/v1/api-keys",
        Some(&acme.key),
        Some(&json!({ "name": "k", "key_type": "agent", "auth_type": "x" })),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.code(), "invalid_body");
    assert!(
        r.message().contains("unknown field `auth_type`"),
        "{}",
        r.message()
    );
    // A wrong type names the field and what it should be.
    let r = call(
        &app,
        "POST",
        "/api/v1/contexts",
        Some(&acme.key),
        Some(&json!({ "name": "c", "token_budget": "lots" })),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(
        r.message().contains("token_budget") && r.message().contains("expected u64"),
        "{}",
        r.message()
    );
    let r = call(
        &app,
        "POST",
        "/api/v1/contexts",
        Some(&acme.key),
        Some(&json!({ "name": "c", "items": [{ "role": "user", "content": 5 }] })),
    )
    .await;
    assert!(r.message().contains("items[0].content"), "{}", r.message());
    // A missing field is named too.
    let r = call(
        &app,
        "POST",
        "/api/v1/contexts",
        Some(&acme.key),
        Some(&json!({ "type": "task" })),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(
        r.message().contains("missing field `name`"),
        "{}",
        r.message()
    );
    let r = call(
        &app,
        "POST",
        "/api/v1/api-keys",
        Some(&acme.key),
        Some(&json!({ "name": "k", "key_type": "root" })),
    )
    .await;
    assert!(r.message().contains("key_type"), "{}", r.message());

    // Not JSON, not sent as JSON, too large.
    let url = app.api_url("/api/v1/contexts");
    let r = app
        .http
        .post(&url)
        .bearer_auth(&acme.key)
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "malformed_json");
    let r = app
        .http
        .post(&url)
        .bearer_auth(&acme.key)
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let huge = json!({ "name": "c", "metadata": { "blob": "x".repeat(5000) } });
    let r = call(
        &app,
        "POST",
        "/api/v1/contexts",
        Some(&acme.key),
        Some(&huge),
    )
    .await;
    assert_eq!(r.status, 413);
    assert_eq!(r.code(), "payload_too_large");

    // None of it stored anything.
    let list = call(&app, "GET", "/api/v1/contexts", Some(&acme.key), None).await;
    assert_eq!(list.body["items"], json!([]));
    let keys = call(&app, "GET", "/api/v1/api-keys", Some(&acme.key), None).await;
    assert_eq!(keys.body["items"].as_array().unwrap().len(), 1);
}

/// A number with no fractional part is an integer, as JSON Schema has it: `632.0`, `1e1`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integral_numbers_are_integers() {
    let env = TestEnv::new(Shape::Sqlite).await;
    let app = env.spawn_app().await;
    app.wait_ready().await;
    let acme = register(&app, "acme").await;
    let body = json!({
        "name": "floats", "token_budget": 632.0,
        "items": [{ "role": "user", "content": "hi", "token_count": 1e1 }]
    });
    let r = call(
        &app,
        "POST",
        "/api/v1/contexts",
        Some(&acme.key),
        Some(&body),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["token_budget"], 632);
    assert_eq!(r.body["items"][0]["token_count"], 10);
    // Free-form metadata keeps what it was sent.
    let body = json!({ "name": "meta", "metadata": { "ratio": 2.0 } });
    let r = call(
        &app,
        "POST",
        "/api/v1/contexts",
        Some(&acme.key),
        Some(&body),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert!(r.body["metadata"]["ratio"].is_f64(), "{:?}", r.body);
    // A fraction is not an integer, and the error says where.
    let body =
        json!({ "name": "c", "items": [{ "role": "user", "content": "a", "token_count": 2.5 }] });
    let r = call(
        &app,
        "POST",
        "/api/v1/contexts",
        Some(&acme.key),
        Some(&body),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(
        r.message().contains("items[0].token_count"),
        "{}",
        r.message()
    );
}
