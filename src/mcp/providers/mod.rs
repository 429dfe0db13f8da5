//! The built-in providers of the catalog.

pub mod contexts;
pub mod fixtures;
pub mod system;

use serde::Serialize;
use serde_json::Value;

use super::engine::tool_error;
use super::protocol::RpcError;
use crate::service::ServiceError;

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
        ServiceError::Storage(_) | ServiceError::Internal(_) => {
            tracing::error!(error = %e, "an MCP tool failed inside the platform");
            Err(RpcError::internal())
        }
        e => Ok(tool_error(e.to_string())),
    }
}
