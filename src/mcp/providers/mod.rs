//! The built-in providers of the catalog.

pub mod contexts;
pub mod fixtures;
pub mod system;

use serde::Serialize;
use serde_json::Value;

use super::engine::tool_error;
use super::protocol::RpcError;
use crate::service::ServiceError;
use crate::storage::StorageError;

/// A tool's successful result: the value as structured content, and as JSON text for
/// clients that read only text.
pub fn structured<T: Serialize>(value: &T) -> Value {
    let structured = serde_json::to_value(value).expect("results serialize");
    let text = serde_json::to_string_pretty(&structured).expect("results serialize");
    serde_json::json!({
        "content": [{ "type": "text", "text": text }],
        "structuredContent": structured,
        "isError": false,
    })
}

/// A service's refusal as a tool error the model can read; a failure of the platform
/// itself (storage) as a protocol error that carries no internals.
pub fn service_failure(e: ServiceError) -> Result<Value, RpcError> {
    match e {
        ServiceError::Storage(e) => Err(storage_failure(&e, "an MCP tool")),
        ServiceError::Internal(_) => {
            tracing::error!(error = %e, "an MCP tool failed inside the platform");
            Err(RpcError::internal())
        }
        e => Ok(tool_error(e.to_string())),
    }
}

/// A storage failure met by `what` as the protocol error the client gets: retry shortly
/// when the database is away, an internal error (the cause logged, not sent) otherwise.
pub fn storage_failure(e: &StorageError, what: &str) -> RpcError {
    match e {
        StorageError::Unavailable(cause) => {
            tracing::warn!(error = %cause, "{what} met an unavailable database");
            RpcError::unavailable()
        }
        StorageError::Unrepresentable(message) => RpcError::invalid_params(message.clone()),
        e => {
            tracing::error!(error = %e, "{what} failed inside the platform");
            RpcError::internal()
        }
    }
}
