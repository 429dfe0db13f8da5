//! Liveness and readiness of this node, independent of any transport.
//!
//! The node is ready when its database schema is current and the database (and Redis,
//! when configured) answer within the readiness timeout.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;

use crate::bus::Bus;
use crate::storage::Db;

/// Whether the database schema is usable yet, and if not, why.
pub struct Health {
    schema: watch::Sender<SchemaState>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaState {
    Waiting(String),
    Ready,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            schema: watch::channel(SchemaState::Waiting("starting".into())).0,
        }
    }
}

impl Health {
    pub fn set_schema(&self, state: SchemaState) {
        self.schema.send_replace(state);
    }

    pub fn schema(&self) -> SchemaState {
        self.schema.borrow().clone()
    }

    /// Resolves once the schema is ready.
    pub async fn schema_ready(&self) {
        let mut rx = self.schema.subscribe();
        let _ = rx.wait_for(|s| *s == SchemaState::Ready).await;
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Up,
    Down,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub status: CheckStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<&'static str>,
    pub latency_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Readiness {
    /// `ready` or `unavailable`.
    pub status: &'static str,
    pub checks: BTreeMap<&'static str, Check>,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.status == "ready"
    }
}

/// Checks every dependency at once, each within `timeout`.
pub async fn readiness(health: &Health, db: &Db, bus: &Bus, timeout: Duration) -> Readiness {
    let database = async {
        let started = std::time::Instant::now();
        let result = match health.schema() {
            SchemaState::Waiting(why) => Err(why),
            SchemaState::Ready => match tokio::time::timeout(timeout, db.ping()).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
            },
        };
        check(result, Some(db.backend_name()), started)
    };
    let redis = async {
        let started = std::time::Instant::now();
        bus.ping(timeout)
            .await
            .map(|result| check(result, None, started))
    };
    let (database, redis) = tokio::join!(database, redis);
    let mut checks = BTreeMap::from([("database", database)]);
    if let Some(redis) = redis {
        checks.insert("redis", redis);
    }
    let ready = checks.values().all(|c| c.status == CheckStatus::Up);
    Readiness {
        status: if ready { "ready" } else { "unavailable" },
        checks,
    }
}

fn check(
    result: Result<(), String>,
    backend: Option<&'static str>,
    started: std::time::Instant,
) -> Check {
    let latency_ms = started.elapsed().as_millis() as u64;
    match result {
        Ok(()) => Check {
            status: CheckStatus::Up,
            backend,
            latency_ms,
            error: None,
        },
        Err(e) => Check {
            status: CheckStatus::Down,
            backend,
            latency_ms,
            error: Some(e),
        },
    }
}
