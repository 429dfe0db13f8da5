//! Changes within one organization that connected clients are told about (a context was
//! written, a tenant's tool list changed), carried over the bus so that every node hears
//! them, whichever node made the change.

use serde::{Deserialize, Serialize};

use crate::bus::pubsub::{PubSubError, Subscription};
use crate::context::Context;

const CHANNEL: &str = "tenant-events";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    ToolsChanged,
    PromptsChanged,
    ResourcesChanged,
    ContextChanged {
        id: String,
    },
    /// A resource changed (`notifications/resources/updated` for its subscribers): an
    /// agent's inbox, a task, the agents.
    ResourceUpdated {
        uri: String,
    },
    /// An MCP task changed: its owner (`mcp::tasks`), and the task as `tasks/get` shows it.
    TaskChanged {
        owner: String,
        task: serde_json::Value,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct TenantEvent {
    organization_id: String,
    #[serde(flatten)]
    change: Change,
}

/// Tells every node about a change. A bus that cannot be reached loses the event (counted
/// in `devmesh_bus_unavailable_total{use="notice"}`): the change itself is already stored,
/// only the notice is missed.
pub async fn publish(node: &Context, organization_id: &str, change: Change) {
    let event = TenantEvent {
        organization_id: organization_id.to_string(),
        change,
    };
    let message = serde_json::to_string(&event).expect("an event serializes");
    if let Err(e) = node.bus.pubsub.publish(CHANNEL, &message).await {
        crate::bus::went_without("notice", &e);
    }
}

/// The changes of one organization, as they happen on any node.
pub struct TenantEvents {
    subscription: Subscription,
    organization_id: String,
}

impl TenantEvents {
    pub async fn subscribe(node: &Context, organization_id: &str) -> Result<Self, PubSubError> {
        Ok(Self {
            subscription: node.bus.pubsub.subscribe(CHANNEL).await?,
            organization_id: organization_id.to_string(),
        })
    }

    /// The next change of this organization; `None` once the bus is gone.
    pub async fn recv(&mut self) -> Option<Change> {
        loop {
            let message = self.subscription.recv().await?;
            match serde_json::from_str::<TenantEvent>(&message) {
                Ok(event) if event.organization_id == self.organization_id => {
                    return Some(event.change);
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "unreadable tenant event skipped"),
            }
        }
    }
}
