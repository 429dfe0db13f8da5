//! Outages answered fast and honestly (scale-out shape): Redis killed and restarted empty,
//! then PostgreSQL restarted, both under write and read load. No answer is a 500, nothing
//! acknowledged is lost, authenticated reads stay fast while Redis is away, and the node
//! is back to normal within a second of Redis returning.
//!
//! Runs alone (`.config/nextest.toml`): its latencies are measured, not asserted on a
//! machine busy with other tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{Shape, TestApp, TestEnv};
use crate::rest::{call, register};
use crate::services::{PrivatePostgres, PrivateRedis};

/// One answer of the load: when it was sent (from the start), its status (0: no answer),
/// how long it took, and for an append the content it carried.
#[derive(Debug, Clone)]
struct Sample {
    at: Duration,
    status: u16,
    took: Duration,
    content: Option<String>,
}

fn load(
    app: &TestApp,
    key: &str,
    context: &str,
    writer: Option<usize>,
    start: Instant,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<Sample>> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    let (key, base) = (key.to_string(), app.api_url("/api/v1/contexts"));
    let context = context.to_string();
    tokio::spawn(async move {
        let mut samples = Vec::new();
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let at = start.elapsed();
            let sent = Instant::now();
            let (request, content) = match writer {
                Some(w) => {
                    let content = format!("w{w}-{n}");
                    let body = json!({ "items": [{ "role": "user", "content": content }] });
                    let url = format!("{base}/{context}/items");
                    (http.post(url).json(&body), Some(content))
                }
                None => (http.get(format!("{base}/{context}?last=1")), None),
            };
            let status = request
                .bearer_auth(&key)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0);
            samples.push(Sample {
                at,
                status,
                took: sent.elapsed(),
                content,
            });
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        samples
    })
}

/// The scale-out shape on this test's own PostgreSQL and Redis (the environment's data
/// directory and ports otherwise).
fn on_private_services(
    env: &TestEnv,
    postgres: &PrivatePostgres,
    redis: &PrivateRedis,
) -> devmesh::config::Config {
    let mut config = env.config.clone();
    config.database.url = Some(devmesh::config::SecretUrl::new(postgres.url()));
    config.redis.url = Some(devmesh::config::SecretUrl::new(redis.url()));
    config
}

