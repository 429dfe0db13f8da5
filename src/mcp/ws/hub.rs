//! Addressable connections: every WebSocket connection has an id, registered with its
//! tenant, principal and node, and any node can send a message to it.
//!
//! Each node keeps its own connections (and their caps) in memory; the registry entry
//! that says which node holds a connection is in the bus cache, and a message for a
//! connection on another node travels over the bus to that node's delivery channel.
//! Delivery is at most once: a message for a connection that closes on the way is lost.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

use super::link::Link;
use crate::config::WsConfig;
use crate::context::Context;
use crate::tenancy::Principal;

/// How long a registry entry lives without being renewed; connections renew theirs
/// well before, so only the entries of a node that died run out.
const ENTRY_TTL: Duration = Duration::from_secs(30 * 60);

/// One connection, as every node can see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionInfo {
    pub id: String,
    pub organization_id: String,
    /// `api_key` or `user`.
    pub principal_type: String,
    pub principal_id: String,
    pub node_id: String,
    pub connected_at: DateTime<Utc>,
}

/// Where a message went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Queued on this node's connection.
    Queued,
    /// Handed to the node that holds the connection.
    Forwarded { node_id: String },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DeliveryError {
    #[error("no connection {0} is open for this organization")]
    NotConnected(String),
    #[error("connection {0} is not reading its messages and is being closed")]
    Behind(String),
    #[error("the bus cannot carry the message: {0}")]
    Bus(String),
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The node holds `mcp.ws.max_connections`.
    NodeFull(usize),
    /// The key or user holds `mcp.ws.max_connections_per_key` on this node.
    KeyFull(usize),
}

#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    connection_id: String,
    organization_id: String,
    message: Value,
}

struct Local {
    info: ConnectionInfo,
    link: Arc<Link>,
}

/// This node's connections, and the way to everyone's.
#[derive(Default)]
pub struct Hub {
    local: RwLock<HashMap<String, Local>>,
    per_key: Mutex<HashMap<String, usize>>,
    open: AtomicUsize,
    listening: OnceCell<()>,
    closing: CancellationToken,
}

/// A connection's place under the caps; given back when dropped.
pub struct Slot {
    hub: Arc<Hub>,
    key: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.hub.open.fetch_sub(1, Ordering::Relaxed);
        let mut per_key = self.hub.per_key.lock().unwrap();
        if let Some(n) = per_key.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                per_key.remove(&self.key);
            }
        }
        metrics::gauge!("devmesh_ws_connections_open").decrement(1.0);
    }
}

/// A registered connection; dropping it takes it out of the registry.
pub struct Registration {
    pub info: ConnectionInfo,
    node: Context,
    hub: Arc<Hub>,
    renewed: Instant,
    _slot: Slot,
}

impl Registration {
    /// Renews the registry entry when it is getting old (called on every ping).
    pub fn keep_alive(&mut self) {
        if self.renewed.elapsed() > ENTRY_TTL / 3 {
            self.renewed = Instant::now();
            let (node, info) = (self.node.clone(), self.info.clone());
            self.node
                .runtime
                .spawn(async move { write_entry(&node, &info).await });
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let id = self.info.id.clone();
        self.hub.local.write().unwrap().remove(&id);
        let node = self.node.clone();
        self.node.runtime.spawn(async move {
            if let Err(e) = node.bus.cache.delete(&entry_key(&id)).await {
                tracing::debug!(error = %e, "cannot remove a connection's registry entry; it expires");
            }
        });
    }
}

fn entry_key(id: &str) -> String {
    format!("mcp-ws-connection:{id}")
}

fn delivery_channel(node_id: &str) -> String {
    format!("mcp-ws-deliver:{node_id}")
}

async fn write_entry(node: &Context, info: &ConnectionInfo) {
    let value = serde_json::to_string(info).expect("connection info serializes");
    if let Err(e) = node
        .bus
        .cache
        .set(&entry_key(&info.id), &value, ENTRY_TTL)
        .await
    {
        tracing::warn!(error = %e, connection = %info.id, "cannot register a connection; other nodes cannot reach it");
    }
}

impl Hub {
    /// Takes a place for a new connection of `principal`, within the caps.
    pub fn admit(
        self: &Arc<Self>,
        config: &WsConfig,
        principal: &Principal,
    ) -> Result<Slot, Refused> {
        let key = format!("{}:{}", principal.organization_id, principal.actor_id());
        let mut per_key = self.per_key.lock().unwrap();
        if self.open.load(Ordering::Relaxed) >= config.max_connections {
            return Err(Refused::NodeFull(config.max_connections));
        }
        let held = per_key.entry(key.clone()).or_insert(0);
        if *held >= config.max_connections_per_key {
            return Err(Refused::KeyFull(config.max_connections_per_key));
        }
        *held += 1;
        self.open.fetch_add(1, Ordering::Relaxed);
        metrics::gauge!("devmesh_ws_connections_open").increment(1.0);
        Ok(Slot {
            hub: self.clone(),
            key,
        })
    }

