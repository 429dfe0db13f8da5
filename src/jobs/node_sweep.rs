//! The node sweep: marks nodes that stopped beating as gone (and abandons the
//! [`NodeWork`] they ran, such as MCP task rounds), and drops expired deduplication keys
//! and MCP tasks. Recurring, once per heartbeat interval across the cluster.

use serde::{Deserialize, Serialize};

use super::{Job, JobContext, JobError};
use crate::nodes::NodeWorks;
use crate::storage::{jobs, mcp_tasks, nodes, now};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NodeSweep {}

impl Job for NodeSweep {
    const NAME: &'static str = "node_sweep";
    const QUEUE: &'static str = "system";
    const MAX_ATTEMPTS: u32 = 3;
    type State = NodeWorks;

    async fn run(self, work: NodeWorks, job: JobContext) -> Result<(), JobError> {
        let now = now();
        let gone_after = chrono::TimeDelta::from_std(job.ctx.config.node.gone_after.get())
            .map_err(|e| JobError::Fail(e.to_string()))?;
        let gone = nodes::mark_gone(&job.ctx.db, now - gone_after).await?;
        for id in &gone {
            tracing::warn!(node.id = %id, "node stopped beating; marked gone");
        }
        metrics::counter!("devmesh_nodes_marked_gone_total").increment(gone.len() as u64);
        if !gone.is_empty() {
            for w in work.iter() {
                w.abandon(&job.ctx, &gone, now).await;
            }
        }
        jobs::purge_expired_dedup(&job.ctx.db, now).await?;
        mcp_tasks::purge_expired(&job.ctx.db, now).await?;
        Ok(())
    }
}
