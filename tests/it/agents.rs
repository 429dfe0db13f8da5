//! Agents and tasks, black-box: real agents (a WebSocket MCP client, REST pollers)
//! registering, hearing of work on their inbox, claiming, reporting and finishing it;
//! the engine's strategies, priorities, idempotency, reassignment, circuit breakers and
//! concurrent assignment from two nodes.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{Shape, TestApp, TestEnv, wait_until};
use crate::rest::{Tenant, call, register};
use crate::ws_client::{self, Ws};

for_shapes!([
    a_websocket_agent_hears_of_its_task_and_sees_it_through,
    idempotency_keys_and_bad_input,
    priorities_and_waiting_until_an_agent_comes_online,
    reassignment_on_reject_timeout_and_disconnect,
    circuit_breaker_opens_and_half_opens,
    strategies_choose_from_a_crafted_fleet,
    agent_keys_act_only_on_their_own_tasks,
    a_python_sdk_agent_on_a_session_stream,
    an_mcp_task_follows_the_devmesh_task,
    a_listen_stream_keeps_an_agent_online_and_tells_it_of_work,
    keys_reach_only_their_own_and_edges_of_the_lifecycle,
] on sqlite => Sqlite, postgres_redis => PostgresRedis);

for_shapes!([
    two_nodes_assign_concurrently_without_double_assignment,
    a_node_killed_under_a_connected_agent,
] on two_nodes => PostgresRedis);

for_shapes!([the_command_line_lists_shows_and_cancels] on cli => Sqlite);

/// A test environment whose presence and sweep run fast.
async fn fast_env(shape: Shape) -> TestEnv {
    let mut env = TestEnv::new(shape).await;
    env.config.agents.heartbeat_interval = devmesh::config::Duration::from_millis(500);
    env.config.agents.sweep_interval = devmesh::config::Duration::from_millis(200);
    env.config.agents.exploration = 0.0;
    env
}

/// Registers an agent, activates it and makes its key: `(id, key)`.
async fn enroll(app: &TestApp, t: &Tenant, body: Value) -> (String, String) {
    let r = call(app, "POST", "/api/v1/agents", Some(&t.key), Some(&body)).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["status"], "pending");
    let id = r.body["id"].as_str().unwrap().to_string();
    let r = call(
        app,
        "POST",
        &format!("/api/v1/agents/{id}/activate"),
        Some(&t.key),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["status"], "active");
    let r = call(
        app,
        "POST",
        &format!("/api/v1/agents/{id}/keys"),
        Some(&t.key),
        Some(&json!({ "name": "its key" })),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["api_key"]["agent_id"], id.as_str());
    (id, r.body["key"].as_str().unwrap().to_string())
}

async fn heartbeat(app: &TestApp, id: &str, key: &str) {
    let r = call(
        app,
        "POST",
        &format!("/api/v1/agents/{id}/heartbeat"),
        Some(key),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["online"], true);
}

async fn create_task(app: &TestApp, t: &Tenant, body: Value) -> Value {
    let r = call(app, "POST", "/api/v1/tasks", Some(&t.key), Some(&body)).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.body
}

async fn task(app: &TestApp, t: &Tenant, id: &str) -> Value {
    let r = call(
        app,
        "GET",
        &format!("/api/v1/tasks/{id}"),
        Some(&t.key),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body
}

/// Polls the task until `done` holds for it (running `meanwhile` before each look).
async fn task_until<F, M, Fut>(
    app: &TestApp,
    t: &Tenant,
    id: &str,
    mut meanwhile: M,
    done: F,
) -> Value
where
    F: Fn(&Value) -> bool,
    M: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        meanwhile().await;
        let now = task(app, t, id).await;
        if done(&now) {
            return now;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "task {id} stuck at {now}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_status(app: &TestApp, t: &Tenant, id: &str, status: &str) -> Value {
    task_until(app, t, id, || async {}, |v| v["status"] == status).await
}

async fn act(app: &TestApp, key: &str, id: &str, action: &str, body: Value) -> crate::rest::Reply {
    call(
        app,
        "POST",
        &format!("/api/v1/tasks/{id}/{action}"),
        Some(key),
        Some(&body),
    )
    .await
}

fn structured(answer: &Value) -> &Value {
    assert!(answer.get("error").is_none(), "{answer}");
    assert_eq!(answer["result"]["isError"], false, "{answer}");
    &answer["result"]["structuredContent"]
}

/// Reads WebSocket messages until a `resources/updated` for `uri`.
async fn updated(ws: &mut Ws, uri: &str) {
    loop {
        let frame = ws.message().await;
        let m = frame.message();
        if m["method"] == "notifications/resources/updated" && m["params"]["uri"] == uri {
            return;
        }
    }
}

async fn a_websocket_agent_hears_of_its_task_and_sees_it_through(shape: Shape) {
    let env = fast_env(shape).await;
    let app = env.spawn_app().await;
    app.wait_ready().await;
    let t = register(&app, "acme").await;
    let (agent, key) = enroll(
        &app,
        &t,
        json!({ "name": "reviewer", "capabilities": [{ "name": "code_review", "version": "2", "proficiency": 0.9 }],
                "tags": ["team:platform"], "model": "claude", "cost": { "per_task_usd": 0.02 } }),
    )
    .await;
    let before = call(
        &app,
        "GET",
        &format!("/api/v1/agents/{agent}"),
        Some(&t.key),
        None,
    )
    .await;
    assert_eq!(before.body["presence"]["online"], false);

    // The agent connects over WebSocket with its key: it is online while connected.
    let mut ws = ws_client::connect(&app, &key).await;
    ws.initialize().await;
    let inbox = format!("devmesh://agents/{agent}/tasks");
    let sub = ws
        .call(1, "resources/subscribe", json!({ "uri": inbox }))
        .await;
    assert!(sub.get("error").is_none(), "{sub}");
    wait_until(Duration::from_secs(10), || async {
        let r = call(
            &app,
            "GET",
            &format!("/api/v1/agents/{agent}"),
            Some(&t.key),
            None,
        )
        .await;
        r.body["presence"]["online"] == true
    })
    .await
    .expect("the agent is online while its connection is open");
    let tools = ws.call(2, "tools/list", json!({})).await;
    let names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    for name in [
        "devmesh_task_next",
        "devmesh_task_complete",
        "devmesh_task_create",
    ] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }

    let created = create_task(
        &app,
        &t,
        json!({ "title": "Review PR 42", "type": "code_review", "input": { "pr": 42 },
                "required_capabilities": ["code_review"] }),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["status"], "assigned", "{created}");
    assert_eq!(created["agent_id"], agent.as_str());
    assert_eq!(created["decision"]["strategy"], "auto");
    updated(&mut ws, &inbox).await;

    // The inbox resource lists it; the agent claims it with a tool.
    let read = ws.call(3, "resources/read", json!({ "uri": inbox })).await;
    let text = read["result"]["contents"][0]["text"].as_str().unwrap();
    let listed: Value = serde_json::from_str(text).unwrap();
    assert_eq!(listed["tasks"][0]["id"], id.as_str());
    let next = ws
        .call(
            4,
            "tools/call",
            json!({ "name": "devmesh_task_next", "arguments": {} }),
        )
        .await;
    let claimed = &structured(&next)["task"];
    assert_eq!(claimed["id"], id.as_str());
    assert_eq!(claimed["status"], "running");
    assert_eq!(claimed["input"]["pr"], 42);
    let progress = ws
        .call(
            5,
            "tools/call",
            json!({ "name": "devmesh_task_progress", "arguments": { "id": id, "percent": 50, "message": "halfway" } }),
        )
        .await;
    assert_eq!(structured(&progress)["progress"]["percent"], 50.0);
    let done = ws
        .call(
            6,
            "tools/call",
            json!({ "name": "devmesh_task_complete", "arguments": { "id": id, "output": { "approved": true } } }),
        )
        .await;
    assert_eq!(structured(&done)["status"], "completed");

    let finished = task(&app, &t, &id).await;
    assert_eq!(finished["status"], "completed");
    assert_eq!(finished["output"]["approved"], true);
    assert_eq!(finished["attempts"], 1);
    let events = call(
        &app,
        "GET",
        &format!("/api/v1/tasks/{id}/events"),
        Some(&t.key),
        None,
    )
    .await;
    let path: Vec<&str> = events
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["to"].as_str().unwrap())
        .collect();
    assert_eq!(path, ["queued", "assigned", "running", "completed"]);
    assert_eq!(events.body[1]["actor"], "system");
    assert!(
        events.body[2]["actor"]
            .as_str()
            .unwrap()
            .starts_with("api_key:")
    );

    // The first result stands.
    let again = act(&app, &key, &id, "complete", json!({ "output": "other" })).await;
    assert_eq!(again.status, 409, "{:?}", again.body);
    assert!(
        again.message().contains("already completed"),
        "{}",
        again.message()
    );
    assert_eq!(task(&app, &t, &id).await["output"]["approved"], true);

    let shown = call(
        &app,
        "GET",
        &format!("/api/v1/agents/{agent}"),
        Some(&t.key),
        None,
    )
    .await;
    assert_eq!(shown.body["load"], 0);
    assert_eq!(shown.body["statistics"]["completed"], 1);
    assert_eq!(shown.body["statistics"]["success_rate"], 1.0);
    assert!(shown.body["statistics"]["cost_usd"].as_f64().unwrap() > 0.019);
    assert_eq!(
        shown.body["statistics_by_type"]["code_review"]["completed"],
        1
    );
    assert!(shown.body["statistics"]["latency_p50_ms"].is_number());

    // Cancelling tells the agent on its inbox.
    let second = create_task(
        &app,
        &t,
        json!({ "title": "second", "required_capabilities": ["code_review"] }),
    )
    .await;
    let second_id = second["id"].as_str().unwrap();
    updated(&mut ws, &inbox).await;
    let cancelled = call(
        &app,
        "POST",
        &format!("/api/v1/tasks/{second_id}/cancel"),
        Some(&t.key),
        None,
    )
    .await;
    assert_eq!(cancelled.status, 200, "{:?}", cancelled.body);
    assert_eq!(cancelled.body["status"], "cancelled");
    updated(&mut ws, &inbox).await;
    let again = call(
        &app,
        "POST",
        &format!("/api/v1/tasks/{second_id}/cancel"),
        Some(&t.key),
        None,
    )
    .await;
    assert_eq!(again.status, 409);

    // Disconnected, it goes offline within two heartbeat intervals.
    drop(ws);
    wait_until(Duration::from_secs(10), || async {
        let r = call(
            &app,
            "GET",
            &format!("/api/v1/agents/{agent}"),
            Some(&t.key),
            None,
        )
        .await;
        r.body["presence"]["online"] == false
    })
    .await
    .expect("the agent goes offline once its connection closes");
}

