//! Changes within one organization that connected clients are told about (a context was
//! written, a tenant's tool list changed), carried over the bus so that every node hears
//! them, whichever node made the change.
//!
//! Each node reads the bus's channel once ([`Hub`]): every event is parsed once and handed
//! only to the subscribers of its organization that want it (a session subscribed to the
//! resource, an agent waiting on its inbox), so a hundred connected agents do not each
//! wake and parse every other agent's notices.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

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

/// Changes a subscriber falls behind by before it misses some (and a warning is logged):
/// a publisher never waits for a slow subscriber.
const SUBSCRIBER_CAPACITY: usize = 1024;

/// Which changes a subscriber is handed. Called on the hub's reader for every change of
/// the subscriber's organization, so it must be quick (a set lookup).
pub type Wants = Arc<dyn Fn(&Change) -> bool + Send + Sync>;

struct Subscriber {
    id: u64,
    wants: Wants,
    tx: mpsc::Sender<Change>,
}

/// A node's one reader of the tenant events channel and its subscribers, by organization.
#[derive(Default)]
pub struct Hub {
    /// Whether the reader runs; starting one is serialized by `starting`.
    reading: AtomicBool,
    starting: tokio::sync::Mutex<()>,
    subscribers: Mutex<HashMap<String, Vec<Subscriber>>>,
    next_id: std::sync::atomic::AtomicU64,
}

/// Ends the reader's turn, however it ends (the bus gone, a panic): its subscribers are
/// let go (their `recv` says `None`) and the next subscriber starts a new reader.
struct Reading(std::sync::Weak<Hub>);

impl Drop for Reading {
    fn drop(&mut self) {
        if let Some(hub) = self.0.upgrade() {
            hub.subscribers().clear();
            hub.reading.store(false, Ordering::SeqCst);
        }
    }
}

impl Hub {
    fn subscribers(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Subscriber>>> {
        self.subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts the reader if none runs: the bus subscription stands before any subscriber
    /// is registered, so a subscriber hears everything published after it subscribed.
    async fn read(self: &Arc<Self>, node: &Context) -> Result<(), PubSubError> {
        if self.reading.load(Ordering::SeqCst) {
            return Ok(());
        }
        let _starting = self.starting.lock().await;
        if !self.reading.load(Ordering::SeqCst) {
            let subscription = node.bus.pubsub.subscribe(CHANNEL).await?;
            self.reading.store(true, Ordering::SeqCst);
            node.runtime
                .spawn(Self::deliver(Arc::downgrade(self), subscription));
        }
        Ok(())
    }

    async fn deliver(hub: std::sync::Weak<Self>, mut subscription: Subscription) {
        let _reading = Reading(hub.clone());
        while let Some(message) = subscription.recv().await {
            let Some(hub) = hub.upgrade() else { return };
            let event = match serde_json::from_str::<TenantEvent>(&message) {
                Ok(event) => event,
                Err(e) => {
                    tracing::warn!(error = %e, "unreadable tenant event skipped");
                    continue;
                }
            };
            let mut subscribers = hub.subscribers();
            let Some(list) = subscribers.get_mut(&event.organization_id) else {
                continue;
            };
            list.retain(|s| {
                if !(s.wants)(&event.change) {
                    return !s.tx.is_closed();
                }
                match s.tx.try_send(event.change.clone()) {
                    Ok(()) => true,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        tracing::warn!(organization = %event.organization_id, "a tenant events subscriber fell behind; a change skipped");
                        true
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => false,
                }
            });
            if list.is_empty() {
                subscribers.remove(&event.organization_id);
            }
        }
    }

    fn leave(&self, organization_id: &str, id: u64) {
        let mut subscribers = self.subscribers();
        if let Some(list) = subscribers.get_mut(organization_id) {
            list.retain(|s| s.id != id);
            if list.is_empty() {
                subscribers.remove(organization_id);
            }
        }
    }
}

/// An organization's changes, from the moment of subscribing; leaves the hub when dropped.
pub struct TenantEvents {
    rx: mpsc::Receiver<Change>,
    hub: Arc<Hub>,
    organization_id: String,
    id: u64,
}

impl TenantEvents {
    /// Every change of the organization.
    pub async fn subscribe(node: &Context, organization_id: &str) -> Result<Self, PubSubError> {
        Self::subscribe_to(node, organization_id, Arc::new(|_| true)).await
    }

    /// The changes of the organization that `wants` picks.
    pub async fn subscribe_to(
        node: &Context,
        organization_id: &str,
        wants: Wants,
    ) -> Result<Self, PubSubError> {
        let hub = node.events.clone();
        hub.read(node).await?;
        let (tx, rx) = mpsc::channel(SUBSCRIBER_CAPACITY);
        let id = hub
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        hub.subscribers()
            .entry(organization_id.to_string())
            .or_default()
            .push(Subscriber { id, wants, tx });
        Ok(Self {
            rx,
            hub,
            organization_id: organization_id.to_string(),
            id,
        })
    }

    /// The next change; `None` once the node's bus is gone.
    pub async fn recv(&mut self) -> Option<Change> {
        self.rx.recv().await
    }
}

impl Drop for TenantEvents {
    fn drop(&mut self) {
        self.hub.leave(&self.organization_id, self.id);
    }
}
