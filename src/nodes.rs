//! This node's identity and its heartbeat in the node registry.
//!
//! The node id is kept in the data directory (`node-id`), so a node that restarts is the
//! same node (and the same stable consumer name on the job streams).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::{Config, Roles};
use crate::storage::nodes::{self, NodeRow};
use crate::storage::now;

#[derive(Debug, Clone)]
pub struct NodeIdentity {
    pub id: String,
    pub name: String,
    pub roles: Roles,
    pub version: &'static str,
}

impl NodeIdentity {
    pub fn load(config: &Config) -> Self {
        let id = load_or_create_id(&config.data_dir);
        let name = config.node.name.clone().unwrap_or_else(host_name);
        Self {
            id,
            name,
            roles: config.node.roles.clone(),
            version: env!("CARGO_PKG_VERSION"),
        }
    }
}

fn load_or_create_id(data_dir: &Path) -> String {
    let file = data_dir.join("node-id");
    if let Ok(text) = std::fs::read_to_string(&file) {
        let text = text.trim();
        if uuid::Uuid::parse_str(text).is_ok() {
            return text.to_string();
        }
    }
    let id = uuid::Uuid::now_v7().to_string();
    let saved = std::fs::create_dir_all(data_dir).and_then(|_| std::fs::write(&file, &id));
    if let Err(e) = saved {
        tracing::warn!(path = %file.display(), error = %e, "cannot save the node id; this node gets a new one at each start");
    }
    id
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "devmesh".into())
}

/// Records the node as active every `interval` until `shutdown`, then as stopped.
/// A database that does not answer is retried at the next beat.
pub async fn heartbeat(
    ctx: &crate::context::Context,
    addresses: BTreeMap<String, String>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let (db, node) = (&ctx.db, &ctx.node);
    let started_at = now();
    let row = |at| NodeRow {
        id: node.id.clone(),
        name: node.name.clone(),
        roles: node.roles.to_string(),
        version: node.version.to_string(),
        addresses: serde_json::to_string(&addresses).unwrap_or_default(),
        status: nodes::ACTIVE.to_string(),
        started_at,
        last_seen_at: at,
    };
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut beating = false;
    let mut registered = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticks.tick() => {}
        }
        match nodes::upsert(db, &row(now())).await {
            Ok(()) if !beating => {
                if !registered {
                    // Task rounds this node ran before it restarted are lost.
                    crate::mcp::tasks::fail_orphans(
                        ctx,
                        std::slice::from_ref(&node.id),
                        started_at,
                    )
                    .await;
                    registered = true;
                }
                beating = true;
                tracing::info!(node.id = %node.id, node.name = %node.name, "node registered");
            }
            Ok(()) => {}
            Err(e) => {
                beating = false;
                tracing::warn!(error = %e, "heartbeat not recorded");
            }
        }
    }
    // Task rounds running here get the grace period to end, as requests and jobs do.
    ctx.mcp
        .tasks
        .drained(ctx.config.shutdown.grace_period.get())
        .await;
    tracing::debug!("heartbeat: recording stop");
    if let Err(e) = nodes::set_status(db, &node.id, nodes::STOPPED, now()).await {
        tracing::warn!(error = %e, "cannot record that the node stopped");
    }
    // Rounds still running stop with it.
    crate::mcp::tasks::fail_orphans(
        ctx,
        std::slice::from_ref(&node.id),
        now() + chrono::TimeDelta::days(1),
    )
    .await;
}
