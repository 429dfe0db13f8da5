//! Contexts: atomic appends under concurrency, ETag/If-Match, token budgets, limits,
//! filters and pagination, the summary.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::helpers::{Shape, TestEnv};
use crate::rest::{call, call_with, register};

for_shapes!([concurrent_appends_lose_nothing, whole_context_writes_are_conditional, budgets_and_limits, lists_filter_and_paginate]
    on sqlite => Sqlite, redis => PostgresRedis);

async fn create(app: &crate::helpers::TestApp, key: &str, body: Value) -> Value {
    let r = call(app, "POST", "/api/v1/contexts", Some(key), Some(&body)).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(
        r.header("etag"),
        Some(format!("\"{}\"", r.body["version"]).as_str())
    );
    r.body
}

async fn concurrent_appends_lose_nothing(shape: Shape) {
    let env = TestEnv::new(shape).await;
    let app = env.spawn_app().await;
    app.wait_ready().await;
    let acme = register(&app, "acme").await;
    let ctx = create(
        &app,
        &acme.key,
        json!({ "name": "shared", "agent_id": "planner" }),
    )
    .await;
    let id = ctx["id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/contexts/{id}/items");

    // 8 agents append 10 times each, two items per append, all at once.
    let mut tasks = Vec::new();
    for agent in 0..8 {
        let (http, url, key) = (app.http.clone(), app.api_url(&path), acme.key.clone());
        tasks.push(tokio::spawn(async move {
            let mut runs = Vec::new();
            for n in 0..10 {
                let body = json!({ "items": [
                    { "role": "assistant", "content": format!("agent {agent} message {n} part 1"), "token_count": 3 },
                    { "role": "tool", "content": format!("agent {agent} message {n} part 2"), "token_count": 2 },
                ]});
                let r = http.post(&url).bearer_auth(&key).json(&body).send().await.unwrap();
                assert_eq!(r.status(), 201);
                let v: Value = r.json().await.unwrap();
                runs.push((v["items"][0]["seq"].as_i64().unwrap(), v["items"][1]["seq"].as_i64().unwrap()));
            }
            runs
        }));
    }
    let mut runs = Vec::new();
    for t in tasks {
        runs.extend(t.await.unwrap());
    }
    // Each append got two consecutive positions; together they cover 0..160 once.
    assert!(runs.iter().all(|(a, b)| b - a == 1));
    let all: BTreeSet<i64> = runs.iter().flat_map(|(a, b)| [*a, *b]).collect();
    assert_eq!(all, (0..160).collect());

    let r = call(
        &app,
        "GET",
        &format!("/api/v1/contexts/{id}"),
        Some(&acme.key),
        None,
    )
    .await;
    assert_eq!(r.body["item_count"], 160);
    assert_eq!(r.body["token_total"], 400);
    let items = r.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 160);
    // In order, and each part 2 right after its part 1.
    for pair in items.chunks(2) {
        let first = pair[0]["content"].as_str().unwrap();
        assert_eq!(
            pair[1]["content"].as_str().unwrap(),
            first.replace("part 1", "part 2")
        );
    }
    let summary = call(
        &app,
        "GET",
        &format!("/api/v1/contexts/{id}/summary"),
        Some(&acme.key),
        None,
    )
    .await;
    assert_eq!(summary.status, 200);
    assert_eq!(
        summary.body["by_role"]["assistant"],
        json!({ "items": 80, "tokens": 240 })
    );
    assert_eq!(
        summary.body["by_role"]["tool"],
        json!({ "items": 80, "tokens": 160 })
    );
    assert!(
        summary.body["first_activity"].as_str().unwrap()
            <= summary.body["last_activity"].as_str().unwrap()
    );
    let last = call(
        &app,
        "GET",
        &format!("/api/v1/contexts/{id}?last=2"),
        Some(&acme.key),
        None,
    )
    .await;
    let last_items = last.body["items"].as_array().unwrap();
    assert_eq!(last_items.len(), 2);
    assert_eq!(last_items[1]["seq"], 159);
}

