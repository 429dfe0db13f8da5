//! The worker runtime with real job kinds: kill-and-reclaim, drain on shutdown, retries
//! with backoff up to the dead letters; on each queue implementation.

use std::sync::Arc;
use std::time::Duration;

use devmesh::bus::queue::QueueDepth;
use devmesh::config::Duration as ConfigDuration;
use devmesh::jobs::runner::{QueueSpec, Runner};
use devmesh::jobs::{Backoff, Job, JobContext, JobError, Registry, enqueue};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::helpers::{Shape, TestEnv, wait_until};

/// Records each run in a shared log (a table a test reads), then behaves as its payload says.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Probe {
    behaviour: Behaviour,
    key: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum Behaviour {
    /// Blocks until the process-wide gate opens (a job that is still working when its worker dies).
    BlockUntilReleased,
    Sleep(u64),
    AlwaysFail,
    /// Sleeps while counting how many probes run at once, noting each count it sees.
    CountConcurrent(u64),
}

static GATE: std::sync::LazyLock<Arc<Notify>> =
    std::sync::LazyLock::new(|| Arc::new(Notify::new()));

impl Job for Probe {
    const NAME: &'static str = "probe";
    const QUEUE: &'static str = "default";
    const MAX_ATTEMPTS: u32 = 3;
    type State = ();

    fn backoff() -> Backoff {
        Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_millis(200),
        }
    }

    async fn run(self, _: (), job: JobContext) -> Result<(), JobError> {
        let cache = &job.ctx.bus.cache;
        let runs = cache
            .incr(&format!("runs:{}", self.key), 1, Duration::from_secs(600))
            .await
            .unwrap();
        cache
            .set(
                &format!("last:{}", self.key),
                &format!("{}@{}", job.attempt, job.ctx.node.id),
                Duration::from_secs(600),
            )
            .await
            .unwrap();
        match self.behaviour {
            Behaviour::BlockUntilReleased if runs == 1 => GATE.notified().await,
            Behaviour::BlockUntilReleased => {}
            Behaviour::Sleep(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
            Behaviour::AlwaysFail => return Err(JobError::Retry(format!("failure number {runs}"))),
            Behaviour::CountConcurrent(ms) => {
                let running = cache
                    .incr("running", 1, Duration::from_secs(600))
                    .await
                    .unwrap();
                cache
                    .set(&format!("seen:{running}"), "1", Duration::from_secs(600))
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(ms)).await;
                cache
                    .incr("running", -1, Duration::from_secs(600))
                    .await
                    .unwrap();
            }
        }
        cache
            .incr(&format!("done:{}", self.key), 1, Duration::from_secs(600))
            .await
            .unwrap();
        Ok(())
    }
}

fn runner(env: &TestEnv, bus: devmesh::bus::Bus, node_id: &str) -> Runner {
    let mut config = env.config.clone();
    config.jobs.visibility_timeout = ConfigDuration::from_millis(600);
    let node = devmesh::nodes::NodeIdentity {
        id: node_id.into(),
        name: node_id.into(),
        roles: config.node.roles.clone(),
        version: "test",
    };
    let ctx = devmesh::context::Context {
        runtime: tokio::runtime::Handle::current(),
        config: Arc::new(config),
        db: devmesh::storage::Db::connect(&env.config).unwrap(),
        bus,
        node: Arc::new(node),
        health: Arc::default(),
        events: Arc::default(),
    };
    Runner::new(
        ctx,
        Registry::new().register::<Probe>(()),
        vec![QueueSpec {
            name: "default".into(),
            concurrency: 2,
        }],
    )
}

async fn counter(bus: &devmesh::bus::Bus, key: &str) -> i64 {
    bus.cache
        .get(key)
        .await
        .unwrap()
        .map(|v| v.parse().unwrap())
        .unwrap_or(0)
}

for_shapes!(
    [
        worker_killed_mid_job_is_replaced,
        shutdown_lets_jobs_in_flight_finish,
        failing_job_retries_then_dead_letters,
    ]
    on sqlite => Sqlite, postgres => Postgres, redis => PostgresRedis
);

