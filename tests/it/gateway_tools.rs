//! The tools gateway end to end: an HTTP API registered over `/api/v1/tools`, its
//! description discovered from a real loopback server, its operations listed and called
//! over MCP and REST with the credential sealed at rest, and what a user gets wrong
//! answered with a clear 4xx.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{Shape, TestApp, TestEnv};
use crate::mcp_client::McpClient;
use crate::rest::{Reply, Tenant, call, register};
use crate::upstream::{Files, Upstream};

/// A master key for tests (32 bytes of base64).
pub const MASTER_KEY: &str = "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=";
pub const OTHER_MASTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// An environment whose outbound client may reach loopback upstreams, with a master key.
pub async fn gateway_env(shape: Shape) -> TestEnv {
    let mut env = TestEnv::new(shape).await;
    env.config.outbound.allow_private = true;
    env.config.secrets.master_key = Some(devmesh::config::SecretString::new(MASTER_KEY));
    env
}

/// The description of what [`Upstream`] serves, as its own OpenAPI 3.1 document would
/// give it.
pub fn upstream_description() -> Value {
    json!({
        "openapi": "3.1.0",
        "info": { "title": "Upstream", "version": "1.0" },
        "servers": [{ "url": "/" }],
        "components": { "securitySchemes": {
            "key": { "type": "apiKey", "in": "header", "name": "X-Upstream-Key" }
        }},
        "paths": {
            "/echo": {
                "get": {
                    "operationId": "getEcho",
                    "summary": "Echo the request",
                    "tags": ["echo"],
                    "parameters": [
                        { "name": "q", "in": "query", "schema": { "type": "array", "items": { "type": "string" } } },
                        { "name": "X-Trace", "in": "header", "schema": { "type": "string" } }
                    ],
                    "responses": { "200": { "description": "what was sent" } }
                },
                "delete": {
                    "operationId": "deleteEcho",
                    "tags": ["echo"],
                    "responses": { "200": { "description": "what was sent" } }
                }
            },
            "/echo/{name}": {
                "post": {
                    "operationId": "postEcho",
                    "tags": ["echo"],
                    "parameters": [{ "name": "name", "in": "path", "required": true, "schema": { "type": "string" } }],
                    "requestBody": { "required": true, "content": { "application/json": { "schema": {
                        "type": "object",
                        "properties": { "message": { "type": "string" }, "count": { "type": "integer", "minimum": 1 } },
                        "required": ["message"]
                    }}}},
                    "responses": { "200": { "description": "what was sent" } }
                }
            },
            "/oauth/echo": {
                "get": { "operationId": "oauthEcho", "tags": ["oauth"], "responses": { "200": { "description": "ok" } } }
            },
            "/status/{code}": {
                "get": {
                    "operationId": "status",
                    "tags": ["misc"],
                    "parameters": [{ "name": "code", "in": "path", "required": true, "schema": { "type": "integer" } }],
                    "responses": { "default": { "description": "that status" } }
                }
            },
            "/slow": {
                "get": {
                    "operationId": "slow",
                    "tags": ["misc"],
                    "parameters": [{ "name": "ms", "in": "query", "schema": { "type": "integer" } }],
                    "responses": { "200": { "description": "late" } }
                }
            }
        }
    })
}

/// An upstream that also serves [`upstream_description`] at `path`; the directory
/// holding it lives as long as the upstream is needed.
pub async fn described_upstream(path: &str) -> (Upstream, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("openapi.json"),
        upstream_description().to_string(),
    )
    .unwrap();
    let upstream = Upstream::serving(Files {
        root: Some(dir.path().to_path_buf()),
        aliases: vec![(path.to_string(), "openapi.json".to_string())],
    })
    .await;
    (upstream, dir)
}

pub async fn create_tool(app: &TestApp, tenant: &Tenant, body: Value) -> Reply {
    call(app, "POST", "/api/v1/tools", Some(&tenant.key), Some(&body)).await
}