async fn idempotency_keys_and_bad_input(shape: Shape) {
    let env = fast_env(shape).await;
    let app = env.spawn_app().await;
    app.wait_ready().await;
    let t = register(&app, "acme").await;
    let body = json!({ "title": "deploy", "idempotency_key": "deploy-7", "required_capabilities": ["k8s_deploy"] });
    let first = call(&app, "POST", "/api/v1/tasks", Some(&t.key), Some(&body)).await;
    assert_eq!(first.status, 201);
    let repeat = call(&app, "POST", "/api/v1/tasks", Some(&t.key), Some(&body)).await;
    assert_eq!(repeat.status, 200, "{:?}", repeat.body);
    assert_eq!(repeat.body["id"], first.body["id"]);
    let other = json!({ "title": "deploy again", "idempotency_key": "deploy-7" });
    let conflict = call(&app, "POST", "/api/v1/tasks", Some(&t.key), Some(&other)).await;
    assert_eq!(conflict.status, 409, "{:?}", conflict.body);
    assert!(conflict.message().contains("deploy-7"));
    // Concurrent repeats: one task.
    let key_body = json!({ "title": "once", "idempotency_key": "race" });
    let answers = futures_util::future::join_all(
        (0..8).map(|_| call(&app, "POST", "/api/v1/tasks", Some(&t.key), Some(&key_body))),
    )
    .await;
    let ids: std::collections::HashSet<String> = answers
        .iter()
        .map(|a| a.body["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 1, "{answers:?}");
    assert_eq!(answers.iter().filter(|a| a.status == 201).count(), 1);

    let bad = [
        (
            json!({ "title": "x", "required_capabilities": ["Not Valid"] }),
            422,
            "required_capabilities",
        ),
        (
            json!({ "title": "x", "strategy": "fastest" }),
            400,
            "strategy",
        ),
        (
            json!({ "title": "x", "max_cost_usd": -1 }),
            422,
            "max_cost_usd",
        ),
        (json!({ "title": "x", "timeout": "soon" }), 422, "timeout"),
        (
            json!({ "title": "x", "priority": "urgent" }),
            400,
            "priority",
        ),
        (
            json!({ "title": "x", "input": "a".repeat(300 * 1024) }),
            413,
            "input",
        ),
        (
            json!({ "title": "x", "context_id": uuid::Uuid::now_v7().to_string() }),
            422,
            "context_id",
        ),
        (json!({ "title": "" }), 422, "title"),
    ];
    for (body, status, field) in bad {
        let r = call(&app, "POST", "/api/v1/tasks", Some(&t.key), Some(&body)).await;
        assert_eq!(r.status, status, "{body}: {:?}", r.body);
        assert!(r.message().contains(field), "{field}: {}", r.message());
    }
    let bad_agents = [
        (
            json!({ "name": "a", "capabilities": [{ "name": "Code Review" }] }),
            "capabilities",
        ),
        (
            json!({ "name": "a", "capabilities": [{ "name": "x", "proficiency": 1.5 }] }),
            "proficiency",
        ),
        (json!({ "name": "a", "tags": ["has space"] }), "tags"),
        (
            json!({ "name": "a", "cost": { "per_task_usd": -0.5 } }),
            "per_task_usd",
        ),
        (
            json!({ "name": "a", "max_concurrent_tasks": 0 }),
            "max_concurrent_tasks",
        ),
    ];
    for (body, field) in bad_agents {
        let r = call(&app, "POST", "/api/v1/agents", Some(&t.key), Some(&body)).await;
        assert_eq!(r.status, 422, "{body}: {:?}", r.body);
        assert!(r.message().contains(field), "{field}: {}", r.message());
    }
    let list = call(&app, "GET", "/api/v1/agents", Some(&t.key), None).await;
    assert_eq!(
        list.body["items"].as_array().unwrap().len(),
        0,
        "nothing stored"
    );
    let tasks = call(&app, "GET", "/api/v1/tasks", Some(&t.key), None).await;
    assert_eq!(tasks.body["items"].as_array().unwrap().len(), 2);

    // The lifecycle's rules: a retired agent is not activated again; names are unique.
    let (agent, _) = enroll(&app, &t, json!({ "name": "solo" })).await;
    let dup = call(
        &app,
        "POST",
        "/api/v1/agents",
        Some(&t.key),
        Some(&json!({ "name": "SOLO" })),
    )
    .await;
    assert_eq!(dup.status, 409);
    let r = call(
        &app,
        "POST",
        &format!("/api/v1/agents/{agent}/retire"),
        Some(&t.key),
        None,
    )
    .await;
    assert_eq!(r.body["status"], "retired");
    let r = call(
        &app,
        "POST",
        &format!("/api/v1/agents/{agent}/activate"),
        Some(&t.key),
        None,
    )
    .await;
    assert_eq!(r.status, 409, "{:?}", r.body);
    assert!(r.message().contains("retired"));
    let audit = call(
        &app,
        "GET",
        "/api/v1/audit?action=agent.retired",
        Some(&t.key),
        None,
    )
    .await;
    assert!(audit.body.to_string().contains(&agent), "{:?}", audit.body);
}

async fn priorities_and_waiting_until_an_agent_comes_online(shape: Shape) {
    let env = fast_env(shape).await;
    let app = env.spawn_app().await;
    app.wait_ready().await;
    let t = register(&app, "acme").await;
    let (agent, key) = enroll(
        &app,
        &t,
        json!({ "name": "scanner", "capabilities": [{ "name": "security_scan" }] }),
    )
    .await;
    let mut ids = HashMap::new();
    for priority in ["low", "normal", "critical", "high"] {
        let created = create_task(
            &app,
            &t,
            json!({ "title": priority, "priority": priority, "required_capabilities": ["security_scan"] }),
        )
        .await;
        // Offline: nobody can take it, and it says why.
        assert_eq!(created["status"], "queued");
        assert_eq!(
            created["waiting_reason"], "no active agent online has capabilities [security_scan]",
            "{created}"
        );
        ids.insert(priority, created["id"].as_str().unwrap().to_string());
    }
    // It comes online (a heartbeat) and takes them one by one, the highest priority first.
    heartbeat(&app, &agent, &key).await;
    let mut order = Vec::new();
    for _ in 0..4 {
        let next = call(
            &app,
            "GET",
            &format!("/api/v1/agents/{agent}/tasks/next?wait=5s"),
            Some(&key),
            None,
        )
        .await;
        assert_eq!(next.status, 200, "{:?}", next.body);
        let id = next.body["id"].as_str().unwrap().to_string();
        let title = next.body["title"].as_str().unwrap();
        assert_eq!(ids[title], id, "the task created as {title}");
        order.push(title.to_string());
        assert_eq!(act(&app, &key, &id, "accept", json!({})).await.status, 200);
        let done = act(&app, &key, &id, "complete", json!({ "output": null })).await;
        assert_eq!(done.status, 200, "{:?}", done.body);
    }
    assert_eq!(order, ["critical", "high", "normal", "low"]);
    // Nothing left: the long poll answers 204 once its wait is over.
    let none = call(
        &app,
        "GET",
        &format!("/api/v1/agents/{agent}/tasks/next?wait=200ms"),
        Some(&key),
        None,
    )
    .await;
    assert_eq!(none.status, 204);
    // A long poll returns as soon as a task arrives.
    let poll = {
        let (app, agent, key) = (&app, agent.clone(), key.clone());
        async move {
            call(
                app,
                "GET",
                &format!("/api/v1/agents/{agent}/tasks/next?wait=20s"),
                Some(&key),
                None,
            )
            .await
        }
    };
    let create = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        create_task(
            &app,
            &t,
            json!({ "title": "late", "required_capabilities": ["security_scan"] }),
        )
        .await
    };
    let started = std::time::Instant::now();
    let (polled, created) = tokio::join!(poll, create);
    assert_eq!(polled.status, 200);
    assert_eq!(polled.body["id"], created["id"]);
    assert!(started.elapsed() < Duration::from_secs(10));
    let bad = call(
        &app,
        "GET",
        &format!("/api/v1/agents/{agent}/tasks/next?wait=forever"),
        Some(&key),
        None,
    )
    .await;
    assert_eq!(bad.status, 422, "{:?}", bad.body);
}

async fn reassignment_on_reject_timeout_and_disconnect(shape: Shape) {
    let env = fast_env(shape).await;
    let app = env.spawn_app().await;
    app.wait_ready().await;
    let t = register(&app, "acme").await;
    let build = || json!({ "capabilities": [{ "name": "build" }] });
    let named = |name: &str| {
        let mut b = build();
        b["name"] = json!(name);
        b
    };
    let (a, a_key) = enroll(&app, &t, named("a")).await;
    let (b, b_key) = enroll(&app, &t, named("b")).await;
    let (c, c_key) = enroll(&app, &t, named("c")).await;
    heartbeat(&app, &a, &a_key).await;
    let created = create_task(
        &app,
        &t,
        json!({ "title": "build", "required_capabilities": ["build"], "assign_timeout": "700ms", "timeout": "1s", "max_attempts": 2 }),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["agent_id"], a.as_str());
    // A rejects it: back to the queue, and not to A again.
    let r = act(&app, &a_key, &id, "reject", json!({ "reason": "busy" })).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["status"], "queued", "{:?}", r.body);
    assert!(
        r.body["waiting_reason"]
            .as_str()
            .unwrap()
            .contains("rejected"),
        "{:?}",
        r.body
    );
    // B comes online and gets it.
    heartbeat(&app, &b, &b_key).await;
    let now = wait_status(&app, &t, &id, "assigned").await;
    assert_eq!(now["agent_id"], b.as_str(), "{now}");
    // B neither accepts within assign_timeout nor heartbeats: the sweep takes it back,
    // and C (online) gets it.
    task_until(
        &app,
        &t,
        &id,
        || heartbeat(&app, &c, &c_key),
        |v| v["status"] == "assigned" && v["agent_id"] == c.as_str(),
    )
    .await;
    // B's late answer is refused: the task is no longer B's.
    let late = act(&app, &b_key, &id, "accept", json!({})).await;
    assert_eq!(late.status, 409);
    assert!(
        late.message().contains("no longer yours"),
        "{}",
        late.message()
    );
    // C accepts and runs past its timeout: an attempt remains, so it is queued again;
    // after the second attempt it times out for good.
    assert_eq!(
        act(&app, &c_key, &id, "accept", json!({})).await.status,
        200
    );
    let keep_taking = || async {
        heartbeat(&app, &c, &c_key).await;
        let _ = act(&app, &c_key, &id, "accept", json!({})).await;
    };
    let seen = task_until(&app, &t, &id, keep_taking, |v| v["status"] == "timed_out").await;
    assert_eq!(seen["attempts"], 2);
    let events = call(
        &app,
        "GET",
        &format!("/api/v1/tasks/{id}/events"),
        Some(&t.key),
        None,
    )
    .await;
    let reasons: Vec<String> = events
        .body
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["reason"].as_str().map(str::to_string))
        .collect();
    assert!(
        reasons.iter().any(|r| r.contains("rejected: busy")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("not accepted within assign_timeout") || r.contains("offline")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("not finished within timeout")),
        "{reasons:?}"
    );
    for agent in [&a, &b, &c] {
        let shown = call(
            &app,
            "GET",
            &format!("/api/v1/agents/{agent}"),
            Some(&t.key),
            None,
        )
        .await;
        assert_eq!(shown.body["load"], 0, "{:?}", shown.body);
    }
    let shown = call(
        &app,
        "GET",
        &format!("/api/v1/agents/{c}"),
        Some(&t.key),
        None,
    )
    .await;
    assert!(
        shown.body["statistics"]["timed_out"].as_i64().unwrap() >= 1,
        "{:?}",
        shown.body
    );
    // B never started it: an assign lapse is no attempt, and not in its statistics.
    let shown = call(
        &app,
        "GET",
        &format!("/api/v1/agents/{b}"),
        Some(&t.key),
        None,
    )
    .await;
    assert_eq!(shown.body["statistics"]["timed_out"], 0, "{:?}", shown.body);
}

