//! `/health`, `/ready`, `/metrics`, unknown paths and request ids, on both shapes; the node
//! registry and its heartbeat.

use std::time::Duration;

use devmesh::config::SecretUrl;
use devmesh::storage::nodes;
use serde_json::Value;

use crate::helpers::{Shape, TestApp, TestEnv, closed_port, wait_until};

for_shapes!(
    [
        health_ready_and_metrics_on_both_listeners,
        unknown_paths_are_json_404s,
        node_registers_and_stops,
    ]
    on sqlite => Sqlite, postgres_redis => PostgresRedis
);

async fn health_ready_and_metrics_on_both_listeners(shape: Shape) {
    let env = TestEnv::new(shape).await;
    let app = env.spawn_app().await;
    app.wait_ready().await;
    for url in [app.api_url(""), app.mcp_url("")] {
        let health = app.http.get(format!("{url}/health")).send().await.unwrap();
        assert_eq!(health.status(), 200);
        let body: Value = health.json().await.unwrap();
        assert_eq!(body["status"], "ok");
        assert_eq!(body["node"]["id"], app.ctx.node.id.as_str());

        let ready = app.http.get(format!("{url}/ready")).send().await.unwrap();
        assert_eq!(ready.status(), 200);
        let body: Value = ready.json().await.unwrap();
        assert_eq!(body["status"], "ready");
        let backend = if shape == Shape::Sqlite {
            "sqlite"
        } else {
            "postgres"
        };
        assert_eq!(body["checks"]["database"]["backend"], backend);
        assert_eq!(
            body["checks"]["redis"]["status"],
            if shape == Shape::Sqlite {
                Value::Null
            } else {
                "up".into()
            }
        );
    }

    let metrics = app.http.get(app.api_url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(
        metrics.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = metrics.text().await.unwrap();
    // SQLite's pool is its one writing connection (reads run on read-only ones).
    let pool_max = if shape == Shape::Sqlite {
        r#"devmesh_db_pool_connections{state="max"} 1"#
    } else {
        r#"devmesh_db_pool_connections{state="max"} 16"#
    };
    for expected in [
        pool_max,
        r#"devmesh_http_requests_total{listener="api",method="GET",route="/health",status="200"} 1"#,
        r#"devmesh_http_requests_total{listener="mcp",method="GET",route="/ready",status="200"} 1"#,
        r#"devmesh_http_request_duration_seconds_bucket{listener="api",method="GET",route="/ready",status="200",le="0.5"}"#,
        r#"devmesh_build_info{version=""#,
        r#"devmesh_jobs_queue_depth{queue="default",state="ready"} 0"#,
        r#"devmesh_jobs_queue_depth{queue="system",state="dead"} 0"#,
    ] {
        assert!(text.contains(expected), "metrics lack {expected}:\n{text}");
    }
    // The node sweep runs as a real job through the queue at start.
    wait_until(Duration::from_secs(10), || async {
        let text = app
            .http
            .get(app.api_url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.contains(
            r#"devmesh_jobs_processed_total{queue="system",job="node_sweep",outcome="succeeded"}"#,
        )
    })
    .await
    .expect("job outcomes are counted");
    app.stop().await.unwrap();
}

async fn unknown_paths_are_json_404s(shape: Shape) {
    let env = TestEnv::new(shape).await;
    let app = env.spawn_app().await;
    let res = app
        .http
        .post(app.api_url("/no/such/path"))
        .header("X-Request-Id", "client-req-7")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(
        res.headers()["x-request-id"],
        "client-req-7",
        "an incoming request id is kept"
    );
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    assert_eq!(body["error"]["message"], "no route for POST /no/such/path");

    let res = app
        .http
        .get(app.mcp_url("/health"))
        .header("X-Request-Id", "bad id\twith tab")
        .send()
        .await
        .unwrap();
    let id = res.headers()["x-request-id"].to_str().unwrap().to_string();
    assert!(
        uuid::Uuid::parse_str(&id).is_ok(),
        "an unusable request id is replaced by a fresh one: {id}"
    );

    let res = app
        .http
        .delete(app.api_url("/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 405);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed");
    app.stop().await.unwrap();
}

async fn node_registers_and_stops(shape: Shape) {
    let env = TestEnv::new(shape).await;
    let db = env.migrated_db().await;
    // A node that stopped beating long ago, and never said it stopped.
    let stale_time = devmesh::storage::now() - chrono::TimeDelta::minutes(10);
    let stale = nodes::NodeRow {
        id: "0192aaaa-0000-7000-8000-000000000000".into(),
        name: "old-worker".into(),
        roles: "worker".into(),
        version: "0.0.1".into(),
        addresses: "{}".into(),
        status: nodes::ACTIVE.into(),
        started_at: stale_time,
        last_seen_at: stale_time,
    };
    nodes::upsert(&db, &stale).await.unwrap();

    let mut config = env.config.clone();
    config.node.heartbeat_interval = devmesh::config::Duration::from_millis(200);
    config.node.gone_after = devmesh::config::Duration::from_secs(2);
    let app = TestApp::spawn(config, devmesh::jobs::Registry::new()).await;
    let id = app.ctx.node.id.clone();
    wait_until(Duration::from_secs(10), || async {
        nodes::get(&db, &stale.id).await.unwrap().unwrap().status == nodes::GONE
    })
    .await
    .expect("the sweep marks a silent node gone");
    let me = nodes::get(&db, &id)
        .await
        .unwrap()
        .expect("the node registered itself");
    assert_eq!(me.status, nodes::ACTIVE);
    assert_eq!(me.roles, "all");
    let addresses: Value = serde_json::from_str(&me.addresses).unwrap();
    assert_eq!(addresses["api"], app.api.to_string());
    let first_seen = me.last_seen_at;
    wait_until(Duration::from_secs(5), || async {
        nodes::get(&db, &id).await.unwrap().unwrap().last_seen_at > first_seen
    })
    .await
    .expect("the heartbeat keeps last_seen current");

    app.stop().await.unwrap();
    assert_eq!(
        nodes::get(&db, &id).await.unwrap().unwrap().status,
        nodes::STOPPED
    );
}

/// The database is down at start: the node still starts, `/ready` says 503 and names the
/// database, and no crash follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_is_503_while_the_database_is_down() {
    let env = TestEnv::new(Shape::Sqlite).await;
    let mut config = env.config.clone();
    config.database.url = Some(SecretUrl::new(format!(
        "postgres://devmesh:s3cret-pw@127.0.0.1:{}/devmesh",
        closed_port()
    )));
    config.database.connect_timeout = devmesh::config::Duration::from_millis(500);
    let app = TestApp::spawn(config, devmesh::jobs::Registry::new()).await;
    let health = app.http.get(app.api_url("/health")).send().await.unwrap();
    assert_eq!(
        health.status(),
        200,
        "liveness does not depend on the database"
    );
    let ready = app.http.get(app.api_url("/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let text = ready.text().await.unwrap();
    assert!(
        !text.contains("s3cret-pw"),
        "no secret in the answer: {text}"
    );
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["checks"]["database"]["status"], "down");
    assert!(
        body["checks"]["database"]["error"].as_str().unwrap().len() > 3,
        "says why: {body}"
    );
    app.stop().await.unwrap();
}

/// Redis down: readiness names Redis while the database is fine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_is_503_while_redis_is_down() {
    let env = TestEnv::new(Shape::PostgresRedis).await;
    let mut config = env.config.clone();
    config.redis.url = Some(SecretUrl::new(format!(
        "redis://127.0.0.1:{}",
        closed_port()
    )));
    config.http.ready_timeout = devmesh::config::Duration::from_millis(500);
    config.redis.command_timeout = devmesh::config::Duration::from_millis(500);
    let app = TestApp::spawn(config, devmesh::jobs::Registry::new()).await;
    wait_until(Duration::from_secs(10), || async {
        let body: Value = app
            .http
            .get(app.api_url("/ready"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["checks"]["database"]["status"] == "up"
    })
    .await
    .unwrap();
    let ready = app.http.get(app.api_url("/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["checks"]["redis"]["status"], "down");
    assert_eq!(body["checks"]["database"]["status"], "up");
    app.stop().await.unwrap();
}

/// A database that comes up after the node started: the node becomes ready by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_becomes_ready_when_the_database_comes_up() {
    let env = TestEnv::new(Shape::Sqlite).await;
    let mut config = env.config.clone();
    // The data directory is a file for now: SQLite cannot open its database there.
    let blocked = env.dir.path().join("late");
    std::fs::write(&blocked, "not a directory").unwrap();
    config.data_dir = blocked.clone();
    let app = TestApp::spawn(config, devmesh::jobs::Registry::new()).await;
    let ready = app.http.get(app.api_url("/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    std::fs::remove_file(&blocked).unwrap();
    std::fs::create_dir_all(&blocked).unwrap();
    app.wait_ready().await;
    app.stop().await.unwrap();
}

/// A worker-only node: no api or mcp listener, its own probe and metrics listener when
/// asked for one, and it runs jobs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_node_serves_probes_and_metrics_and_runs_jobs() {
    let env = TestEnv::new(Shape::Sqlite).await;
    let mut config = env.config.clone();
    config.node.roles = "worker".parse().unwrap();
    config.worker.listen = Some(devmesh::config::ListenAddr("127.0.0.1:0".parse().unwrap()));
    let app = devmesh::app::Application::build(config).await.unwrap();
    assert!(
        app.addr("api").is_none() && app.addr("mcp").is_none(),
        "a worker serves no API"
    );
    let addr = app.addr("worker").expect("the probe listener");
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(app.run(shutdown.clone()));
    let http = reqwest::Client::new();
    wait_until(Duration::from_secs(10), || async {
        matches!(http.get(format!("http://{addr}/ready")).send().await, Ok(r) if r.status() == 200)
    })
    .await
    .unwrap();
    wait_until(Duration::from_secs(10), || async {
        let text = http
            .get(format!("http://{addr}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.contains(
            r#"devmesh_jobs_processed_total{queue="system",job="node_sweep",outcome="succeeded"}"#,
        ) && text.contains(r#"listener="worker""#)
    })
    .await
    .expect("the worker ran the node sweep and reports it");
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

/// With `database.auto_migrate = false` a node waits, unready, until the migrations are
/// applied by `devmesh migrate run` (here: the same function), then becomes ready by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_auto_migrate_the_node_waits_for_migrations() {
    let env = TestEnv::new(Shape::Postgres).await;
    let mut config = env.config.clone();
    config.database.auto_migrate = false;
    let app = TestApp::spawn(config, devmesh::jobs::Registry::new()).await;
    wait_until(Duration::from_secs(10), || async {
        let res = app.http.get(app.api_url("/ready")).send().await.unwrap();
        let body: Value = res.json().await.unwrap();
        body["checks"]["database"]["error"]
            .as_str()
            .unwrap_or("")
            .contains("devmesh migrate run")
    })
    .await
    .expect("readiness says what to do");
    let target = env.config.database_target();
    assert!(
        devmesh::storage::migrations::pending_count(&target)
            .await
            .unwrap()
            > 0,
        "the node applied nothing"
    );
    devmesh::storage::migrations::run_pending(&target)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(40), app.wait_ready())
        .await
        .expect("ready once migrated");
    app.stop().await.unwrap();
}
