//! The job queue contract, run against each implementation: the database queue on SQLite,
//! the database queue on PostgreSQL, and Redis Streams.

use std::collections::HashSet;
use std::time::Duration;

use devmesh::bus::queue::{Delivery, FailOutcome, JobQueue, NewJob, QueueDepth, QueueError};
use serde_json::json;

use crate::helpers::{Shape, TestEnv};

/// Leases the next job of `queue`; the test expects there to be one.
async fn leased(
    q: &JobQueue,
    queue: &str,
    consumer: &str,
    visibility: Duration,
    wait: Duration,
) -> Delivery {
    q.fetch(queue, consumer, visibility, wait)
        .await
        .unwrap()
        .expect("a job to lease")
}

const LONG: Duration = Duration::from_secs(30);
const NO_WAIT: Duration = Duration::from_millis(1);

for_shapes!(
    [
        enqueue_fetch_ack,
        dedup_key_keeps_a_second_job_out,
        dedup_key_is_released_after_its_window,
        job_of_a_dead_worker_goes_to_another,
        failed_job_retries_then_dead_letters_and_replays,
        permanent_failure_dead_letters_at_once,
        expired_last_attempt_is_dead_lettered,
        delayed_job_waits,
        extended_lease_is_kept,
        concurrent_consumers_each_get_distinct_jobs,
        accepted_job_survives_a_restart,
        queues_are_separate,
    ]
    on sqlite => Sqlite, postgres => Postgres, redis => PostgresRedis
);

async fn enqueue_fetch_ack(shape: Shape) {
    let env = TestEnv::new(shape).await;
    let bus = env.bus().await;
    let q = &bus.queue;
    let payload =
        json!({"repo": "acme/api", "list": [], "n": 12345678901i64, "nested": {"a": [1, 2]}});
    let job = q
        .enqueue(NewJob::new("default", "build", payload.clone()))
        .await
        .unwrap();
    assert!(!job.duplicate);
    assert_eq!(
        q.depth("default").await.unwrap(),
        QueueDepth {
            ready: 1,
            ..Default::default()
        }
    );

    let d = q
        .fetch("default", "node-a", LONG, NO_WAIT)
        .await
        .unwrap()
        .expect("a job");
    assert_eq!(
        (d.id.as_str(), d.kind.as_str(), d.attempt, d.max_attempts),
        (job.id.as_str(), "build", 1, 5)
    );
    assert_eq!(d.payload, payload, "the payload comes back exactly as sent");
    assert_eq!(
        q.depth("default").await.unwrap(),
        QueueDepth {
            running: 1,
            ..Default::default()
        }
    );
    assert!(
        q.fetch("default", "node-b", LONG, NO_WAIT)
            .await
            .unwrap()
            .is_none(),
        "a leased job is not handed out twice"
    );

    q.ack(&d).await.unwrap();
    assert_eq!(q.depth("default").await.unwrap(), QueueDepth::default());
    assert!(
        q.fetch("default", "node-a", LONG, NO_WAIT)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        matches!(q.ack(&d).await, Err(QueueError::LeaseLost)),
        "a second ack is refused"
    );
}

async fn dedup_key_keeps_a_second_job_out(shape: Shape) {
    let env = TestEnv::new(shape).await;
    let q = env.bus().await.queue;
    let first = q
        .enqueue(NewJob::new("default", "hook", json!(1)).dedup_key("delivery-42"))
        .await
        .unwrap();
    let second = q
        .enqueue(NewJob::new("default", "hook", json!(2)).dedup_key("delivery-42"))
        .await
        .unwrap();
    assert!(!first.duplicate && second.duplicate);
    assert_eq!(
        second.id, first.id,
        "the duplicate names the job that holds the key"
    );
    let other = q
        .enqueue(NewJob::new("default", "hook", json!(3)).dedup_key("delivery-43"))
        .await
        .unwrap();
    assert!(!other.duplicate);

    let a = leased(&q, "default", "n", LONG, NO_WAIT).await;
    q.ack(&a).await.unwrap();
    // The key still holds after the job finished: a redelivered webhook is not processed twice.
    let again = q
        .enqueue(NewJob::new("default", "hook", json!(4)).dedup_key("delivery-42"))
        .await
        .unwrap();
    assert!(again.duplicate);
    let b = leased(&q, "default", "n", LONG, NO_WAIT).await;
    q.ack(&b).await.unwrap();
    let payloads: HashSet<_> = [a.payload, b.payload].into_iter().collect();
    assert_eq!(payloads, HashSet::from([json!(1), json!(3)]));
    assert!(
        q.fetch("default", "n", LONG, NO_WAIT)
            .await
            .unwrap()
            .is_none()
    );
}

