//! Tools that need the client's input (SEP-2322 input-required results) in both eras:
//! under 2026-07-28 the result asks; in a session devmesh asks the client over the
//! session's stream and calls the tool again; a client that cannot answer (it did not
//! declare the capability) is told so with -32021, inline and in a task alike.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{Shape, TestApp, TestEnv};
use crate::mcp_client::{Events, LEGACY, McpClient, session_headers};
use crate::rest::register;

async fn app(env: &mut TestEnv) -> TestApp {
    env.config.mcp.conformance_fixtures = true;
    let app = env.spawn_app().await;
    app.wait_ready().await;
    app
}

/// A session declaring `capabilities`; its id.
async fn session(mcp: &McpClient, capabilities: Value) -> String {
    let init = json!({
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {
            "protocolVersion": LEGACY, "capabilities": capabilities,
            "clientInfo": { "name": "devmesh-tests", "version": "1" }
        }
    });
    let a = mcp.post(&init.to_string(), &[]).await;
    let id = a.header("mcp-session-id").expect("a session").to_string();
    let initialized = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
    let r = mcp
        .send(&initialized.to_string(), &session_headers(&id, LEGACY))
        .await;
    assert_eq!(r.status(), 202);
    id
}

/// Calls a tool in the session, answering each request the server sends on the
/// response stream with `answer(method, params)`; the requests asked (method, id), and
/// the final message.
async fn call_answering(
    mcp: &McpClient,
    session: &str,
    tool: &str,
    answer: impl Fn(&str, &Value) -> Value,
) -> (Vec<(String, Value)>, Value) {
    let body = json!({
        "jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": { "name": tool, "arguments": {} }
    });
    let response = mcp
        .send(&body.to_string(), &session_headers(session, LEGACY))
        .await;
    let streams = response
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if !streams {
        return (Vec::new(), crate::mcp_client::read(response).await.message);
    }
    let mut events = Events::new(response);
    let mut asked = Vec::new();
    loop {
        let (_, message) = events
            .next(Duration::from_secs(10))
            .await
            .expect("the call goes on");
        if message["id"] == 7 {
            return (asked, message);
        }
        let method = message["method"].as_str().unwrap_or("").to_string();
        if message.get("id").is_some() {
            asked.push((method.clone(), message["id"].clone()));
            // `{"error": …}` answers with an error; null does not answer at all.
            let given = answer(&method, &message["params"]);
            if given.is_null() {
                continue;
            }
            let mut reply = json!({ "jsonrpc": "2.0", "id": message["id"] });
            match given.get("error") {
                Some(error) => reply["error"] = error.clone(),
                None => reply["result"] = given,
            }
            let r = mcp
                .send(&reply.to_string(), &session_headers(session, LEGACY))
                .await;
            assert_eq!(r.status(), 202);
        }
    }
}

fn methods(asked: &[(String, Value)]) -> Vec<&str> {
    asked.iter().map(|(method, _)| method.as_str()).collect()
}

