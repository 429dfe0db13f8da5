//! The system's moves of a task, decided by time and by agents, not by a caller: not
//! accepted within `assign_timeout`, not finished within `timeout`, its agent offline,
//! suspended or retired. The sweep (`super::sweep`) and the registry make them.

use std::sync::Arc;

use serde_json::json;

use super::Agents;
use super::dispatch;
use super::tasks::event_row;
use super::transitions::{apply, count, requeue, trip};
use crate::context::Context as Node;
use crate::service::{ServiceError, ServiceResult};
use crate::storage::agents::{AgentRow, Outcome};
use crate::storage::tasks::{self as store, Decide, Plan, TaskChanges, TaskRow};

const SYSTEM: &str = "system";

/// The system's transitions (the sweep, an agent stopping): why, and what comes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lapse {
    /// Not accepted within `assign_timeout`.
    NotAccepted,
    /// Its agent went offline before accepting.
    AgentOffline,
    /// Its agent was suspended or retired before accepting.
    AgentStopped,
    /// Not finished within `timeout`.
    RunTimeout,
}

/// Applies a lapse to a task, if it is still in the state the lapse is about; `true`
/// when it moved.
pub async fn lapse(
    node: &Node,
    agents: &Arc<Agents>,
    row: &TaskRow,
    lapse: Lapse,
) -> ServiceResult<bool> {
    let expected_agent = row.agent_id.clone();
    let decide: Decide = Arc::new(move |row| {
        let now = crate::storage::now();
        let from = if lapse == Lapse::RunTimeout {
            "running"
        } else {
            "assigned"
        };
        if row.status != from || row.agent_id != expected_agent {
            return Err("moved on".into());
        }
        if matches!(lapse, Lapse::NotAccepted | Lapse::RunTimeout)
            && row.deadline_at.is_none_or(|d| d > now)
        {
            return Err("not due".into());
        }
        let (changes, to, reason) = match lapse {
            Lapse::NotAccepted => (
                requeue(TaskChanges::default()),
                "queued",
                "not accepted within assign_timeout".to_string(),
            ),
            Lapse::AgentOffline => (
                requeue(TaskChanges::default()),
                "queued",
                "the agent went offline".to_string(),
            ),
            Lapse::AgentStopped => (
                requeue(TaskChanges::default()),
                "queued",
                "the agent was suspended or retired".to_string(),
            ),
            Lapse::RunTimeout if row.attempts < row.max_attempts => (
                requeue(TaskChanges::default()),
                "queued",
                format!(
                    "not finished within timeout, attempt {} of {}",
                    row.attempts, row.max_attempts
                ),
            ),
            Lapse::RunTimeout => (
                TaskChanges {
                    status: Some("timed_out".into()),
                    deadline_at: Some(None),
                    finished_at: Some(Some(now)),
                    error: Some(Some(
                        json!({ "message": "not finished within timeout", "retryable": false })
                            .to_string(),
                    )),
                    updated_at: Some(now),
                    ..TaskChanges::default()
                },
                "timed_out",
                format!(
                    "not finished within timeout after {} attempt(s)",
                    row.attempts
                ),
            ),
        };
        Ok(Plan {
            changes,
            release: true,
            event: Some(event_row(
                row,
                Some(from),
                to,
                row.agent_id.as_deref(),
                SYSTEM,
                Some(reason),
            )),
        })
    });
    let moved = match apply(node, &row.organization_id, &row.id, decide).await {
        Ok(moved) => moved,
        Err(ServiceError::Conflict(_)) | Err(ServiceError::NotFound(_)) => return Ok(false),
        Err(e) => return Err(e),
    };
    let (before, after) = moved;
    match lapse {
        // An attempt the agent started and did not finish in time.
        Lapse::RunTimeout => count(node, agents, &before, &after, Outcome::TimedOut, 0.0).await,
        // Not an attempt (statistics count attempts), but the agent's circuit hears of it.
        Lapse::NotAccepted => trip(node, agents, &before, false).await,
        Lapse::AgentOffline | Lapse::AgentStopped => {}
    }
    Ok(true)
}

/// Gives an agent's assigned (not accepted) tasks back to the queue.
pub async fn requeue_assigned(
    node: &Node,
    agents: &Arc<Agents>,
    agent: &AgentRow,
) -> ServiceResult<()> {
    let assigned =
        store::of_agent(&node.db, &agent.organization_id, &agent.id, &["assigned"]).await?;
    for task in &assigned {
        lapse(node, agents, task, Lapse::AgentStopped).await?;
    }
    dispatch::run(node, agents, &agent.organization_id).await;
    Ok(())
}
