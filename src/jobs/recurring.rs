//! Recurring jobs: every node that runs workers offers each recurring job once per
//! interval, under a deduplication key naming the time slot, so that the cluster runs it
//! once per slot however many nodes there are.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;

use super::{Job, new_job};
use crate::bus::queue::{JobQueue, NewJob};

/// A job offered every `interval`.
pub struct Recurring {
    pub interval: Duration,
    make: Box<dyn Fn() -> NewJob + Send + Sync>,
    name: &'static str,
}

impl Recurring {
    pub fn new<J: Job + Clone>(job: J, interval: Duration) -> Self {
        Self {
            interval,
            name: J::NAME,
            make: Box::new(move || new_job(&job)),
        }
    }

    /// The job for the time slot `now` falls in.
    fn for_slot(&self, now: Duration) -> NewJob {
        let slot = now.as_millis() / self.interval.as_millis().max(1);
        (self.make)()
            .dedup_key(format!("recurring:{}:{slot}", self.name))
            .dedup_window(self.interval * 2)
    }
}

/// Offers each recurring job at its interval until `shutdown`.
pub async fn run(queue: JobQueue, jobs: Vec<Recurring>, shutdown: CancellationToken) {
    let mut tasks = tokio::task::JoinSet::new();
    for job in jobs {
        let queue = queue.clone();
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            let mut ticks = tokio::time::interval(job.interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = ticks.tick() => {}
                }
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                if let Err(e) = queue.enqueue(job.for_slot(now)).await {
                    tracing::warn!(job = job.name, error = %e, "cannot enqueue recurring job");
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}