async fn dedup_key_is_released_after_its_window(shape: Shape) {
    let env = TestEnv::new(shape).await;
    let q = env.bus().await.queue;
    let job = || {
        NewJob::new("default", "tick", json!(null))
            .dedup_key("slot-1")
            .dedup_window(Duration::from_millis(300))
    };
    assert!(!q.enqueue(job()).await.unwrap().duplicate);
    assert!(q.enqueue(job()).await.unwrap().duplicate);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !q.enqueue(job()).await.unwrap().duplicate,
        "the key is free once its window has passed"
    );
    assert_eq!(q.depth("default").await.unwrap().ready, 2);
}

async fn job_of_a_dead_worker_goes_to_another(shape: Shape) {
    let env = TestEnv::new(shape).await;
    let q = env.bus().await.queue;
    let visibility = Duration::from_millis(400);
    let job = q
        .enqueue(NewJob::new("default", "deploy", json!({"env": "prod"})))
        .await
        .unwrap();

    // Worker A takes the job and dies: it never acknowledges nor extends the lease.
    let lost = leased(&q, "default", "node-a", visibility, NO_WAIT).await;
    assert!(
        q.fetch("default", "node-b", visibility, NO_WAIT)
            .await
            .unwrap()
            .is_none()
    );

    tokio::time::sleep(visibility + Duration::from_millis(200)).await;
    let d = q
        .fetch("default", "node-b", LONG, Duration::from_secs(2))
        .await
        .unwrap()
        .expect("handed to another worker");
    assert_eq!(d.id, job.id);
    assert_eq!(d.attempt, 2, "the lost attempt counts");
    assert!(
        matches!(q.ack(&lost).await, Err(QueueError::LeaseLost)),
        "the dead worker's lease is void"
    );
    q.ack(&d).await.unwrap();
    assert_eq!(q.depth("default").await.unwrap(), QueueDepth::default());
}

async fn failed_job_retries_then_dead_letters_and_replays(shape: Shape) {
    let env = TestEnv::new(shape).await;
    let q = env.bus().await.queue;
    let job = q
        .enqueue(NewJob::new("default", "sync", json!({"x": 1})).max_attempts(2))
        .await
        .unwrap();

    let d1 = leased(&q, "default", "n", LONG, NO_WAIT).await;
    let outcome = q
        .fail(&d1, "upstream 502", Some(Duration::from_millis(300)))
        .await
        .unwrap();
    assert_eq!(outcome, FailOutcome::Retrying(Duration::from_millis(300)));
    assert!(
        q.fetch("default", "n", LONG, NO_WAIT)
            .await
            .unwrap()
            .is_none(),
        "the backoff is respected"
    );
    assert_eq!(
        q.depth("default").await.unwrap(),
        QueueDepth {
            scheduled: 1,
            ..Default::default()
        }
    );

    let d2 = q
        .fetch("default", "n", LONG, Duration::from_secs(3))
        .await
        .unwrap()
        .expect("retried after the backoff");
    assert_eq!((d2.id.as_str(), d2.attempt), (job.id.as_str(), 2));
    let outcome = q
        .fail(&d2, "upstream 503", Some(Duration::from_millis(10)))
        .await
        .unwrap();
    assert_eq!(
        outcome,
        FailOutcome::Dead,
        "the last attempt's failure dead-letters the job"
    );
    assert_eq!(
        q.depth("default").await.unwrap(),
        QueueDepth {
            dead: 1,
            ..Default::default()
        }
    );

    let dead = q.dead_letters("default", 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].id.as_str(), dead[0].kind.as_str(), dead[0].attempts),
        (job.id.as_str(), "sync", 2)
    );
    assert_eq!(dead[0].last_error.as_deref(), Some("upstream 503"));
    assert_eq!(dead[0].payload, json!({"x": 1}));

    assert!(!q.replay("default", "no-such-job").await.unwrap());
    assert!(q.replay("default", &job.id).await.unwrap());
    assert!(
        !q.replay("default", &job.id).await.unwrap(),
        "a replayed job is no longer dead"
    );
    let d3 = q
        .fetch("default", "n", LONG, Duration::from_secs(2))
        .await
        .unwrap()
        .expect("replayed");
    assert_eq!(
        (d3.id.as_str(), d3.attempt),
        (job.id.as_str(), 1),
        "a replay starts its attempts afresh"
    );
    q.ack(&d3).await.unwrap();
    assert!(q.dead_letters("default", 10).await.unwrap().is_empty());
}

async fn permanent_failure_dead_letters_at_once(shape: Shape) {
    let env = TestEnv::new(shape).await;
    let q = env.bus().await.queue;
    q.enqueue(NewJob::new("default", "parse", json!("garbage")))
        .await
        .unwrap();
    let d = leased(&q, "default", "n", LONG, NO_WAIT).await;
    assert_eq!(
        q.fail(&d, "cannot parse", None).await.unwrap(),
        FailOutcome::Dead
    );
    let dead = q.dead_letters("default", 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, 1);
}

