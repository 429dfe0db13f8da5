//! The recurring sweep (every `agents.sweep_interval`, on whichever worker node takes the
//! slot): tasks not accepted within `assign_timeout`, or not finished within `timeout`,
//! and tasks assigned to agents gone offline, go back to the queue (or time out when no
//! attempts remain); then every organization with queued work gets an assignment round,
//! so that nothing waits on a trigger a node died before sending. Deadlines live in the
//! database, not in any node's memory.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::Agents;
use super::dispatch;
use super::lapses::{Lapse, lapse};
use crate::context::Context as Node;
use crate::jobs::{Job, JobContext, JobError};
use crate::storage::tasks as store;

/// Tasks one sweep handles per kind of lapse; the next sweep takes the rest.
const BATCH: i64 = 500;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SweepTasks {}

impl Job for SweepTasks {
    const NAME: &'static str = "agents.sweep";
    // Beside the node sweep: upkeep, not a tenant's work.
    const QUEUE: &'static str = "system";
    const MAX_ATTEMPTS: u32 = 1;
    type State = Arc<Agents>;

    async fn run(self, agents: Arc<Agents>, ctx: JobContext) -> Result<(), JobError> {
        sweep(&ctx.ctx, &agents).await
    }
}

/// One sweep; what it moved, by kind, is counted in `devmesh_tasks_lapsed_total`.
pub async fn sweep(node: &Node, agents: &Arc<Agents>) -> Result<(), JobError> {
    let now = crate::storage::now();
    let kinds = [
        (
            store::past_deadline(&node.db, "assigned", now, BATCH).await?,
            Lapse::NotAccepted,
            "not_accepted",
        ),
        (
            store::past_deadline(&node.db, "running", now, BATCH).await?,
            Lapse::RunTimeout,
            "timeout",
        ),
        (
            store::assigned_to_offline(&node.db, agents.online_after(now), BATCH).await?,
            Lapse::AgentOffline,
            "agent_offline",
        ),
    ];
    for (rows, kind, label) in kinds {
        for row in rows {
            match lapse(node, agents, &row, kind).await {
                Ok(true) => {
                    metrics::counter!("devmesh_tasks_lapsed_total", "reason" => label).increment(1)
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, task = %row.id, "cannot move a lapsed task"),
            }
        }
    }
    for org in store::organizations_with_queued(&node.db).await? {
        dispatch::run(node, agents, &org).await;
    }
    Ok(())
}
