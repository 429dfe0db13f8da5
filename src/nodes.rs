//! This node's identity, its heartbeat in the node registry, and [`NodeWork`]: what a
//! capability runs on one node beyond a request, which the heartbeat lets finish at stop
//! and the node sweep gives up when a node is gone.
//!
//! The node id is kept in the data directory (`node-id`), so a node that restarts is the
//! same node (and the same stable consumer name on the job streams).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::context::Context;

use crate::config::{Config, Roles};
use crate::storage::nodes::{self, NodeRow};
use crate::storage::now;

/// Work a capability runs on one node that outlives the request which started it (the
/// rounds of MCP tasks). `app` hands each capability's to the heartbeat and the node sweep;
/// this module knows none of them.
pub trait NodeWork: Send + Sync {
    /// Resolves when this node's work has ended, or after `grace`, whichever comes first:
    /// the node is stopping and its work gets the grace period requests and jobs get.
    fn drained(&self, grace: Duration) -> BoxFuture<'_, ()>;

    /// Gives up the work that `nodes` (gone, or this node in an earlier life) started before
    /// `before` (UTC), since nothing runs it any more: mark it failed, say why.
    fn abandon<'a>(
        &'a self,
        ctx: &'a Context,
        nodes: &'a [String],
        before: chrono::NaiveDateTime,
    ) -> BoxFuture<'a, ()>;
}

/// The node work of every capability of a node.
pub type NodeWorks = Arc<[Arc<dyn NodeWork>]>;

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
/// A database that does not answer is retried at the next beat. At the first beat the
/// `work` this node ran before it restarted is abandoned; at stop, that work gets the
/// grace period, and what is left is abandoned.
pub async fn heartbeat(
    ctx: &Context,
    work: NodeWorks,
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
                    // Work this node ran before it restarted is lost.
                    abandon(ctx, &work, started_at).await;
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
    // Work running here gets the grace period to end, as requests and jobs do.
    let grace = ctx.config.shutdown.grace_period.get();
    futures_util::future::join_all(work.iter().map(|w| w.drained(grace))).await;
    tracing::debug!("heartbeat: recording stop");
    if let Err(e) = nodes::set_status(db, &node.id, nodes::STOPPED, now()).await {
        tracing::warn!(error = %e, "cannot record that the node stopped");
    }
    // Work still running stops with it.
    abandon(ctx, &work, now() + chrono::TimeDelta::days(1)).await;
}

/// Abandons this node's work started before `before`, capability by capability.
async fn abandon(ctx: &Context, work: &NodeWorks, before: chrono::NaiveDateTime) {
    let this = std::slice::from_ref(&ctx.node.id);
    for w in work.iter() {
        w.abandon(ctx, this, before).await;
    }
}
