//! Background jobs: the [`Job`] trait, the [`Registry`] of kinds a node can run, the
//! [`runner`] that drains queues, recurring jobs, and the platform's own jobs.

pub mod backoff;
pub mod node_sweep;
pub mod recurring;
pub mod registry;
pub mod runner;

use std::future::Future;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::bus::queue::{Enqueued, JobQueue, NewJob, QueueResult};
use crate::context::Context;
pub use backoff::Backoff;
pub use registry::Registry;

/// A kind of background job. Its value is the payload, stored as JSON on the queue.
pub trait Job: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// Unique name of the kind, stored with each job.
    const NAME: &'static str;
    /// The queue it goes on; each queue has its own concurrency.
    const QUEUE: &'static str = "default";
    /// Attempts before the job goes to the dead letters.
    const MAX_ATTEMPTS: u32 = 5;

    /// What the job needs of the capability that owns it (its state, a client), given at
    /// registration ([`Registry::register`]); `()` for none.
    type State: Clone + Send + Sync + 'static;

    fn backoff() -> Backoff {
        Backoff::default()
    }

    fn run(
        self,
        state: Self::State,
        ctx: JobContext,
    ) -> impl Future<Output = Result<(), JobError>> + Send;
}

/// What a running job gets: the node's shared context and facts about this attempt.
#[derive(Clone)]
pub struct JobContext {
    pub ctx: Context,
    pub job_id: String,
    pub attempt: u32,
    /// Cancelled when the node shuts down; long jobs should stop at a safe point.
    pub shutdown: CancellationToken,
}

/// Why a job did not finish.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Worth trying again after a backoff.
    #[error("{0}")]
    Retry(String),
    /// Trying again cannot help: straight to the dead letters.
    #[error("{0}")]
    Fail(String),
}

impl From<crate::storage::StorageError> for JobError {
    fn from(e: crate::storage::StorageError) -> Self {
        JobError::Retry(e.to_string())
    }
}

impl From<anyhow::Error> for JobError {
    fn from(e: anyhow::Error) -> Self {
        JobError::Retry(format!("{e:#}"))
    }
}

/// The queue entry for a job value, ready to be given options and enqueued.
pub fn new_job<J: Job>(job: &J) -> NewJob {
    let payload = serde_json::to_value(job).expect("a job serializes to JSON");
    NewJob::new(J::QUEUE, J::NAME, payload).max_attempts(J::MAX_ATTEMPTS)
}

pub async fn enqueue<J: Job>(queue: &JobQueue, job: &J) -> QueueResult<Enqueued> {
    queue.enqueue(new_job(job)).await
}