async fn worker_killed_mid_job_is_replaced(shape: Shape) {
    let env = TestEnv::new(shape).await;
    let bus = env.bus().await;
    let job = Probe {
        behaviour: Behaviour::BlockUntilReleased,
        key: "k1".into(),
    };
    let queued = enqueue(&bus.queue, &job).await.unwrap();

    let a_stop = CancellationToken::new();
    let worker_a = tokio::spawn(runner(&env, bus.clone(), "node-a").run(a_stop.clone()));
    wait_until(Duration::from_secs(10), || async {
        counter(&bus, "runs:k1").await == 1
    })
    .await
    .unwrap();
    // Kill worker A mid-job: its task dies with the job unfinished and its lease unextended.
    worker_a.abort();
    let _ = worker_a.await;

    let b_stop = CancellationToken::new();
    let worker_b = tokio::spawn(runner(&env, bus.clone(), "node-b").run(b_stop.clone()));
    wait_until(Duration::from_secs(15), || async {
        counter(&bus, "done:k1").await == 1
    })
    .await
    .expect("another worker completes the job after the lease runs out");
    let last = bus.cache.get("last:k1").await.unwrap().unwrap();
    assert_eq!(last, "2@node-b", "the second attempt ran on node B");
    wait_until(Duration::from_secs(5), || async {
        bus.queue.depth("default").await.unwrap() == QueueDepth::default()
    })
    .await
    .expect("the job is acknowledged and gone");
    assert!(
        bus.queue
            .dead_letters("default", 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(!queued.id.is_empty());
    b_stop.cancel();
    worker_b.await.unwrap();
    GATE.notify_waiters();
}

async fn shutdown_lets_jobs_in_flight_finish(shape: Shape) {
    let env = TestEnv::new(shape).await;
    let bus = env.bus().await;
    enqueue(
        &bus.queue,
        &Probe {
            behaviour: Behaviour::Sleep(800),
            key: "slow".into(),
        },
    )
    .await
    .unwrap();
    let stop = CancellationToken::new();
    let worker = tokio::spawn(runner(&env, bus.clone(), "node-a").run(stop.clone()));
    wait_until(Duration::from_secs(10), || async {
        counter(&bus, "runs:slow").await == 1
    })
    .await
    .unwrap();

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), worker)
        .await
        .expect("the runner stops")
        .unwrap();
    assert_eq!(
        counter(&bus, "done:slow").await,
        1,
        "the job in flight finished before the runner stopped"
    );
    assert_eq!(
        bus.queue.depth("default").await.unwrap(),
        QueueDepth::default(),
        "and was acknowledged"
    );
}

async fn failing_job_retries_then_dead_letters(shape: Shape) {
    let env = TestEnv::new(shape).await;
    let bus = env.bus().await;
    let queued = enqueue(
        &bus.queue,
        &Probe {
            behaviour: Behaviour::AlwaysFail,
            key: "bad".into(),
        },
    )
    .await
    .unwrap();
    let stop = CancellationToken::new();
    let worker = tokio::spawn(runner(&env, bus.clone(), "node-a").run(stop.clone()));
    wait_until(Duration::from_secs(15), || async {
        bus.queue.depth("default").await.unwrap().dead == 1
    })
    .await
    .expect("dead-lettered after its attempts");
    stop.cancel();
    worker.await.unwrap();
    assert_eq!(counter(&bus, "runs:bad").await, 3, "ran MAX_ATTEMPTS times");
    let dead = bus.queue.dead_letters("default", 10).await.unwrap();
    assert_eq!(
        (dead[0].id.as_str(), dead[0].attempts),
        (queued.id.as_str(), 3)
    );
    assert_eq!(dead[0].last_error.as_deref(), Some("failure number 3"));
}

/// A payload that does not fit its job kind cannot succeed: it is dead-lettered at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kind_and_bad_payload_are_dead_lettered() {
    let env = TestEnv::new(Shape::Sqlite).await;
    let bus = env.bus().await;
    use devmesh::bus::queue::NewJob;
    bus.queue
        .enqueue(NewJob::new(
            "default",
            "probe",
            serde_json::json!({"wrong": true}),
        ))
        .await
        .unwrap();
    bus.queue
        .enqueue(NewJob::new(
            "default",
            "no_such_kind",
            serde_json::json!({}),
        ))
        .await
        .unwrap();
    let stop = CancellationToken::new();
    let worker = tokio::spawn(runner(&env, bus.clone(), "node-a").run(stop.clone()));
    wait_until(Duration::from_secs(10), || async {
        bus.queue.depth("default").await.unwrap().dead == 2
    })
    .await
    .unwrap();
    stop.cancel();
    worker.await.unwrap();
    let errors: Vec<_> = bus
        .queue
        .dead_letters("default", 10)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.last_error.unwrap())
        .collect();
    assert!(
        errors.iter().any(|e| e.contains("not a valid probe job")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("no job kind named \"no_such_kind\"")),
        "{errors:?}"
    );
}

/// The queue's concurrency is the most jobs that run at once on a node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_per_queue_is_respected() {
    let env = TestEnv::new(Shape::Sqlite).await;
    let bus = env.bus().await;
    for i in 0..6 {
        let job = Probe {
            behaviour: Behaviour::CountConcurrent(300),
            key: format!("c{i}"),
        };
        enqueue(&bus.queue, &job).await.unwrap();
    }
    let stop = CancellationToken::new();
    // The test runner's queue spec gives the default queue a concurrency of 2.
    let worker = tokio::spawn(runner(&env, bus.clone(), "node-a").run(stop.clone()));
    wait_until(Duration::from_secs(15), || async {
        let mut done = 0;
        for i in 0..6 {
            done += counter(&bus, &format!("done:c{i}")).await;
        }
        done == 6
    })
    .await
    .unwrap();
    stop.cancel();
    worker.await.unwrap();
    assert!(
        bus.cache.get("seen:2").await.unwrap().is_some(),
        "two jobs ran side by side"
    );
    assert!(
        bus.cache.get("seen:3").await.unwrap().is_none(),
        "never three"
    );
}
