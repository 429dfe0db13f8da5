//! API keys: shown once, listed without secrets, expiry and revocation seen at once by a
//! second node sharing the database (and Redis, in the scale-out shape).

use std::time::Duration;

use serde_json::json;

use crate::helpers::{Shape, TestApp, TestEnv};
use crate::rest::{call, new_key, register};

for_shapes!([key_lifecycle_across_two_nodes] on sqlite => Sqlite, redis => PostgresRedis);

async fn key_lifecycle_across_two_nodes(shape: Shape) {
    let env = TestEnv::new(shape).await;
    let a = env.spawn_app().await;
    a.wait_ready().await;
    let b = TestApp::spawn(env.config.clone(), devmesh::jobs::Registry::new()).await;
    b.wait_ready().await;
    let acme = register(&a, "acme").await;

    let expires = (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
    let (short_id, short_key) = new_key(
        &a,
        &acme,
        json!({ "name": "short-lived", "key_type": "agent", "expires_at": expires }),
    )
    .await;
    let (agent_id, agent_key) = new_key(
        &a,
        &acme,
        json!({ "name": "ci agent", "key_type": "agent" }),
    )
    .await;

    // Both keys work on both nodes (and node b now has them cached).
    for node in [&a, &b] {
        for key in [&short_key, &agent_key] {
            let r = call(node, "GET", "/api/v1/contexts", Some(key), None).await;
            assert_eq!(r.status, 200, "{:?}", r.body);
        }
    }
    // An agent key holds only its type's scopes.
    let r = call(&a, "GET", "/api/v1/users", Some(&agent_key), None).await;
    assert_eq!(r.status, 403);
    assert!(r.message().contains("users:read"));

    // Listed without secrets; the prefix identifies it; last use is recorded.
    let list = call(&a, "GET", "/api/v1/api-keys", Some(&acme.key), None).await;
    assert_eq!(list.status, 200);
    let text = list.body.to_string();
    assert!(!text.contains(&agent_key) && !text.contains(&short_key));
    let listed = list.body["items"].as_array().unwrap();
    assert_eq!(listed.len(), 3);
    let agent = listed
        .iter()
        .find(|k| k["id"] == agent_id.as_str())
        .unwrap();
    assert!(agent_key.starts_with(agent["prefix"].as_str().unwrap()));
    assert_eq!(
        agent["scopes"],
        json!([
            "contexts:read",
            "contexts:write",
            "tools:read",
            "agents:read",
            "tasks:read",
            "tasks:write",
            "tasks:work",
            "tools:call"
        ])
    );
    crate::helpers::wait_until(Duration::from_secs(5), || async {
        let r = call(
            &a,
            "GET",
            &format!("/api/v1/api-keys/{agent_id}"),
            Some(&acme.key),
            None,
        )
        .await;
        r.body["last_used_at"].is_string()
    })
    .await
    .expect("last use is recorded");

    // Revoked on node a: refused at once on node b, which had it cached.
    let r = call(
        &a,
        "DELETE",
        &format!("/api/v1/api-keys/{agent_id}"),
        Some(&acme.key),
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.body["revoked_at"].is_string());
    for node in [&b, &a] {
        let r = call(node, "GET", "/api/v1/contexts", Some(&agent_key), None).await;
        assert_eq!(r.status, 401, "a revoked key is refused at once");
        assert!(r.header("www-authenticate").unwrap().starts_with("Bearer"));
    }

    // Expiry needs no announcement: past its time the key stops on every node.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    for node in [&b, &a] {
        let r = call(node, "GET", "/api/v1/contexts", Some(&short_key), None).await;
        assert_eq!(r.status, 401);
        assert!(r.message().contains("expired"));
    }
    let r = call(
        &a,
        "GET",
        &format!("/api/v1/api-keys/{short_id}"),
        Some(&acme.key),
        None,
    )
    .await;
    assert!(r.body["expires_at"].is_string());

    // Keys and their rules: scopes beyond the type, past expiry, unknown scopes.
    let r = call(
        &a,
        "POST",
        "/api/v1/api-keys",
        Some(&acme.key),
        Some(&json!({ "name": "x", "key_type": "agent", "scopes": ["audit:read"] })),
    )
    .await;
    assert_eq!(r.status, 422);
    assert!(r.message().contains("audit:read"));
    let r = call(
        &a,
        "POST",
        "/api/v1/api-keys",
        Some(&acme.key),
        Some(&json!({ "name": "x", "key_type": "user", "expires_at": "2020-01-01T00:00:00Z" })),
    )
    .await;
    assert_eq!(r.status, 422);
    assert!(r.message().contains("expires_at"));
    let r = call(
        &a,
        "POST",
        "/api/v1/api-keys",
        Some(&acme.key),
        Some(&json!({ "name": "x", "key_type": "user", "scopes": ["contexts:delete"] })),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(r.message().contains("contexts:delete"), "{}", r.message());

    // The audit log has the creation and the revocation.
    let audit = call(
        &a,
        "GET",
        "/api/v1/audit?action=api_key.revoked",
        Some(&acme.key),
        None,
    )
    .await;
    assert_eq!(audit.body["items"][0]["target_id"], agent_id.as_str());

    // Missing or malformed credentials: 401 with WWW-Authenticate.
    let r = call(&b, "GET", "/api/v1/contexts", None, None).await;
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").is_some());
    let r = call(&b, "GET", "/api/v1/contexts", Some("dmk_nope"), None).await;
    assert_eq!(r.status, 401);
}