async fn expired_last_attempt_is_dead_lettered(shape: Shape) {
    let env = TestEnv::new(shape).await;
    let q = env.bus().await.queue;
    let job = q
        .enqueue(NewJob::new("default", "once", json!(null)).max_attempts(1))
        .await
        .unwrap();
    let visibility = Duration::from_millis(300);
    let _lost = leased(&q, "default", "node-a", visibility, NO_WAIT).await;
    tokio::time::sleep(visibility + Duration::from_millis(200)).await;
    assert!(
        q.fetch("default", "node-b", visibility, Duration::from_millis(300))
            .await
            .unwrap()
            .is_none()
    );
    let dead = q.dead_letters("default", 10).await.unwrap();
    assert_eq!(
        dead.len(),
        1,
        "a job whose worker died on its last attempt is kept as a dead letter"
    );
    assert_eq!(dead[0].id, job.id);
    assert!(
        dead[0]
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("lease expired")
    );
}

async fn delayed_job_waits(shape: Shape) {
    let env = TestEnv::new(shape).await;
    let q = env.bus().await.queue;
    q.enqueue(NewJob::new("default", "later", json!(1)).delay(Duration::from_millis(500)))
        .await
        .unwrap();
    assert!(
        q.fetch("default", "n", LONG, NO_WAIT)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(q.depth("default").await.unwrap().scheduled, 1);
    let d = q
        .fetch("default", "n", LONG, Duration::from_secs(3))
        .await
        .unwrap();
    assert!(d.is_some(), "the delayed job runs once its time comes");
}

async fn extended_lease_is_kept(shape: Shape) {
    let env = TestEnv::new(shape).await;
    let q = env.bus().await.queue;
    q.enqueue(NewJob::new("default", "long", json!(1)))
        .await
        .unwrap();
    let visibility = Duration::from_millis(600);
    let d = leased(&q, "default", "node-a", visibility, NO_WAIT).await;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        q.extend(&d, "node-a", visibility).await.unwrap();
    }
    // 900 ms after the fetch: past the first lease, within the extended one.
    assert!(
        q.fetch("default", "node-b", visibility, NO_WAIT)
            .await
            .unwrap()
            .is_none()
    );
    q.ack(&d).await.unwrap();
}

async fn concurrent_consumers_each_get_distinct_jobs(shape: Shape) {
    let env = TestEnv::new(shape).await;
    let q = env.bus().await.queue;
    for i in 0..30 {
        q.enqueue(NewJob::new("default", "n", json!(i)))
            .await
            .unwrap();
    }
    let mut consumers = tokio::task::JoinSet::new();
    for c in 0..4 {
        let q = q.clone();
        consumers.spawn(async move {
            let mut got = Vec::new();
            while let Some(d) = q
                .fetch(
                    "default",
                    &format!("c{c}"),
                    LONG,
                    Duration::from_millis(200),
                )
                .await
                .unwrap()
            {
                got.push(d.payload.as_i64().unwrap());
                q.ack(&d).await.unwrap();
            }
            got
        });
    }
    let mut all = Vec::new();
    while let Some(got) = consumers.join_next().await {
        all.extend(got.unwrap());
    }
    all.sort();
    assert_eq!(
        all,
        (0..30).collect::<Vec<_>>(),
        "every job delivered exactly once"
    );
}

async fn accepted_job_survives_a_restart(shape: Shape) {
    let env = TestEnv::new(shape).await;
    let bus = env.bus().await;
    let job = bus
        .queue
        .enqueue(NewJob::new("default", "keep", json!({"k": "v"})))
        .await
        .unwrap();
    bus.close().await;
    drop(bus);

    let bus = env.bus().await;
    let d = bus
        .queue
        .fetch("default", "n", LONG, Duration::from_secs(1))
        .await
        .unwrap()
        .expect("still queued");
    assert_eq!((d.id, d.payload), (job.id, json!({"k": "v"})));
}

async fn queues_are_separate(shape: Shape) {
    let env = TestEnv::new(shape).await;
    let q = env.bus().await.queue;
    q.enqueue(NewJob::new("webhooks", "a", json!(1)))
        .await
        .unwrap();
    assert!(
        q.fetch("default", "n", LONG, NO_WAIT)
            .await
            .unwrap()
            .is_none()
    );
    let d = leased(&q, "webhooks", "n", LONG, NO_WAIT).await;
    assert_eq!(d.queue, "webhooks");
    q.ack(&d).await.unwrap();
}
