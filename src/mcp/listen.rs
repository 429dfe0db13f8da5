//! `subscriptions/listen` (protocol 2026-07-28): a long-lived response stream that carries
//! the notifications the client asked for, each tagged with the subscription's id (the
//! JSON-RPC id of the listen request).

use actix_web::HttpResponse;
use actix_web::web::Bytes;
use futures_util::stream;
use rmcp::model::SubscriptionFilter;
use serde_json::{Map, Value, json};

use super::notices::Notice;
use super::protocol::{RpcError, meta, notification};
use super::sse;
use crate::context::Context;
use crate::events::{Change, TenantEvents};

pub async fn open(
    node: &Context,
    organization_id: &str,
    id: Value,
    params: &Map<String, Value>,
) -> Result<HttpResponse, RpcError> {
    let filter: SubscriptionFilter =
        serde_json::from_value(params.get("notifications").cloned().unwrap_or(json!({})))
            .map_err(|e| RpcError::invalid_params(format!("invalid \"notifications\": {e}")))?;
    let events = TenantEvents::subscribe(node, organization_id)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "cannot follow tenant events");
            RpcError::internal()
        })?;
    let ack = notification(
        "notifications/subscriptions/acknowledged",
        json!({ "notifications": filter, "_meta": { meta::SUBSCRIPTION_ID: id } }),
    );
    let first = sse::event(None, &ack.to_string());
    let keepalive = sse::keepalive_timer(node.config.mcp.sse_keepalive.get());
    let state = (Some(first), events, keepalive, filter, id);
    let body = stream::unfold(
        state,
        |(first, mut events, mut keepalive, filter, id)| async move {
            if let Some(first) = first {
                return Some((Ok(first), (None, events, keepalive, filter, id)));
            }
            loop {
                tokio::select! {
                    _ = keepalive.tick() => {
                        return Some((Ok(sse::keepalive()), (None, events, keepalive, filter, id)));
                    }
                    change = events.recv() => {
                        let change = change?;
                        if let Some(message) = message_for(&change, &filter, &id) {
                            let bytes: Bytes = sse::event(None, &message.to_string());
                            return Some((Ok(bytes), (None, events, keepalive, filter, id)));
                        }
                    }
                }
            }
        },
    );
    Ok(sse::response(body))
}

/// The notification a change makes on a stream with this filter, if any.
fn message_for(change: &Change, filter: &SubscriptionFilter, id: &Value) -> Option<Value> {
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
    };
    wanted.then(|| notice.message(Some(json!({ meta::SUBSCRIPTION_ID: id }))))
}
