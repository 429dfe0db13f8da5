//! MCP tasks (extension io.modelcontextprotocol/tasks, SEP-2663) over real HTTP: tool
//! calls that become tasks, followed, answered and cancelled from any node, kept apart
//! by owner, bounded, expired, and failed when their node stops.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{Shape, TestApp, TestEnv, wait_until};
use crate::mcp_client::{Answer, Events, LEGACY, McpClient, modern_request, session_headers};
use crate::rest::{self, register};

const EXTENSION: &str = "io.modelcontextprotocol/tasks";

/// A client that declares the extension (and elicitation) on every request, as a
/// 2026-07-28 client does.
struct TasksClient(McpClient);

impl TasksClient {
    fn new(app: &TestApp, key: &str) -> Self {
        Self(McpClient::new(app, Some(key)))
    }

    async fn ask(&self, method: &str, mut params: Value) -> Answer {
        params["_meta"] = json!({
            "io.modelcontextprotocol/clientCapabilities": {
                "extensions": { EXTENSION: {} },
                "elicitation": {}
            }
        });
        self.0.modern(method, params).await
    }

    /// Calls a tool; the `CreateTaskResult` (or whatever it answered).
    async fn call(&self, tool: &str, arguments: Value) -> Value {
        let a = self
            .ask(
                "tools/call",
                json!({ "name": tool, "arguments": arguments }),
            )
            .await;
        a.result().clone()
    }

    async fn get(&self, task: &str) -> Answer {
        self.ask("tasks/get", json!({ "taskId": task })).await
    }

    async fn status(&self, task: &str) -> Value {
        self.get(task).await.result().clone()
    }

    async fn update(&self, task: &str, responses: Value) -> Answer {
        self.ask(
            "tasks/update",
            json!({ "taskId": task, "inputResponses": responses }),
        )
        .await
    }

    async fn cancel(&self, task: &str) -> Answer {
        self.ask("tasks/cancel", json!({ "taskId": task })).await
    }