async fn circuit_breaker_opens_and_half_opens(shape: Shape) {
    let mut env = fast_env(shape).await;
    env.config.agents.breaker_failures = 2;
    env.config.agents.breaker_cooldown = devmesh::config::Duration::from_millis(1500);
    let app = env.spawn_app().await;
    app.wait_ready().await;
    let t = register(&app, "acme").await;
    let (a, key) = enroll(
        &app,
        &t,
        json!({ "name": "flaky", "capabilities": [{ "name": "lint" }], "max_concurrent_tasks": 3 }),
    )
    .await;
    heartbeat(&app, &a, &key).await;
    for i in 0..2 {
        let created = create_task(
            &app,
            &t,
            json!({ "title": format!("t{i}"), "required_capabilities": ["lint"] }),
        )
        .await;
        assert_eq!(created["status"], "assigned", "{created}");
        let id = created["id"].as_str().unwrap();
        assert_eq!(act(&app, &key, id, "accept", json!({})).await.status, 200);
        let r = act(&app, &key, id, "fail", json!({ "error": "crashed" })).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.body["status"], "failed");
        assert_eq!(r.body["error"]["message"], "crashed");
    }
    let shown = call(
        &app,
        "GET",
        &format!("/api/v1/agents/{a}"),
        Some(&t.key),
        None,
    )
    .await;
    assert_eq!(shown.body["circuit"]["state"], "open", "{:?}", shown.body);
    let waiting = create_task(
        &app,
        &t,
        json!({ "title": "waits", "required_capabilities": ["lint"] }),
    )
    .await;
    assert_eq!(waiting["status"], "queued");
    assert!(
        waiting["waiting_reason"]
            .as_str()
            .unwrap()
            .contains("closed circuit"),
        "{waiting}"
    );
    // After the cool-down: half-open, one trial task (though it has three slots).
    let trial = task_until(
        &app,
        &t,
        waiting["id"].as_str().unwrap(),
        || heartbeat(&app, &a, &key),
        |v| v["status"] == "assigned",
    )
    .await;
    let second = create_task(
        &app,
        &t,
        json!({ "title": "second", "required_capabilities": ["lint"] }),
    )
    .await;
    assert_eq!(second["status"], "queued", "one trial at a time: {second}");
    let shown = call(
        &app,
        "GET",
        &format!("/api/v1/agents/{a}"),
        Some(&t.key),
        None,
    )
    .await;
    assert_eq!(shown.body["circuit"]["state"], "half_open");
    // The trial succeeds: closed, and the next task goes through.
    let trial_id = trial["id"].as_str().unwrap();
    assert_eq!(
        act(&app, &key, trial_id, "accept", json!({})).await.status,
        200
    );
    let r = act(
        &app,
        &key,
        trial["id"].as_str().unwrap(),
        "complete",
        json!({}),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    wait_status(&app, &t, second["id"].as_str().unwrap(), "assigned").await;
    let shown = call(
        &app,
        "GET",
        &format!("/api/v1/agents/{a}"),
        Some(&t.key),
        None,
    )
    .await;
    assert_eq!(shown.body["circuit"]["state"], "closed");
    assert_eq!(shown.body["circuit"]["consecutive_failures"], 0);
}

