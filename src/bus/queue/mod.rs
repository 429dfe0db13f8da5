//! The durable job queue: named queues, deduplication keys, leases with a visibility
//! timeout, retries scheduled by the caller, dead letters that can be listed and replayed.
//!
//! Two implementations with one contract: [`database::DbQueue`] (a table in SQLite or
//! PostgreSQL) and [`redis::RedisQueue`] (Redis Streams with consumer groups).

pub mod database;
pub mod redis;
mod redis_scripts;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::storage::StorageError;

/// A job to put on a queue.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub queue: String,
    pub kind: String,
    pub payload: Value,
    /// While a job with this key was enqueued within the deduplication window, another is not.
    pub dedup_key: Option<String>,
    /// The deduplication window for this job; `None` uses `jobs.dedup_window`.
    pub dedup_window: Option<Duration>,
    pub max_attempts: u32,
    /// Run no earlier than this long from now.
    pub delay: Duration,
}

impl NewJob {
    pub fn new(queue: impl Into<String>, kind: impl Into<String>, payload: Value) -> Self {
        Self {
            queue: queue.into(),
            kind: kind.into(),
            payload,
            dedup_key: None,
            dedup_window: None,
            max_attempts: 5,
            delay: Duration::ZERO,
        }
    }
    pub fn dedup_key(mut self, key: impl Into<String>) -> Self {
        self.dedup_key = Some(key.into());
        self
    }
    /// Keeps the deduplication key for `window` instead of the configured window.
    pub fn dedup_window(mut self, window: Duration) -> Self {
        self.dedup_window = Some(window);
        self
    }
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }
    pub fn delay(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }
}

/// The outcome of an enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enqueued {
    pub id: String,
    /// True when an earlier job held the deduplication key: `id` is that job's.
    pub duplicate: bool,
}

/// A job leased to one worker until it acknowledges, fails, or its lease runs out.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: String,
    pub queue: String,
    pub kind: String,
    pub payload: Value,
    /// This attempt's number, from 1.
    pub attempt: u32,
    pub max_attempts: u32,
    /// Identifies this lease: the database lease id or the Redis stream entry.
    pub(crate) lease: String,
}

impl Delivery {
    pub fn is_last_attempt(&self) -> bool {
        self.attempt >= self.max_attempts
    }
}

/// What happened to a failed job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailOutcome {
    /// It will run again after the given delay.
    Retrying(Duration),
    /// It is in the dead letters.
    Dead,
}

/// A job in the dead letters.
#[derive(Debug, Clone, Serialize)]
pub struct DeadJob {
    pub id: String,
    pub queue: String,
    pub kind: String,
    pub payload: Value,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub failed_at: DateTime<Utc>,
}

/// How many jobs a queue holds, by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct QueueDepth {
    /// Waiting to run now.
    pub ready: u64,
    /// Waiting for a retry's backoff to pass, or for a delayed start.
    pub scheduled: u64,
    /// Leased to a worker.
    pub running: u64,
    pub dead: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("redis: {0}")]
    Redis(String),
    /// The lease ran out and the job went to another worker (or to the dead letters).
    #[error("the job's lease was lost")]
    LeaseLost,
    #[error("the job's stored payload is not valid JSON: {0}")]
    CorruptPayload(String),
}

impl From<fred::error::Error> for QueueError {
    fn from(e: fred::error::Error) -> Self {
        QueueError::Redis(e.to_string())
    }
}

pub type QueueResult<T> = Result<T, QueueError>;

/// The job queue of this deployment.
#[derive(Clone)]
pub enum JobQueue {
    Database(database::DbQueue),
    Redis(redis::RedisQueue),
}

macro_rules! dispatch {
    ($self:ident, $q:ident => $call:expr) => {
        match $self {
            JobQueue::Database($q) => $call,
            JobQueue::Redis($q) => $call,
        }
    };
}

impl JobQueue {
    pub async fn enqueue(&self, job: NewJob) -> QueueResult<Enqueued> {
        dispatch!(self, q => q.enqueue(job).await)
    }

    /// Leases the next job of `queue` to `consumer` for `visibility`, waiting up to `wait` for one.
    pub async fn fetch(
        &self,
        queue: &str,
        consumer: &str,
        visibility: Duration,
        wait: Duration,
    ) -> QueueResult<Option<Delivery>> {
        dispatch!(self, q => q.fetch(queue, consumer, visibility, wait).await)
    }

    /// Keeps a lease alive for another `visibility`.
    pub async fn extend(
        &self,
        delivery: &Delivery,
        consumer: &str,
        visibility: Duration,
    ) -> QueueResult<()> {
        dispatch!(self, q => q.extend(delivery, consumer, visibility).await)
    }

    /// The job is done: it leaves the queue.
    pub async fn ack(&self, delivery: &Delivery) -> QueueResult<()> {
        dispatch!(self, q => q.ack(delivery).await)
    }

    /// The attempt failed: the job runs again after `retry_after` unless this was its last
    /// attempt or `retry_after` is `None`, in which case it goes to the dead letters.
    pub async fn fail(
        &self,
        delivery: &Delivery,
        error: &str,
        retry_after: Option<Duration>,
    ) -> QueueResult<FailOutcome> {
        let outcome = match retry_after {
            Some(d) if !delivery.is_last_attempt() => FailOutcome::Retrying(d),
            _ => FailOutcome::Dead,
        };
        dispatch!(self, q => q.fail(delivery, error, outcome).await)?;
        Ok(outcome)
    }

    pub async fn dead_letters(&self, queue: &str, limit: usize) -> QueueResult<Vec<DeadJob>> {
        dispatch!(self, q => q.dead_letters(queue, limit).await)
    }

    /// Puts a dead job back on its queue with its attempts reset; false when there is no such dead job.
    pub async fn replay(&self, queue: &str, id: &str) -> QueueResult<bool> {
        dispatch!(self, q => q.replay(queue, id).await)
    }

    pub async fn depth(&self, queue: &str) -> QueueResult<QueueDepth> {
        dispatch!(self, q => q.depth(queue).await)
    }

    pub fn backend_name(&self) -> &'static str {
        match self {
            JobQueue::Database(_) => "database",
            JobQueue::Redis(_) => "redis",
        }
    }
}

/// Storage keeps payloads as JSON text.
pub(crate) fn parse_payload(text: &str) -> QueueResult<Value> {
    serde_json::from_str(text).map_err(|e| QueueError::CorruptPayload(e.to_string()))
}

pub(crate) fn new_job_id() -> String {
    uuid::Uuid::now_v7().to_string()
}
