//! The MCP endpoint over real HTTP: both protocol eras, every error path, tenants kept
//! apart, cancellation, notifications across nodes and the metrics.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{Shape, TestApp, TestEnv, wait_until};
use crate::mcp_client::{Events, LEGACY, MODERN, McpClient, modern_request, session_headers};
use crate::rest::{self, register};

async fn app_with_fixtures(env: &mut TestEnv) -> TestApp {
    env.config.mcp.conformance_fixtures = true;
    let app = env.spawn_app().await;
    app.wait_ready().await;
    app
}

fn text_of(result: &Value) -> String {
    result["content"][0]["text"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// 2026-07-28: discover, list, call with a key; what an MCP tool writes, the REST API reads.
async fn stateless_tools_run_as_the_caller(shape: Shape) {
    let env = TestEnv::new(shape).await;
    let app = env.spawn_app().await;
    app.wait_ready().await;
    let tenant = register(&app, "acme").await;
    let mcp = McpClient::new(&app, Some(&tenant.key));

    let discover = mcp.modern("server/discover", json!({})).await;
    assert_eq!(discover.status, 200);
    let result = discover.result();
    assert!(
        result["supportedVersions"]
            .as_array()
            .unwrap()
            .contains(&json!(MODERN))
    );
    assert!(
        result["supportedVersions"]
            .as_array()
            .unwrap()
            .contains(&json!(LEGACY))
    );
    assert_eq!(
        result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        "devmesh"
    );

    let tools = mcp.modern("tools/list", json!({})).await;
    let listed = tools.result();
    assert_eq!(listed["resultType"], "complete");
    assert_eq!(listed["cacheScope"], "private");
    assert!(listed["ttlMs"].as_u64().is_some());
    let names: Vec<&str> = listed["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    for name in [
        "devmesh_context_create",
        "devmesh_context_get",
        "devmesh_context_append",
        "devmesh_context_list",
        "devmesh_whoami",
    ] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
    assert!(
        !names.iter().any(|n| n.starts_with("test_")),
        "fixtures are off by default"
    );
    for tool in listed["tools"].as_array().unwrap() {
        assert!(
            tool["inputSchema"].is_object() && tool["outputSchema"].is_object(),
            "{tool}"
        );
    }

    let whoami = mcp.call_tool("devmesh_whoami", json!({})).await;
    assert_eq!(
        whoami["structuredContent"]["organization_id"],
        tenant.org_id
    );
    assert_eq!(whoami["structuredContent"]["protocol_version"], MODERN);

    let created = mcp
        .call_tool(
            "devmesh_context_create",
            json!({ "name": "incident 42", "items": [{ "role": "user", "content": "disk full on db-1" }] }),
        )
        .await;
    assert_eq!(created["isError"], false, "{created}");
    let id = created["structuredContent"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Text for text-only clients, and a link to the context's resource.
    let text: Value =
        serde_json::from_str(created["content"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(text["id"], id.as_str());
    assert_eq!(created["content"][1]["type"], "resource_link");
    assert_eq!(
        created["content"][1]["uri"],
        format!("devmesh://contexts/{id}")
    );
    let appended = mcp
        .call_tool(
            "devmesh_context_append",
            json!({ "id": id, "items": [{ "role": "assistant", "content": "cleaned /var/log" }] }),
        )
        .await;
    assert_eq!(appended["structuredContent"]["items"][0]["seq"], 1);

    let via_rest = rest::call(
        &app,
        "GET",
        &format!("/api/v1/contexts/{id}"),
        Some(&tenant.key),
        None,
    )
    .await;
    assert_eq!(via_rest.status, 200);
    assert_eq!(via_rest.body["items"][1]["content"], "cleaned /var/log");

    let got = mcp
        .call_tool("devmesh_context_get", json!({ "id": id, "last": 1 }))
        .await;
    assert_eq!(
        got["structuredContent"]["items"][0]["content"],
        "cleaned /var/log"
    );
    let listed = mcp.call_tool("devmesh_context_list", json!({})).await;
    assert_eq!(listed["structuredContent"]["items"][0]["id"], id.as_str());

    // The resource and the prompt of the same context.
    let uri = format!("devmesh://contexts/{id}");
    let read = mcp.modern("resources/read", json!({ "uri": uri })).await;
    let contents = &read.result()["contents"][0];
    assert_eq!(contents["mimeType"], "application/json");
    let body: Value = serde_json::from_str(contents["text"].as_str().unwrap()).unwrap();
    assert_eq!(body["item_count"], 2);
    let prompt = mcp
        .modern(
            "prompts/get",
            json!({ "name": "devmesh_summarize_context", "arguments": { "context_id": id } }),
        )
        .await;
    let messages = prompt.result()["messages"].as_array().unwrap().clone();
    assert_eq!(messages[0]["content"]["type"], "resource");
    assert_eq!(messages[0]["content"]["resource"]["uri"], uri.as_str());
    assert!(text_of(&json!({ "content": [messages[1]["content"]] })).contains("Summarize"));
    let health = mcp
        .modern(
            "resources/read",
            json!({ "uri": "devmesh://system/health" }),
        )
        .await;
    let health: Value =
        serde_json::from_str(health.result()["contents"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(health["status"], "ready");
    let completion = mcp
        .modern(
            "completion/complete",
            json!({ "ref": { "type": "ref/prompt", "name": "devmesh_summarize_context" },
                    "argument": { "name": "context_id", "value": &id[..8] } }),
        )
        .await;
    assert_eq!(completion.result()["completion"]["values"], json!([id]));
}

/// 2025-11-25 and 2025-06-18 sessions: initialize, use, resume the stream, end.
async fn sessions_live_and_end(shape: Shape) {
    let env = TestEnv::new(shape).await;
    let app = env.spawn_app().await;
    app.wait_ready().await;
    let tenant = register(&app, "acme").await;
    let mcp = McpClient::new(&app, Some(&tenant.key));

    for version in [LEGACY, "2025-06-18"] {
        let session = mcp.initialize(version).await;
        assert!(
            session.bytes().all(|b| (0x21..=0x7e).contains(&b)),
            "{session}"
        );
        let ping = mcp
            .in_session(&session, version, 1, "ping", json!({}))
            .await;
        assert_eq!(ping.result(), &json!({}));
        let tools = mcp
            .in_session(&session, version, 2, "tools/list", json!({}))
            .await;
        assert!(
            tools.result().get("resultType").is_none(),
            "no resultType before 2026-07-28"
        );
        assert!(tools.result().get("ttlMs").is_none());
        let whoami = mcp
            .in_session(
                &session,
                version,
                3,
                "tools/call",
                json!({ "name": "devmesh_whoami", "arguments": {} }),
            )
            .await;
        assert_eq!(
            whoami.result()["structuredContent"]["protocol_version"],
            version
        );
        let level = mcp
            .in_session(
                &session,
                version,
                4,
                "logging/setLevel",
                json!({ "level": "warning" }),
            )
            .await;
        assert_eq!(level.result(), &json!({}));
        let bad_level = mcp
            .in_session(
                &session,
                version,
                5,
                "logging/setLevel",
                json!({ "level": "loud" }),
            )
            .await;
        assert_eq!(bad_level.error_code(), -32602);

        // Another key of the same tenant cannot use this session.
        let (_, other_key) = rest::new_key(
            &app,
            &tenant,
            json!({ "name": "other", "key_type": "agent" }),
        )
        .await;
        let other = McpClient::new(&app, Some(&other_key));
        let stolen = other
            .in_session(&session, version, 6, "tools/list", json!({}))
            .await;
        assert_eq!(stolen.status, 404);

        let end = mcp
            .request(reqwest::Method::DELETE)
            .header("mcp-session-id", &session)
            .send()
            .await
            .unwrap();
        assert_eq!(end.status(), 204);
        let after = mcp
            .in_session(&session, version, 7, "ping", json!({}))
            .await;
        assert_eq!(
            after.status, 404,
            "an ended session is 404 so that the client starts again"
        );
    }
    let unknown = mcp
        .in_session("mcp-nonexistent", LEGACY, 1, "ping", json!({}))
        .await;
    assert_eq!(unknown.status, 404);
    // A version the server does not speak, on an existing session.
    let session = mcp.initialize(LEGACY).await;
    let wrong = mcp
        .post(
            &json!({ "jsonrpc": "2.0", "id": 1, "method": "ping" }).to_string(),
            &[
                ("mcp-session-id", session.as_str()),
                ("mcp-protocol-version", "1999-01-01"),
            ],
        )
        .await;
    assert_eq!(wrong.status, 400);
    assert_eq!(wrong.error_code(), -32022);
    // An unknown version in initialize gets the newest session version.
    let body = json!({ "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": { "protocolVersion": "2024-01-01", "capabilities": {}, "clientInfo": { "name": "t", "version": "1" } } });
    let negotiated = mcp.post(&body.to_string(), &[]).await;
    assert_eq!(negotiated.result()["protocolVersion"], LEGACY);
}

/// Lists come in pages with opaque cursors; idle sessions end.
async fn lists_page_and_sessions_expire(shape: Shape) {
    let mut env = TestEnv::new(shape).await;
    env.config.mcp.page_size = 2;
    env.config.mcp.session_idle_timeout = devmesh::config::Duration::from_millis(1500);
    let app = env.spawn_app().await;
    app.wait_ready().await;
    let tenant = register(&app, "acme").await;
    let mcp = McpClient::new(&app, Some(&tenant.key));
    let mut names = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let params = match &cursor {
            Some(c) => json!({ "cursor": c }),
            None => json!({}),
        };
        let page = mcp.modern("tools/list", params).await;
        let tools = page.result()["tools"].as_array().unwrap().clone();
        assert!(tools.len() <= 2);
        names.extend(
            tools
                .iter()
                .map(|t| t["name"].as_str().unwrap().to_string()),
        );
        match page.result()["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    // The contexts' four and devmesh_whoami, and the agents' and tasks' five for people.
    assert_eq!(names.len(), 10, "{names:?}");
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "no tool twice: {names:?}");

    let session = mcp.initialize(LEGACY).await;
    assert_eq!(
        mcp.in_session(&session, LEGACY, 1, "ping", json!({}))
            .await
            .status,
        200
    );
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let expired = mcp.in_session(&session, LEGACY, 2, "ping", json!({})).await;
    assert_eq!(expired.status, 404);
}

/// What is wrong, the body, the headers, then the status, JSON-RPC code and a phrase the
/// error message must hold.
type BadRequest<'a> = (&'a str, String, Vec<(&'a str, &'a str)>, u16, i64, &'a str);

/// Every malformed request gets a clear 4xx and a JSON-RPC error naming the problem.
async fn bad_requests_are_refused_clearly(shape: Shape) {
    let mut env = TestEnv::new(shape).await;
    env.config.mcp.max_message_bytes = 4096;
    let app = env.spawn_app().await;
    app.wait_ready().await;
    let tenant = register(&app, "acme").await;
    let mcp = McpClient::new(&app, Some(&tenant.key));
    let request = modern_request(9, "tools/list", json!({}));
    let (good, headers) = (&request.body, request.headers());

    let cases: Vec<BadRequest> = vec![
        ("bad JSON", "{\"jsonrpc\":".into(), headers.clone(), 400, -32700, "not valid JSON"),
        ("a batch", json!([good]).to_string(), headers.clone(), 400, -32600, "batches"),
        ("no _meta", json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}).to_string(), headers.clone(), 400, -32602, "_meta"),
        (
            "no protocol version in _meta",
            json!({"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/clientCapabilities":{}}}}).to_string(),
            headers.clone(), 400, -32602, "protocolVersion",
        ),
        ("no MCP-Protocol-Version header", good.to_string(), vec![("mcp-method", "tools/list")], 400, -32020, "MCP-Protocol-Version"),
        ("no Mcp-Method header", good.to_string(), vec![("mcp-protocol-version", MODERN)], 400, -32020, "Mcp-Method"),
        (
            "Mcp-Method that disagrees",
            good.to_string(),
            vec![("mcp-protocol-version", MODERN), ("mcp-method", "prompts/list")],
            400, -32020, "does not match",
        ),
        (
            "an unknown method",
            modern_request(3, "tools/frobnicate", json!({})).body.to_string(),
            vec![("mcp-protocol-version", MODERN), ("mcp-method", "tools/frobnicate")],
            404, -32601, "method not found",
        ),
        (
            "a session-only method",
            modern_request(3, "ping", json!({})).body.to_string(),
            vec![("mcp-protocol-version", MODERN), ("mcp-method", "ping")],
            404, -32601, "method not found",
        ),
        (
            "an oversized message",
            modern_request(4, "tools/list", json!({ "pad": "x".repeat(5000) })).body.to_string(),
            headers.clone(), 413, -32600, "larger than the limit",
        ),
    ];
    for (what, body, headers, status, code, says) in cases {
        let a = mcp.post(&body, &headers).await;
        assert_eq!(a.status, status, "{what}: {}", a.message);
        assert_eq!(a.error_code(), code, "{what}: {}", a.message);
        assert!(a.error_message().contains(says), "{what}: {}", a.message);
        assert_eq!(a.message["jsonrpc"], "2.0", "{what}");
    }

    // Unsupported version: the error lists what is supported and echoes the request.
    let mut v999 = modern_request(5, "tools/list", json!({})).body;
    v999["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] = json!("v999");
    let a = mcp
        .post(
            &v999.to_string(),
            &[
                ("mcp-protocol-version", "v999"),
                ("mcp-method", "tools/list"),
            ],
        )
        .await;
    assert_eq!((a.status, a.error_code()), (400, -32022));
    assert_eq!(a.message["error"]["data"]["requested"], "v999");
    assert!(
        a.message["error"]["data"]["supported"]
            .as_array()
            .unwrap()
            .contains(&json!(MODERN))
    );
    assert_eq!(a.message["id"], 5, "errors name the request");

    // Wrong content type, a browser origin that is not allowed, no credentials.
    let r = mcp
        .request(reqwest::Method::POST)
        .header("content-type", "text/plain")
        .body(good.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let evil = mcp
        .post(
            &good.to_string(),
            &[
                headers[0],
                headers[1],
                ("origin", "http://evil.example.com"),
            ],
        )
        .await;
    assert_eq!(evil.status, 403);
    assert!(evil.error_message().contains("origin"));
    let local = mcp
        .post(
            &good.to_string(),
            &[headers[0], headers[1], ("origin", "http://localhost:3000")],
        )
        .await;
    assert_eq!(local.status, 200);
    let anonymous = McpClient::new(&app, None)
        .post(&good.to_string(), &headers)
        .await;
    assert_eq!(anonymous.status, 401);
    assert!(
        anonymous
            .header("www-authenticate")
            .unwrap()
            .starts_with("Bearer")
    );
    assert_eq!(anonymous.message["jsonrpc"], "2.0");
    let forged = McpClient::new(&app, Some("dmk_nothing_here"))
        .post(&good.to_string(), &headers)
        .await;
    assert_eq!(forged.status, 401);

    // GET and DELETE without a session: the stateless protocol has neither.
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let r = mcp
            .request(method)
            .header("accept", "text/event-stream")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405);
        assert!(r.headers().get("allow").is_some());
    }
    // A response to nothing, in a session.
    let session = mcp.initialize(LEGACY).await;
    let stray = mcp
        .post(
            &json!({ "jsonrpc": "2.0", "id": "nobody", "result": {} }).to_string(),
            &session_headers(&session, LEGACY),
        )
        .await;
    assert_eq!(stray.status, 400);

    // Tool-level problems are tool results, not protocol errors.
    let invalid = mcp
        .call_tool("devmesh_context_get", json!({ "id": 7 }))
        .await;
    assert_eq!(invalid["isError"], true);
    assert!(text_of(&invalid).contains("/id"), "{invalid}");
    let missing = mcp
        .call_tool(
            "devmesh_context_get",
            json!({ "id": "01a1fd1c-556c-7103-a2e0-5b159066c9b5" }),
        )
        .await;
    assert_eq!(missing["isError"], true);
    assert!(text_of(&missing).contains("not found"));
    let unknown = mcp
        .modern(
            "tools/call",
            json!({ "name": "no_such_tool", "arguments": {} }),
        )
        .await;
    assert_eq!(unknown.error_code(), -32602);
    let bad_cursor = mcp
        .modern("tools/list", json!({ "cursor": "garbage" }))
        .await;
    assert_eq!(bad_cursor.error_code(), -32602);
    let not_found = mcp
        .modern(
            "resources/read",
            json!({ "uri": "devmesh://contexts/nope" }),
        )
        .await;
    assert_eq!(not_found.error_code(), -32602);
    assert_eq!(
        not_found.message["error"]["data"]["uri"],
        "devmesh://contexts/nope"
    );
    // The sessions era names the same condition -32002 (2025-11-25, Resources).
    for version in [LEGACY, "2025-06-18"] {
        let session = mcp.initialize(version).await;
        let old = mcp
            .in_session(
                &session,
                version,
                9,
                "resources/read",
                json!({ "uri": "devmesh://contexts/nope" }),
            )
            .await;
        assert_eq!(old.error_code(), -32002, "{version}: {}", old.message);
        assert_eq!(
            old.message["error"]["data"]["uri"],
            "devmesh://contexts/nope"
        );
    }

    // Nothing stored was harmed: the endpoint still serves.
    assert_eq!(mcp.modern("tools/list", json!({})).await.status, 200);
}

/// A tenant sees and reaches only its own contexts, under either protocol.
async fn tenants_see_only_their_own(shape: Shape) {
    let env = TestEnv::new(shape).await;
    let app = env.spawn_app().await;
    app.wait_ready().await;
    let a = register(&app, "alpha").await;
    let b = register(&app, "beta").await;
    let alpha = McpClient::new(&app, Some(&a.key));
    let beta = McpClient::new(&app, Some(&b.key));
    let created = alpha
        .call_tool("devmesh_context_create", json!({ "name": "alpha secrets" }))
        .await;
    let id = created["structuredContent"]["id"].as_str().unwrap();
    let uri = format!("devmesh://contexts/{id}");

    let read = beta.modern("resources/read", json!({ "uri": uri })).await;
    assert_eq!(read.error_code(), -32602);
    let get = beta
        .call_tool("devmesh_context_get", json!({ "id": id }))
        .await;
    assert_eq!(get["isError"], true);
    let append = beta
        .call_tool(
            "devmesh_context_append",
            json!({ "id": id, "items": [{ "role": "user", "content": "x" }] }),
        )
        .await;
    assert_eq!(append["isError"], true);
    let listed = beta.call_tool("devmesh_context_list", json!({})).await;
    assert_eq!(listed["structuredContent"]["items"], json!([]));
    let resources = beta.modern("resources/list", json!({})).await;
    assert!(!resources.result().to_string().contains(id));
    let prompt = beta
        .modern(
            "prompts/get",
            json!({ "name": "devmesh_summarize_context", "arguments": { "context_id": id } }),
        )
        .await;
    assert_eq!(prompt.error_code(), -32602);

    // The same through a session.
    let session = beta.initialize(LEGACY).await;
    let read = beta
        .in_session(&session, LEGACY, 1, "resources/read", json!({ "uri": uri }))
        .await;
    // Another tenant's resource is, in that era's words, not found.
    assert_eq!(read.error_code(), -32002);
    // And alpha still has it, untouched.
    let mine = alpha
        .call_tool("devmesh_context_get", json!({ "id": id }))
        .await;
    assert_eq!(mine["structuredContent"]["item_count"], 0);
}

/// `notifications/cancelled` stops a running tool: no more progress, no result; under
/// 2026-07-28 closing the stream does the same.
async fn cancellation_stops_the_work(shape: Shape) {
    let mut env = TestEnv::new(shape).await;
    let app = app_with_fixtures(&mut env).await;
    let tenant = register(&app, "acme").await;
    let mcp = McpClient::new(&app, Some(&tenant.key));
    let session = mcp.initialize(LEGACY).await;
    let call = json!({ "jsonrpc": "2.0", "id": 77, "method": "tools/call", "params": {
        "name": "test_countdown", "arguments": { "steps": 100, "interval_ms": 50 },
        "_meta": { "progressToken": "p1" } } });
    let response = mcp
        .send(&call.to_string(), &session_headers(&session, LEGACY))
        .await;
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut events = Events::new(response);
    let (_, first) = events
        .next(Duration::from_secs(10))
        .await
        .expect("progress");
    assert_eq!(first["method"], "notifications/progress");
    assert_eq!(first["params"]["progressToken"], "p1");
    let cancel = json!({ "jsonrpc": "2.0", "method": "notifications/cancelled", "params": { "requestId": 77, "reason": "test" } });
    let r = mcp
        .send(&cancel.to_string(), &session_headers(&session, LEGACY))
        .await;
    assert_eq!(r.status(), 202);
    // The stream ends: whatever progress was already on the way, then nothing, no result.
    let mut after = Vec::new();
    while let Some((_, m)) = events.next(Duration::from_secs(10)).await {
        after.push(m);
    }
    assert!(after.len() <= 2, "the work went on: {after:?}");
    assert!(after.iter().all(|m| m.get("result").is_none()), "{after:?}");
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(r#"devmesh_mcp_cancelled_total{method="tools/call"} 1"#),
        "{metrics}"
    );

    // 2026-07-28: the client closes the stream.
    let mut events = Events::new(mcp.send_modern(&modern_request(
        5,
        "tools/call",
        json!({ "name": "test_countdown", "arguments": { "steps": 100, "interval_ms": 50 }, "_meta": { "progressToken": 1 } }),
    )).await);
    events
        .next(Duration::from_secs(10))
        .await
        .expect("progress");
    drop(events);
    wait_until(Duration::from_secs(10), || async {
        let m = app.metrics().await;
        m.contains(r#"devmesh_mcp_cancelled_total{method="tools/call"} 2"#)
    })
    .await
    .expect("closing the stream cancels the call");
    // The endpoint is fine afterwards.
    assert_eq!(
        mcp.in_session(&session, LEGACY, 78, "ping", json!({}))
            .await
            .status,
        200
    );
}

/// Progress and log messages stream before the result; a call that sends nothing is JSON.
async fn messages_stream_before_the_result(shape: Shape) {
    let mut env = TestEnv::new(shape).await;
    let app = app_with_fixtures(&mut env).await;
    let tenant = register(&app, "acme").await;
    let mcp = McpClient::new(&app, Some(&tenant.key));
    let a = mcp.post_modern(&modern_request(
        1,
        "tools/call",
        json!({ "name": "test_tool_with_progress", "arguments": {}, "_meta": { "progressToken": "t" } }),
    )).await;
    assert_eq!(a.header("content-type"), Some("text/event-stream"));
    let progress: Vec<f64> = a
        .before
        .iter()
        .map(|m| m["params"]["progress"].as_f64().unwrap())
        .collect();
    assert_eq!(progress, vec![0.0, 50.0, 100.0]);
    assert_eq!(a.message["id"], 1);
    assert_eq!(a.result()["resultType"], "complete");

    let quick = mcp
        .modern(
            "tools/call",
            json!({ "name": "test_simple_text", "arguments": {} }),
        )
        .await;
    assert_eq!(quick.header("content-type"), Some("application/json"));
    assert_eq!(
        text_of(quick.result()),
        "This is a simple text response for testing."
    );

    // Log messages: only when the request asks for them (2026-07-28), at its level.
    let logged = mcp
        .post_modern(&modern_request(
            2,
            "tools/call",
            json!({ "name": "test_tool_with_logging", "arguments": {},
        "_meta": { "io.modelcontextprotocol/logLevel": "info" } }),
        ))
        .await;
    assert_eq!(logged.before.len(), 3, "{:?}", logged.before);
    let quiet = mcp
        .post_modern(&modern_request(
            3,
            "tools/call",
            json!({ "name": "test_tool_with_logging", "arguments": {},
        "_meta": { "io.modelcontextprotocol/logLevel": "error" } }),
        ))
        .await;
    assert!(quiet.before.is_empty(), "{:?}", quiet.before);

    // Input required (of a client that can give it), and a tampered requestState refused.
    let can_elicit = json!({ "io.modelcontextprotocol/clientCapabilities": { "elicitation": {} } });
    let first = mcp
        .modern(
            "tools/call",
            json!({ "name": "test_input_required_result_request_state", "arguments": {},
            "_meta": can_elicit }),
        )
        .await;
    let first = first.result();
    assert_eq!(first["resultType"], "input_required");
    let state = first["requestState"].as_str().unwrap().to_string();
    let answers = json!({ "confirm": { "action": "accept", "content": { "ok": true } } });
    let done = mcp
        .modern(
            "tools/call",
            json!({ "name": "test_input_required_result_request_state", "arguments": {},
            "inputResponses": answers, "requestState": state, "_meta": can_elicit }),
        )
        .await;
    assert!(text_of(done.result()).contains("state-ok"));
    let tampered = mcp
        .modern(
            "tools/call",
            json!({ "name": "test_input_required_result_request_state", "arguments": {},
            "inputResponses": answers, "requestState": format!("{state}x"), "_meta": can_elicit }),
        )
        .await;
    assert_eq!(tampered.error_code(), -32602);
    // State sealed for one tenant does not open for another.
    let other = register(&app, "other").await;
    let stolen = McpClient::new(&app, Some(&other.key))
        .modern(
            "tools/call",
            json!({ "name": "test_input_required_result_request_state", "arguments": {},
            "inputResponses": answers, "requestState": state, "_meta": can_elicit }),
        )
        .await;
    assert_eq!(stolen.error_code(), -32602);
}

/// A watched context changed on another node reaches the watcher: through a session's
/// stream, and through a 2026-07-28 listen stream; so does a tool-list change.
async fn changes_reach_watchers_on_any_node(shape: Shape) {
    let mut env = TestEnv::new(shape).await;
    let here = app_with_fixtures(&mut env).await;
    // In the scale-out shape the change is made on a second node.
    let there = if shape == Shape::PostgresRedis {
        let app = env.spawn_app().await;
        app.wait_ready().await;
        Some(app)
    } else {
        None
    };
    let writer_app = there.as_ref().unwrap_or(&here);
    let tenant = register(&here, "acme").await;
    let mcp = McpClient::new(&here, Some(&tenant.key));
    let writer = McpClient::new(writer_app, Some(&tenant.key));
    let created = mcp
        .call_tool("devmesh_context_create", json!({ "name": "watched" }))
        .await;
    let id = created["structuredContent"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let uri = format!("devmesh://contexts/{id}");

    // Session era: subscribe, open the stream, change the context elsewhere.
    let session = mcp.initialize(LEGACY).await;
    let sub = mcp
        .in_session(
            &session,
            LEGACY,
            1,
            "resources/subscribe",
            json!({ "uri": uri }),
        )
        .await;
    assert_eq!(sub.result(), &json!({}));
    let stream = mcp.open_stream(&session, None).await;
    assert_eq!(stream.status(), 200);
    let mut events = Events::new(stream);
    let append = json!({ "items": [{ "role": "user", "content": "update" }] });
    let r = rest::call(
        writer_app,
        "POST",
        &format!("/api/v1/contexts/{id}/items"),
        Some(&tenant.key),
        Some(&append),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let (event_id, message) = events
        .next(Duration::from_secs(10))
        .await
        .expect("a notification");
    assert_eq!(message["method"], "notifications/resources/updated");
    assert_eq!(message["params"]["uri"], uri.as_str());
    drop(events);

    // Resume: what came while no stream was open is replayed after Last-Event-ID.
    writer
        .call_tool(
            "devmesh_context_append",
            json!({ "id": id, "items": [{ "role": "user", "content": "again" }] }),
        )
        .await;
    // Give the notice time to reach the session while no stream is open.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut resumed = Events::new(mcp.open_stream(&session, event_id.as_deref()).await);
    let (_, replayed) = resumed
        .next(Duration::from_secs(10))
        .await
        .expect("a replayed notification");
    assert_eq!(replayed["method"], "notifications/resources/updated");
    drop(resumed);
    let bad_resume = mcp.open_stream(&session, Some("not-a-number")).await;
    assert_eq!(bad_resume.status(), 400);

    // Unsubscribed: no more.
    let unsub = mcp
        .in_session(
            &session,
            LEGACY,
            2,
            "resources/unsubscribe",
            json!({ "uri": uri }),
        )
        .await;
    assert_eq!(unsub.result(), &json!({}));

    // 2026-07-28: a listen stream for the context and for tool-list changes.
    let listen_request = modern_request(
        9,
        "subscriptions/listen",
        json!({ "notifications": { "resourceSubscriptions": [uri], "toolsListChanged": true } }),
    );
    let mut listen = Events::new(mcp.send_modern(&listen_request).await);
    let (_, ack) = listen
        .next(Duration::from_secs(10))
        .await
        .expect("an acknowledgement");
    assert_eq!(ack["method"], "notifications/subscriptions/acknowledged");
    assert_eq!(
        ack["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        listen_request.body["id"]
    );
    writer
        .call_tool(
            "devmesh_context_append",
            json!({ "id": id, "items": [{ "role": "user", "content": "third" }] }),
        )
        .await;
    let (_, updated) = listen
        .next(Duration::from_secs(10))
        .await
        .expect("an update");
    assert_eq!(updated["method"], "notifications/resources/updated");
    assert_eq!(
        updated["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        listen_request.body["id"]
    );
    let switched = writer
        .call_tool("test_trigger_tool_change", json!({}))
        .await;
    assert!(text_of(&switched).contains("added"));
    let (_, changed) = listen
        .next(Duration::from_secs(10))
        .await
        .expect("a list change");
    assert_eq!(changed["method"], "notifications/tools/list_changed");
    let tools = mcp.modern("tools/list", json!({})).await;
    assert!(tools.result().to_string().contains("test_dynamic_tool"));

    // Another tenant's changes never arrive.
    let other = register(&here, "other").await;
    McpClient::new(writer_app, Some(&other.key))
        .call_tool("test_trigger_tool_change", json!({}))
        .await;
    assert!(listen.next(Duration::from_millis(700)).await.is_none());
}

/// `/metrics` counts calls by method and tool, errors, latency and open sessions.
async fn metrics_count_calls(shape: Shape) {
    let env = TestEnv::new(shape).await;
    let app = env.spawn_app().await;
    app.wait_ready().await;
    let tenant = register(&app, "acme").await;
    let mcp = McpClient::new(&app, Some(&tenant.key));
    mcp.call_tool("devmesh_whoami", json!({})).await;
    mcp.call_tool("devmesh_whoami", json!({})).await;
    mcp.modern("nope/nope", json!({})).await;
    let _session = mcp.initialize(LEGACY).await;
    let text = app.metrics().await;
    for line in [
        r#"devmesh_mcp_requests_total{method="tools/call",outcome="ok"} 2"#,
        r#"devmesh_mcp_tool_calls_total{tool="devmesh_whoami",outcome="ok"} 2"#,
        r#"devmesh_mcp_errors_total{code="method_not_found"} 1"#,
        "devmesh_mcp_sessions_open 1",
        r#"devmesh_mcp_request_duration_seconds_bucket{method="tools/call""#,
    ] {
        assert!(text.contains(line), "{line} in\n{text}");
    }
}

/// `mcp.anonymous_tenant`: requests without credentials act for that organization.
async fn anonymous_tenant_serves_requests_without_keys(shape: Shape) {
    let mut env = TestEnv::new(shape).await;
    env.config.mcp.anonymous_tenant = Some("local-dev".into());
    let app = env.spawn_app().await;
    app.wait_ready().await;
    let anonymous = McpClient::new(&app, None);
    let whoami = anonymous.call_tool("devmesh_whoami", json!({})).await;
    assert_eq!(whoami["structuredContent"]["actor_id"], "anonymous");
    let org = whoami["structuredContent"]["organization_id"]
        .as_str()
        .unwrap()
        .to_string();
    anonymous
        .call_tool("devmesh_context_create", json!({ "name": "scratch" }))
        .await;
    // Keys still mean their own tenant, and a bad key is still refused.
    let tenant = register(&app, "acme").await;
    let keyed = McpClient::new(&app, Some(&tenant.key))
        .call_tool("devmesh_whoami", json!({}))
        .await;
    assert_ne!(keyed["structuredContent"]["organization_id"], org.as_str());
    let listed = McpClient::new(&app, Some(&tenant.key))
        .call_tool("devmesh_context_list", json!({}))
        .await;
    assert_eq!(listed["structuredContent"]["items"], json!([]));
    let request = modern_request(1, "tools/list", json!({}));
    let forged = McpClient::new(&app, Some("dmk_bad"))
        .post_modern(&request)
        .await;
    assert_eq!(forged.status, 401);
    // A later anonymous request acts in the same organization.
    assert_eq!(anonymous.post_modern(&request).await.status, 200);
    let again = anonymous.call_tool("devmesh_whoami", json!({})).await;
    assert_eq!(again["structuredContent"]["organization_id"], org.as_str());
}

/// `Mcp-*` header values are decoded before they are compared with the body (2026-07-28
/// Streamable HTTP, "Value Encoding"): a Base64 sentinel names the same tool, a resource
/// URI no header could hold plainly can be read, and what is not a valid value says so.
#[tokio::test]
async fn encoded_header_values_are_decoded() {
    let env = TestEnv::new(Shape::Sqlite).await;
    let app = env.spawn_app().await;
    app.wait_ready().await;
    let tenant = register(&app, "acme").await;
    let mcp = McpClient::new(&app, Some(&tenant.key));

    let mut whoami = modern_request(
        1,
        "tools/call",
        json!({ "name": "devmesh_whoami", "arguments": {} }),
    );
    whoami.set_header("mcp-name", Some("=?base64?ZGV2bWVzaF93aG9hbWk=?="));
    let answer = mcp.post_modern(&whoami).await;
    assert_eq!(answer.status, 200, "{}", answer.message);
    assert_eq!(
        answer.result()["structuredContent"]["organization_id"],
        tenant.org_id
    );

    // Surrounding whitespace is not part of the value (RFC 9110 section 5.5).
    whoami.set_header("mcp-name", Some("  devmesh_whoami  "));
    assert_eq!(mcp.post_modern(&whoami).await.status, 200);

    // A URI with spaces and non-ASCII characters is read (and is not found), the header
    // carrying it encoded.
    let uri = "devmesh://contexts/Załączniki 報告";
    let read = mcp.modern("resources/read", json!({ "uri": uri })).await;
    assert_ne!(read.error_code(), -32020, "{}", read.message);
    assert_ne!(read.error_code(), -32600, "{}", read.message);
    assert!(
        read.error_message().contains("not found"),
        "{:?}",
        read.message
    );

    // A sentinel for another name is a mismatch; broken Base64 is refused as such.
    for (value, phrase) in [
        ("=?base64?ZGV2bWVzaF9jb250ZXh0X2xpc3Q=?=", "does not match"),
        ("=?base64?ZGV2bWVzaF93aG9hbWk?=", "Base64"),
        ("=?base64?ZGV2!!!bWVzaF93aG9hbWk=?=", "Base64"),
    ] {
        whoami.set_header("mcp-name", Some(value));
        let refused = mcp.post_modern(&whoami).await;
        assert_eq!(refused.status, 400, "{value}: {}", refused.message);
        assert_eq!(refused.error_code(), -32020, "{value}");
        assert!(
            refused.error_message().contains(phrase),
            "{value}: {:?}",
            refused.message
        );
    }
    // Raw UTF-8 in a header is not a value a client may send: it is told how to send it.
    let mut raw = modern_request(2, "resources/read", json!({ "uri": uri }));
    raw.set_header("mcp-name", None);
    let response = mcp
        .request(reqwest::Method::POST)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", MODERN)
        .header("mcp-method", "resources/read")
        .header(
            "mcp-name",
            reqwest::header::HeaderValue::from_bytes(uri.as_bytes()).unwrap(),
        )
        .body(raw.body.to_string())
        .send()
        .await
        .unwrap();
    let refused = crate::mcp_client::read(response).await;
    assert_eq!(refused.status, 400);
    assert_eq!(refused.error_code(), -32020);
    assert!(
        refused.error_message().contains("=?base64?"),
        "{:?}",
        refused.message
    );
}

/// An argument a tool marks `x-mcp-header` is repeated in its `Mcp-Param-*` header, which
/// the server checks like `Mcp-Name` (SEP-2243, "Custom Headers").
#[tokio::test]
async fn custom_param_headers_must_repeat_their_arguments() {
    let mut env = TestEnv::new(Shape::Sqlite).await;
    let app = app_with_fixtures(&mut env).await;
    let tenant = register(&app, "acme").await;
    let mcp = McpClient::new(&app, Some(&tenant.key));
    let region = "eu-central 北";
    let mut call = modern_request(
        1,
        "tools/call",
        json!({ "name": "test_custom_header", "arguments": { "region": region } }),
    );
    let encoded = devmesh::mcp::header_value::encode(region).into_owned();
    for (header, status) in [
        (Some(encoded.as_str()), 200),
        (Some("eu-west"), 400),
        (Some("=?base64?ZXUtd2VzdA?="), 400),
        (None, 400),
    ] {
        call.set_header("mcp-param-region", header);
        let answer = mcp.post_modern(&call).await;
        assert_eq!(answer.status, status, "{header:?}: {}", answer.message);
        if status == 200 {
            assert_eq!(
                answer.result()["content"][0]["text"],
                format!("region: {region}")
            );
        } else {
            assert_eq!(answer.error_code(), -32020, "{header:?}");
            assert!(
                answer.error_message().contains("mcp-param-region"),
                "{}",
                answer.message
            );
        }
    }
}

/// JSON Schema counts `5.0` and `1e1` as integers (draft 2020-12, Validation 6.1.1), and
/// models send them: what a tool's schema accepts, the tool accepts; what it does not fit
/// is named by its field.
#[tokio::test]
async fn tool_arguments_take_integral_numbers_as_integers() {
    let env = TestEnv::new(Shape::Sqlite).await;
    let app = env.spawn_app().await;
    app.wait_ready().await;
    let tenant = register(&app, "acme").await;
    let mcp = McpClient::new(&app, Some(&tenant.key));

    let created = mcp
        .call_tool(
            "devmesh_context_create",
            json!({ "name": "floats", "token_budget": 1000.0, "items": [{ "role": "user", "content": "a", "token_count": 2.0 }] }),
        )
        .await;
    assert_eq!(created["isError"], false, "{created}");
    let id = created["structuredContent"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let appended = mcp
        .call_tool(
            "devmesh_context_append",
            json!({ "id": id, "items": [{ "role": "user", "content": "b", "token_count": 3.0 }] }),
        )
        .await;
    assert_eq!(appended["isError"], false, "{appended}");
    assert_eq!(appended["structuredContent"]["items"][0]["token_count"], 3);
    let got = mcp
        .call_tool("devmesh_context_get", json!({ "id": id, "last": 1.0 }))
        .await;
    assert_eq!(got["isError"], false, "{got}");
    assert_eq!(
        got["structuredContent"]["items"].as_array().unwrap().len(),
        1
    );
    for limit in [json!(5.0), serde_json::from_str::<Value>("1e1").unwrap()] {
        let listed = mcp
            .call_tool("devmesh_context_list", json!({ "limit": limit }))
            .await;
        assert_eq!(listed["isError"], false, "{limit}: {listed}");
        assert_eq!(
            listed["structuredContent"]["items"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }

    // A fraction is not an integer: the schema refuses it and says where.
    let fraction = mcp
        .call_tool(
            "devmesh_context_append",
            json!({ "id": id, "items": [{ "role": "user", "content": "c", "token_count": 3.5 }] }),
        )
        .await;
    assert_eq!(fraction["isError"], true, "{fraction}");
    assert!(text_of(&fraction).contains("token_count"), "{fraction}");
    // Past the schema, the decoder names the field too (a value the schema allows but the
    // type cannot hold).
    let huge = mcp
        .call_tool(
            "devmesh_context_append",
            json!({ "id": id, "items": [{ "role": "user", "content": "c", "token_count": 1e30 }] }),
        )
        .await;
    assert_eq!(huge["isError"], true, "{huge}");
    assert!(text_of(&huge).contains("token_count"), "{huge}");
    let after = rest::call(
        &app,
        "GET",
        &format!("/api/v1/contexts/{id}"),
        Some(&tenant.key),
        None,
    )
    .await;
    assert_eq!(
        after.body["items"].as_array().unwrap().len(),
        2,
        "nothing half-written"
    );
}

for_shapes!([
    stateless_tools_run_as_the_caller,
    sessions_live_and_end,
    bad_requests_are_refused_clearly,
    lists_page_and_sessions_expire,
    tenants_see_only_their_own,
    cancellation_stops_the_work,
    messages_stream_before_the_result,
    changes_reach_watchers_on_any_node,
    metrics_count_calls,
    anonymous_tenant_serves_requests_without_keys,
] on sqlite => Sqlite, redis => PostgresRedis);
