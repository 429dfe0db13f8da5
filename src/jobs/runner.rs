//! The runner: for each queue a node consumes, one fetch loop that leases jobs while a
//! semaphore has room (the queue's concurrency), runs them, keeps their leases alive, and
//! acknowledges, retries or dead-letters them. On shutdown it stops fetching and lets the
//! jobs in flight finish within the grace period; jobs still running after it are left to
//! their leases, which run out and hand them to another worker.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{JobContext, JobError, Registry};
use crate::bus::queue::{Delivery, FailOutcome, QueueError};
use crate::context::Context;

/// A queue and how many of its jobs may run at once on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSpec {
    pub name: String,
    pub concurrency: usize,
}

pub struct Runner {
    ctx: Context,
    registry: Arc<Registry>,
    queues: Vec<QueueSpec>,
}

/// How a finished attempt ended, as counted in metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Succeeded,
    Retrying,
    Dead,
    LeaseLost,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Retrying => "retrying",
            Outcome::Dead => "dead",
            Outcome::LeaseLost => "lease_lost",
        }
    }
}

impl Runner {
    pub fn new(ctx: Context, registry: Registry, queues: Vec<QueueSpec>) -> Self {
        Self {
            ctx,
            registry: Arc::new(registry),
            queues,
        }
    }

    /// Runs until `shutdown` is cancelled, then drains within the configured grace period.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut loops = JoinSet::new();
        for spec in self.queues {
            let worker = QueueWorker {
                ctx: self.ctx.clone(),
                registry: self.registry.clone(),
                spec,
                shutdown: shutdown.clone(),
            };
            loops.spawn(worker.run());
        }
        while loops.join_next().await.is_some() {}
    }
}

struct QueueWorker {
    ctx: Context,
    registry: Arc<Registry>,
    spec: QueueSpec,
    shutdown: CancellationToken,
}

impl QueueWorker {
    fn consumer(&self) -> &str {
        &self.ctx.node.id
    }

    async fn run(self) {
        let queue = &self.spec.name;
        tracing::info!(
            queue,
            concurrency = self.spec.concurrency,
            "consuming queue"
        );
        let slots = Arc::new(Semaphore::new(self.spec.concurrency));
        let mut running = JoinSet::new();
        let jobs = &self.ctx.config.jobs;
        let mut error_pause = Duration::from_millis(250);
        loop {
            let permit = tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => break,
                permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            };
            while running.try_join_next().is_some() {}
            let fetched = self
                .ctx
                .bus
                .queue
                .fetch(
                    queue,
                    self.consumer(),
                    jobs.visibility_timeout.get(),
                    jobs.poll_interval.get(),
                )
                .await;
            match fetched {
                Ok(Some(delivery)) => {
                    error_pause = Duration::from_millis(250);
                    running.spawn(self.attempt(delivery, permit));
                }
                Ok(None) => error_pause = Duration::from_millis(250),
                Err(e) => {
                    tracing::warn!(queue, error = %e, retry_in_ms = error_pause.as_millis() as u64, "cannot fetch jobs");
                    tokio::select! {
                        _ = self.shutdown.cancelled() => break,
                        _ = tokio::time::sleep(error_pause) => {}
                    }
                    // At most a second: the queue is back to work within a second of its
                    // store returning.
                    error_pause = (error_pause * 2).min(Duration::from_secs(1));
                }
            }
        }
        tracing::debug!(queue, "stopped fetching");
        self.drain(running).await;
    }

    async fn drain(&self, mut running: JoinSet<()>) {
        if running.is_empty() {
            return;
        }
        let grace = self.ctx.config.shutdown.grace_period.get();
        tracing::info!(queue = %self.spec.name, in_flight = running.len(), "waiting for jobs in flight");
        let drained = tokio::time::timeout(grace, async {
            while running.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                queue = %self.spec.name,
                still_running = running.len(),
                "grace period over: stopping jobs; their leases will expire and another worker will run them"
            );
            running.abort_all();
        }
    }

    /// One attempt of one job, from lease to acknowledgement.
    fn attempt(
        &self,
        delivery: Delivery,
        permit: OwnedSemaphorePermit,
    ) -> impl Future<Output = ()> + Send + 'static {
        let ctx = self.ctx.clone();
        let registry = self.registry.clone();
        let shutdown = self.shutdown.clone();
        async move {
            let _permit = permit;
            let started = Instant::now();
            let span = tracing::info_span!("job", job.id = %delivery.id, job.kind = %delivery.kind, queue = %delivery.queue, attempt = delivery.attempt);
            let outcome = tracing::Instrument::instrument(
                run_one(&ctx, &registry, &delivery, shutdown),
                span,
            )
            .await;
            let labels = [
                ("queue", delivery.queue.clone()),
                ("job", delivery.kind.clone()),
            ];
            metrics::counter!(
                "devmesh_jobs_processed_total",
                &[
                    ("queue", delivery.queue.clone()),
                    ("job", delivery.kind.clone()),
                    ("outcome", outcome.as_str().to_string()),
                ]
            )
            .increment(1);
            metrics::histogram!("devmesh_jobs_duration_seconds", &labels)
                .record(started.elapsed().as_secs_f64());
        }
    }
}