    /// Registers an admitted connection, so that any node can send to it.
    pub async fn register(
        self: &Arc<Self>,
        node: &Context,
        slot: Slot,
        principal: &Principal,
        link: Arc<Link>,
    ) -> Registration {
        self.listen(node).await;
        let info = ConnectionInfo {
            id: format!("ws-{}", uuid::Uuid::now_v7().simple()),
            organization_id: principal.organization_id.clone(),
            principal_type: principal.actor_type().to_string(),
            principal_id: principal.actor_id().to_string(),
            node_id: node.node.id.clone(),
            connected_at: Utc::now(),
        };
        self.local.write().unwrap().insert(
            info.id.clone(),
            Local {
                info: info.clone(),
                link,
            },
        );
        write_entry(node, &info).await;
        Registration {
            info,
            node: node.clone(),
            hub: self.clone(),
            renewed: Instant::now(),
            _slot: slot,
        }
    }

    /// Sends `message` (a JSON-RPC notification or request) to a connection of
    /// `organization_id`, on whichever node holds it.
    pub async fn send(
        &self,
        node: &Context,
        organization_id: &str,
        connection_id: &str,
        message: &Value,
    ) -> Result<Delivery, DeliveryError> {
        if let Some(queued) = self.deliver_here(organization_id, connection_id, message) {
            return queued.map(|()| Delivery::Queued);
        }
        let not_connected = || DeliveryError::NotConnected(connection_id.to_string());
        let info = self
            .lookup(node, connection_id)
            .await
            .filter(|i| i.organization_id == organization_id)
            .ok_or_else(not_connected)?;
        if info.node_id == node.node.id {
            // Registered here, but gone since.
            return Err(not_connected());
        }
        let envelope = Envelope {
            connection_id: connection_id.to_string(),
            organization_id: organization_id.to_string(),
            message: message.clone(),
        };
        let text = serde_json::to_string(&envelope).expect("an envelope serializes");
        node.bus
            .pubsub
            .publish(&delivery_channel(&info.node_id), &text)
            .await
            .map_err(|e| DeliveryError::Bus(e.to_string()))?;
        Ok(Delivery::Forwarded {
            node_id: info.node_id,
        })
    }

    /// A connection's registry entry, wherever it is.
    pub async fn lookup(&self, node: &Context, connection_id: &str) -> Option<ConnectionInfo> {
        if let Some(local) = self.local.read().unwrap().get(connection_id) {
            return Some(local.info.clone());
        }
        match node.bus.cache.get(&entry_key(connection_id)).await {
            Ok(Some(text)) => serde_json::from_str(&text).ok(),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the connection registry");
                None
            }
        }
    }

    /// The connections of an organization that this node holds.
    pub fn local_connections(&self, organization_id: &str) -> Vec<ConnectionInfo> {
        let mut found: Vec<ConnectionInfo> = self
            .local
            .read()
            .unwrap()
            .values()
            .filter(|l| l.info.organization_id == organization_id)
            .map(|l| l.info.clone())
            .collect();
        found.sort_by(|a, b| a.id.cmp(&b.id));
        found
    }

    /// Connections open on this node.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Cancelled when the node shuts down: every connection closes (1001).
    pub fn closing(&self) -> &CancellationToken {
        &self.closing
    }

    pub fn close_all(&self) {
        self.closing.cancel();
    }

    /// `None` when the connection is not on this node.
    fn deliver_here(
        &self,
        organization_id: &str,
        connection_id: &str,
        message: &Value,
    ) -> Option<Result<(), DeliveryError>> {
        let local = self.local.read().unwrap();
        let target = local.get(connection_id)?;
        if target.info.organization_id != organization_id {
            return Some(Err(DeliveryError::NotConnected(connection_id.to_string())));
        }
        Some(if target.link.push(message) {
            Ok(())
        } else {
            Err(DeliveryError::Behind(connection_id.to_string()))
        })
    }

    /// Starts taking deliveries for this node's connections from the bus (once; a bus
    /// that cannot be reached is tried again at the next connection).
    async fn listen(self: &Arc<Self>, node: &Context) {
        let started = self
            .listening
            .get_or_try_init(|| async {
                let channel = delivery_channel(&node.node.id);
                let mut subscription = node.bus.pubsub.subscribe(&channel).await?;
                let hub = self.clone();
                node.runtime.spawn(async move {
                    while let Some(text) = subscription.recv().await {
                        let Ok(envelope) = serde_json::from_str::<Envelope>(&text) else {
                            tracing::warn!("unreadable connection delivery skipped");
                            continue;
                        };
                        if let Some(Err(e)) = hub.deliver_here(
                            &envelope.organization_id,
                            &envelope.connection_id,
                            &envelope.message,
                        ) {
                            tracing::debug!(error = %e, "a delivery from another node was not queued");
                        }
                    }
                });
                Ok::<(), crate::bus::pubsub::PubSubError>(())
            })
            .await;
        if let Err(e) = started {
            tracing::warn!(error = %e, "cannot take deliveries for this node's connections; retried at the next connection");
        }
    }
}