async fn strategies_choose_from_a_crafted_fleet(shape: Shape) {
    let env = fast_env(shape).await;
    let app = env.spawn_app().await;
    app.wait_ready().await;
    let t = register(&app, "acme").await;
    let fleet = [
        json!({ "name": "expert", "capabilities": [{ "name": "review", "proficiency": 0.95 }], "cost": { "per_task_usd": 1.0 }, "max_concurrent_tasks": 8 }),
        json!({ "name": "cheap", "capabilities": [{ "name": "review", "proficiency": 0.3 }], "cost": { "per_task_usd": 0.01 }, "max_concurrent_tasks": 8 }),
        json!({ "name": "middle", "capabilities": [{ "name": "review", "proficiency": 0.6 }], "cost": { "per_task_usd": 0.2 }, "max_concurrent_tasks": 8, "tags": ["gpu"] }),
    ];
    let mut ids = HashMap::new();
    for body in fleet {
        let name = body["name"].as_str().unwrap().to_string();
        let (id, key) = enroll(&app, &t, body).await;
        heartbeat(&app, &id, &key).await;
        ids.insert(id, name);
    }
    let chosen = |task: Value| ids[task["agent_id"].as_str().unwrap()].clone();
    let pick = |strategy: &str, extra: Value| {
        let mut body =
            json!({ "title": strategy, "strategy": strategy, "required_capabilities": ["review"] });
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        create_task(&app, &t, body)
    };
    assert_eq!(chosen(pick("capability_match", json!({})).await), "expert");
    assert_eq!(chosen(pick("cost", json!({})).await), "cheap");
    let capped = pick("capability_match", json!({ "max_cost_usd": 0.5 })).await;
    assert_eq!(
        chosen(capped.clone()),
        "middle",
        "the expert costs too much: {capped}"
    );
    assert_eq!(capped["decision"]["strategy"], "capability_match");
    // Now expert 1 task, cheap 1, middle 1 of 8 each: least_loaded sees a tie broken by
    // who was assigned least recently (expert).
    assert_eq!(chosen(pick("least_loaded", json!({})).await), "expert");
    // expert 2, cheap 1, middle 1: the least loaded is cheap or middle.
    let ll = chosen(pick("least_loaded", json!({})).await);
    assert!(ll == "cheap" || ll == "middle", "{ll}");
    // round_robin rotates over all three, in the order of their ids.
    let mut by_id: Vec<(&String, &String)> = ids.iter().collect();
    by_id.sort();
    let rotation: Vec<String> = by_id.iter().map(|(_, name)| (*name).clone()).collect();
    let mut review = Vec::new();
    for _ in 0..3 {
        review.push(chosen(
            pick("round_robin", json!({ "max_cost_usd": 5 })).await,
        ));
    }
    let at = rotation.iter().position(|n| *n == review[0]).unwrap();
    let expected: Vec<String> = (0..3).map(|i| rotation[(at + i) % 3].clone()).collect();
    assert_eq!(review, expected, "the rotation by id: {rotation:?}");
    // Another capability set (none required) has a rotation of its own: it begins at
    // the first agent by id, whatever the review rotation did.
    let any = create_task(
        &app,
        &t,
        json!({ "title": "any", "strategy": "round_robin" }),
    )
    .await;
    assert_eq!(chosen(any), rotation[0]);
    // And the review rotation goes on where it stood.
    assert_eq!(
        chosen(pick("round_robin", json!({ "max_cost_usd": 5 })).await),
        review[0]
    );
    let auto = pick("auto", json!({})).await;
    let scores = auto["decision"]["candidates"].as_array().unwrap();
    assert_eq!(scores.len(), 3, "{auto}");
    assert!(scores[0]["score"].as_f64() >= scores[1]["score"].as_f64());
    // A pinned task goes to its agent only.
    let middle = ids.iter().find(|(_, n)| *n == "middle").unwrap().0.clone();
    assert_eq!(
        chosen(pick("cost", json!({ "agent_id": middle })).await),
        "middle"
    );
}

