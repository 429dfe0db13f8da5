//! `devmesh://system/health`: the node's readiness, as a resource.

use futures_util::future::BoxFuture;
use rmcp::model::{Resource, ResourceContents};
use serde_json::{Map, Value, json};

use crate::health;
use crate::mcp::call::Call;
use crate::mcp::catalog::{Provider, Reply};
use crate::mcp::protocol::RpcError;

pub const HEALTH: &str = "devmesh://system/health";

pub struct SystemProvider;

impl Provider for SystemProvider {
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