fn text_of(message: &Value) -> &str {
    message["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or("")
}

/// In a session, a tool written with input-required results asks over the stream, one
/// round after another, and finishes with the answers.
async fn sessions_answer_input_requests_over_their_stream(shape: Shape) {
    let mut env = TestEnv::new(shape).await;
    let app = app(&mut env).await;
    let tenant = register(&app, "acme").await;
    let mcp = McpClient::new(&app, Some(&tenant.key));
    let id = session(&mcp, json!({ "elicitation": {}, "sampling": {} })).await;

    let (asked, done) = call_answering(
        &mcp,
        &id,
        "test_input_required_result_elicitation",
        |_, _| json!({ "action": "accept", "content": { "name": "Ada" } }),
    )
    .await;
    assert_eq!(methods(&asked), ["elicitation/create"]);
    assert_eq!(text_of(&done), "Hello, Ada!", "{done}");

    let (asked, done) = call_answering(
        &mcp,
        &id,
        "test_input_required_result_multi_round",
        |_, params| {
            let message = params["message"].as_str().unwrap_or("");
            let content = if message.contains("color") {
                json!({ "color": "blue" })
            } else {
                json!({ "name": "Ada" })
            };
            json!({ "action": "accept", "content": content })
        },
    )
    .await;
    assert_eq!(
        methods(&asked),
        ["elicitation/create", "elicitation/create"]
    );
    assert_eq!(text_of(&done), "Ada likes blue", "{done}");
}

/// A client that answers with an error, or not in time, makes the call a tool error
/// saying so; an answer after that is refused.
async fn a_refusal_or_silence_ends_the_call_as_a_tool_error(shape: Shape) {
    let mut env = TestEnv::new(shape).await;
    env.config.mcp.client_request_timeout = devmesh::config::Duration::from_secs(1);
    let app = app(&mut env).await;
    let tenant = register(&app, "acme").await;
    let mcp = McpClient::new(&app, Some(&tenant.key));
    let id = session(&mcp, json!({ "elicitation": {} })).await;

    let (_, refused) = call_answering(
        &mcp,
        &id,
        "test_input_required_result_elicitation",
        |_, _| json!({ "error": { "code": -1, "message": "the user said no" } }),
    )
    .await;
    assert_eq!(refused["result"]["isError"], true, "{refused}");
    assert!(text_of(&refused).contains("the user said no"), "{refused}");

    let (asked, silent) = call_answering(
        &mcp,
        &id,
        "test_input_required_result_elicitation",
        |_, _| Value::Null,
    )
    .await;
    assert_eq!(methods(&asked), ["elicitation/create"]);
    assert_eq!(silent["result"]["isError"], true, "{silent}");
    assert!(
        text_of(&silent).contains("mcp.client_request_timeout"),
        "{silent}"
    );
    let late = json!({ "jsonrpc": "2.0", "id": asked[0].1, "result": { "action": "accept" } });
    let r = mcp
        .send(&late.to_string(), &session_headers(&id, LEGACY))
        .await;
    assert_eq!(r.status(), 400, "nobody waits for a late answer");
}

/// A client that did not declare what a tool asks for gets -32021 naming it: in a
/// session, under 2026-07-28, and as the error of a task.
async fn input_a_client_cannot_give_is_refused(shape: Shape) {
    let mut env = TestEnv::new(shape).await;
    let app = app(&mut env).await;
    let tenant = register(&app, "acme").await;
    let mcp = McpClient::new(&app, Some(&tenant.key));

    let id = session(&mcp, json!({ "sampling": {} })).await;
    let (asked, refused) = call_answering(
        &mcp,
        &id,
        "test_input_required_result_elicitation",
        |_, _| json!({}),
    )
    .await;
    assert!(asked.is_empty());
    assert_eq!(refused["error"]["code"], -32021, "{refused}");
    assert!(refused["error"]["data"]["requiredCapabilities"]["elicitation"].is_object());

    let mut request = crate::mcp_client::modern_request(
        1,
        "tools/call",
        json!({
            "name": "test_input_required_result_elicitation", "arguments": {},
            "_meta": { "io.modelcontextprotocol/clientCapabilities": { "sampling": {} } }
        }),
    );
    let refused = mcp.post_modern(&request).await;
    assert_eq!(refused.error_code(), -32021, "{}", refused.message);

    let tasks_only = json!({ "extensions": { "io.modelcontextprotocol/tasks": {} } });
    request = crate::mcp_client::modern_request(
        2,
        "tools/call",
        json!({
            "name": "confirm_delete", "arguments": { "filename": "x" },
            "_meta": { "io.modelcontextprotocol/clientCapabilities": tasks_only }
        }),
    );
    let created = mcp.post_modern(&request).await;
    let task = created.result()["taskId"].as_str().unwrap().to_string();
    let failed = loop {
        let mut get = crate::mcp_client::modern_request(
            3,
            "tasks/get",
            json!({ "taskId": task, "_meta": { "io.modelcontextprotocol/clientCapabilities": tasks_only } }),
        );
        get.set_header("mcp-name", Some(&task));
        let got = mcp.post_modern(&get).await.result().clone();
        if got["status"] != "working" {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["error"]["code"], -32021);
}

for_shapes!([
    sessions_answer_input_requests_over_their_stream,
    a_refusal_or_silence_ends_the_call_as_a_tool_error,
    input_a_client_cannot_give_is_refused,
] on sqlite => Sqlite, redis => PostgresRedis);