async fn agent_keys_act_only_on_their_own_tasks(shape: Shape) {
    let env = fast_env(shape).await;
    let app = env.spawn_app().await;
    app.wait_ready().await;
    let t = register(&app, "acme").await;
    let (a, a_key) = enroll(
        &app,
        &t,
        json!({ "name": "a", "capabilities": [{ "name": "x" }], "max_concurrent_tasks": 2 }),
    )
    .await;
    let (b, b_key) = enroll(
        &app,
        &t,
        json!({ "name": "b", "capabilities": [{ "name": "y" }] }),
    )
    .await;
    heartbeat(&app, &a, &a_key).await;
    heartbeat(&app, &b, &b_key).await;
    let created = create_task(
        &app,
        &t,
        json!({ "title": "for a", "required_capabilities": ["x"] }),
    )
    .await;
    let id = created["id"].as_str().unwrap();
    assert_eq!(created["agent_id"], a.as_str());
    // B's key cannot see it, claim it, or finish it.
    let r = call(
        &app,
        "GET",
        &format!("/api/v1/tasks/{id}"),
        Some(&b_key),
        None,
    )
    .await;
    assert_eq!(r.status, 404);
    for action in ["accept", "complete", "fail", "reject"] {
        let r = act(&app, &b_key, id, action, json!({ "error": "x" })).await;
        assert!(r.status == 404 || r.status == 400, "{action}: {:?}", r.body);
    }
    // B's key manages no agent and heartbeats only for itself.
    let r = call(
        &app,
        "POST",
        &format!("/api/v1/agents/{a}/suspend"),
        Some(&b_key),
        None,
    )
    .await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    let r = call(
        &app,
        "POST",
        &format!("/api/v1/agents/{a}/heartbeat"),
        Some(&b_key),
        None,
    )
    .await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    let r = call(&app, "GET", "/api/v1/tasks", Some(&b_key), None).await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 0, "{:?}", r.body);
    // Contexts: A's key reaches the one its task names, and its own, not others.
    let shared = call(
        &app,
        "POST",
        "/api/v1/contexts",
        Some(&t.key),
        Some(&json!({ "name": "for a" })),
    )
    .await;
    let private = call(
        &app,
        "POST",
        "/api/v1/contexts",
        Some(&t.key),
        Some(&json!({ "name": "not for agents" })),
    )
    .await;
    let (shared, private) = (
        shared.body["id"].as_str().unwrap(),
        private.body["id"].as_str().unwrap(),
    );
    let with_context = create_task(
        &app,
        &t,
        json!({ "title": "uses a context", "required_capabilities": ["x"], "context_id": shared }),
    )
    .await;
    assert_eq!(with_context["agent_id"], a.as_str(), "{with_context}");
    let r = call(
        &app,
        "GET",
        &format!("/api/v1/contexts/{shared}"),
        Some(&a_key),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let item = json!({ "items": [{ "role": "assistant", "content": "on it" }] });
    let r = call(
        &app,
        "POST",
        &format!("/api/v1/contexts/{shared}/items"),
        Some(&a_key),
        Some(&item),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    for key in [&a_key, &b_key] {
        let r = call(
            &app,
            "GET",
            &format!("/api/v1/contexts/{private}"),
            Some(key),
            None,
        )
        .await;
        assert_eq!(r.status, 404, "{:?}", r.body);
    }
    let r = call(
        &app,
        "GET",
        &format!("/api/v1/contexts/{shared}"),
        Some(&b_key),
        None,
    )
    .await;
    assert_eq!(r.status, 404);
    let own = call(
        &app,
        "POST",
        "/api/v1/contexts",
        Some(&b_key),
        Some(&json!({ "name": "b's notes" })),
    )
    .await;
    assert_eq!(own.body["agent_id"], b.as_str());
    let listed = call(&app, "GET", "/api/v1/contexts", Some(&a_key), None).await;
    let names: Vec<&str> = listed.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["for a"], "{:?}", listed.body);
    // A person's key works on no task.
    let r = act(&app, &t.key, id, "accept", json!({})).await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    // The task is as it was; A can take it.
    assert_eq!(task(&app, &t, id).await["status"], "assigned");
    assert_eq!(act(&app, &a_key, id, "accept", json!({})).await.status, 200);
    // Another tenant sees none of it.
    let other = register(&app, "other").await;
    let r = call(
        &app,
        "GET",
        &format!("/api/v1/tasks/{id}"),
        Some(&other.key),
        None,
    )
    .await;
    assert_eq!(r.status, 404);
    let r = call(
        &app,
        "GET",
        &format!("/api/v1/agents/{a}"),
        Some(&other.key),
        None,
    )
    .await;
    assert_eq!(r.status, 404);
    // A key bound to an agent of another tenant cannot be made.
    let r = call(
        &app,
        "POST",
        "/api/v1/api-keys",
        Some(&other.key),
        Some(&json!({ "name": "k", "key_type": "agent", "agent_id": a })),
    )
    .await;
    assert_eq!(r.status, 422, "{:?}", r.body);
}

async fn two_nodes_assign_concurrently_without_double_assignment(shape: Shape) {
    let mut env = fast_env(shape).await;
    env.config.agents.heartbeat_interval = devmesh::config::Duration::from_secs(60);
    let one = env.spawn_app().await;
    let two = env.spawn_other_node("two").await;
    one.wait_ready().await;
    two.wait_ready().await;
    let t = register(&one, "acme").await;
    let mut agents = Vec::new();
    for i in 0..10 {
        let (id, key) = enroll(&one, &t, json!({ "name": format!("agent {i}"), "capabilities": [{ "name": "work" }], "max_concurrent_tasks": 2 })).await;
        heartbeat(&two, &id, &key).await;
        agents.push((id, key));
    }
    let creates = (0..200).map(|i| {
        let node = if i % 2 == 0 { &one } else { &two };
        let t = t.clone();
        async move {
            let r = call(
                node,
                "POST",
                "/api/v1/tasks",
                Some(&t.key),
                Some(&json!({ "title": format!("task {i}"), "required_capabilities": ["work"] })),
            )
            .await;
            assert_eq!(r.status, 201, "{:?}", r.body);
        }
    });
    futures_util::future::join_all(creates).await;
    // 10 agents × 2 slots: once the rounds settle, exactly 20 assigned, two per agent,
    // each assigned once (at most 200 rows: one page).
    let assigned_now = || async {
        let r = call(
            &one,
            "GET",
            "/api/v1/tasks?status=assigned&limit=200",
            Some(&t.key),
            None,
        )
        .await;
        r.body["items"].as_array().unwrap().clone()
    };
    let settled = wait_until(Duration::from_secs(20), || async {
        assigned_now().await.len() >= 20
    })
    .await;
    assert!(settled.is_ok(), "{} assigned", assigned_now().await.len());
    let assigned = assigned_now().await;
    assert_eq!(assigned.len(), 20);
    let mut per_agent: HashMap<String, usize> = HashMap::new();
    for task in &assigned {
        *per_agent
            .entry(task["agent_id"].as_str().unwrap().to_string())
            .or_default() += 1;
        let events = call(
            &one,
            "GET",
            &format!("/api/v1/tasks/{}/events", task["id"].as_str().unwrap()),
            Some(&t.key),
            None,
        )
        .await;
        let assignments = events
            .body
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["to"] == "assigned")
            .count();
        assert_eq!(assignments, 1, "{:?}", events.body);
    }
    assert_eq!(per_agent.len(), 10);
    assert!(per_agent.values().all(|n| *n == 2), "{per_agent:?}");
    for (id, _) in &agents {
        let r = call(
            &two,
            "GET",
            &format!("/api/v1/agents/{id}"),
            Some(&t.key),
            None,
        )
        .await;
        assert_eq!(r.body["load"], 2);
    }
    // Every agent finishes what it has, on either node, and takes more: all 200 done,
    // none twice.
    let workers = agents.iter().enumerate().map(|(i, (id, key))| {
        let node = if i % 2 == 0 { &one } else { &two };
        async move {
            let mut done = 0;
            loop {
                let next = call(
                    node,
                    "GET",
                    &format!("/api/v1/agents/{id}/tasks/next?wait=2s"),
                    Some(key),
                    None,
                )
                .await;
                if next.status == 204 {
                    return done;
                }
                let task = next.body["id"].as_str().unwrap().to_string();
                let accepted = act(node, key, &task, "accept", json!({})).await;
                assert_eq!(accepted.status, 200, "{:?}", accepted.body);
                let r = act(
                    node,
                    key,
                    &task,
                    "complete",
                    json!({ "output": { "by": id } }),
                )
                .await;
                assert_eq!(r.status, 200, "{:?}", r.body);
                done += 1;
            }
        }
    });
    let done: usize = futures_util::future::join_all(workers)
        .await
        .into_iter()
        .sum();
    assert_eq!(done, 200);
    let r = call(
        &one,
        "GET",
        "/api/v1/tasks?status=completed&limit=200",
        Some(&t.key),
        None,
    )
    .await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 200);
}

