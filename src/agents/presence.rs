//! Who is online. An agent is online while its last sign of life (`agents.last_seen_at`,
//! in the database every node shares) is within two heartbeat intervals: a heartbeat
//! (`POST /agents/{id}/heartbeat`), or a long-lived connection its key holds open (a
//! WebSocket, a `subscriptions/listen` stream, a session's GET stream), which renews it
//! every interval on whichever node holds it. A connection that closes, or a node that
//! dies, simply stops renewing: the agent goes offline within two intervals.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::{AGENTS_URI, Agents, announce, dispatch};
use crate::context::Context as Node;
use crate::mcp::ConnectionObserver;
use crate::service::ServiceResult;
use crate::storage::agents::{self as store, Seen};
use crate::tenancy::Principal;

/// Records a sign of life; an agent that comes online lets queued work reach it.
pub async fn seen(
    node: &Node,
    agents: &Arc<Agents>,
    org: &str,
    agent_id: &str,
) -> ServiceResult<Seen> {
    let now = crate::storage::now();
    let seen = store::seen(&node.db, org, agent_id, now, agents.online_after(now)).await?;
    if seen == Seen::CameOnline {
        announce(node, org, [AGENTS_URI.to_string()]).await;
        dispatch::run(node, agents, org).await;
    }
    Ok(seen)
}

/// Keeps the agents' presence with the connections their keys hold (an MCP observer).
pub struct Observer(pub Arc<Agents>);

impl ConnectionObserver for Observer {
    fn opened(&self, node: &Node, principal: &Principal) -> Option<Box<dyn Send + Sync>> {
        let agent_id = principal.agent_id()?.to_string();
        let org = principal.organization_id.clone();
        let stop = CancellationToken::new();
        let (node_, agents, stop_) = (node.clone(), self.0.clone(), stop.clone());
        node.runtime.spawn(async move {
            let every = agents.config.heartbeat_interval.get();
            loop {
                if let Err(e) = seen(&node_, &agents, &org, &agent_id).await {
                    tracing::debug!(error = %e, agent = %agent_id, "cannot renew an agent's presence");
                }
                tokio::select! {
                    _ = stop_.cancelled() => break,
                    _ = tokio::time::sleep(every) => {}
                }
            }
        });
        // Dropped when the connection closes: the renewal stops.
        Some(Box::new(stop.drop_guard()))
    }
}
