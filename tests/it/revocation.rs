//! Authority taken away reaches what is already open: a revoked or expired key, a removed
//! or demoted user is refused on an open WebSocket, and WebSockets, MCP sessions with their
//! GET streams and listen streams bound to it are closed with a reason, on every node;
//! a bus that lost its memory never makes a node trust a revoked key again.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{Shape, TestApp, TestEnv, wait_until};
use crate::mcp_client::{Events, LEGACY, McpClient, modern_request};
use crate::rest::{PASSWORD, Tenant, call, login, new_key, register};
use crate::ws_client::{connect, modern};

for_shapes!([
    revoked_key_closes_what_it_opened_on_every_node,
    requests_on_an_open_socket_are_authorized_again,
    removed_or_demoted_user_loses_its_connections,
] on sqlite => Sqlite, redis => PostgresRedis);

const WAIT: Duration = Duration::from_secs(10);

/// Two nodes on one database and bus (for SQLite: one data directory).
async fn two_nodes(env: &TestEnv) -> (TestApp, TestApp) {
    let a = TestApp::spawn(env.config.clone(), devmesh::jobs::Registry::new()).await;
    let b = TestApp::spawn(env.config.clone(), devmesh::jobs::Registry::new()).await;
    a.wait_ready().await;
    b.wait_ready().await;
    (a, b)
}

async fn agent_key(app: &TestApp, tenant: &Tenant) -> (String, String) {
    new_key(app, tenant, json!({ "name": "agent", "key_type": "agent" })).await
}

/// A listen stream over HTTP, acknowledged.
async fn listen(app: &TestApp, credential: &str, id: i64) -> Events {
    let mcp = McpClient::new(app, Some(credential));
    let request = modern_request(
        id,
        "subscriptions/listen",
        json!({ "notifications": { "resourcesListChanged": true } }),
    );
    let mut events = Events::new(mcp.send_modern(&request).await);
    let (_, ack) = events.next(WAIT).await.expect("an acknowledgement");
    assert_eq!(ack["method"], "notifications/subscriptions/acknowledged");
    events
}

/// Reads a stream until it ends; returns what it carried.
async fn until_end(events: &mut Events) -> Vec<Value> {
    let mut seen = Vec::new();
    while let Some((_, message)) = events.next(WAIT).await {
        seen.push(message);
    }
    seen
}