async fn run_one(
    ctx: &Context,
    registry: &Registry,
    delivery: &Delivery,
    shutdown: CancellationToken,
) -> Outcome {
    let queue = &ctx.bus.queue;
    let Some(registered) = registry.get(&delivery.kind) else {
        let error = format!(
            "no job kind named {:?} is known to node {}",
            delivery.kind, ctx.node.name
        );
        return settle(queue.fail(delivery, &error, None).await, &error);
    };
    let job_ctx = JobContext {
        ctx: ctx.clone(),
        job_id: delivery.id.clone(),
        attempt: delivery.attempt,
        shutdown,
    };
    let work = AssertUnwindSafe(registered.run(delivery.payload.clone(), job_ctx)).catch_unwind();

    let result = tokio::select! {
        result = work => match result {
            Ok(result) => result,
            Err(panic) => Err(JobError::Retry(format!("the job panicked: {}", panic_message(&panic)))),
        },
        lost = keep_lease(ctx, delivery) => {
            tracing::warn!(error = %lost, "lease lost while the job ran; stopping it (another worker has it)");
            return Outcome::LeaseLost;
        }
    };
    match result {
        Ok(()) => match queue.ack(delivery).await {
            Ok(()) => Outcome::Succeeded,
            Err(e) => settle(Err(e), "acknowledging"),
        },
        Err(JobError::Retry(error)) => {
            let delay = registered.backoff.delay(delivery.attempt);
            settle(queue.fail(delivery, &error, Some(delay)).await, &error)
        }
        Err(JobError::Fail(error)) => settle(queue.fail(delivery, &error, None).await, &error),
    }
}

/// Extends the lease every third of the visibility timeout; returns only when it is lost.
async fn keep_lease(ctx: &Context, delivery: &Delivery) -> QueueError {
    let visibility = ctx.config.jobs.visibility_timeout.get();
    let mut failures = 0;
    loop {
        tokio::time::sleep(visibility / 3).await;
        match ctx
            .bus
            .queue
            .extend(delivery, &ctx.node.id, visibility)
            .await
        {
            Ok(()) => failures = 0,
            Err(QueueError::LeaseLost) => return QueueError::LeaseLost,
            Err(e) => {
                failures += 1;
                tracing::warn!(error = %e, "cannot extend the job's lease");
                if failures >= 2 {
                    return e;
                }
            }
        }
    }
}

/// The outcome of recording a failure (or of a failed acknowledgement).
fn settle(result: Result<FailOutcome, QueueError>, error: &str) -> Outcome {
    match result {
        Ok(FailOutcome::Retrying(after)) => {
            tracing::warn!(
                error,
                retry_in_ms = after.as_millis() as u64,
                "job failed; will retry"
            );
            Outcome::Retrying
        }
        Ok(FailOutcome::Dead) => {
            tracing::error!(error, "job failed for good; moved to the dead letters");
            Outcome::Dead
        }
        Err(QueueError::LeaseLost) => {
            tracing::warn!("the job's lease was lost before it was settled; another worker has it");
            Outcome::LeaseLost
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot record the job's outcome; its lease will expire and it will run again");
            Outcome::LeaseLost
        }
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}
