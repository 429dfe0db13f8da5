//! What users get wrong with the tools API, and what other tenants may not do: each a
//! clear 4xx (or a discovery error) that names the problem, nothing stored changed;
//! the SSRF guard refusing loopback end to end when the allowance is off; every new
//! route walked with another organization's key; a health check opening and closing a
//! tool's circuit.

use std::time::Duration;

use serde_json::json;

use crate::gateway_tools::{
    create_tool, described_upstream, discovered, gateway_env, text_of, upstream_description,
};
use crate::helpers::{Shape, TestEnv};
use crate::mcp_client::McpClient;
use crate::rest::{call, new_key, register};
use crate::upstream::Upstream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_registrations_are_4xx_that_say_why() {
    let env = gateway_env(Shape::Sqlite).await;
    let app = env.spawn_app().await;
    app.wait_ready().await;
    let tenant = register(&app, "acme").await;
    let base = "http://127.0.0.1:9/";
    let cases = [
        (
            json!({ "name": "has space", "base_url": base }),
            422,
            "name",
        ),
        (
            json!({ "name": "x".repeat(200), "base_url": base }),
            422,
            "name",
        ),
        (
            json!({ "name": "devmesh", "base_url": base }),
            422,
            "own tools",
        ),
        (
            json!({ "name": "devmesh_context", "base_url": base }),
            422,
            "own tools",
        ),
        (
            json!({ "name": "ok", "base_url": "http://example.com/?q=1" }),
            422,
            "query",
        ),
        (
            json!({ "name": "ok", "base_url": base, "health_check": { "path": "//elsewhere/x" } }),
            422,
            "health_check.path",
        ),
        (
            json!({ "name": "ok", "base_url": base, "auth": { "type": "bearer", "token": "" } }),
            422,
            "empty",
        ),
        (
            json!({ "name": "ok", "base_url": base, "auth": { "type": "headers", "headers": {} } }),
            422,
            "empty",
        ),
        (
            json!({ "name": "ok", "base_url": base, "auth": { "type": "headers", "headers": { "Host": "evil" } } }),
            422,
            "connection",
        ),
        (
            json!({ "name": "ok", "base_url": base, "auth": { "type": "api_key", "location": "header", "name": "Content-Length", "value": "v" } }),
            422,
            "connection",
        ),
        (
            json!({ "name": "ok", "base_url": base, "auth": { "type": "bearer", "token": " \t" } }),
            422,
            "blank",
        ),
        (
            json!({ "name": "ok", "base_url": base, "auth": { "type": "basic", "username": "a:b", "password": "p" } }),
            422,
            "RFC 7617",
        ),
        (json!([]), 400, "object"),
        (json!(5), 400, "object"),
        (
            json!({ "name": "ok", "base_url": "ftp://example.com/" }),
            422,
            "scheme",
        ),
        (
            json!({ "name": "ok", "base_url": "not a url" }),
            422,
            "base_url",
        ),
        (
            json!({ "name": "ok", "base_url": "http://u:p@example.com/" }),
            422,
            "auth",
        ),
        (
            json!({ "name": "ok", "base_url": base, "timeout": 0 }),
            422,
            "timeout",
        ),
        (
            json!({ "name": "ok", "base_url": base, "include_operations": ["a["] }),
            422,
            "include_operations",
        ),
        (
            json!({ "name": "ok", "base_url": base, "auth": { "type": "telepathy" } }),
            400,
            "auth",
        ),
        (
            json!({ "name": "ok", "base_url": base, "auth": { "type": "bearer", "token": "a\nb" } }),
            422,
            "auth",
        ),
        (
            json!({ "name": "ok", "base_url": base, "surprise": 1 }),
            400,
            "surprise",
        ),
        (
            json!({ "name": "ok", "base_url": base, "openapi": "{ not: [valid" }),
            422,
            "uploaded description",
        ),
        (
            json!({ "name": "ok", "base_url": base, "openapi": { "hello": "world" } }),
            422,
            "openapi",
        ),
        (
            json!({ "name": "ok", "base_url": base, "openapi": 5 }),
            422,
            "openapi",
        ),
    ];
    for (body, status, says) in cases {
        let r = create_tool(&app, &tenant, body.clone()).await;
        assert_eq!(r.status, status, "{body}: {:?}", r.body);
        let text = r.body.to_string();
        assert!(text.contains(says), "{body}: {text}");
    }
    // Nothing of those was stored.
    let r = call(&app, "GET", "/api/v1/tools", Some(&tenant.key), None).await;
    assert_eq!(r.body["items"], json!([]));

    // A hostile upload: a $ref loop, deep nesting, a $ref to a local file.
    // Built as text: a value nested 10,000 deep would overflow this test's own stack.
    let deep = format!(
        r#"{{"openapi":"3.0.3","info":{{"title":"d","version":"1"}},"paths":{{"/x":{{"get":{{"parameters":[{{"name":"p","in":"query","schema":{}{}}}],"responses":{{}}}}}}}}}}"#,
        r#"{"type":"object","properties":{"a":"#.repeat(10_000),
        r#"{"type":"string"}"#.to_string() + &"}}".repeat(10_000),
    );
    let hostile = json!({
        "openapi": "3.0.3", "info": { "title": "h", "version": "1" },
        "paths": { "/x": { "post": {
            "operationId": "x".repeat(200),
            "parameters": [{ "name": "p", "in": "query", "schema": { "$ref": "file:///etc/passwd" } }],
            "requestBody": { "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Loop" } } } },
            "responses": { "200": { "description": "ok" } }
        }}},
        "components": { "schemas": { "Loop": { "type": "object", "properties": { "next": { "$ref": "#/components/schemas/Loop" } } } } }
    });
    let r = create_tool(
        &app,
        &tenant,
        json!({ "name": "hostile", "base_url": base, "openapi": hostile }),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["discovery"]["status"], "ready");
    let notes = r.body["discovery"]["notes"].to_string();
    assert!(notes.contains("etc/passwd"), "{notes}");
    let r = create_tool(
        &app,
        &tenant,
        json!({ "name": "deep", "base_url": base, "openapi": deep }),
    )
    .await;
    assert_eq!(r.status, 422, "{:?}", r.body);

    // Too large: 413 before it is read.
    let huge = "x".repeat(21 * 1024 * 1024);
    let r = create_tool(
        &app,
        &tenant,
        json!({ "name": "huge", "base_url": base, "openapi": huge }),
    )
    .await;
    assert_eq!(r.status, 413, "{:?}", r.body);

    // Names that collide: the same, or one the start of the other up to `_`.
    for (name, status) in [
        ("gh", 201),
        ("gh", 409),
        ("GH", 409),
        ("gh_x", 409),
        ("g", 201),
        ("ghx", 201),
    ] {
        let r = create_tool(
            &app,
            &tenant,
            json!({ "name": name, "base_url": base, "openapi": upstream_description() }),
        )
        .await;
        assert_eq!(r.status, status, "{name}: {:?}", r.body);
    }
    // A PATCH that would collide changes nothing.
    let list = call(&app, "GET", "/api/v1/tools", Some(&tenant.key), None).await;
    let g = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "g")
        .unwrap()
        .clone();
    let r = call(
        &app,
        "PATCH",
        &format!("/api/v1/tools/{}", g["id"].as_str().unwrap()),
        Some(&tenant.key),
        Some(&json!({ "name": "gh_y" })),
    )
    .await;
    assert_eq!(r.status, 409, "{:?}", r.body);
    let r = call(
        &app,
        "GET",
        &format!("/api/v1/tools/{}", g["id"].as_str().unwrap()),
        Some(&tenant.key),
        None,
    )
    .await;
    assert_eq!(r.body["name"], "g");
}