async fn whole_context_writes_are_conditional(shape: Shape) {
    let env = TestEnv::new(shape).await;
    let app = env.spawn_app().await;
    app.wait_ready().await;
    let acme = register(&app, "acme").await;
    let ctx = create(
        &app,
        &acme.key,
        json!({ "name": "plan", "metadata": { "team": "infra" } }),
    )
    .await;
    let path = format!("/api/v1/contexts/{}", ctx["id"].as_str().unwrap());
    let got = call(&app, "GET", &path, Some(&acme.key), None).await;
    let etag = got.header("etag").unwrap().to_string();

    // Without If-Match: 428, nothing changes.
    let r = call(
        &app,
        "PATCH",
        &path,
        Some(&acme.key),
        Some(&json!({ "name": "x" })),
    )
    .await;
    assert_eq!(r.status, 428, "{:?}", r.body);
    // With the current ETag: applied, a new ETag.
    let r = call_with(
        &app,
        "PATCH",
        &path,
        Some(&acme.key),
        Some(&json!({ "name": "plan v2", "session_id": "s-1" })),
        &[("If-Match", &etag)],
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let etag2 = r.header("etag").unwrap().to_string();
    assert_ne!(etag2, etag);
    assert_eq!(
        r.body["metadata"],
        json!({ "team": "infra" }),
        "fields not named stay"
    );
    // A second writer still holding the first ETag: 412, and its change is not applied.
    let r = call_with(
        &app,
        "PATCH",
        &path,
        Some(&acme.key),
        Some(&json!({ "name": "stale write" })),
        &[("If-Match", &etag)],
    )
    .await;
    assert_eq!(r.status, 412);
    // An append moves the version on too.
    let r = call(
        &app,
        "POST",
        &format!("{path}/items"),
        Some(&acme.key),
        Some(&json!({ "items": [{ "role": "user", "content": "hi" }] })),
    )
    .await;
    assert_eq!(r.status, 201);
    let r = call_with(
        &app,
        "DELETE",
        &path,
        Some(&acme.key),
        None,
        &[("If-Match", &etag2)],
    )
    .await;
    assert_eq!(r.status, 412, "a delete based on an old version is refused");
    let now = call(&app, "GET", &path, Some(&acme.key), None).await;
    assert_eq!(now.body["name"], "plan v2");
    assert_eq!(now.body["session_id"], "s-1");
    // null clears an optional field.
    let r = call_with(
        &app,
        "PATCH",
        &path,
        Some(&acme.key),
        Some(&json!({ "session_id": null })),
        &[("If-Match", now.header("etag").unwrap())],
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.body["session_id"].is_null());
    // If-Match is `*` or a list of entity tags (RFC 9110): one of them current matches, an
    // empty list matches nothing, and what is not such a list is a 400 that says so.
    let current = r.header("etag").unwrap().to_string();
    let patch = json!({ "name": "plan v3" });
    for (if_match, status) in [
        ("", 412),
        ("\"other\", W/\"1\"", 412),
        ("3", 400),
        ("\"3", 400),
        ("\"1\" \"2\"", 400),
    ] {
        let r = call_with(
            &app,
            "PATCH",
            &path,
            Some(&acme.key),
            Some(&patch),
            &[("If-Match", if_match)],
        )
        .await;
        assert_eq!(r.status, status, "If-Match {if_match:?}: {:?}", r.body);
        if status == 400 {
            assert!(r.message().contains("entity tag"), "{}", r.message());
        }
    }
    let list = format!("\"1\", {current}");
    let r = call_with(
        &app,
        "PATCH",
        &path,
        Some(&acme.key),
        Some(&patch),
        &[("If-Match", &list)],
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["name"], "plan v3");
    let r = call_with(
        &app,
        "DELETE",
        &path,
        Some(&acme.key),
        None,
        &[("If-Match", r.header("etag").unwrap())],
    )
    .await;
    assert_eq!(r.status, 204);
    assert_eq!(
        call(&app, "GET", &path, Some(&acme.key), None).await.status,
        404
    );
}

async fn budgets_and_limits(shape: Shape) {
    let mut env = TestEnv::new(shape).await;
    env.config.contexts.max_items = 5;
    env.config.contexts.max_item_bytes = 100;
    let app = env.spawn_app().await;
    app.wait_ready().await;
    let acme = register(&app, "acme").await;
    let ctx = create(
        &app,
        &acme.key,
        json!({ "name": "budgeted", "token_budget": 10 }),
    )
    .await;
    let items = format!("/api/v1/contexts/{}/items", ctx["id"].as_str().unwrap());
    let item = |content: &str, tokens: u32| json!({ "role": "user", "content": content, "token_count": tokens });

    let r = call(
        &app,
        "POST",
        &items,
        Some(&acme.key),
        Some(&json!({ "items": [item("a", 4), item("b", 4)] })),
    )
    .await;
    assert_eq!(r.status, 201);
    // Over the budget, refused by default: 422, nothing written.
    let r = call(
        &app,
        "POST",
        &items,
        Some(&acme.key),
        Some(&json!({ "items": [item("c", 4)] })),
    )
    .await;
    assert_eq!(r.status, 422);
    assert!(r.message().contains("token budget"), "{}", r.message());
    // Dropping the oldest: "a" goes, "c" comes.
    let r = call(
        &app,
        "POST",
        &items,
        Some(&acme.key),
        Some(&json!({ "items": [item("c", 4)], "truncation": "drop_oldest" })),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["dropped_items"], 1);
    assert_eq!(r.body["context"]["token_total"], 8);
    let got = call(
        &app,
        "GET",
        &items.replace("/items", ""),
        Some(&acme.key),
        None,
    )
    .await;
    let contents: Vec<&str> = got.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["b", "c"]);
    // New items alone over the budget: no amount of dropping helps.
    let r = call(
        &app,
        "POST",
        &items,
        Some(&acme.key),
        Some(&json!({ "items": [item("d", 11)], "truncation": "drop_oldest" })),
    )
    .await;
    assert_eq!(r.status, 422);

    // Item size: 413 naming the item; item count: 422.
    let big = "x".repeat(101);
    let r = call(
        &app,
        "POST",
        &items,
        Some(&acme.key),
        Some(&json!({ "items": [item("ok", 0), item(&big, 0)] })),
    )
    .await;
    assert_eq!(r.status, 413);
    assert!(r.message().contains("items[1]"), "{}", r.message());
    let r = call(
        &app,
        "POST",
        &items,
        Some(&acme.key),
        Some(&json!({ "items": [item("1", 0), item("2", 0), item("3", 0), item("4", 0)] })),
    )
    .await;
    assert_eq!(r.status, 422);
    assert!(r.message().contains("limit is 5"), "{}", r.message());
    let after = call(
        &app,
        "GET",
        &items.replace("/items", ""),
        Some(&acme.key),
        None,
    )
    .await;
    assert_eq!(after.body["item_count"], 2, "refused appends wrote nothing");
    // Empty appends and bad roles are refused with the field named.
    let r = call(
        &app,
        "POST",
        &items,
        Some(&acme.key),
        Some(&json!({ "items": [] })),
    )
    .await;
    assert_eq!(r.status, 422);
    let r = call(
        &app,
        "POST",
        &items,
        Some(&acme.key),
        Some(&json!({ "items": [{ "role": "robot", "content": "x" }] })),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(r.message().contains("items[0].role"), "{}", r.message());
}

async fn lists_filter_and_paginate(shape: Shape) {
    let env = TestEnv::new(shape).await;
    let app = env.spawn_app().await;
    app.wait_ready().await;
    let acme = register(&app, "acme").await;
    let mut ids = Vec::new();
    for i in 0..7 {
        let agent = if i % 2 == 0 { "planner" } else { "coder" };
        let kind = if i < 5 { "conversation" } else { "task" };
        let c = create(
            &app,
            &acme.key,
            json!({ "name": format!("c{i}"), "agent_id": agent, "type": kind, "session_id": "s" }),
        )
        .await;
        ids.push(c["id"].as_str().unwrap().to_string());
    }
    // Pages of 3, newest first, covering everything once.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/contexts?limit=3&cursor={c}"),
            None => "/api/v1/contexts?limit=3".to_string(),
        };
        let r = call(&app, "GET", &path, Some(&acme.key), None).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        let page = r.body["items"].as_array().unwrap();
        assert!(
            page.iter().all(|c| c.get("items").is_none()),
            "lists leave items out"
        );
        seen.extend(page.iter().map(|c| c["id"].as_str().unwrap().to_string()));
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first);

    let count = |path: String| {
        let app = &app;
        let key = acme.key.clone();
        async move {
            call(app, "GET", &path, Some(&key), None).await.body["items"]
                .as_array()
                .unwrap()
                .len()
        }
    };
    assert_eq!(count("/api/v1/contexts?agent_id=planner".into()).await, 4);
    assert_eq!(count("/api/v1/contexts?type=task".into()).await, 2);
    assert_eq!(
        count("/api/v1/contexts?type=task&agent_id=coder".into()).await,
        1
    );
    let future = (chrono::Utc::now() + chrono::Duration::hours(1))
        .to_rfc3339()
        .replace('+', "%2B");
    assert_eq!(count(format!("/api/v1/contexts?since={future}")).await, 0);
    assert_eq!(count(format!("/api/v1/contexts?until={future}")).await, 7);

    // Bad query parameters name themselves.
    let r = call(
        &app,
        "GET",
        "/api/v1/contexts?agnet_id=x",
        Some(&acme.key),
        None,
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(r.message().contains("agnet_id"), "{}", r.message());
    let r = call(
        &app,
        "GET",
        "/api/v1/contexts?limit=0",
        Some(&acme.key),
        None,
    )
    .await;
    assert_eq!(r.status, 422);
    let r = call(
        &app,
        "GET",
        "/api/v1/contexts?cursor=garbage",
        Some(&acme.key),
        None,
    )
    .await;
    assert_eq!(r.status, 422);
    assert!(r.message().contains("cursor"));
}
