//! Running a task's rounds on this node: each round is one call of the tool, in the
//! background, as the caller whose request started it. A round's outcome is written only
//! if the task did not change meanwhile (a cancellation, or its node marked stopped):
//! what the client was told stands.
//!
//! Cancellation reaches the node running the round over the bus (channel
//! `mcp-task-cancel`, the task id as message). A bus that cannot be reached loses only
//! the stop: the task is cancelled in storage already, and the round's outcome is then
//! dropped when it ends.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::FutureExt;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::{Pending, Round, TaskRequest, is_escalation, json_text};
use crate::context::Context;
use crate::mcp::Mcp;
use crate::mcp::call::{Call, Outbound};
use crate::mcp::protocol::{RpcError, Version};
use crate::storage::mcp_tasks::{self, TaskRow};
use crate::storage::now;
use crate::tenancy::principal::Principal;

const CANCEL_CHANNEL: &str = "mcp-task-cancel";

/// The rounds running on this node, by task id, so that a cancellation can stop them.
#[derive(Default)]
pub struct Running {
    rounds: Mutex<HashMap<String, CancellationToken>>,
    listening: AtomicBool,
    /// Told each time a round ends here.
    ended: tokio::sync::Notify,
}

impl Running {
    fn register(&self, id: &str) -> CancellationToken {
        let token = CancellationToken::new();
        self.rounds
            .lock()
            .unwrap()
            .insert(id.to_string(), token.clone());
        token
    }

    fn forget(&self, id: &str) {
        self.rounds.lock().unwrap().remove(id);
        self.ended.notify_waiters();
    }

    /// Waits until no round runs on this node, or `within` has passed: a node that
    /// stops lets its rounds end within its grace period.
    pub async fn drained(&self, within: Duration) {
        let all_ended = async {
            loop {
                let ended = self.ended.notified();
                tokio::pin!(ended);
                ended.as_mut().enable();
                if self.is_empty() {
                    return;
                }
                ended.await;
            }
        };
        let _ = tokio::time::timeout(within, all_ended).await;
    }

    /// Stops the round of task `id` if it runs here; whether it did.
    fn stop(&self, id: &str) -> bool {
        let stopped = self.rounds.lock().unwrap().remove(id);
        self.ended.notify_waiters();
        match stopped {
            Some(token) => {
                token.cancel();
                true
            }
            None => false,
        }
    }