/// Waits until the tool's discovery has ended; returns the tool.
pub async fn discovered(app: &TestApp, tenant: &Tenant, id: &str) -> Value {
    let path = format!("/api/v1/tools/{id}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let r = call(app, "GET", &path, Some(&tenant.key), None).await;
        let status = r.body["discovery"]["status"].as_str().unwrap_or("");
        if status == "ready" || status == "failed" {
            return r.body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "discovery did not end: {}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn text_of(result: &Value) -> String {
    result["content"][0]["text"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

async fn tool_names(mcp: &McpClient) -> Vec<String> {
    let a = mcp.modern("tools/list", json!({})).await;
    a.result()["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

async fn register_discover_and_call(shape: Shape) {
    let env = gateway_env(shape).await;
    let app = env.spawn_app().await;
    app.wait_ready().await;
    let tenant = register(&app, "acme").await;
    let (upstream, _dir) = described_upstream("/openapi.json").await;

    let r = create_tool(
        &app,
        &tenant,
        json!({
            "name": "up",
            "base_url": upstream.url("/"),
            "auth": { "type": "bearer", "token": "tok-secret-1" },
            "tags": ["test"],
        }),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(
        r.body["auth"],
        json!({ "type": "bearer", "has_credential": true })
    );
    assert!(!r.body.to_string().contains("tok-secret-1"));
    let id = r.body["id"].as_str().unwrap().to_string();
    assert_eq!(
        r.header("location"),
        Some(format!("/api/v1/tools/{id}").as_str())
    );

    // Discovery tried the well-known paths in order until /openapi.json answered.
    let tool = discovered(&app, &tenant, &id).await;
    assert_eq!(tool["discovery"]["status"], "ready", "{tool}");
    assert_eq!(tool["discovery"]["format"], "openapi3");
    assert_eq!(tool["discovery"]["operation_count"], 6);
    let tried = tool["discovery"]["tried"].as_array().unwrap();
    assert_eq!(tried.last().unwrap()["outcome"], "found", "{tried:?}");
    assert!(
        tried.last().unwrap()["url"]
            .as_str()
            .unwrap()
            .ends_with("/openapi.json")
    );

    // Every operation is an MCP tool with its annotations.
    let mcp = McpClient::new(&app, Some(&tenant.key));
    let listed = mcp.modern("tools/list", json!({})).await;
    let tools = listed.result()["tools"].as_array().unwrap().clone();
    let get = tools
        .iter()
        .find(|t| t["name"] == "up_getEcho")
        .expect("up_getEcho listed");
    assert_eq!(get["annotations"]["readOnlyHint"], true);
    assert!(
        get["description"]
            .as_str()
            .unwrap()
            .contains("Echo the request")
    );
    assert_eq!(get["inputSchema"]["properties"]["q"]["type"], "array");
    let delete = tools.iter().find(|t| t["name"] == "up_deleteEcho").unwrap();
    assert_eq!(delete["annotations"]["destructiveHint"], true);

    // A call reaches the upstream with the credential and the arguments where the
    // description puts them; the answer comes back as structured content.
    let result = mcp
        .call_tool("up_getEcho", json!({ "q": ["a b", "c"], "X-Trace": "t-1" }))
        .await;
    assert_eq!(result["isError"], false, "{result}");
    let echoed = &result["structuredContent"];
    assert_eq!(echoed["headers"]["authorization"], "Bearer tok-secret-1");
    assert_eq!(echoed["headers"]["x-trace"], "t-1");
    assert_eq!(echoed["query"], "q=a+b&q=c");

    // A JSON body and a path parameter.
    let result = mcp
        .call_tool(
            "up_postEcho",
            json!({ "name": "a/b", "body": { "message": "hi", "count": 2 } }),
        )
        .await;
    let echoed = &result["structuredContent"];
    assert_eq!(echoed["path"], "/echo/a%2Fb", "{result}");
    let sent: Value = serde_json::from_str(echoed["body"].as_str().unwrap()).unwrap();
    assert_eq!(sent, json!({ "message": "hi", "count": 2 }));

    // A path parameter cannot climb out of the operation's path (RFC 3986 dot segments).
    for dots in [".", "..", ""] {
        let climbed = mcp
            .call_tool(
                "up_postEcho",
                json!({ "name": dots, "body": { "message": "m" } }),
            )
            .await;
        assert_eq!(climbed["isError"], true, "{climbed}");
        assert!(text_of(&climbed).contains("may not be"), "{climbed}");
    }

    // Invalid arguments never reach the upstream: a tool error naming each problem.
    let invalid = mcp
        .call_tool(
            "up_postEcho",
            json!({ "name": "x", "body": { "count": 0 } }),
        )
        .await;
    assert_eq!(invalid["isError"], true);
    let text = text_of(&invalid);
    assert!(
        text.contains("\"message\" is a required property") && text.contains("/body/count"),
        "{text}"
    );

    // An upstream 4xx is a tool error carrying the status, not a protocol error.
    let result = mcp.call_tool("up_status", json!({ "code": 404 })).await;
    assert_eq!(result["isError"], true);
    assert!(text_of(&result).contains("HTTP 404"), "{result}");

    // The same over REST.
    let r = call(
        &app,
        "POST",
        &format!("/api/v1/tools/{id}/execute"),
        Some(&tenant.key),
        Some(&json!({ "operation": "getEcho", "arguments": { "q": ["z"] } })),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["structuredContent"]["query"], "q=z");
    let r = call(
        &app,
        "POST",
        &format!("/api/v1/tools/{id}/execute"),
        Some(&tenant.key),
        Some(&json!({ "operation": "postEcho", "arguments": { "name": "x" } })),
    )
    .await;
    assert_eq!(r.status, 422, "{:?}", r.body);
    assert!(r.message().contains("body"), "{}", r.message());
    let r = call(
        &app,
        "POST",
        &format!("/api/v1/tools/{id}/execute"),
        Some(&tenant.key),
        Some(&json!({ "operation": "nope" })),
    )
    .await;
    assert_eq!(r.status, 404);
    // A description whose operationIds repeat: one id names several operations, and
    // execute asks for the tool name rather than picking one.
    let mut twice = upstream_description();
    twice["paths"]["/status/{code}"]["get"]["operationId"] = json!("getEcho");
    let r = create_tool(
        &app,
        &tenant,
        json!({ "name": "twice", "base_url": upstream.url("/"), "openapi": twice }),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let twice_id = r.body["id"].as_str().unwrap().to_string();
    let r = call(
        &app,
        "POST",
        &format!("/api/v1/tools/{twice_id}/execute"),
        Some(&tenant.key),
        Some(&json!({ "operation": "getEcho" })),
    )
    .await;
    assert_eq!(r.status, 409, "{:?}", r.body);
    assert!(r.message().contains("twice_getEcho_2"), "{}", r.message());
    let r = call(
        &app,
        "DELETE",
        &format!("/api/v1/tools/{twice_id}"),
        Some(&tenant.key),
        None,
    )
    .await;
    assert_eq!(r.status, 204);

    // The operations, with what the filters let through.
    let r = call(
        &app,
        "GET",
        &format!("/api/v1/tools/{id}/operations"),
        Some(&tenant.key),
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.as_array().unwrap().len(), 6);

    // Narrowed by filters: only what they admit is listed; the rest is gone.
    let r = call(
        &app,
        "PATCH",
        &format!("/api/v1/tools/{id}"),
        Some(&tenant.key),
        Some(&json!({ "include_operations": ["GET /echo*", "status"], "exclude_operations": ["*delete*"] })),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["discovery"]["tool_count"], 2);
    let mut names = tool_names(&mcp).await;
    names.retain(|n| n.starts_with("up_"));
    names.sort();
    assert_eq!(names, vec!["up_getEcho", "up_status"]);

    // Grouped: one tool per tag, the operation an argument.
    let r = call(
        &app,
        "PATCH",
        &format!("/api/v1/tools/{id}"),
        Some(&tenant.key),
        Some(&json!({ "include_operations": [], "exclude_operations": [], "group_operations": true })),
    )
    .await;
    assert_eq!(r.status, 200);
    let mut names = tool_names(&mcp).await;
    names.retain(|n| n.starts_with("up_"));
    names.sort();
    assert_eq!(names, vec!["up_echo", "up_misc", "up_oauth"]);
    let result = mcp
        .call_tool(
            "up_echo",
            json!({ "operation": "getEcho", "arguments": { "q": ["g"] } }),
        )
        .await;
    assert_eq!(result["structuredContent"]["query"], "q=g", "{result}");
    let unknown = mcp
        .call_tool("up_echo", json!({ "operation": "nope" }))
        .await;
    assert_eq!(unknown["isError"], true, "{unknown}");
    // The arguments are checked against the named operation's own schema, and the
    // error names what is wrong.
    let invalid = mcp
        .call_tool(
            "up_echo",
            json!({ "operation": "postEcho", "arguments": { "name": "x" } }),
        )
        .await;
    assert_eq!(invalid["isError"], true, "{invalid}");
    let text = text_of(&invalid);
    assert!(
        text.contains("postEcho") && text.contains("\"body\" is a required property"),
        "{text}"
    );
    let grouped = mcp
        .call_tool("up_echo", json!({ "operation": "postEcho", "arguments": { "name": "x", "body": { "message": "m" } } }))
        .await;
    assert_eq!(grouped["structuredContent"]["path"], "/echo/x", "{grouped}");

    // Deleted: its tools leave the list.
    let r = call(
        &app,
        "DELETE",
        &format!("/api/v1/tools/{id}"),
        Some(&tenant.key),
        None,
    )
    .await;
    assert_eq!(r.status, 204);
    assert!(!tool_names(&mcp).await.iter().any(|n| n.starts_with("up_")));
    let r = call(
        &app,
        "GET",
        &format!("/api/v1/tools/{id}"),
        Some(&tenant.key),
        None,
    )
    .await;
    assert_eq!(r.status, 404);
}

for_shapes!([register_discover_and_call] on sqlite => Sqlite, postgres_redis => PostgresRedis);

/// A tool registered on one node is listed, called and announced on another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_tool_reaches_every_node() {
    let env = gateway_env(Shape::PostgresRedis).await;
    let one = env.spawn_app().await;
    let two = env.spawn_other_node("two").await;
    one.wait_ready().await;
    two.wait_ready().await;
    let tenant = register(&one, "acme").await;
    let (upstream, _dir) = described_upstream("/openapi.json").await;
    let on_two = McpClient::new(&two, Some(&tenant.key));
    let listen_request = crate::mcp_client::modern_request(
        7,
        "subscriptions/listen",
        json!({ "notifications": { "toolsListChanged": true } }),
    );
    let mut listen = crate::mcp_client::Events::new(on_two.send_modern(&listen_request).await);
    let (_, ack) = listen
        .next(Duration::from_secs(10))
        .await
        .expect("an acknowledgement");
    assert_eq!(ack["method"], "notifications/subscriptions/acknowledged");
    // Node two builds the (empty) catalog first, so that it has something to go stale.
    assert!(
        !tool_names(&on_two)
            .await
            .iter()
            .any(|n| n.starts_with("up_"))
    );

    let r = create_tool(
        &one,
        &tenant,
        json!({ "name": "up", "base_url": upstream.url("/") }),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.body["id"].as_str().unwrap();
    discovered(&one, &tenant, id).await;
    let mut heard = false;
    while let Some((_, message)) = listen.next(Duration::from_secs(10)).await {
        if message["method"] == "notifications/tools/list_changed" {
            heard = true;
            break;
        }
    }
    assert!(heard, "node two's client heard of the change");
    assert!(
        tool_names(&on_two)
            .await
            .contains(&"up_getEcho".to_string())
    );
    let result = on_two.call_tool("up_getEcho", json!({ "q": ["x"] })).await;
    assert_eq!(result["structuredContent"]["query"], "q=x");
}
