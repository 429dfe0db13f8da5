//! The node itself: `devmesh://system/health` (its readiness, as a resource) and
//! `devmesh_whoami` (who the credentials are, so an agent can check its setup).

use std::sync::{Arc, LazyLock};

use futures_util::future::BoxFuture;
use rmcp::model::{Resource, ResourceContents, Tool};
use serde_json::{Map, Value, json};

use super::structured;
use crate::health;
use crate::mcp::call::Call;
use crate::mcp::catalog::{Provider, Reply, ToolSpec, schema};
use crate::mcp::protocol::RpcError;

pub const HEALTH: &str = "devmesh://system/health";
const WHOAMI: &str = "devmesh_whoami";

static TOOLS: LazyLock<Vec<Arc<ToolSpec>>> = LazyLock::new(|| {
    vec![ToolSpec::new(
        Tool::new(
            WHOAMI,
            "Who this connection acts as: the organization, the key or user, and its scopes.",
            schema(json!({ "type": "object", "properties": {}, "additionalProperties": false })),
        )
        .with_raw_output_schema(schema(json!({
            "type": "object",
            "properties": {
                "organization_id": { "type": "string" },
                "actor_type": { "type": "string" },
                "actor_id": { "type": "string" },
                "scopes": { "type": "array", "items": { "type": "string" } },
                "protocol_version": { "type": "string" }
            },
            "required": ["organization_id", "actor_type", "actor_id", "scopes", "protocol_version"]
        }))),
    )]
});

pub struct SystemProvider;

impl Provider for SystemProvider {
    fn tools<'a>(&'a self, _call: &'a Call) -> BoxFuture<'a, Vec<Arc<ToolSpec>>> {
        Box::pin(async { TOOLS.clone() })
    }

    fn call_tool<'a>(
        &'a self,
        name: &'a str,
        _args: Map<String, Value>,
        call: &'a Call,
    ) -> Reply<'a> {
        Box::pin(async move {
            if name != WHOAMI {
                return Err(RpcError::invalid_params(format!("unknown tool: {name}")));
            }
            let p = &call.principal;
            Ok(structured(&json!({
                "organization_id": p.organization_id,
                "actor_type": p.actor_type(),
                "actor_id": p.actor_id(),
                "scopes": p.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
                "protocol_version": call.version.as_str(),
            })))
        })
    }

    fn resources<'a>(&'a self, _call: &'a Call) -> BoxFuture<'a, Result<Vec<Resource>, RpcError>> {
        Box::pin(async {
            Ok(vec![
                Resource::new(HEALTH, "health")
                    .with_title("devmesh health")
                    .with_description(
                        "Whether this devmesh node and its database (and Redis) are up",
                    )
                    .with_mime_type("application/json"),
            ])
        })
    }

    fn owns_uri(&self, uri: &str) -> bool {
        uri == HEALTH
    }

    fn read_resource<'a>(&'a self, uri: &'a str, call: &'a Call) -> Reply<'a> {
        Box::pin(async move {
            let node = &call.node;
            let report = health::readiness(
                &node.health,
                &node.db,
                &node.bus,
                node.config.http.ready_timeout.get(),
            )
            .await;
            // Statuses only: error texts stay in the operator's /ready and logs.
            let checks: Map<String, Value> = report
                .checks
                .iter()
                .map(|(name, c)| {
                    (
                        (*name).to_string(),
                        json!({ "status": c.status, "latency_ms": c.latency_ms }),
                    )
                })
                .collect();
            let body = json!({
                "status": report.status,
                "node": { "id": node.node.id, "name": node.node.name, "version": node.node.version },
                "checks": checks,
            });
            let contents =
                ResourceContents::text(body.to_string(), uri).with_mime_type("application/json");
            Ok(json!({ "contents": [contents] }))
        })
    }
}