    /// Rounds running on this node now.
    pub fn len(&self) -> usize {
        self.rounds.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Stops the round of task `id`, which runs on node `runner`: here directly, elsewhere
/// through the bus.
pub(super) async fn stop_round(node: &Context, mcp: &Mcp, runner: &str, id: &str) {
    if runner == node.node.id {
        mcp.tasks.stop(id);
        return;
    }
    if let Err(e) = node.bus.pubsub.publish(CANCEL_CHANNEL, id).await {
        crate::bus::went_without("task_cancel", &e);
    }
}

/// Follows the bus for cancellations of rounds running here; started with the node's
/// first round, kept for the node's life.
fn listen_for_cancellations(node: &Context, mcp: &Mcp) {
    if mcp.tasks.listening.swap(true, Ordering::SeqCst) {
        return;
    }
    let (node, running) = (node.clone(), mcp.tasks.clone());
    node.runtime.clone().spawn(async move {
        loop {
            match node.bus.pubsub.subscribe(CANCEL_CHANNEL).await {
                Ok(mut subscription) => {
                    while let Some(id) = subscription.recv().await {
                        running.stop(&id);
                    }
                }
                Err(e) => crate::bus::went_without("task_cancel", &e),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}

/// Starts a round of `task` (stored as working, on this node) in the background.
pub(super) fn start_round(
    node: &Context,
    mcp: &Arc<Mcp>,
    principal: Principal,
    task: TaskRow,
    round: Round,
) {
    listen_for_cancellations(node, mcp);
    let (node, mcp) = (node.clone(), mcp.clone());
    node.runtime.clone().spawn(async move {
        let token = mcp.tasks.register(&task.id);
        let outcome = run(&node, &mcp, principal, &task, round, token).await;
        let id = task.id.clone();
        if let Some(outcome) = outcome {
            record(&node, task, outcome).await;
        }
        // Only once recorded: a node that stops waits for this (see `drained`).
        mcp.tasks.forget(&id);
    });
}

/// One call of the tool; `None` when the task was cancelled meanwhile.
async fn run(
    node: &Context,
    mcp: &Arc<Mcp>,
    principal: Principal,
    task: &TaskRow,
    round: Round,
    token: CancellationToken,
) -> Option<Result<Value, RpcError>> {
    let request: TaskRequest = match serde_json::from_str(&task.request) {
        Ok(request) => request,
        Err(e) => {
            tracing::error!(error = %e, task.id = %task.id, "a task's stored call is unreadable");
            return Some(Err(RpcError::internal()));
        }
    };
    let call = Call {
        node: node.clone(),
        mcp: mcp.clone(),
        principal,
        version: Version::parse(&request.protocol_version).unwrap_or(Version::LATEST_SESSION),
        client_capabilities: Arc::new(request.client_capabilities),
        input_responses: round.input_responses,
        request_state: round.request_state,
        out: Outbound::default(),
        cancel: token.clone(),
        param_headers: None,
        tasks_negotiated: true,
        task_id: Some(task.id.clone()),
    };
    let Some((provider, _)) = mcp.catalog.find_tool(&call, &task.tool).await else {
        return Some(Err(RpcError::invalid_params(format!(
            "the tool {} is no longer offered to this caller",
            task.tool
        ))));
    };
    let started = std::time::Instant::now();
    let reply =
        AssertUnwindSafe(provider.call_tool(&task.tool, request.arguments, &call)).catch_unwind();
    let outcome = tokio::select! {
        _ = token.cancelled() => return None,
        outcome = reply => outcome,
    };
    metrics::histogram!("devmesh_mcp_task_round_duration_seconds", "tool" => task.tool.clone())
        .record(started.elapsed().as_secs_f64());
    Some(match outcome {
        // A request the client cannot answer would leave the task waiting until it expires.
        Ok(Ok(reply)) => match crate::mcp::engine::input_requests(&reply) {
            Some(requests) => call
                .check_answerable(&format!("the tool {}", task.tool), requests)
                .map(|()| reply),
            None => Ok(reply),
        },
        Ok(Err(error)) => Err(error),
        Err(_) => {
            tracing::error!(tool = %task.tool, task.id = %task.id, "a task's tool panicked");
            Err(RpcError::internal())
        }
    })
}

/// The task as a round's outcome leaves it.
fn settle(task: &TaskRow, outcome: Result<Value, RpcError>) -> TaskRow {
    let mut next = task.clone();
    next.revision += 1;
    next.updated_at = now();
    next.runner_node = None;
    next.pending = None;
    next.status_message = None;
    let fail = |next: &mut TaskRow, error: RpcError| {
        next.status = "failed".into();
        next.outcome = Some(json_text(&error.object()));
    };
    match outcome {
        Ok(reply) if reply.get("resultType") == Some(&json!("input_required")) => {
            match reply.get("inputRequests").and_then(Value::as_object) {
                Some(requests) if !requests.is_empty() => {
                    next.status = "input_required".into();
                    next.pending = Some(json_text(&Pending {
                        requests: requests.clone(),
                        responses: Default::default(),
                        state: reply
                            .get("requestState")
                            .and_then(Value::as_str)
                            .map(str::to_string),
                    }));
                }
                _ => {
                    tracing::error!(tool = %task.tool, "a task's tool asked for input but named none");
                    fail(&mut next, RpcError::internal());
                }
            }
        }
        Ok(reply) if is_escalation(&reply) => {
            tracing::error!(tool = %task.tool, "a task's tool asked again to run as a task");
            fail(&mut next, RpcError::internal());
        }
        Ok(mut reply) => {
            if let Some(result) = reply.as_object_mut() {
                result.remove("resultType");
            }
            next.status = "completed".into();
            next.outcome = Some(json_text(&reply));
        }
        Err(error) => fail(&mut next, error),
    }
    next
}

/// Writes a round's outcome unless the task changed meanwhile. A database away is tried
/// again for a while; after that the task stays working until its node is marked stopped.
async fn record(node: &Context, task: TaskRow, outcome: Result<Value, RpcError>) {
    let next = settle(&task, outcome);
    let mut wait = Duration::from_millis(100);
    for _ in 0..8 {
        match mcp_tasks::replace(&node.db, &next).await {
            Ok(true) => {
                super::announce(node, &next).await;
                if next.status != "input_required" {
                    metrics::counter!("devmesh_mcp_tasks_ended_total", "status" => next.status.clone())
                        .increment(1);
                }
                return;
            }
            // Cancelled, or failed as orphaned, meanwhile: that stands.
            Ok(false) => return,
            Err(e) => {
                tracing::warn!(error = %e, task.id = %task.id, "cannot record a task's round yet");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
    }
    tracing::error!(task.id = %task.id, "a task's round could not be recorded");
}

/// Task rounds are the MCP's work that outlives a request: a stopping node lets them end
/// within its grace period, and the rounds of a node that is gone are failed.
impl crate::nodes::NodeWork for Running {
    fn drained(&self, grace: Duration) -> futures_util::future::BoxFuture<'_, ()> {
        Box::pin(Running::drained(self, grace))
    }

    fn abandon<'a>(
        &'a self,
        ctx: &'a Context,
        nodes: &'a [String],
        before: chrono::NaiveDateTime,
    ) -> futures_util::future::BoxFuture<'a, ()> {
        Box::pin(super::fail_orphans(ctx, nodes, before))
    }
}
