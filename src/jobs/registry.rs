//! The kinds of job a node can run, by name.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde_json::Value;

use super::{Backoff, Job, JobContext, JobError};

type Handler =
    Arc<dyn Fn(Value, JobContext) -> BoxFuture<'static, Result<(), JobError>> + Send + Sync>;

#[derive(Clone)]
pub struct Registered {
    pub queue: &'static str,
    pub backoff: Backoff,
    handler: Handler,
}

impl Registered {
    pub fn run(&self, payload: Value, ctx: JobContext) -> BoxFuture<'static, Result<(), JobError>> {
        (self.handler)(payload, ctx)
    }
}

#[derive(Clone, Default)]
pub struct Registry {
    jobs: HashMap<&'static str, Registered>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a job kind, with the state its runs get.
    pub fn register<J: Job>(mut self, state: J::State) -> Self {
        let handler: Handler = Arc::new(move |payload, ctx| {
            let state = state.clone();
            Box::pin(async move {
                let job: J = serde_json::from_value(payload).map_err(|e| {
                    JobError::Fail(format!("the payload is not a valid {} job: {e}", J::NAME))
                })?;
                job.run(state, ctx).await
            })
        });
        let previous = self.jobs.insert(
            J::NAME,
            Registered {
                queue: J::QUEUE,
                backoff: J::backoff(),
                handler,
            },
        );
        assert!(previous.is_none(), "job kind {} registered twice", J::NAME);
        self
    }

    /// Adds every kind of `other` (each kind once: a kind in both panics, as in
    /// [`Registry::register`]).
    pub fn merge(mut self, other: Registry) -> Self {
        for (name, registered) in other.jobs {
            let previous = self.jobs.insert(name, registered);
            assert!(previous.is_none(), "job kind {name} registered twice");
        }
        self
    }

    pub fn get(&self, kind: &str) -> Option<&Registered> {
        self.jobs.get(kind)
    }

    /// The queues the registered kinds go on.
    pub fn queues(&self) -> BTreeSet<&'static str> {
        self.jobs.values().map(|r| r.queue).collect()
    }
}