async fn revoked_key_closes_what_it_opened_on_every_node(shape: Shape) {
    let env = TestEnv::new(shape).await;
    let (a, b) = two_nodes(&env).await;
    let acme = register(&a, "acme").await;
    let (key_id, key) = agent_key(&a, &acme).await;

    // A session over WebSocket on node a, a stateless socket on node b.
    let mut ws_a = connect(&a, &key).await;
    ws_a.initialize().await;
    let whoami = ws_a
        .call(1, "tools/call", json!({ "name": "devmesh_whoami" }))
        .await;
    assert_eq!(whoami["result"]["isError"], false, "{whoami}");
    let mut ws_b = connect(&b, &key).await;
    let whoami = ws_b
        .call(
            1,
            "tools/call",
            modern(1, "tools/call", json!({ "name": "devmesh_whoami" }))["params"].clone(),
        )
        .await;
    assert_eq!(whoami["result"]["isError"], false, "{whoami}");
    // A listen stream on node b; a session with its GET stream on node a.
    let mut listen_b = listen(&b, &key, 7).await;
    let mcp_a = McpClient::new(&a, Some(&key));
    let session = mcp_a.initialize(LEGACY).await;
    let mut stream_a = Events::new(mcp_a.open_stream(&session, None).await);

    let r = call(
        &a,
        "DELETE",
        &format!("/api/v1/api-keys/{key_id}"),
        Some(&acme.key),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);

    // Every connection closes saying why, on the node that revoked and on the other.
    for ws in [&mut ws_a, &mut ws_b] {
        let (code, reason) = ws.closed().await;
        assert_eq!(code, 4003, "{reason}");
        assert!(reason.contains("revoked"), "{reason}");
    }
    // The listen stream ends with the listen request's answer: an error that says why.
    let rest = until_end(&mut listen_b).await;
    let last = rest.last().expect("the stream says why it ends");
    assert_eq!(last["id"], 7, "{last}");
    assert_eq!(last["error"]["code"], -31001, "{last}");
    assert_eq!(last["error"]["data"]["reason"], "revoked", "{last}");
    // The session's GET stream ends with a last message saying why; the session is gone.
    let rest = until_end(&mut stream_a).await;
    let last = rest.last().expect("the stream says why it ends");
    assert_eq!(last["method"], "notifications/message", "{last}");
    assert_eq!(last["params"]["data"]["reason"], "revoked", "{last}");
    let ended = mcp_a
        .in_session(&session, LEGACY, 2, "tools/list", json!({}))
        .await;
    assert_eq!(ended.status, 401, "{}", ended.message);
    assert_eq!(
        a.caps.tenancy.grants.len() + b.caps.tenancy.grants.len(),
        0,
        "every grant is forgotten once its holders closed"
    );
    let metrics = a.metrics().await;
    assert!(
        metrics.contains(r#"devmesh_ws_closed_total{reason="credential"}"#),
        "{metrics}"
    );
}

async fn requests_on_an_open_socket_are_authorized_again(shape: Shape) {
    let env = TestEnv::new(shape).await;
    let mut config = env.config.clone();
    // No watcher round within the test: only the requests themselves can notice.
    config.auth.recheck_interval = devmesh::config::Duration::from_secs(3600);
    let (a, b) = (
        TestApp::spawn(config.clone(), devmesh::jobs::Registry::new()).await,
        TestApp::spawn(config, devmesh::jobs::Registry::new()).await,
    );
    a.wait_ready().await;
    b.wait_ready().await;
    let acme = register(&a, "acme").await;
    let (key_id, key) = agent_key(&a, &acme).await;
    let expires = (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
    let (_, short) = new_key(
        &a,
        &acme,
        json!({ "name": "short", "key_type": "agent", "expires_at": expires }),
    )
    .await;

    let mut ws = connect(&b, &key).await;
    ws.initialize().await;
    let create = json!({ "name": "devmesh_context_create", "arguments": { "name": "notes" } });
    let made = ws.call(1, "tools/call", create.clone()).await;
    assert_eq!(made["result"]["isError"], false, "{made}");
    let mut expiring = connect(&b, &short).await;
    let made = expiring
        .call(
            1,
            "tools/call",
            modern(1, "tools/call", create.clone())["params"].clone(),
        )
        .await;
    assert_eq!(made["result"]["isError"], false, "{made}");

    // Revoked on node a; the next request on node b's open socket is refused.
    let r = call(
        &a,
        "DELETE",
        &format!("/api/v1/api-keys/{key_id}"),
        Some(&acme.key),
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    let mut id = 2;
    let refused = ws.call(id, "tools/call", create.clone()).await;
    assert_eq!(refused["error"]["code"], -31001, "{refused}");
    let (code, _) = ws.closed().await;
    assert_eq!(code, 4003);

    // Past its expiry, the other key's next request is refused and its socket closed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut created = 2;
    let refused = loop {
        assert!(tokio::time::Instant::now() < deadline, "the key expires");
        tokio::time::sleep(Duration::from_millis(200)).await;
        id += 1;
        let answer = expiring
            .call(
                id,
                "tools/call",
                modern(id, "tools/call", create.clone())["params"].clone(),
            )
            .await;
        if answer.get("error").is_some() {
            break answer;
        }
        created += 1;
    };
    assert_eq!(refused["error"]["code"], -31001, "{refused}");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(message.contains("expired"), "{refused}");
    let (code, reason) = expiring.closed().await;
    assert_eq!(code, 4004, "{reason}");

    // The refused requests created nothing.
    let list = call(
        &a,
        "GET",
        "/api/v1/contexts?limit=200",
        Some(&acme.key),
        None,
    )
    .await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), created);
}

async fn removed_or_demoted_user_loses_its_connections(shape: Shape) {
    let env = TestEnv::new(shape).await;
    let (a, b) = two_nodes(&env).await;
    let acme = register(&a, "acme").await;
    let user = call(
        &a,
        "POST",
        "/api/v1/users",
        Some(&acme.key),
        Some(&json!({ "email": "dev@acme.example.com", "name": "Dev", "role": "member", "password": PASSWORD })),
    )
    .await;
    assert_eq!(user.status, 201, "{:?}", user.body);
    let user_id = user.body["id"].as_str().unwrap().to_string();
    let token = login(&a, "acme", "dev@acme.example.com", PASSWORD).await;
    let token = token.body["access_token"].as_str().unwrap().to_string();

    let mut ws = connect(&b, &token).await;
    ws.initialize().await;
    let mut listen_b = listen(&b, &token, 3).await;

    // Demoted to viewer on node a: it no longer holds contexts:write.
    let r = call(
        &a,
        "PATCH",
        &format!("/api/v1/users/{user_id}"),
        Some(&acme.key),
        Some(&json!({ "role": "viewer" })),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let (code, reason) = ws.closed().await;
    assert_eq!(code, 4005, "{reason}");
    assert!(reason.contains("contexts:write"), "{reason}");
    let rest = until_end(&mut listen_b).await;
    let last = rest.last().expect("the stream says why it ends");
    assert_eq!(last["error"]["code"], -31003, "{last}");
    assert_eq!(last["error"]["data"]["reason"], "reduced", "{last}");

    // Reconnected as a viewer, it reads but cannot write; removed, it is closed.
    let mut ws = connect(&b, &token).await;
    ws.initialize().await;
    let write = ws
        .call(
            1,
            "tools/call",
            json!({ "name": "devmesh_context_create", "arguments": { "name": "x" } }),
        )
        .await;
    assert_eq!(write["result"]["isError"], true, "{write}");
    let r = call(
        &a,
        "DELETE",
        &format!("/api/v1/users/{user_id}"),
        Some(&acme.key),
        None,
    )
    .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let (code, reason) = ws.closed().await;
    assert_eq!(code, 4003, "{reason}");
    assert!(reason.contains("no longer exists"), "{reason}");
}

/// An idle socket whose key expires is closed, saying so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_key_closes_its_idle_socket() {
    let env = TestEnv::new(Shape::Sqlite).await;
    let app = env.spawn_app().await;
    app.wait_ready().await;
    let acme = register(&app, "acme").await;
    let expires = (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
    let (_, key) = new_key(
        &app,
        &acme,
        json!({ "name": "short", "key_type": "agent", "expires_at": expires }),
    )
    .await;
    let mut ws = connect(&app, &key).await;
    ws.send_text(&modern(
        1,
        "subscriptions/listen",
        json!({ "notifications": { "toolsListChanged": true } }),
    ))
    .await;
    let (code, reason) = ws.closed().await;
    assert_eq!(code, 4004, "{reason}");
    assert!(reason.contains("expired"), "{reason}");
}

/// Redis loses its memory (a restart without persistence): a node that cached a key
/// before must not trust it after the key is revoked, however many revocations follow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bus_that_lost_its_memory_never_vouches_for_a_revoked_key() {
    let env = TestEnv::new(Shape::PostgresRedis).await;
    let (a, b) = two_nodes(&env).await;
    let acme = register(&a, "acme").await;
    let revoke = |id: String| {
        let (a, admin) = (&a, acme.key.clone());
        async move {
            let path = format!("/api/v1/api-keys/{id}");
            let r = call(a, "DELETE", &path, Some(&admin), None).await;
            assert_eq!(r.status, 200);
        }
    };
    let mut others = Vec::new();
    for _ in 0..19 {
        others.push(agent_key(&a, &acme).await.0);
    }
    let (victim_id, victim) = agent_key(&a, &acme).await;
    for id in others.drain(..10) {
        revoke(id).await;
    }
    // Node b caches the victim.
    let r = call(&b, "GET", "/api/v1/contexts", Some(&victim), None).await;
    assert_eq!(r.status, 200);

    forget_everything(&env.config.redis.key_prefix).await;
    for id in others.drain(..) {
        revoke(id).await;
    }
    revoke(victim_id).await;
    let r = call(&b, "GET", "/api/v1/contexts", Some(&victim), None).await;
    assert_eq!(r.status, 401, "{:?}", r.body);
}

/// Redis goes back in time (restored from a snapshot, or a lagging replica promoted): the
/// generation a node saw before a revocation is back. The database's copy of it still
/// moved, so the node stops trusting its cached key within `auth.recheck_interval`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bus_rolled_back_does_not_vouch_for_a_revoked_key() {
    use fred::prelude::*;
    let mut env = TestEnv::new(Shape::PostgresRedis).await;
    // Long enough that only the database's generation can end the trust in time.
    env.config.auth.key_cache_ttl = devmesh::config::Duration::from_secs(600);
    let (a, b) = two_nodes(&env).await;
    let acme = register(&a, "acme").await;
    let (victim_id, victim) = agent_key(&a, &acme).await;
    let r = call(&b, "GET", "/api/v1/contexts", Some(&victim), None).await;
    assert_eq!(r.status, 200);

    let redis = Client::new(
        Config::from_url(&crate::helpers::redis_url()).unwrap(),
        None,
        None,
        None,
    );
    redis.init().await.unwrap();
    let key = format!("{}generation:auth", env.config.redis.key_prefix);
    let before: String = redis.get(&key).await.unwrap();
    let r = call(
        &a,
        "DELETE",
        &format!("/api/v1/api-keys/{victim_id}"),
        Some(&acme.key),
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    let _: () = redis
        .set(&key, before.as_str(), None, None, false)
        .await
        .unwrap();
    redis.quit().await.unwrap();

    let refused = wait_until(Duration::from_secs(10), || async {
        call(&b, "GET", "/api/v1/contexts", Some(&victim), None)
            .await
            .status
            == 401
    })
    .await;
    assert!(
        refused.is_ok(),
        "node b still trusts the revoked key: {refused:?}"
    );
}

/// Deletes every key under `prefix`, as a Redis restarted without persistence would.
async fn forget_everything(prefix: &str) {
    use fred::prelude::*;
    let client = Client::new(
        Config::from_url(&crate::helpers::redis_url()).unwrap(),
        None,
        None,
        None,
    );
    client.init().await.unwrap();
    const FORGET: &str =
        "for _, k in ipairs(redis.call('KEYS', ARGV[1])) do redis.call('DEL', k) end return 1";
    let _: i64 = client
        .eval(FORGET, Vec::<String>::new(), vec![format!("{prefix}*")])
        .await
        .unwrap();
    client.quit().await.unwrap();
}
