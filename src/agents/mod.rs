//! Agents and tasks (DESIGN §5.4): an organization registers its agents with what they
//! can do and cost, hands them tasks, and the assignment engine routes each task to an
//! agent, which hears of it wherever it is connected and sees it through.
//!
//! - [`fields`] and [`model`]: the rules of the fields and the shapes of the API;
//! - [`registry`]: agents, their lifecycle, keys and heartbeats; [`view`] how they are
//!   shown, with their circuit and statistics;
//! - [`presence`]: who is online, from heartbeats and from the connections agents hold;
//! - [`tasks`]: creating and reading tasks; [`transitions`] how they move, each move a
//!   conditional write; [`lapses`] the moves time and absent agents make;
//! - [`engine`]: the choice among agents (no I/O); [`dispatch`] feeds it and writes it;
//! - [`sweep`]: the recurring job that finds tasks past their deadlines and agents gone;
//! - [`provider`]: the MCP tools and resources (`devmesh_task_*`, `devmesh://agents/...`).

pub mod dispatch;
pub mod engine;
pub mod fields;
pub mod lapses;
pub mod model;
pub mod presence;
pub mod provider;
pub mod registry;
pub mod sweep;
pub mod tasks;
pub mod transitions;
pub mod view;

use std::sync::Arc;

use crate::config::{AgentsConfig, Config};
use crate::context::Context as Node;
use crate::events::{self, Change};

/// The agents capability's state on a node.
pub struct Agents {
    pub config: AgentsConfig,
    pub dispatcher: dispatch::Dispatcher,
}

impl Agents {
    pub fn new(config: &Config) -> Arc<Self> {
        Arc::new(Self {
            config: config.agents.clone(),
            dispatcher: dispatch::Dispatcher::default(),
        })
    }

    /// Agents last seen before this are offline.
    pub fn online_after(&self, now: chrono::NaiveDateTime) -> chrono::NaiveDateTime {
        now - chrono::Duration::from_std(self.config.heartbeat_interval.get() * 2)
            .unwrap_or(chrono::Duration::MAX)
    }
}

/// The resource an agent reads and subscribes to for its tasks.
pub fn inbox_uri(agent_id: &str) -> String {
    format!("devmesh://agents/{agent_id}/tasks")
}

/// A task's resource, subscribable: every state change is announced on it.
pub fn task_uri(task_id: &str) -> String {
    format!("devmesh://tasks/{task_id}")
}

/// The organization's agents, as a resource.
pub const AGENTS_URI: &str = "devmesh://agents";

/// Tells every node's subscribers that these resources changed.
pub async fn announce(node: &Node, organization_id: &str, uris: impl IntoIterator<Item = String>) {
    for uri in uris {
        events::publish(node, organization_id, Change::ResourceUpdated { uri }).await;
    }
}