/// `devmesh tasks|agents ...` as the real binary, against the running API with a key.
async fn devmesh_cli(app: &TestApp, key: &str, args: &[&str]) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_devmesh"))
        .current_dir(dir.path())
        .env_clear()
        .env("DEVMESH_LOG__LEVEL", "warn")
        .env("DEVMESH_URL", app.api_url(""))
        .env("DEVMESH_API_KEY", key)
        .args(args)
        .output()
        .await
        .expect("devmesh runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn the_command_line_lists_shows_and_cancels(shape: Shape) {
    let env = fast_env(shape).await;
    let app = env.spawn_app().await;
    app.wait_ready().await;
    let t = register(&app, "acme").await;
    let (agent, key) = enroll(
        &app,
        &t,
        json!({ "name": "deployer", "capabilities": [{ "name": "k8s_deploy" }] }),
    )
    .await;
    heartbeat(&app, &agent, &key).await;
    let assigned = create_task(
        &app,
        &t,
        json!({ "title": "roll out v2", "required_capabilities": ["k8s_deploy"] }),
    )
    .await;
    let waiting = create_task(
        &app,
        &t,
        json!({ "title": "scan it", "required_capabilities": ["security_scan"] }),
    )
    .await;
    let (ok, out, err) = devmesh_cli(&app, &t.key, &["tasks", "list"]).await;
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("STATUS"),
        "{out}"
    );
    let line = lines
        .iter()
        .find(|l| l.contains(assigned["id"].as_str().unwrap()))
        .expect("the task is listed");
    assert!(
        line.contains("assigned") && line.contains(&agent) && line.contains("roll out v2"),
        "{line}"
    );
    let (ok, out, _) = devmesh_cli(
        &app,
        &t.key,
        &["tasks", "list", "--status", "queued", "--json"],
    )
    .await;
    assert!(ok);
    let page: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(page["items"][0]["id"], waiting["id"]);
    let id = waiting["id"].as_str().unwrap();
    let (ok, out, _) = devmesh_cli(&app, &t.key, &["tasks", "show", id]).await;
    assert!(ok);
    assert!(
        out.contains("no active agent online has capabilities [security_scan]"),
        "{out}"
    );
    assert!(out.contains("- -> queued"), "{out}");
    let (ok, out, err) = devmesh_cli(
        &app,
        &t.key,
        &["tasks", "cancel", id, "--reason", "not needed"],
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("cancelled"), "{out}");
    assert_eq!(task(&app, &t, id).await["status"], "cancelled");
    // Cancelling again: the API's refusal, and a failing exit.
    let (ok, _, err) = devmesh_cli(&app, &t.key, &["tasks", "cancel", id]).await;
    assert!(!ok);
    assert!(
        err.contains("409") && err.contains("already cancelled"),
        "{err}"
    );
    let (ok, out, _) = devmesh_cli(&app, &t.key, &["agents", "list"]).await;
    assert!(ok);
    let line = out
        .lines()
        .find(|l| l.contains(&agent))
        .expect("the agent is listed");
    assert!(
        line.contains("deployer")
            && line.contains("online")
            && line.contains("1/1")
            && line.contains("k8s_deploy"),
        "{line}"
    );
    let (ok, out, _) = devmesh_cli(&app, &t.key, &["agents", "show", &agent]).await;
    assert!(ok);
    assert!(out.contains("circuit") && out.contains("closed"), "{out}");
    // Another tenant's key sees none of it.
    let other = register(&app, "other").await;
    let (ok, _, err) = devmesh_cli(&app, &other.key, &["agents", "show", &agent]).await;
    assert!(!ok);
    assert!(err.contains("404"), "{err}");
    let (ok, _, err) = devmesh_cli(&app, "dmk_wrong", &["tasks", "list"]).await;
    assert!(!ok && err.contains("401"), "{err}");
}

