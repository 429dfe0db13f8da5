//! The job queue as a table in the database: a job accepted before a crash is still there after it.

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use tokio::sync::Notify;

use super::{
    DeadJob, Delivery, Enqueued, FailOutcome, NewJob, QueueDepth, QueueError, QueueResult,
    new_job_id, parse_payload,
};
use crate::storage::jobs::{self as store, DedupKey, Inserted, JobRow};
use crate::storage::{Db, now};

#[derive(Clone)]
pub struct DbQueue {
    db: Db,
    dedup_window: Duration,
    poll_interval: Duration,
    /// Wakes this node's waiting consumers when this node enqueues.
    enqueued: Arc<Notify>,
}

impl DbQueue {
    pub fn new(db: Db, dedup_window: Duration, poll_interval: Duration) -> Self {
        Self {
            db,
            dedup_window,
            poll_interval,
            enqueued: Arc::new(Notify::new()),
        }
    }

    pub async fn enqueue(&self, job: NewJob) -> QueueResult<Enqueued> {
        let now = now();
        let id = new_job_id();
        let row = JobRow {
            id: id.clone(),
            queue: job.queue,
            kind: job.kind,
            payload: job.payload.to_string(),
            status: store::QUEUED.into(),
            attempts: 0,
            max_attempts: clamp_i32(job.max_attempts),
            run_at: now + delta(job.delay),
            lease_id: None,
            locked_by: None,
            locked_until: None,
            last_error: None,
            created_at: now,
            updated_at: now,
        };
        let window = job.dedup_window.unwrap_or(self.dedup_window);
        let dedup = job.dedup_key.map(|key| DedupKey {
            key,
            expires_at: now + delta(window),
        });
        let result = match store::insert(&self.db, row, dedup, now).await? {
            Inserted::New => Enqueued {
                id,
                duplicate: false,
            },
            Inserted::Duplicate(existing) => Enqueued {
                id: existing,
                duplicate: true,
            },
        };
        self.enqueued.notify_waiters();
        Ok(result)
    }

    pub async fn fetch(
        &self,
        queue: &str,
        consumer: &str,
        visibility: Duration,
        wait: Duration,
    ) -> QueueResult<Option<Delivery>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.enqueued.notified();
            if let Some(delivery) = self.try_claim(queue, consumer, visibility).await? {
                return Ok(Some(delivery));
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let nap = self.poll_interval.min(deadline - now);
            let _ = tokio::time::timeout(nap, notified).await;
        }
    }

    async fn try_claim(
        &self,
        queue: &str,
        consumer: &str,
        visibility: Duration,
    ) -> QueueResult<Option<Delivery>> {
        let now = now();
        store::bury_expired_final_attempts(&self.db, queue, now).await?;
        let lease = uuid::Uuid::now_v7().to_string();
        let Some(row) = store::claim(
            &self.db,
            queue,
            consumer,
            &lease,
            now,
            now + delta(visibility),
        )
        .await?
        else {
            return Ok(None);
        };
        Ok(Some(Delivery {
            payload: parse_payload(&row.payload)?,
            id: row.id,
            queue: row.queue,
            kind: row.kind,
            attempt: row.attempts.max(0) as u32,
            max_attempts: row.max_attempts.max(1) as u32,
            lease,
        }))
    }

    pub async fn extend(
        &self,
        d: &Delivery,
        _consumer: &str,
        visibility: Duration,
    ) -> QueueResult<()> {
        lease_kept(store::extend(&self.db, &d.id, &d.lease, now() + delta(visibility)).await?)
    }

    pub async fn ack(&self, d: &Delivery) -> QueueResult<()> {
        lease_kept(store::complete(&self.db, &d.id, &d.lease).await?)
    }

    pub async fn fail(&self, d: &Delivery, error: &str, outcome: FailOutcome) -> QueueResult<()> {
        let now = now();
        let kept = match outcome {
            FailOutcome::Retrying(after) => {
                store::requeue(&self.db, &d.id, &d.lease, now + delta(after), error, now).await?
            }
            FailOutcome::Dead => store::bury(&self.db, &d.id, &d.lease, error, now).await?,
        };
        lease_kept(kept)
    }

    pub async fn dead_letters(&self, queue: &str, limit: usize) -> QueueResult<Vec<DeadJob>> {
        let rows = store::list_dead(&self.db, queue, limit.min(10_000) as i64).await?;
        rows.into_iter()
            .map(|r| {
                Ok(DeadJob {
                    payload: parse_payload(&r.payload)?,
                    id: r.id,
                    queue: r.queue,
                    kind: r.kind,
                    attempts: r.attempts.max(0) as u32,
                    last_error: r.last_error,
                    created_at: r.created_at.and_utc(),
                    failed_at: r.updated_at.and_utc(),
                })
            })
            .collect()
    }

    pub async fn replay(&self, queue: &str, id: &str) -> QueueResult<bool> {
        let replayed = store::replay_dead(&self.db, queue, id, now()).await?;
        if replayed {
            self.enqueued.notify_waiters();
        }
        Ok(replayed)
    }

    pub async fn depth(&self, queue: &str) -> QueueResult<QueueDepth> {
        let c = store::counts(&self.db, queue, now()).await?;
        Ok(QueueDepth {
            ready: c.ready,
            scheduled: c.scheduled,
            running: c.running,
            dead: c.dead,
        })
    }
}

fn lease_kept(kept: bool) -> QueueResult<()> {
    if kept {
        Ok(())
    } else {
        Err(QueueError::LeaseLost)
    }
}

/// A duration as a time delta, capped at ten years so that adding it to a date cannot overflow.
fn delta(d: Duration) -> TimeDelta {
    const TEN_YEARS: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
    TimeDelta::from_std(d.min(TEN_YEARS)).expect("ten years fit in a time delta")
}

fn clamp_i32(n: u32) -> i32 {
    n.min(i32::MAX as u32) as i32
}
