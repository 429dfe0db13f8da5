//! `requestState` of multi-round requests (protocol 2026-07-28): what a provider puts in an
//! input-required result and the client echoes back, sealed with HMAC-SHA256 under a key
//! every node shares, bound to the caller's organization and the tool, and short-lived.
//! Any provider that keeps state across rounds goes through here.

use std::time::Duration;

use rmcp::model::SealOptions;
use serde_json::Value;

use super::call::Call;
use super::protocol::RpcError;

/// How long a client may take to answer an input-required result. A task's round may
/// wait as long as the task lives (`mcp.tasks.ttl`): its state stays on the server.
const TTL: Duration = Duration::from_secs(600);

fn ttl(call: &Call) -> Duration {
    match call.task_id {
        Some(_) => call.node.config.mcp.tasks.ttl.get().max(TTL),
        None => TTL,
    }
}

fn bound(call: &Call, tool: &str) -> String {
    format!("{}|{tool}", call.principal.organization_id)
}

async fn codec(call: &Call) -> Result<&rmcp::model::RequestStateCodec, RpcError> {
    call.mcp.state_codec(&call.node.db).await.map_err(|e| {
        tracing::error!(error = %e, "cannot load the request-state key");
        RpcError::internal()
    })
}

/// Seals `state` for a round of `tool`.
pub async fn seal(call: &Call, tool: &str, state: &Value) -> Result<String, RpcError> {
    let payload = serde_json::to_vec(state).expect("state serializes");
    let bound = bound(call, tool);
    let options = SealOptions::new()
        .associated_data(bound.as_bytes())
        .ttl(ttl(call));
    Ok(codec(call).await?.seal_with(&payload, &options))
}

/// Opens the state the client echoed: `None` when there is none; an error when it was
/// forged, tampered with, expired, or made for another tool or tenant.
pub async fn open(call: &Call, tool: &str) -> Result<Option<Value>, RpcError> {
    let Some(sealed) = &call.request_state else {
        return Ok(None);
    };
    let refused = |detail: String| {
        RpcError::invalid_params(format!("requestState failed its integrity check{detail}"))
    };
    let payload = codec(call)
        .await?
        .open_with(sealed, bound(call, tool).as_bytes())
        .map_err(|e| refused(format!(": {e}")))?;
    serde_json::from_slice(&payload)
        .map(Some)
        .map_err(|_| refused(String::new()))
}