/// With `outbound.allow_private` off, loopback is refused at registration (an address,
/// IPv6 `::1`) and at discovery (`localhost`, a redirect to loopback).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guard_refuses_loopback_end_to_end() {
    let mut env = TestEnv::new(Shape::Sqlite).await;
    env.config.secrets.master_key = Some(devmesh::config::SecretString::new(
        crate::gateway_tools::MASTER_KEY,
    ));
    let app = env.spawn_app().await;
    app.wait_ready().await;
    let tenant = register(&app, "acme").await;
    let (upstream, _dir) = described_upstream("/openapi.json").await;
    for base in [
        upstream.url("/"),
        format!("http://[::1]:{}/", upstream.addr.port()),
        // Loopback inside 6to4 and NAT64 addresses.
        "http://[2002:7f00:1::]/".to_string(),
        "http://[64:ff9b::7f00:1]/".to_string(),
        "http://[::ffff:0:7f00:1]/".to_string(),
    ] {
        let r = create_tool(&app, &tenant, json!({ "name": "up", "base_url": base })).await;
        assert_eq!(r.status, 422, "{base}: {:?}", r.body);
        assert!(r.message().contains("loopback"), "{}", r.message());
    }
    let r = create_tool(
        &app,
        &tenant,
        json!({ "name": "meta", "base_url": "http://[64:ff9b::a9fe:a9fe]/" }),
    )
    .await;
    assert_eq!(r.status, 422);
    assert!(r.message().contains("link-local"), "{}", r.message());
    let by_name = format!("http://localhost:{}/", upstream.addr.port());
    let r = create_tool(
        &app,
        &tenant,
        json!({ "name": "named", "base_url": by_name }),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let tool = discovered(&app, &tenant, r.body["id"].as_str().unwrap()).await;
    assert_eq!(tool["discovery"]["status"], "failed");
    let tried = tool["discovery"]["tried"].to_string();
    assert!(
        tried.contains("loopback") && tried.contains("outbound.allow_private"),
        "{tried}"
    );
    // Refused once, not once per well-known path.
    assert_eq!(
        tool["discovery"]["tried"].as_array().unwrap().len(),
        1,
        "{tried}"
    );
}