fn p99(mut took: Vec<Duration>) -> Duration {
    took.sort();
    took[(took.len() * 99 / 100).min(took.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_and_postgres_restarts_under_load() {
    let mut redis = PrivateRedis::start();
    let postgres = PrivatePostgres::start();
    let env = TestEnv::new(Shape::Sqlite).await;
    let mut config = on_private_services(&env, &postgres, &redis);
    config.http.workers = 2;
    let app = TestApp::spawn(config, devmesh::jobs::Registry::new()).await;
    app.wait_ready().await;
    let acme = register(&app, "acme").await;
    let made = call(
        &app,
        "POST",
        "/api/v1/contexts",
        Some(&acme.key),
        Some(&json!({ "name": "under load" })),
    )
    .await;
    assert_eq!(made.status, 201);
    let context = made.body["id"].as_str().unwrap().to_string();

    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for w in 0..3 {
        tasks.push(load(
            &app,
            &acme.key,
            &context,
            Some(w),
            start,
            stop.clone(),
        ));
    }
    for _ in 0..3 {
        tasks.push(load(&app, &acme.key, &context, None, start, stop.clone()));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Redis hangs for three seconds (connections open, no answers), then goes on.
    redis.hang(true);
    let hung = start.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    redis.hang(false);
    let unhung = start.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Redis dies for three seconds and comes back empty.
    redis.kill();
    let redis_down = start.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    redis.start_again();
    let redis_back = start.elapsed();
    let back = Instant::now();
    loop {
        let ready = app.http.get(app.api_url("/ready")).send().await;
        if matches!(ready, Ok(r) if r.status() == 200) {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(10),
            "the node recovers"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let recovered_in = back.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;

    // PostgreSQL restarts.
    let pg_restart = start.elapsed();
    let _postgres = tokio::task::spawn_blocking(move || {
        postgres.restart();
        postgres
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let mut samples = Vec::new();
    for task in tasks {
        samples.extend(task.await.unwrap());
    }

    eprintln!(
        "{} answers; reads without Redis: p99 {:?}; ready {:?} after Redis returned",
        samples.len(),
        p99(samples
            .iter()
            .filter(|s| s.content.is_none() && s.at > redis_down && s.at < redis_back)
            .map(|s| s.took)
            .collect()),
        recovered_in
    );
    // No answer is a server fault; the only refusals are "unavailable, retry".
    let faults: Vec<&Sample> = samples
        .iter()
        .filter(|s| !matches!(s.status, 200 | 201 | 503))
        .collect();
    assert!(faults.is_empty(), "only 200, 201 or 503: {faults:?}");
    // Reads while Redis was away answered, and fast.
    let during: Vec<&Sample> = samples
        .iter()
        .filter(|s| {
            s.content.is_none()
                && s.at > redis_down + Duration::from_millis(200)
                && s.at < redis_back
        })
        .collect();
    assert!(
        during.len() > 20,
        "reads went on while Redis was down: {}",
        during.len()
    );
    assert!(
        during.iter().all(|s| s.status == 200),
        "reads answered 200 without Redis"
    );
    let slowest = p99(during.iter().map(|s| s.took).collect());
    assert!(
        slowest < Duration::from_millis(250),
        "p99 of reads without Redis: {slowest:?}"
    );
    // Reads while Redis hung: the node stops waiting for it after one timeout.
    let while_hung: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.content.is_none() && s.at > hung && s.at < unhung)
        .collect();
    assert!(while_hung.len() > 20, "reads went on while Redis hung");
    assert!(while_hung.iter().all(|s| s.status == 200));
    let slowest = p99(while_hung.iter().map(|s| s.took).collect());
    eprintln!("reads while Redis hung: p99 {slowest:?}");
    assert!(
        slowest < Duration::from_millis(250) * 2,
        "p99 of reads while Redis hung: {slowest:?}"
    );
    assert!(
        recovered_in < Duration::from_secs(1),
        "ready again {recovered_in:?} after Redis returned"
    );
    // Writes went on during the Redis outage, and again after the PostgreSQL restart.
    let acked = |from: Duration, to: Duration| {
        samples
            .iter()
            .filter(|s| s.status == 201 && s.at > from && s.at < to)
            .count()
    };
    assert!(acked(redis_down, redis_back) > 0, "writes without Redis");
    assert!(
        acked(pg_restart + Duration::from_secs(1), start.elapsed()) > 0,
        "writes after the PostgreSQL restart"
    );

    // Every acknowledged append is there, once.
    let full = call(
        &app,
        "GET",
        &format!("/api/v1/contexts/{context}"),
        Some(&acme.key),
        None,
    )
    .await;
    assert_eq!(full.status, 200);
    let stored: Vec<&str> = full.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i: &Value| i["content"].as_str().unwrap())
        .collect();
    for s in samples.iter().filter(|s| s.status == 201) {
        let content = s.content.as_deref().unwrap();
        assert_eq!(
            stored.iter().filter(|c| **c == content).count(),
            1,
            "{content} acknowledged and stored once"
        );
    }
    app.stop().await.unwrap();
}

/// A PostgreSQL that hangs (every process stopped, connections open): requests are
/// answered 503 with `Retry-After` within `database.request_timeout`, not held until the
/// database wakes; afterwards everything works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_database_is_answered_503_not_waited_for() {
    let postgres = PrivatePostgres::start();
    let redis = PrivateRedis::start();
    let env = TestEnv::new(Shape::Sqlite).await;
    let mut config = on_private_services(&env, &postgres, &redis);
    config.database.request_timeout = devmesh::config::Duration::from_millis(500);
    config.database.connect_timeout = devmesh::config::Duration::from_millis(500);
    let app = TestApp::spawn(config, devmesh::jobs::Registry::new()).await;
    app.wait_ready().await;
    let acme = register(&app, "acme").await;
    let ok = call(&app, "GET", "/api/v1/contexts", Some(&acme.key), None).await;
    assert_eq!(ok.status, 200);

    postgres.hang(true);
    let answers = futures_util::future::join_all((0..8).map(|i| {
        let (app, key) = (&app, acme.key.clone());
        async move {
            let body = json!({ "name": format!("while hung {i}") });
            let answer = tokio::time::timeout(
                Duration::from_secs(20),
                call(app, "POST", "/api/v1/contexts", Some(&key), Some(&body)),
            )
            .await;
            answer.map(|r| (r.status, r.header("retry-after").map(str::to_string)))
        }
    }))
    .await;
    postgres.hang(false);
    for answer in answers {
        let (status, retry) = answer.expect("answered while the database hung");
        assert!(status == 503 || status == 201, "{status}");
        if status == 503 {
            assert!(retry.is_some(), "503 says when to retry");
        }
    }
    let after = call(&app, "GET", "/api/v1/contexts", Some(&acme.key), None).await;
    assert_eq!(after.status, 200);
}