    /// Polls `tasks/get` (as a client does) until the task is in `status`; the task then.
    async fn wait_for(&self, task: &str, status: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let got = self.status(task).await;
            if got["status"] == status {
                return got;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "task {task} never {status}: {got}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// One node, or in the scale-out shape two, with the conformance fixtures (whose tools
/// run as tasks); the second is where the task is followed from.
async fn nodes(env: &mut TestEnv) -> (TestApp, Option<TestApp>) {
    env.config.mcp.conformance_fixtures = true;
    let here = env.spawn_app().await;
    here.wait_ready().await;
    let there = if env.config.redis.url.is_some() {
        let app = env.spawn_other_node("second").await;
        app.wait_ready().await;
        Some(app)
    } else {
        None
    };
    (here, there)
}

fn task_id(created: &Value) -> String {
    assert_eq!(created["resultType"], "task", "{created}");
    created["taskId"].as_str().expect("a taskId").to_string()
}

fn text_of(result: &Value) -> &str {
    result["content"][0]["text"].as_str().unwrap_or("")
}

/// A long call answers at once with a task; the task is stored before the answer, and
/// read, to its result, on another node.
async fn a_long_call_becomes_a_task_any_node_follows(shape: Shape) {
    let mut env = TestEnv::new(shape).await;
    let (here, there) = nodes(&mut env).await;
    let tenant = register(&here, "acme").await;
    let client = TasksClient::new(&here, &tenant.key);
    let follower = TasksClient::new(there.as_ref().unwrap_or(&here), &tenant.key);

    let created = client
        .call("slow_compute", json!({ "seconds": 1, "label": "report" }))
        .await;
    let task = task_id(&created);
    assert_eq!(created["status"], "working");
    assert_eq!(created["ttlMs"], 3_600_000);
    assert_eq!(created["pollIntervalMs"], 1000);
    for absent in ["task", "result", "requestState", "ttl", "pollInterval"] {
        assert!(created.get(absent).is_none(), "{absent} in {created}");
    }

    let working = follower.status(&task).await;
    assert_eq!(working["taskId"], json!(task));
    assert_eq!(working["resultType"], "complete");
    assert!(working.get("result").is_none(), "{working}");

    let done = follower.wait_for(&task, "completed").await;
    assert_eq!(text_of(&done["result"]), "Computed report in 1 s");
    assert_eq!(done["result"]["isError"], false);
    assert!(done["result"].get("resultType").is_none());
    assert!(done["lastUpdatedAt"].as_str() > done["createdAt"].as_str());

    // A tool error completes the task; a protocol error fails it.
    let failing = task_id(&client.call("failing_job", json!({})).await);
    let ended = follower.wait_for(&failing, "completed").await;
    assert_eq!(ended["result"]["isError"], true);
    let broken = task_id(&client.call("protocol_error_job", json!({})).await);
    let failed = follower.wait_for(&broken, "failed").await;
    assert_eq!(failed["error"]["code"], -32603);
    assert!(failed.get("result").is_none());

    // A task-supporting tool whose work is instant answers inline.
    let instant = client
        .call("slow_compute", json!({ "seconds": 0, "label": "now" }))
        .await;
    assert_eq!(instant["resultType"], "complete");
    assert_eq!(text_of(&instant), "Computed now in 0 s");
}

/// A cancellation on one node stops the round running on another, and stands.
async fn cancelling_stops_the_round_wherever_it_runs(shape: Shape) {
    let mut env = TestEnv::new(shape).await;
    let (here, there) = nodes(&mut env).await;
    let tenant = register(&here, "acme").await;
    let client = TasksClient::new(&here, &tenant.key);
    let canceller = TasksClient::new(there.as_ref().unwrap_or(&here), &tenant.key);

    let task = task_id(&client.call("slow_compute", json!({ "seconds": 60 })).await);
    assert_eq!(
        here.caps.mcp.tasks.len(),
        1,
        "the round runs where it was made"
    );
    let ack = canceller.cancel(&task).await;
    assert_eq!(ack.result(), &json!({ "resultType": "complete" }));
    let cancelled = client.status(&task).await;
    assert_eq!(cancelled["status"], "cancelled");
    wait_until(Duration::from_secs(10), || async {
        here.caps.mcp.tasks.is_empty()
    })
    .await
    .expect("the round is stopped on the node that runs it");

    // Cancelling an ended task, or answering it, changes nothing.
    let again = canceller.cancel(&task).await;
    assert_eq!(again.result(), &json!({ "resultType": "complete" }));
    let answered = client
        .update(&task, json!({ "x": { "action": "accept" } }))
        .await;
    assert_eq!(answered.result(), &json!({ "resultType": "complete" }));
    assert_eq!(client.status(&task).await["status"], "cancelled");
}

/// A task that asks for input waits in input_required; answers may come one at a time,
/// from any node, and even at once from two nodes: none is lost.
async fn tasks_wait_for_answers_from_any_node(shape: Shape) {
    let mut env = TestEnv::new(shape).await;
    let (here, there) = nodes(&mut env).await;
    let tenant = register(&here, "acme").await;
    let client = TasksClient::new(&here, &tenant.key);
    let other = TasksClient::new(there.as_ref().unwrap_or(&here), &tenant.key);
    let accept = |content: Value| json!({ "action": "accept", "content": content });

    // One at a time.
    let task = task_id(&client.call("multi_input", json!({})).await);
    let waiting = client.wait_for(&task, "input_required").await;
    let mut keys: Vec<&String> = waiting["inputRequests"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    keys.sort();
    assert_eq!(keys, ["confirm", "name"]);
    assert_eq!(
        waiting["inputRequests"]["name"]["method"],
        "elicitation/create"
    );
    let bad = other.update(&task, json!({ "name": "Ada" })).await;
    assert_eq!(bad.error_code(), -32602, "{}", bad.message);
    assert!(
        bad.error_message().contains("\"name\""),
        "{}",
        bad.error_message()
    );
    let partial = other
        .update(
            &task,
            json!({ "name": accept(json!({ "name": "Ada" })), "stray": {} }),
        )
        .await;
    assert_eq!(partial.result(), &json!({ "resultType": "complete" }));
    let still = client.status(&task).await;
    assert_eq!(still["status"], "input_required");
    assert_eq!(
        still["inputRequests"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["confirm"]
    );
    client
        .update(
            &task,
            json!({ "confirm": accept(json!({ "confirm": true })) }),
        )
        .await
        .result();
    let done = other.wait_for(&task, "completed").await;
    assert_eq!(
        text_of(&done["result"]),
        "Got name \"Ada\" and confirm true"
    );

    // Both answers at once, on two nodes.
    let task = task_id(&client.call("multi_input", json!({})).await);
    client.wait_for(&task, "input_required").await;
    let name = json!({ "name": accept(json!({ "name": "Grace" })) });
    let confirm = json!({ "confirm": accept(json!({ "confirm": false })) });
    let (a, b) = tokio::join!(client.update(&task, name), other.update(&task, confirm));
    a.result();
    b.result();
    let done = other.wait_for(&task, "completed").await;
    assert_eq!(
        text_of(&done["result"]),
        "Got name \"Grace\" and confirm false"
    );
}

/// Input gathered inline (an input-required result) carries into the task the tool
/// goes on as; a session that declared the extension gets tasks too.
async fn input_gathered_inline_carries_into_the_task(shape: Shape) {
    let mut env = TestEnv::new(shape).await;
    let (here, _there) = nodes(&mut env).await;
    let tenant = register(&here, "acme").await;
    let client = TasksClient::new(&here, &tenant.key);

    let first = client.call("test_tool_with_task", json!({})).await;
    assert_eq!(first["resultType"], "input_required");
    assert!(first.get("taskId").is_none());
    let second = client
        .ask(
            "tools/call",
            json!({
                "name": "test_tool_with_task", "arguments": {},
                "inputResponses": { "user_name": { "action": "accept", "content": { "name": "Alice" } } }
            }),
        )
        .await;
    let task = task_id(second.result());
    assert!(second.result().get("requestState").is_none());
    let done = client.wait_for(&task, "completed").await;
    assert_eq!(text_of(&done["result"]), "Hello, Alice! (from a task)");

    // Sessions era: declared at initialize; the CreateTaskResult keeps its resultType.
    let mcp = McpClient::new(&here, Some(&tenant.key));
    let init = json!({
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {
            "protocolVersion": LEGACY,
            "capabilities": { "extensions": { EXTENSION: {} } },
            "clientInfo": { "name": "devmesh-tests", "version": "1" }
        }
    });
    let a = mcp.post(&init.to_string(), &[]).await;
    assert!(a.result()["capabilities"]["extensions"][EXTENSION].is_object());
    let session = a.header("mcp-session-id").unwrap().to_string();
    let initialized = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
    mcp.send(&initialized.to_string(), &session_headers(&session, LEGACY))
        .await;
    let created = mcp
        .in_session(
            &session,
            LEGACY,
            1,
            "tools/call",
            json!({ "name": "slow_compute", "arguments": { "seconds": 0.2 } }),
        )
        .await;
    let task = task_id(created.result());
    let ended = wait_until(Duration::from_secs(10), || async {
        let got = mcp
            .in_session(&session, LEGACY, 2, "tasks/get", json!({ "taskId": task }))
            .await;
        got.result()["status"] == "completed"
    })
    .await;
    assert!(ended.is_ok(), "the session's task completes");
}

/// Tasks are their creator's: another key of the same organization, or another
/// organization, is told the task does not exist and cannot touch it.
async fn tasks_are_their_creators(shape: Shape) {
    let mut env = TestEnv::new(shape).await;
    let (here, _there) = nodes(&mut env).await;
    let acme = register(&here, "acme").await;
    let globex = register(&here, "globex").await;
    let (_, second_key) = rest::new_key(
        &here,
        &acme,
        json!({ "name": "second", "key_type": "agent" }),
    )
    .await;
    let owner = TasksClient::new(&here, &acme.key);
    let task = task_id(&owner.call("slow_compute", json!({ "seconds": 60 })).await);

    for key in [&second_key, &globex.key] {
        let stranger = TasksClient::new(&here, key);
        for answer in [
            stranger.get(&task).await,
            stranger.cancel(&task).await,
            stranger.update(&task, json!({})).await,
        ] {
            assert_eq!(answer.error_code(), -32602, "{}", answer.message);
            assert!(answer.error_message().contains("unknown task"));
        }
    }
    assert_eq!(owner.status(&task).await["status"], "working");
    owner.cancel(&task).await.result();
}

/// Without the extension: the tasks methods and task-only tools answer -32021 naming
/// it, optional ones run inline; removed methods and bad parameters are refused.
async fn clients_without_the_extension_and_bad_requests(shape: Shape) {
    let mut env = TestEnv::new(shape).await;
    let (here, _there) = nodes(&mut env).await;
    let tenant = register(&here, "acme").await;
    let plain = McpClient::new(&here, Some(&tenant.key));

    for method in ["tasks/get", "tasks/update", "tasks/cancel"] {
        let a = plain
            .modern(method, json!({ "taskId": "x", "inputResponses": {} }))
            .await;
        assert_eq!(a.error_code(), -32021, "{method}: {}", a.message);
        assert!(
            a.message["error"]["data"]["requiredCapabilities"]["extensions"][EXTENSION].is_object()
        );
    }
    let required = plain
        .modern(
            "tools/call",
            json!({ "name": "failing_job", "arguments": {} }),
        )
        .await;
    assert_eq!(required.error_code(), -32021);
    assert!(
        required.message["error"]["data"]["requiredCapabilities"]["extensions"][EXTENSION]
            .is_object()
    );
    let inline = plain
        .call_tool("slow_compute", json!({ "seconds": 0.1, "label": "inline" }))
        .await;
    assert_eq!(text_of(&inline), "Computed inline in 0.1 s");
    let legacy_hint = plain
        .modern(
            "tools/call",
            json!({ "name": "greet", "arguments": { "name": "Ada" }, "task": { "ttl": 1000 } }),
        )
        .await;
    assert_eq!(text_of(legacy_hint.result()), "Hello, Ada!");

    let client = TasksClient::new(&here, &tenant.key);
    for method in ["tasks/result", "tasks/list"] {
        let a = client.ask(method, json!({ "taskId": "x" })).await;
        assert_eq!(a.error_code(), -32601, "{method}");
    }
    let unknown = client.get("no-such-task").await;
    assert_eq!(unknown.error_code(), -32602);
    assert_eq!(unknown.message["error"]["data"]["taskId"], "no-such-task");
    let numeric = client.ask("tasks/get", json!({ "taskId": 7 })).await;
    assert_eq!(numeric.error_code(), -32602);
    assert!(numeric.error_message().contains("taskId"));
    let task = task_id(&client.call("slow_compute", json!({ "seconds": 60 })).await);
    let missing = client.ask("tasks/update", json!({ "taskId": task })).await;
    assert_eq!(missing.error_code(), -32602);
    assert!(missing.error_message().contains("inputResponses"));
    // What the client sent is quoted back only in part.
    let huge = "a".repeat(300_000);
    let mut request = modern_request(
        8,
        "tasks/get",
        json!({ "taskId": huge, "_meta": { "io.modelcontextprotocol/clientCapabilities": { "extensions": { EXTENSION: {} } } } }),
    );
    request.set_header("mcp-name", None);
    let refused = client.0.post_modern(&request).await;
    assert_eq!(refused.error_code(), -32020);
    assert!(
        refused.error_message().len() < 1200,
        "{}",
        refused.error_message().len()
    );
    let wrong = plain
        .call_tool("slow_compute", json!({ "seconds": "Z".repeat(300_000) }))
        .await;
    assert_eq!(wrong["isError"], true);
    assert!(text_of(&wrong).len() < 1200, "{}", text_of(&wrong).len());
    let nul = client.get("bad\u{0}id").await;
    assert_eq!(nul.error_code(), -32602);
    assert_eq!(nul.message["error"]["data"]["taskId"], "bad\u{0}id");
    let not_object = client.update(&task, json!([1])).await;
    assert_eq!(not_object.error_code(), -32602);
    // The routing header names the task, and must match it.
    let mut request = modern_request(
        9,
        "tasks/get",
        json!({ "taskId": task, "_meta": { "io.modelcontextprotocol/clientCapabilities": { "extensions": { EXTENSION: {} } } } }),
    );
    request.set_header("mcp-name", Some("another-task"));
    let mismatched = client.0.post_modern(&request).await;
    assert_eq!(mismatched.status, 400);
    assert_eq!(mismatched.error_code(), -32020);
    assert_eq!(client.status(&task).await["status"], "working");
    client.cancel(&task).await.result();
}

/// Tasks last their ttlMs and are gone after; a caller's tasks not ended are bounded.
async fn tasks_expire_and_are_bounded(shape: Shape) {
    let mut env = TestEnv::new(shape).await;
    env.config.mcp.tasks.ttl = devmesh::config::Duration::from_secs(2);
    env.config.mcp.tasks.max_active_per_principal = 2;
    let (here, there) = nodes(&mut env).await;
    let tenant = register(&here, "acme").await;
    let client = TasksClient::new(&here, &tenant.key);

    let quick = client.call("slow_compute", json!({ "seconds": 0.1 })).await;
    let quick = task_id(&quick);
    client.wait_for(&quick, "completed").await;
    let gone = wait_until(Duration::from_secs(10), || async {
        client.get(&quick).await.message["error"]["code"] == -32602
    })
    .await;
    assert!(gone.is_ok(), "an expired task is gone");

    let first = task_id(&client.call("slow_compute", json!({ "seconds": 60 })).await);
    task_id(&client.call("slow_compute", json!({ "seconds": 60 })).await);
    let refused = client
        .ask(
            "tools/call",
            json!({ "name": "slow_compute", "arguments": { "seconds": 60 } }),
        )
        .await;
    assert_eq!(refused.error_code(), -31029, "{}", refused.message);
    assert!(refused.error_message().contains("max_active_per_principal"));
    assert_eq!(refused.message["error"]["data"]["reason"], "too_many_tasks");
    client.cancel(&first).await.result();
    let again = task_id(&client.call("slow_compute", json!({ "seconds": 60 })).await);

    // Many at once, on every node, make no more than the limit.
    let second = TasksClient::new(there.as_ref().unwrap_or(&here), &tenant.key);
    client.cancel(&again).await.result();
    let calls = (0..12).map(|i| {
        let client = if i % 2 == 0 { &client } else { &second };
        client.ask(
            "tools/call",
            json!({ "name": "slow_compute", "arguments": { "seconds": 60 } }),
        )
    });
    let answers = futures_util::future::join_all(calls).await;
    let made = answers
        .iter()
        .filter(|a| a.message["result"]["resultType"] == "task")
        .count();
    let refused = answers
        .iter()
        .filter(|a| a.message["error"]["code"] == -31029)
        .count();
    // One task from before is still working.
    assert_eq!((made, refused), (1, 11), "{answers:?}");
}

/// A node that stops lets its rounds end within its grace period, and takes the rest
/// with it: their tasks fail, saying why, and the rest of the cluster (or the node
/// started again) reads that.
async fn a_stopped_nodes_tasks_fail(shape: Shape) {
    let mut env = TestEnv::new(shape).await;
    let (here, there) = nodes(&mut env).await;
    let tenant = register(&here, "acme").await;
    let (task, short) = {
        let client = TasksClient::new(&here, &tenant.key);
        let long = task_id(&client.call("slow_compute", json!({ "seconds": 60 })).await);
        let short = json!({ "seconds": 0.5, "label": "short" });
        (long, task_id(&client.call("slow_compute", short).await))
    };
    // Another node's listen stream for the task hears it fail.
    let mut heard = match &there {
        Some(there) => {
            let listener = TasksClient::new(there, &tenant.key);
            let listen = modern_request(
                3,
                "subscriptions/listen",
                json!({ "notifications": { "taskIds": [task] } }),
            );
            let mut events = Events::new(listener.0.send_modern(&listen).await);
            events
                .next(Duration::from_secs(10))
                .await
                .expect("an acknowledgement");
            Some(events)
        }
        None => None,
    };
    here.stop().await.expect("the node stops");
    if let Some(events) = &mut heard {
        let (_, failed) = events
            .next(Duration::from_secs(10))
            .await
            .expect("a notification");
        assert_eq!(failed["method"], "notifications/tasks");
        assert_eq!(failed["params"]["status"], "failed");
        assert_eq!(failed["params"]["error"]["data"]["reason"], "node_stopped");
    }
    let reader = match there {
        Some(there) => there,
        None => {
            let again = env.spawn_app().await;
            again.wait_ready().await;
            again
        }
    };
    let client = TasksClient::new(&reader, &tenant.key);
    let failed = client.status(&task).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["error"]["code"], -32603);
    assert_eq!(failed["error"]["data"]["reason"], "node_stopped");
    // A round that ends within the grace period ends as it would have.
    let ended = client.status(&short).await;
    assert_eq!(ended["status"], "completed", "{ended}");
}

/// A listen stream that names tasks hears each change of them, on whichever node it
/// happens, as `tasks/get` would show it; not another caller's, not another task's.
async fn listen_streams_hear_the_tasks_they_name(shape: Shape) {
    let mut env = TestEnv::new(shape).await;
    let (here, there) = nodes(&mut env).await;
    let tenant = register(&here, "acme").await;
    let (_, other_key) = rest::new_key(
        &here,
        &tenant,
        json!({ "name": "other", "key_type": "agent" }),
    )
    .await;
    let client = TasksClient::new(&here, &tenant.key);
    let elsewhere = TasksClient::new(there.as_ref().unwrap_or(&here), &tenant.key);
    let stranger = TasksClient::new(&here, &other_key);

    let task = task_id(
        &client
            .call("confirm_delete", json!({ "filename": "a.txt" }))
            .await,
    );
    let unnamed = task_id(
        &client
            .call("confirm_delete", json!({ "filename": "b.txt" }))
            .await,
    );
    let theirs = task_id(
        &stranger
            .call("confirm_delete", json!({ "filename": "c.txt" }))
            .await,
    );
    client.wait_for(&task, "input_required").await;
    let listen = modern_request(
        5,
        "subscriptions/listen",
        json!({ "notifications": { "taskIds": [task, theirs] } }),
    );
    let mut events = Events::new(client.0.send_modern(&listen).await);
    let (_, ack) = events
        .next(Duration::from_secs(10))
        .await
        .expect("an acknowledgement");
    assert_eq!(
        ack["params"]["notifications"]["taskIds"],
        json!([task, theirs])
    );

    stranger.cancel(&theirs).await.result();
    elsewhere.cancel(&unnamed).await.result();
    let accept = json!({ "confirm": { "action": "accept", "content": { "confirm": true } } });
    elsewhere.update(&task, accept).await.result();
    let mut heard = Vec::new();
    while heard.last().map(|n: &Value| n["params"]["status"].clone()) != Some(json!("completed")) {
        let (_, message) = events
            .next(Duration::from_secs(10))
            .await
            .expect("a task notification");
        assert_eq!(message["method"], "notifications/tasks", "{message}");
        assert_eq!(message["params"]["taskId"], json!(task), "{message}");
        assert_eq!(
            message["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
            5
        );
        heard.push(message);
    }
    let statuses: Vec<&Value> = heard.iter().map(|n| &n["params"]["status"]).collect();
    assert_eq!(statuses, [&json!("working"), &json!("completed")]);
    assert_eq!(text_of(&heard[1]["params"]["result"]), "Deleted a.txt");

    let too_many: Vec<String> = (0..1001).map(|i| format!("t{i}")).collect();
    let refused = client
        .ask(
            "subscriptions/listen",
            json!({ "notifications": { "taskIds": too_many } }),
        )
        .await;
    assert_eq!(refused.error_code(), -32602);
}

/// Tasks over WebSocket: the same methods, the same tasks as over HTTP.
async fn tasks_over_websocket(shape: Shape) {
    let mut env = TestEnv::new(shape).await;
    let (here, there) = nodes(&mut env).await;
    let tenant = register(&here, "acme").await;
    let mut ws = crate::ws_client::connect(there.as_ref().unwrap_or(&here), &tenant.key).await;
    let with_tasks = |id: i64, method: &str, params: Value| {
        let mut message = crate::ws_client::modern(id, method, params);
        message["params"]["_meta"]["io.modelcontextprotocol/clientCapabilities"] =
            json!({ "extensions": { EXTENSION: {} } });
        message
    };
    ws.send_text(&with_tasks(
        1,
        "tools/call",
        json!({ "name": "slow_compute", "arguments": { "seconds": 0.3, "label": "ws" } }),
    ))
    .await;
    let created = ws.answer(1).await.0.message()["result"].clone();
    let task = task_id(&created);
    let http = TasksClient::new(&here, &tenant.key);
    let done = http.wait_for(&task, "completed").await;
    ws.send_text(&with_tasks(2, "tasks/get", json!({ "taskId": task })))
        .await;
    let over_ws = ws.answer(2).await.0.message()["result"].clone();
    assert_eq!(over_ws, done);
    assert_eq!(text_of(&over_ws["result"]), "Computed ws in 0.3 s");
}

for_shapes!([
    tasks_over_websocket,
    listen_streams_hear_the_tasks_they_name,
    a_long_call_becomes_a_task_any_node_follows,
    cancelling_stops_the_round_wherever_it_runs,
    tasks_wait_for_answers_from_any_node,
    input_gathered_inline_carries_into_the_task,
    tasks_are_their_creators,
    clients_without_the_extension_and_bad_requests,
    tasks_expire_and_are_bounded,
    a_stopped_nodes_tasks_fail,
] on sqlite => Sqlite, redis => PostgresRedis);