/// An upstream the operator allowed (`allow_cidrs` = its address) redirecting discovery
/// to a loopback address it did not allow: refused on the redirect, end to end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_from_an_allowed_upstream_to_loopback_is_refused() {
    let mut env = TestEnv::new(Shape::Sqlite).await;
    env.config.outbound.allow_cidrs = vec!["127.0.0.1/32".parse().unwrap()];
    let app = env.spawn_app().await;
    app.wait_ready().await;
    let tenant = register(&app, "acme").await;
    let (upstream, _dir) = described_upstream("/openapi.json").await;
    let target = format!("http://[::1]:{}/openapi.json", upstream.addr.port());
    let via = upstream.url(&format!("/redirect?to={}", urlencode(&target)));
    let r = create_tool(
        &app,
        &tenant,
        json!({ "name": "hop", "base_url": upstream.url("/"), "openapi_url": via }),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let tool = discovered(&app, &tenant, r.body["id"].as_str().unwrap()).await;
    assert_eq!(tool["discovery"]["status"], "failed", "{tool}");
    let tried = tool["discovery"]["tried"].to_string();
    assert!(
        tried.contains("::1") && tried.contains("loopback"),
        "{tried}"
    );
    // The allowed upstream itself is reachable: the same description, asked directly.
    let r = create_tool(
        &app,
        &tenant,
        json!({ "name": "direct", "base_url": upstream.url("/") }),
    )
    .await;
    let tool = discovered(&app, &tenant, r.body["id"].as_str().unwrap()).await;
    assert_eq!(tool["discovery"]["status"], "ready", "{tool}");
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// Every tools route, with another organization's key: 404, never the tool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenant_sees_nothing() {
    let env = gateway_env(Shape::Sqlite).await;
    let app = env.spawn_app().await;
    app.wait_ready().await;
    let a = register(&app, "acme").await;
    let b = register(&app, "other").await;
    let (upstream, _dir) = described_upstream("/openapi.json").await;
    let r = create_tool(&app, &a, json!({ "name": "up", "base_url": upstream.url("/"), "passthrough": "optional", "auth": { "type": "bearer", "token": "a-secret" } })).await;
    let id = r.body["id"].as_str().unwrap().to_string();
    discovered(&app, &a, &id).await;
    let routes = [
        ("GET", format!("/api/v1/tools/{id}"), None),
        (
            "PATCH",
            format!("/api/v1/tools/{id}"),
            Some(json!({ "tags": ["b"] })),
        ),
        ("POST", format!("/api/v1/tools/{id}/rediscover"), None),
        ("GET", format!("/api/v1/tools/{id}/operations"), None),
        (
            "POST",
            format!("/api/v1/tools/{id}/execute"),
            Some(json!({ "operation": "getEcho" })),
        ),
        ("GET", format!("/api/v1/tools/{id}/health"), None),
        (
            "PUT",
            format!("/api/v1/tools/{id}/credentials/me"),
            Some(json!({ "auth": { "type": "bearer", "token": "b" } })),
        ),
        ("GET", format!("/api/v1/tools/{id}/credentials/me"), None),
        ("DELETE", format!("/api/v1/tools/{id}/credentials/me"), None),
        ("DELETE", format!("/api/v1/tools/{id}"), None),
    ];
    for (method, path, body) in &routes {
        let r = call(&app, method, path, Some(&b.key), body.as_ref()).await;
        assert_eq!(r.status, 404, "{method} {path}: {:?}", r.body);
    }
    let r = call(
        &app,
        "PUT",
        &format!("/api/v1/tools/{id}/openapi"),
        Some(&b.key),
        Some(&upstream_description()),
    )
    .await;
    assert_eq!(r.status, 404);
    let r = call(&app, "GET", "/api/v1/tools", Some(&b.key), None).await;
    assert_eq!(r.body["items"], json!([]));
    let names = McpClient::new(&app, Some(&b.key))
        .modern("tools/list", json!({}))
        .await;
    assert!(!names.result().to_string().contains("up_getEcho"));
    let a_call = McpClient::new(&app, Some(&b.key))
        .modern(
            "tools/call",
            json!({ "name": "up_getEcho", "arguments": {} }),
        )
        .await;
    assert_eq!(a_call.error_code(), -32602);
    // Still whole for its owner.
    let r = call(
        &app,
        "GET",
        &format!("/api/v1/tools/{id}"),
        Some(&a.key),
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.body["tags"].as_array().unwrap().is_empty());

    // Scopes: a viewer-like key without tools:call sees no tools; without tools:write
    // registers none.
    let (_, reader) = new_key(
        &app,
        &a,
        json!({ "name": "r", "key_type": "user", "scopes": ["tools:read"] }),
    )
    .await;
    let r = create_tool(
        &app,
        &crate::rest::Tenant {
            key: reader.clone(),
            ..a.clone()
        },
        json!({ "name": "x", "base_url": upstream.url("/") }),
    )
    .await;
    assert_eq!(r.status, 403);
    let listed = McpClient::new(&app, Some(&reader))
        .modern("tools/list", json!({}))
        .await;
    assert!(!listed.result().to_string().contains("up_getEcho"));
}

