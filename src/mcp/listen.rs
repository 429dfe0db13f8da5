//! `subscriptions/listen` (protocol 2026-07-28): a long-lived response stream that carries
//! the notifications the client asked for, each tagged with the subscription's id (the
//! JSON-RPC id of the listen request). When the credential it was opened with no longer
//! stands, the stream ends with the listen request's answer: an error that says why.

use actix_web::HttpResponse;
use actix_web::web::Bytes;
use futures_util::stream;
use rmcp::model::SubscriptionFilter;
use serde_json::{Map, Value, json};

use super::notices::Notice;
use super::protocol::{RpcError, code, meta, notification};
use super::sse;
use crate::context::Context;
use crate::events::{Change, TenantEvents};
use crate::tenancy::grants::{EndKind, Ended, Grant};
use std::sync::Arc;

/// One listen request: what it asked to hear, and its id, which tags what it hears.
pub(super) struct Listen {
    filter: SubscriptionFilter,
    /// `notifications.taskIds`: the tasks (SEP-2663) whose changes it hears, of `owner`.
    task_ids: Vec<String>,
    owner: String,
    id: Value,
}

/// Most tasks one listen stream follows.
const MAX_TASK_IDS: usize = 1000;

/// Most resources one listen stream follows (each is read when the stream opens).
const MAX_RESOURCES: usize = 100;

impl Listen {
    /// `owner` is the caller's, as tasks are (see [`super::tasks`]).
    pub(super) fn parse(
        id: Value,
        params: &Map<String, Value>,
        owner: String,
    ) -> Result<Self, RpcError> {
        let wanted = params.get("notifications").cloned().unwrap_or(json!({}));
        let task_ids: Vec<String> = match wanted.get("taskIds") {
            None | Some(Value::Null) => Vec::new(),
            Some(ids) => serde_json::from_value(ids.clone()).map_err(|_| {
                RpcError::invalid_params("\"notifications.taskIds\" must be an array of task ids")
            })?,
        };
        if task_ids.len() > MAX_TASK_IDS {
            return Err(RpcError::invalid_params(format!(
                "\"notifications.taskIds\" names {} tasks; one stream follows at most {MAX_TASK_IDS}",
                task_ids.len()
            )));
        }
        let filter: SubscriptionFilter = serde_json::from_value(wanted)
            .map_err(|e| RpcError::invalid_params(format!("invalid \"notifications\": {e}")))?;
        let resources = filter.resource_subscriptions.as_ref().map_or(0, Vec::len);
        if resources > MAX_RESOURCES {
            return Err(RpcError::invalid_params(format!(
                "\"notifications.resourceSubscriptions\" names {resources} resources; one stream follows at most {MAX_RESOURCES}"
            )));
        }
        Ok(Self {
            filter,
            task_ids,
            owner,
            id,
        })
    }

    /// The resources it asked to hear of (`notifications.resourceSubscriptions`); each
    /// must be the caller's to read, as for `resources/subscribe`
    /// ([`super::engine::refuse_unreadable`]).
    pub(super) fn resources(&self) -> &[String] {
        self.filter
            .resource_subscriptions
            .as_deref()
            .unwrap_or_default()
    }

    /// The first message of the stream: what the server will send.
    pub(super) fn acknowledgement(&self) -> Value {
        let mut notifications = serde_json::to_value(&self.filter).expect("filters serialize");
        if !self.task_ids.is_empty() {
            notifications["taskIds"] = json!(self.task_ids);
        }
        notification(
            "notifications/subscriptions/acknowledged",
            json!({ "notifications": notifications, "_meta": { meta::SUBSCRIPTION_ID: self.id } }),
        )
    }

    /// The listen request's answer when its credential no longer stands: -31001 (revoked
    /// or expired) or -31003 (its scopes reduced), `data.reason` naming which.
    pub(super) fn ended(&self, ended: &Ended) -> Value {
        let code = match ended.kind {
            EndKind::Revoked | EndKind::Expired => code::UNAUTHENTICATED,
            EndKind::Reduced => code::FORBIDDEN,
        };
        RpcError::new(code, ended.message.clone())
            .with_data(json!({ "reason": ended.kind.label() }))
            .with_id(self.id.clone())
            .to_message()
    }

    /// The notification a change makes on this stream, if any.
    pub(super) fn message_for(&self, change: &Change) -> Option<Value> {
        let filter = &self.filter;
        let on = |flag: Option<bool>| flag == Some(true);
        let notice = Notice::of(change);
        let wanted = match &notice {
            Notice::ToolsListChanged => on(filter.tools_list_changed),
            Notice::PromptsListChanged => on(filter.prompts_list_changed),
            Notice::ResourcesListChanged => on(filter.resources_list_changed),
            Notice::ResourceUpdated(uri) => filter
                .resource_subscriptions
                .as_ref()
                .is_some_and(|watched| watched.contains(uri)),
            Notice::TaskStatus { owner, task } => {
                *owner == self.owner
                    && task["taskId"]
                        .as_str()
                        .is_some_and(|id| self.task_ids.iter().any(|t| t == id))
            }
        };
        wanted.then(|| notice.message(Some(json!({ meta::SUBSCRIPTION_ID: self.id }))))
    }
}

/// Follows an organization's changes for a listen stream.
pub(super) async fn follow(
    node: &Context,
    organization_id: &str,
) -> Result<TenantEvents, RpcError> {
    TenantEvents::subscribe(node, organization_id)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "cannot follow tenant events");
            RpcError::internal()
        })
}

/// Opens a listen stream over HTTP, going on with `grant`.
pub async fn open(
    node: &Context,
    grant: Arc<Grant>,
    listen: Listen,
    held: super::Held,
) -> Result<HttpResponse, RpcError> {
    let held = Arc::new(held);
    let principal = grant.principal();
    let events = follow(node, &principal.organization_id).await?;
    let first = sse::event(None, &listen.acknowledgement().to_string());
    let keepalive = sse::keepalive_timer(node.config.mcp.sse_keepalive.get());
    let state = Some((Some(first), events, keepalive, listen, (grant, held)));
    let body = stream::unfold(state, |state| async move {
        let (first, mut events, mut keepalive, listen, grant) = state?;
        if let Some(first) = first {
            return Some((Ok(first), Some((None, events, keepalive, listen, grant))));
        }
        loop {
            tokio::select! {
                ended = grant.0.ended() => {
                    let last: Bytes = sse::event(None, &listen.ended(ended).to_string());
                    return Some((Ok(last), None));
                }
                _ = keepalive.tick() => {
                    return Some((Ok(sse::keepalive()), Some((None, events, keepalive, listen, grant))));
                }
                change = events.recv() => {
                    let change = change?;
                    if let Some(message) = listen.message_for(&change) {
                        let bytes: Bytes = sse::event(None, &message.to_string());
                        return Some((Ok(bytes), Some((None, events, keepalive, listen, grant))));
                    }
                }
            }
        }
    });
    Ok(sse::response(body))
}
