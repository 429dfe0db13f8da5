//! Credentials of the tools gateway as a user meets them: each kind applied to real
//! requests, OAuth client credentials against a real local token endpoint (cached, and
//! refreshed once on a 401), a principal's own credential by the tool's passthrough mode,
//! sealed in the database file, re-sealed by `secrets rotate`, refused without a master
//! key, and never in an answer.

use serde_json::{Value, json};

use crate::gateway_tools::{
    MASTER_KEY, OTHER_MASTER_KEY, create_tool, described_upstream, discovered, gateway_env, text_of,
};
use crate::helpers::{Shape, TestEnv};
use crate::mcp_client::McpClient;
use crate::rest::{call, new_key, register};

/// Each kind reaches the upstream where it belongs; an API key without a name takes the
/// description's `apiKey` scheme.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_kind_is_applied_to_calls() {
    let env = gateway_env(Shape::Sqlite).await;
    let app = env.spawn_app().await;
    app.wait_ready().await;
    let tenant = register(&app, "acme").await;
    let (upstream, _dir) = described_upstream("/openapi.json").await;
    let mcp = McpClient::new(&app, Some(&tenant.key));
    let cases = [
        (
            "bearer",
            json!({ "type": "bearer", "token": "s-bearer" }),
            "authorization",
            "Bearer s-bearer",
        ),
        (
            "basic",
            json!({ "type": "basic", "username": "u", "password": "s-basic" }),
            "authorization",
            "Basic dTpzLWJhc2lj",
        ),
        (
            "keyed",
            json!({ "type": "api_key", "value": "s-scheme" }),
            "x-upstream-key",
            "s-scheme",
        ),
        (
            "cookie",
            json!({ "type": "api_key", "location": "cookie", "name": "sid", "value": "s-cookie" }),
            "cookie",
            "sid=s-cookie",
        ),
        (
            "extra",
            json!({ "type": "headers", "headers": { "X-One": "s-one" } }),
            "x-one",
            "s-one",
        ),
    ];
    for (name, auth, header, expected) in cases {
        let r = create_tool(
            &app,
            &tenant,
            json!({ "name": name, "base_url": upstream.url("/"), "auth": auth }),
        )
        .await;
        assert_eq!(r.status, 201, "{name}: {:?}", r.body);
        discovered(&app, &tenant, r.body["id"].as_str().unwrap()).await;
        let result = mcp.call_tool(&format!("{name}_getEcho"), json!({})).await;
        assert_eq!(
            result["structuredContent"]["headers"][header], expected,
            "{name}: {result}"
        );
    }
    // A query API key lands in the query.
    let r = create_tool(
        &app,
        &tenant,
        json!({ "name": "query", "base_url": upstream.url("/"),
                "auth": { "type": "api_key", "location": "query", "name": "private_token", "value": "s-query" } }),
    )
    .await;
    discovered(&app, &tenant, r.body["id"].as_str().unwrap()).await;
    let result = mcp.call_tool("query_getEcho", json!({ "q": ["1"] })).await;
    assert_eq!(
        result["structuredContent"]["query"],
        "q=1&private_token=s-query"
    );

    // An argument of the key's name cannot stand in for the key, nor be sent beside it.
    let r = create_tool(
        &app,
        &tenant,
        json!({ "name": "over", "base_url": upstream.url("/"),
                "auth": { "type": "api_key", "location": "query", "name": "q", "value": "s-over" } }),
    )
    .await;
    discovered(&app, &tenant, r.body["id"].as_str().unwrap()).await;
    let result = mcp
        .call_tool("over_getEcho", json!({ "q": ["attacker"] }))
        .await;
    assert_eq!(result["structuredContent"]["query"], "q=s-over", "{result}");

    // No answer shows a secret: the list, each tool, the audit log.
    for path in ["/api/v1/tools", "/api/v1/audit"] {
        let text = call(&app, "GET", path, Some(&tenant.key), None)
            .await
            .body
            .to_string();
        for secret in [
            "s-bearer", "s-basic", "s-scheme", "s-cookie", "s-one", "s-query", "dmsealed",
        ] {
            assert!(!text.contains(secret), "{path} shows {secret}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_tokens_are_cached_and_refreshed_once_on_401() {
    let env = gateway_env(Shape::Sqlite).await;
    let app = env.spawn_app().await;
    app.wait_ready().await;
    let tenant = register(&app, "acme").await;
    let (upstream, _dir) = described_upstream("/openapi.json").await;
    let mcp = McpClient::new(&app, Some(&tenant.key));
    for (name, client_auth) in [("oa", "basic"), ("ob", "post")] {
        let r = create_tool(
            &app,
            &tenant,
            json!({ "name": name, "base_url": upstream.url("/"), "auth": {
                "type": "oauth2_client_credentials", "token_url": upstream.url("/oauth/token"),
                "client_id": "client", "client_secret": "client-secret", "scopes": ["read"],
                "client_auth": client_auth,
            }}),
        )
        .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        assert_eq!(r.body["auth"]["type"], "oauth2_client_credentials");
        discovered(&app, &tenant, r.body["id"].as_str().unwrap()).await;
    }
    let issued = || {
        upstream
            .oauth
            .issued
            .load(std::sync::atomic::Ordering::SeqCst)
    };
    let before = issued();
    let first = mcp.call_tool("oa_oauthEcho", json!({})).await;
    assert_eq!(first["isError"], false, "{first}");
    let token = first["structuredContent"]["headers"]["authorization"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(token.starts_with("Bearer tok-"));
    let after_first = issued();
    assert!(after_first <= before + 1);
    // Cached: the next call sends the same token without asking the endpoint again.
    let second = mcp.call_tool("oa_oauthEcho", json!({})).await;
    assert_eq!(
        second["structuredContent"]["headers"]["authorization"],
        token.as_str()
    );
    assert_eq!(issued(), after_first);
    // Refused (revoked): one 401, a fresh token, the call succeeds.
    upstream.oauth.revoke_all();
    let third = mcp.call_tool("oa_oauthEcho", json!({})).await;
    assert_eq!(third["isError"], false, "{third}");
    assert_ne!(
        third["structuredContent"]["headers"]["authorization"],
        token.as_str()
    );
    assert_eq!(issued(), after_first + 1);
    // client_secret_post works too.
    let posted = mcp.call_tool("ob_oauthEcho", json!({})).await;
    assert_eq!(posted["isError"], false, "{posted}");

    // A client the endpoint refuses: a tool error naming the endpoint's error code,
    // without the secret.
    let r = create_tool(
        &app,
        &tenant,
        json!({ "name": "bad", "base_url": upstream.url("/"), "openapi": crate::gateway_tools::upstream_description(), "auth": {
            "type": "oauth2_client_credentials", "token_url": upstream.url("/oauth/token"),
            "client_id": "client", "client_secret": "wrong-secret-77",
        }}),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let refused = mcp.call_tool("bad_oauthEcho", json!({})).await;
    assert_eq!(refused["isError"], true);
    let text = text_of(&refused);
    assert!(text.contains("invalid_client"), "{text}");
    assert!(!text.contains("wrong-secret-77"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_credentials_follow_the_passthrough_mode() {
    let env = gateway_env(Shape::Sqlite).await;
    let app = env.spawn_app().await;
    app.wait_ready().await;
    let tenant = register(&app, "acme").await;
    let (upstream, _dir) = described_upstream("/openapi.json").await;
    let (_, agent) = new_key(
        &app,
        &tenant,
        json!({ "name": "agent", "key_type": "agent" }),
    )
    .await;
    let as_agent = McpClient::new(&app, Some(&agent));
    let r = create_tool(
        &app,
        &tenant,
        json!({ "name": "up", "base_url": upstream.url("/"), "passthrough": "optional",
                "auth": { "type": "bearer", "token": "org-token" } }),
    )
    .await;
    let id = r.body["id"].as_str().unwrap().to_string();
    discovered(&app, &tenant, &id).await;
    let header = |r: &Value| r["structuredContent"]["headers"]["authorization"].clone();
    // Optional: the organization's until the agent stores its own.
    assert_eq!(
        header(&as_agent.call_tool("up_getEcho", json!({})).await),
        "Bearer org-token"
    );
    let mine = format!("/api/v1/tools/{id}/credentials/me");
    let r = call(&app, "GET", &mine, Some(&agent), None).await;
    assert_eq!(r.body, json!({ "type": null, "has_credential": false }));
    let r = call(
        &app,
        "PUT",
        &mine,
        Some(&agent),
        Some(&json!({ "auth": { "type": "bearer", "token": "agent-token" } })),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body, json!({ "type": "bearer", "has_credential": true }));
    assert_eq!(
        header(&as_agent.call_tool("up_getEcho", json!({})).await),
        "Bearer agent-token"
    );
    // The owner's calls still use the organization's.
    let as_owner = McpClient::new(&app, Some(&tenant.key));
    assert_eq!(
        header(&as_owner.call_tool("up_getEcho", json!({})).await),
        "Bearer org-token"
    );

    // Required: without one's own, a tool error saying how to store it.
    let r = call(
        &app,
        "PATCH",
        &format!("/api/v1/tools/{id}"),
        Some(&tenant.key),
        Some(&json!({ "passthrough": "required" })),
    )
    .await;
    assert_eq!(r.status, 200);
    let refused = as_owner.call_tool("up_getEcho", json!({})).await;
    assert_eq!(refused["isError"], true);
    assert!(text_of(&refused).contains("credentials/me"), "{refused}");
    assert_eq!(
        header(&as_agent.call_tool("up_getEcho", json!({})).await),
        "Bearer agent-token"
    );
    let r = call(&app, "DELETE", &mine, Some(&agent), None).await;
    assert_eq!(r.status, 204);
    assert_eq!(
        as_agent.call_tool("up_getEcho", json!({})).await["isError"],
        true
    );

    // Disabled: storing one's own is refused.
    call(
        &app,
        "PATCH",
        &format!("/api/v1/tools/{id}"),
        Some(&tenant.key),
        Some(&json!({ "passthrough": "disabled" })),
    )
    .await;
    let r = call(
        &app,
        "PUT",
        &mine,
        Some(&agent),
        Some(&json!({ "auth": { "type": "bearer", "token": "x" } })),
    )
    .await;
    assert_eq!(r.status, 422);
    assert!(r.message().contains("passthrough"), "{}", r.message());
}

fn database_bytes(env: &TestEnv) -> Vec<u8> {
    let mut all = Vec::new();
    for suffix in ["", "-wal"] {
        let path = env.config.data_dir.join(format!("devmesh.db{suffix}"));
        if let Ok(bytes) = std::fs::read(path) {
            all.extend(bytes);
        }
    }
    all
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Sealed in the database file; re-sealed under a new master key by `secrets rotate`,
/// after which the old key can go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_at_rest_and_rotated() {
    let mut env = gateway_env(Shape::Sqlite).await;
    let app = env.spawn_app().await;
    app.wait_ready().await;
    let tenant = register(&app, "acme").await;
    let (upstream, _dir) = described_upstream("/openapi.json").await;
    let r = create_tool(
        &app,
        &tenant,
        json!({ "name": "up", "base_url": upstream.url("/"), "passthrough": "optional",
                "auth": { "type": "bearer", "token": "plain-org-secret" } }),
    )
    .await;
    let id = r.body["id"].as_str().unwrap().to_string();
    discovered(&app, &tenant, &id).await;
    let r = call(&app, "PUT", &format!("/api/v1/tools/{id}/credentials/me"), Some(&tenant.key),
        Some(&json!({ "auth": { "type": "basic", "username": "me", "password": "plain-own-secret" } }))).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    app.stop().await.unwrap();
    let bytes = database_bytes(&env);
    assert!(contains(&bytes, "dmsealed:v1:"), "sealed values are stored");
    for secret in ["plain-org-secret", "plain-own-secret"] {
        assert!(
            !contains(&bytes, secret),
            "{secret} is readable in the database file"
        );
    }

    // A new master key, the old one kept as previous: rotate re-seals both.
    env.config.secrets.master_key = Some(devmesh::config::SecretString::new(OTHER_MASTER_KEY));
    env.config.secrets.previous_master_keys = vec![devmesh::config::SecretString::new(MASTER_KEY)];
    let db = env.migrated_db().await;
    let sealer = devmesh::sealing::Sealer::from_config(&env.config.secrets).unwrap();
    let done = devmesh::gateway::rotate::rotate(&db, &sealer)
        .await
        .unwrap();
    assert_eq!(
        (done.resealed, done.current, done.unreadable.len()),
        (2, 0, 0),
        "{done:?}"
    );
    let again = devmesh::gateway::rotate::rotate(&db, &sealer)
        .await
        .unwrap();
    assert_eq!((again.resealed, again.current), (0, 2));
    db.close();

    // Without the old key, calls still carry the credentials.
    env.config.secrets.previous_master_keys.clear();
    let app = env.spawn_app().await;
    app.wait_ready().await;
    let mcp = McpClient::new(&app, Some(&tenant.key));
    let result = mcp.call_tool("up_getEcho", json!({})).await;
    assert_eq!(
        result["structuredContent"]["headers"]["authorization"],
        "Basic bWU6cGxhaW4tb3duLXNlY3JldA==",
        "{result}"
    );
    let (_, other) = new_key(&app, &tenant, json!({ "name": "k", "key_type": "user" })).await;
    let result = McpClient::new(&app, Some(&other))
        .call_tool("up_getEcho", json!({}))
        .await;
    assert_eq!(
        result["structuredContent"]["headers"]["authorization"],
        "Bearer plain-org-secret"
    );
}

/// Without a master key, storing a credential is refused with how to set one; a tool
/// without a credential is fine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_master_key_no_credentials() {
    let mut env = TestEnv::new(Shape::Sqlite).await;
    env.config.outbound.allow_private = true;
    let app = env.spawn_app().await;
    app.wait_ready().await;
    let tenant = register(&app, "acme").await;
    let r = create_tool(
        &app,
        &tenant,
        json!({ "name": "up", "base_url": "http://127.0.0.1:9/", "auth": { "type": "bearer", "token": "t" } }),
    )
    .await;
    assert_eq!(r.status, 422, "{:?}", r.body);
    assert!(
        r.message().contains("secrets.master_key"),
        "{}",
        r.message()
    );
    assert!(r.message().contains("openssl rand -base64 32"));
    let r = create_tool(
        &app,
        &tenant,
        json!({ "name": "up", "base_url": "http://127.0.0.1:9/" }),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
}
