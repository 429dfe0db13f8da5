//! Rate limits: token buckets per key and per organization, with their headers, shared
//! across nodes through Redis.

use serde_json::json;

use crate::helpers::{Shape, TestApp, TestEnv};
use crate::rest::{Reply, call, new_key, register};

fn remaining(r: &Reply) -> u32 {
    r.header("ratelimit-remaining")
        .expect("RateLimit-Remaining")
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keys_bucket_is_shared_by_two_nodes_on_redis() {
    let env = TestEnv::new(Shape::PostgresRedis).await;
    let a = env.spawn_app().await;
    a.wait_ready().await;
    let b = TestApp::spawn(env.config.clone(), devmesh::jobs::Registry::new()).await;
    b.wait_ready().await;
    let acme = register(&a, "acme").await;
    let (_, key) = new_key(
        &a,
        &acme,
        json!({ "name": "limited", "key_type": "agent", "rate_limit": { "per_minute": 6, "burst": 5 } }),
    )
    .await;

    // Five requests, alternating nodes, drain one bucket.
    let mut seen = Vec::new();
    for i in 0..5 {
        let node = if i % 2 == 0 { &a } else { &b };
        let r = call(node, "GET", "/api/v1/contexts", Some(&key), None).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.header("ratelimit-limit"), Some("5"));
        assert_eq!(r.header("ratelimit-policy"), Some("6;w=60;burst=5"));
        seen.push(remaining(&r));
    }
    assert_eq!(seen, vec![4, 3, 2, 1, 0]);
    for node in [&b, &a] {
        let r = call(node, "GET", "/api/v1/contexts", Some(&key), None).await;
        assert_eq!(r.status, 429, "{:?}", r.body);
        assert_eq!(r.code(), "rate_limited");
        let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
        assert!(
            (1..=10).contains(&retry),
            "one request every 10 s: Retry-After {retry}"
        );
        assert_eq!(remaining(&r), 0);
        assert!(r.header("ratelimit-reset").is_some());
    }
    // The MCP endpoint answers the same refusal with devmesh's code, outside the bands
    // JSON-RPC and MCP reserve (docs/json-rpc-errors.md).
    let refused = crate::mcp_client::McpClient::new(&a, Some(&key))
        .modern("tools/list", serde_json::json!({}))
        .await;
    assert_eq!(refused.status, 429, "{}", refused.message);
    assert_eq!(refused.error_code(), -31029, "{}", refused.message);
    let data = &refused.message["error"]["data"];
    assert_eq!(data["reason"], "rate_limited");
    let retry_ms = data["retryAfterMs"].as_u64().expect("data.retryAfterMs");
    assert!((1000..=10_000).contains(&retry_ms), "{retry_ms}");
    // Over WebSocket (the upgrade is charged too), the same refusal in the same shape.
    let refused = crate::ws_client::try_connect(&crate::ws_client::ws_url(&a), Some(&key))
        .await
        .err()
        .expect("the upgrade is refused");
    assert_eq!(refused.status, 429);
    assert_eq!(refused.body["error"]["code"], -31029);
    assert_eq!(refused.body["error"]["data"]["reason"], "rate_limited");
    assert!(
        refused.body["error"]["data"]["retryAfterMs"]
            .as_u64()
            .is_some()
    );
    // Other keys of the organization have their own buckets.
    let r = call(&b, "GET", "/api/v1/contexts", Some(&acme.key), None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("ratelimit-limit"), Some("3000"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_organizations_bucket_holds_all_its_keys() {
    let mut env = TestEnv::new(Shape::Sqlite).await;
    env.config.rate_limits.organization.per_minute = 1;
    env.config.rate_limits.organization.burst = 4;
    let app = env.spawn_app().await;
    app.wait_ready().await;
    let acme = register(&app, "acme").await;
    let (_, other) = new_key(
        &app,
        &acme,
        json!({ "name": "second", "key_type": "agent" }),
    )
    .await;
    // 1 (new_key) + 3 more = 4 requests: the organization's bucket is empty.
    for key in [&other, &acme.key, &other] {
        assert_eq!(
            call(&app, "GET", "/api/v1/contexts", Some(key), None)
                .await
                .status,
            200
        );
    }
    let r = call(&app, "GET", "/api/v1/contexts", Some(&acme.key), None).await;
    assert_eq!(r.status, 429);
    assert_eq!(
        r.header("ratelimit-limit"),
        Some("4"),
        "the binding bucket is the organization's"
    );
    // Another organization is not affected.
    let globex = register(&app, "globex").await;
    assert_eq!(
        call(&app, "GET", "/api/v1/contexts", Some(&globex.key), None)
            .await
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_without_credentials_are_limited_per_address() {
    let mut env = TestEnv::new(Shape::Sqlite).await;
    env.config.rate_limits.anonymous.per_minute = 1;
    env.config.rate_limits.anonymous.burst = 3;
    let app = env.spawn_app().await;
    app.wait_ready().await;
    let acme = register(&app, "acme").await;
    let attempt = || crate::rest::login(&app, "acme", &acme.email, "not the password");
    assert_eq!(attempt().await.status, 401);
    let r = attempt().await;
    assert_eq!(r.status, 401);
    assert_eq!(remaining(&r), 0);
    let r = attempt().await;
    assert_eq!(r.status, 429, "{:?}", r.body);
    assert!(r.header("retry-after").is_some());
    // Authenticated requests are counted per key, not per address.
    assert_eq!(
        call(&app, "GET", "/api/v1/contexts", Some(&acme.key), None)
            .await
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_proxy_the_client_address_comes_from_its_header() {
    let mut env = TestEnv::new(Shape::Sqlite).await;
    env.config.rate_limits.anonymous.per_minute = 1;
    env.config.rate_limits.anonymous.burst = 1;
    env.config.http.client_ip_header = Some("X-Forwarded-For".into());
    let app = env.spawn_app().await;
    app.wait_ready().await;
    let body = json!({ "email": "a@b.io", "password": "x", "organization_slug": "none" });
    let attempt = |forwarded: &'static str| {
        let (app, body) = (&app, body.clone());
        async move {
            crate::rest::call_with(
                app,
                "POST",
                "/api/v1/auth/login",
                None,
                Some(&body),
                &[("X-Forwarded-For", forwarded)],
            )
            .await
            .status
        }
    };
    // Two clients behind one proxy have their own buckets; the proxy's entry (the last) counts.
    assert_eq!(attempt("198.51.100.1, 203.0.113.7").await, 401);
    assert_eq!(attempt("203.0.113.7").await, 429);
    assert_eq!(attempt("203.0.113.8").await, 401);
}
