//! What a tenant's change tells its MCP clients: one notification per change, the same
//! on a session's stream and on a `subscriptions/listen` stream.

use serde_json::{Value, json};

use super::protocol::notification;
use super::providers::contexts;
use crate::events::Change;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    ToolsListChanged,
    PromptsListChanged,
    ResourcesListChanged,
    /// A resource changed; only its subscribers hear of it.
    ResourceUpdated(String),
    /// A task changed: `notifications/tasks` (SEP-2663), only for listen streams of its
    /// owner that named it.
    TaskStatus {
        owner: String,
        task: Value,
    },
}

impl Notice {
    pub fn of(change: &Change) -> Self {
        match change {
            Change::ToolsChanged => Self::ToolsListChanged,
            Change::PromptsChanged => Self::PromptsListChanged,
            Change::ResourcesChanged => Self::ResourcesListChanged,
            Change::ContextChanged { id } => Self::ResourceUpdated(contexts::uri(id)),
            Change::ResourceUpdated { uri } => Self::ResourceUpdated(uri.clone()),
            Change::TaskChanged { owner, task } => Self::TaskStatus {
                owner: owner.clone(),
                task: task.clone(),
            },
        }
    }

    /// The notification, with `meta` as its `_meta` when given.
    pub fn message(&self, meta: Option<Value>) -> Value {
        let (method, mut params) = match self {
            Self::ToolsListChanged => ("notifications/tools/list_changed", json!({})),
            Self::PromptsListChanged => ("notifications/prompts/list_changed", json!({})),
            Self::ResourcesListChanged => ("notifications/resources/list_changed", json!({})),
            Self::ResourceUpdated(uri) => {
                ("notifications/resources/updated", json!({ "uri": uri }))
            }
            Self::TaskStatus { task, .. } => ("notifications/tasks", task.clone()),
        };
        if let Some(meta) = meta {
            params["_meta"] = meta;
        }
        notification(method, params)
    }
}