/// Health checks open a failing tool's circuit (calls fail fast saying since when) and
/// close it when a check passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_open_and_close_the_circuit() {
    let mut env = gateway_env(Shape::Sqlite).await;
    env.config.gateway.health_tick = devmesh::config::Duration::from_millis(200);
    env.config.gateway.health_interval = devmesh::config::Duration::from_millis(200);
    env.config.gateway.failure_threshold = 2;
    let app = env.spawn_app().await;
    app.wait_ready().await;
    let tenant = register(&app, "acme").await;
    let upstream = Upstream::start().await;
    let r = create_tool(
        &app,
        &tenant,
        json!({ "name": "up", "base_url": upstream.url("/"), "openapi": upstream_description(),
                "health_check": { "path": "/status/503" } }),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.body["id"].as_str().unwrap().to_string();
    let health = format!("/api/v1/tools/{id}/health");
    let status_is = |want: &'static str| {
        let (app, key, health) = (&app, tenant.key.clone(), health.clone());
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            loop {
                let r = call(app, "GET", &health, Some(&key), None).await;
                if r.body["status"] == want {
                    return r.body;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "never {want}: {}",
                    r.body
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let down = status_is("unhealthy").await;
    assert!(down["checks"].to_string().contains("HTTP 503"), "{down}");
    let mcp = McpClient::new(&app, Some(&tenant.key));
    let refused = mcp.call_tool("up_getEcho", json!({})).await;
    assert_eq!(refused["isError"], true);
    let text = text_of(&refused);
    assert!(text.contains("unavailable since"), "{text}");

    let r = call(
        &app,
        "PATCH",
        &format!("/api/v1/tools/{id}"),
        Some(&tenant.key),
        Some(&json!({ "health_check": { "path": "/status/204" } })),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    status_is("healthy").await;
    let result = mcp.call_tool("up_getEcho", json!({})).await;
    assert_eq!(result["isError"], false, "{result}");
}

/// A slow call reports progress and a refused or timed-out upstream is a tool error
/// saying which.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_and_refusals_are_tool_errors() {
    let env = gateway_env(Shape::Sqlite).await;
    let app = env.spawn_app().await;
    app.wait_ready().await;
    let tenant = register(&app, "acme").await;
    let upstream = Upstream::start().await;
    let r = create_tool(&app, &tenant, json!({ "name": "up", "base_url": upstream.url("/"), "openapi": upstream_description(), "timeout": 0.5 })).await;
    assert_eq!(r.status, 201);
    let port = crate::helpers::closed_port();
    let r = create_tool(&app, &tenant, json!({ "name": "gone", "base_url": format!("http://127.0.0.1:{port}/"), "openapi": upstream_description() })).await;
    assert_eq!(r.status, 201);
    let mcp = McpClient::new(&app, Some(&tenant.key));
    let late = mcp.call_tool("up_slow", json!({ "ms": 3000 })).await;
    assert_eq!(late["isError"], true);
    assert!(text_of(&late).contains("did not answer within"), "{late}");
    let refused = mcp.call_tool("gone_getEcho", json!({})).await;
    assert_eq!(refused["isError"], true);
    assert!(text_of(&refused).contains("cannot connect"), "{refused}");
}