async fn a_python_sdk_agent_on_a_session_stream(shape: Shape) {
    let env = fast_env(shape).await;
    let app = env.spawn_app().await;
    app.wait_ready().await;
    let t = register(&app, "acme").await;
    let (agent, key) = enroll(
        &app,
        &t,
        json!({ "name": "python scanner", "capabilities": [{ "name": "security_scan" }], "cost": { "per_1k_tokens_usd": 0.01 } }),
    )
    .await;
    let url = app.mcp_url("/mcp");
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("subscribed");
    let ready_arg = ready.to_string_lossy().into_owned();
    let args = ["agent", url.as_str(), agent.as_str(), ready_arg.as_str()];
    let sdk = crate::mcp_interop::run_sdk_with(&args, &key);
    let driver = async {
        // Subscribed to its inbox (a task assigned before that would go unheard).
        wait_until(Duration::from_secs(30), || async { ready.exists() })
            .await
            .expect("the Python agent subscribes to its inbox");
        // Online through the session's GET stream alone (it sends no heartbeat).
        wait_until(Duration::from_secs(30), || async {
            let r = call(
                &app,
                "GET",
                &format!("/api/v1/agents/{agent}"),
                Some(&t.key),
                None,
            )
            .await;
            r.body["presence"]["online"] == true
        })
        .await
        .expect("the Python agent comes online");
        create_task(
            &app,
            &t,
            json!({ "title": "scan the repo", "type": "security_scan", "input": { "repo": "acme/api" },
                    "required_capabilities": ["security_scan"] }),
        )
        .await
    };
    let (seen, created) = tokio::join!(sdk, driver);
    let id = created["id"].as_str().unwrap();
    assert!(
        seen["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "devmesh_task_complete"),
        "{seen}"
    );
    assert_eq!(seen["inbox"]["tasks"][0]["id"], id, "{seen}");
    assert_eq!(seen["taken"]["id"], id);
    assert_eq!(seen["taken"]["input"]["repo"], "acme/api");
    assert_eq!(seen["progress"]["percent"], 40.0);
    assert_eq!(seen["done"]["status"], "completed");
    let finished = task(&app, &t, id).await;
    assert_eq!(finished["output"]["by"], "python");
    let shown = call(
        &app,
        "GET",
        &format!("/api/v1/agents/{agent}"),
        Some(&t.key),
        None,
    )
    .await;
    let cost = shown.body["statistics"]["cost_usd"].as_f64().unwrap();
    assert!(
        (cost - 0.012).abs() < 1e-9,
        "1200 tokens at $0.01 per 1k: {cost}"
    );
}

async fn a_node_killed_under_a_connected_agent(shape: Shape) {
    let mut env = fast_env(shape).await;
    env.config.agents.heartbeat_interval = devmesh::config::Duration::from_secs(1);
    let survivor = env.spawn_app().await;
    survivor.wait_ready().await;
    // The other node is the real binary, on the same database and bus, killed with -9.
    let dir = tempfile::tempdir().unwrap();
    let config = &env.config;
    let vars = vec![
        (
            "DEVMESH_DATABASE__URL",
            config.database.url.as_ref().unwrap().expose().to_string(),
        ),
        (
            "DEVMESH_REDIS__URL",
            config.redis.url.as_ref().unwrap().expose().to_string(),
        ),
        ("DEVMESH_REDIS__KEY_PREFIX", config.redis.key_prefix.clone()),
        ("DEVMESH_AGENTS__HEARTBEAT_INTERVAL", "1s".to_string()),
        ("DEVMESH_AGENTS__SWEEP_INTERVAL", "200ms".to_string()),
    ];
    let mut doomed = crate::process::start(dir.path(), &vars);
    let t = register(&survivor, "acme").await;
    let (agent, key) = enroll(
        &survivor,
        &t,
        json!({ "name": "deployer", "capabilities": [{ "name": "k8s_deploy" }] }),
    )
    .await;
    let inbox = format!("devmesh://agents/{agent}/tasks");
    let mut ws = ws_client::try_connect(&format!("ws://{}/ws", doomed.mcp), Some(&key))
        .await
        .unwrap_or_else(|_| panic!("the agent connects to the doomed node"));
    ws.initialize().await;
    ws.call(1, "resources/subscribe", json!({ "uri": inbox }))
        .await;
    wait_until(Duration::from_secs(10), || async {
        let r = call(
            &survivor,
            "GET",
            &format!("/api/v1/agents/{agent}"),
            Some(&t.key),
            None,
        )
        .await;
        r.body["presence"]["online"] == true
    })
    .await
    .expect("online through the doomed node");
    // Created on the survivor, delivered through the doomed node's connection.
    let created = create_task(
        &survivor,
        &t,
        json!({ "title": "deploy v3", "required_capabilities": ["k8s_deploy"], "timeout": "1m" }),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_string();
    updated(&mut ws, &inbox).await;
    let next = ws
        .call(
            2,
            "tools/call",
            json!({ "name": "devmesh_task_next", "arguments": {} }),
        )
        .await;
    assert_eq!(structured(&next)["task"]["id"], id.as_str());
    doomed.child.kill().unwrap();
    doomed.child.wait().unwrap();
    // The agent reconnects to the survivor and finishes its running task there.
    let mut ws = ws_client::connect(&survivor, &key).await;
    ws.initialize().await;
    ws.call(1, "resources/subscribe", json!({ "uri": inbox }))
        .await;
    let done = ws
        .call(2, "tools/call", json!({ "name": "devmesh_task_complete", "arguments": { "id": id, "output": { "rolled_out": true } } }))
        .await;
    assert_eq!(structured(&done)["status"], "completed");
    // It carries on: the next task reaches it on the survivor.
    let second = create_task(
        &survivor,
        &t,
        json!({ "title": "deploy v4", "required_capabilities": ["k8s_deploy"] }),
    )
    .await;
    updated(&mut ws, &inbox).await;
    let next = ws
        .call(
            3,
            "tools/call",
            json!({ "name": "devmesh_task_next", "arguments": {} }),
        )
        .await;
    assert_eq!(structured(&next)["task"]["id"], second["id"]);
    // Completed once: one completion event, and a second completion is refused.
    let events = call(
        &survivor,
        "GET",
        &format!("/api/v1/tasks/{id}/events"),
        Some(&t.key),
        None,
    )
    .await;
    let completions = events
        .body
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["to"] == "completed")
        .count();
    assert_eq!(completions, 1, "{:?}", events.body);
    let again = act(&survivor, &key, &id, "complete", json!({})).await;
    assert_eq!(again.status, 409);
    assert_eq!(task(&survivor, &t, &id).await["output"]["rolled_out"], true);
}

/// A 2026-07-28 request declaring the MCP tasks extension.
async fn with_tasks(app: &TestApp, key: &str, method: &str, mut params: Value) -> Value {
    params["_meta"] = json!({
        "io.modelcontextprotocol/clientCapabilities": { "extensions": { "io.modelcontextprotocol/tasks": {} } }
    });
    crate::mcp_client::McpClient::new(app, Some(key))
        .modern(method, params)
        .await
        .result()
        .clone()
}

async fn an_mcp_task_follows_the_devmesh_task(shape: Shape) {
    let env = fast_env(shape).await;
    let app = env.spawn_app().await;
    app.wait_ready().await;
    let t = register(&app, "acme").await;
    let (agent, key) = enroll(
        &app,
        &t,
        json!({ "name": "reviewer", "capabilities": [{ "name": "code_review" }] }),
    )
    .await;
    heartbeat(&app, &agent, &key).await;
    // The IDE's call answers at once with an MCP task.
    let created = with_tasks(
        &app,
        &t.key,
        "tools/call",
        json!({ "name": "devmesh_task_create", "arguments": { "title": "review PR 7", "required_capabilities": ["code_review"] } }),
    )
    .await;
    assert_eq!(created["resultType"], "task", "{created}");
    let mcp_task = created["taskId"].as_str().unwrap().to_string();
    let devmesh_task = loop {
        let list = call(
            &app,
            "GET",
            "/api/v1/tasks?status=assigned",
            Some(&t.key),
            None,
        )
        .await;
        if let Some(task) = list.body["items"].as_array().unwrap().first() {
            break task["id"].as_str().unwrap().to_string();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let working = with_tasks(&app, &t.key, "tasks/get", json!({ "taskId": mcp_task })).await;
    assert_eq!(working["status"], "working", "{working}");
    // The agent does the work; the MCP task ends with the devmesh task's result.
    assert_eq!(
        act(&app, &key, &devmesh_task, "accept", json!({}))
            .await
            .status,
        200
    );
    let r = act(
        &app,
        &key,
        &devmesh_task,
        "complete",
        json!({ "output": { "approved": true } }),
    )
    .await;
    assert_eq!(r.status, 200);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let done = loop {
        let got = with_tasks(&app, &t.key, "tasks/get", json!({ "taskId": mcp_task })).await;
        if got["status"] == "completed" {
            break got;
        }
        assert!(tokio::time::Instant::now() < deadline, "{got}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(done["result"]["isError"], false, "{done}");
    assert_eq!(
        done["result"]["structuredContent"]["id"],
        devmesh_task.as_str()
    );
    assert_eq!(
        done["result"]["structuredContent"]["output"]["approved"],
        true
    );
    // Cancelling the MCP task cancels the devmesh task.
    let second = with_tasks(
        &app,
        &t.key,
        "tools/call",
        json!({ "name": "devmesh_task_create", "arguments": { "title": "never mind", "required_capabilities": ["nobody_has_it"] } }),
    )
    .await;
    let second_task = second["taskId"].as_str().unwrap().to_string();
    let queued = loop {
        let list = call(
            &app,
            "GET",
            "/api/v1/tasks?status=queued",
            Some(&t.key),
            None,
        )
        .await;
        if let Some(task) = list.body["items"].as_array().unwrap().first() {
            break task["id"].as_str().unwrap().to_string();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    with_tasks(
        &app,
        &t.key,
        "tasks/cancel",
        json!({ "taskId": second_task }),
    )
    .await;
    wait_status(&app, &t, &queued, "cancelled").await;
    // A client without the extension gets the task at once, inline.
    let inline = crate::mcp_client::McpClient::new(&app, Some(&t.key))
        .call_tool("devmesh_task_create", json!({ "title": "inline" }))
        .await;
    assert_eq!(inline["structuredContent"]["title"], "inline", "{inline}");
    assert!(inline.get("taskId").is_none(), "{inline}");
}

async fn a_listen_stream_keeps_an_agent_online_and_tells_it_of_work(shape: Shape) {
    let mut env = fast_env(shape).await;
    // A stream's end is noticed when the next keepalive cannot be written.
    env.config.mcp.sse_keepalive = devmesh::config::Duration::from_millis(300);
    let app = env.spawn_app().await;
    app.wait_ready().await;
    let t = register(&app, "acme").await;
    let (agent, key) = enroll(
        &app,
        &t,
        json!({ "name": "listener", "capabilities": [{ "name": "docs" }] }),
    )
    .await;
    let inbox = format!("devmesh://agents/{agent}/tasks");
    let client = crate::mcp_client::McpClient::new(&app, Some(&key));
    // A stream hears only of what its caller may read: another agent's inbox, or a
    // resource that does not exist, is refused as reading it is, and no stream opens.
    let (other, other_key) = enroll(
        &app,
        &t,
        json!({ "name": "other", "capabilities": [{ "name": "docs" }] }),
    )
    .await;
    let others = format!("devmesh://agents/{other}/tasks");
    for uri in [others.clone(), "devmesh://tasks/no-such-task".to_string()] {
        let refused = client
            .modern(
                "subscriptions/listen",
                json!({ "notifications": { "resourceSubscriptions": [inbox, uri] } }),
            )
            .await;
        let error = &refused.message["error"];
        assert!(error.is_object(), "{uri}: {}", refused.message);
        assert!(refused.before.is_empty(), "no acknowledgement: {refused:?}");
        let read = client.modern("resources/read", json!({ "uri": uri })).await;
        assert_eq!(error["code"], read.message["error"]["code"], "{uri}");
    }
    // The same over a WebSocket.
    let mut ws = ws_client::connect(&app, &key).await;
    ws.send_text(&ws_client::modern(
        1,
        "subscriptions/listen",
        json!({ "notifications": { "resourceSubscriptions": [others] } }),
    ))
    .await;
    let (refused, before) = ws.answer(1).await;
    assert!(
        refused.message()["error"].is_object(),
        "{:?}",
        refused.message()
    );
    assert!(before.is_empty(), "no acknowledgement: {before:?}");
    drop(ws);
    // Its own agent's key may follow it.
    let theirs = crate::mcp_client::McpClient::new(&app, Some(&other_key))
        .modern("resources/read", json!({ "uri": others }))
        .await;
    assert!(theirs.message["error"].is_null(), "{}", theirs.message);
    let request = crate::mcp_client::modern_request(
        9,
        "subscriptions/listen",
        json!({ "notifications": { "resourceSubscriptions": [inbox] } }),
    );
    let mut listen = crate::mcp_client::Events::new(client.send_modern(&request).await);
    let (_, ack) = listen
        .next(Duration::from_secs(10))
        .await
        .expect("an acknowledgement");
    assert_eq!(ack["method"], "notifications/subscriptions/acknowledged");
    // No heartbeat: the open stream alone keeps it online, past two intervals.
    wait_until(Duration::from_secs(10), || async {
        let r = call(
            &app,
            "GET",
            &format!("/api/v1/agents/{agent}"),
            Some(&t.key),
            None,
        )
        .await;
        r.body["presence"]["online"] == true
    })
    .await
    .expect("online while the listen stream is open");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let created = create_task(
        &app,
        &t,
        json!({ "title": "write the runbook", "required_capabilities": ["docs"] }),
    )
    .await;
    assert_eq!(
        created["agent_id"],
        agent.as_str(),
        "still online: {created}"
    );
    let notice = loop {
        let (_, m) = listen
            .next(Duration::from_secs(10))
            .await
            .expect("the inbox notice");
        if m["method"] == "notifications/resources/updated" {
            break m;
        }
    };
    assert_eq!(notice["params"]["uri"], inbox.as_str());
    drop(listen);
    wait_until(Duration::from_secs(10), || async {
        let r = call(
            &app,
            "GET",
            &format!("/api/v1/agents/{agent}"),
            Some(&t.key),
            None,
        )
        .await;
        r.body["presence"]["online"] == false
    })
    .await
    .expect("offline once the stream is closed");
}

async fn keys_reach_only_their_own_and_edges_of_the_lifecycle(shape: Shape) {
    let env = fast_env(shape).await;
    let app = env.spawn_app().await;
    app.wait_ready().await;
    let t = register(&app, "acme").await;
    let (a, a_key) = enroll(
        &app,
        &t,
        json!({ "name": "a", "capabilities": [{ "name": "x" }], "max_concurrent_tasks": 3 }),
    )
    .await;
    let (b, b_key) = enroll(
        &app,
        &t,
        json!({ "name": "b", "capabilities": [{ "name": "y" }] }),
    )
    .await;
    heartbeat(&app, &a, &a_key).await;
    let secret = create_task(
        &app,
        &t,
        json!({ "title": "admin's", "input": { "token": "s3cret" }, "idempotency_key": "k1" }),
    )
    .await;
    let secret_id = secret["id"].as_str().unwrap();
    // An agent-type key bound to no agent sees only what it created.
    let (_, loose) =
        crate::rest::new_key(&app, &t, json!({ "name": "loose", "key_type": "agent" })).await;
    let r = call(&app, "GET", "/api/v1/tasks", Some(&loose), None).await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 0, "{:?}", r.body);
    let r = call(
        &app,
        "GET",
        &format!("/api/v1/tasks/{secret_id}"),
        Some(&loose),
        None,
    )
    .await;
    assert_eq!(r.status, 404);
    // Idempotency keys are each creator's own: the same key and body from another key is
    // another task, and says nothing of the first.
    let body =
        json!({ "title": "admin's", "input": { "token": "s3cret" }, "idempotency_key": "k1" });
    let r = call(&app, "POST", "/api/v1/tasks", Some(&b_key), Some(&body)).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_ne!(r.body["id"], secret["id"]);
    // A repeat is known by what it means: explicit defaults are the same request.
    let explicit = json!({ "title": "admin's", "input": { "token": "s3cret" }, "idempotency_key": "k1",
                           "priority": "normal", "strategy": "auto", "timeout": "1h", "assign_timeout": 60 });
    let r = call(&app, "POST", "/api/v1/tasks", Some(&t.key), Some(&explicit)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["id"], secret["id"]);
    // A key subscribes only to what it may read.
    let mut ws = ws_client::connect(&app, &b_key).await;
    ws.initialize().await;
    for uri in [
        format!("devmesh://agents/{a}/tasks"),
        format!("devmesh://tasks/{secret_id}"),
        "file:///etc/passwd".to_string(),
    ] {
        let answer = ws
            .call(5, "resources/subscribe", json!({ "uri": uri }))
            .await;
        assert!(answer.get("error").is_some(), "{uri}: {answer}");
    }
    // Completing is for running tasks: accept first.
    let work = create_task(
        &app,
        &t,
        json!({ "title": "w", "required_capabilities": ["x"] }),
    )
    .await;
    let work_id = work["id"].as_str().unwrap();
    assert_eq!(work["agent_id"], a.as_str());
    let r = act(&app, &a_key, work_id, "complete", json!({})).await;
    assert_eq!(r.status, 409, "{:?}", r.body);
    assert!(
        r.message().contains("only when it is running"),
        "{}",
        r.message()
    );
    // Amounts stay finite.
    let r = call(
        &app,
        "POST",
        "/api/v1/agents",
        Some(&t.key),
        Some(&json!({ "name": "rich", "cost": { "per_task_usd": 1e308 } })),
    )
    .await;
    assert_eq!(r.status, 422, "{:?}", r.body);
    // A key bound to an agent holds no agents:write.
    let r = call(
        &app,
        "POST",
        &format!("/api/v1/agents/{b}/keys"),
        Some(&t.key),
        Some(&json!({ "name": "k", "scopes": ["agents:write"] })),
    )
    .await;
    assert_eq!(r.status, 422, "{:?}", r.body);
    // Pinning: not to a retired agent; an agent with work pinned to it is not deleted.
    let r = call(
        &app,
        "POST",
        "/api/v1/tasks",
        Some(&t.key),
        Some(&json!({ "title": "p", "agent_id": b })),
    )
    .await;
    assert_eq!(r.status, 201);
    let pinned = r.body["id"].as_str().unwrap().to_string();
    call(
        &app,
        "POST",
        &format!("/api/v1/agents/{b}/retire"),
        Some(&t.key),
        None,
    )
    .await;
    let r = call(
        &app,
        "POST",
        "/api/v1/tasks",
        Some(&t.key),
        Some(&json!({ "title": "p2", "agent_id": b })),
    )
    .await;
    assert_eq!(r.status, 422, "{:?}", r.body);
    let r = call(
        &app,
        "DELETE",
        &format!("/api/v1/agents/{b}"),
        Some(&t.key),
        None,
    )
    .await;
    assert_eq!(r.status, 409, "{:?}", r.body);
    assert!(r.message().contains("pinned"), "{}", r.message());
    call(
        &app,
        "POST",
        &format!("/api/v1/tasks/{pinned}/cancel"),
        Some(&t.key),
        None,
    )
    .await;
    // Deleted, its keys stop working at once.
    let r = call(
        &app,
        "DELETE",
        &format!("/api/v1/agents/{b}"),
        Some(&t.key),
        None,
    )
    .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let r = call(&app, "GET", "/api/v1/tasks", Some(&b_key), None).await;
    assert_eq!(r.status, 401, "{:?}", r.body);
}
