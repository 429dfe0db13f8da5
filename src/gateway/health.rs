//! Health checks and the circuit breaker. A recurring job (every `gateway.health_tick`)
//! probes each tool whose check is due: a GET of its `health_check.path` (or its base
//! URL) through the outbound client, with the organization's credential. A 2xx or 3xx
//! passes; `gateway.failure_threshold` failures in a row open the tool's circuit (its
//! status becomes `unhealthy`, and its calls fail fast with a tool error saying since
//! when), and the first check that passes closes it again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use url::Url;

use super::Gateway;
use super::model::{Health, Probe};
use super::sealed::auth_purpose;
use super::stored::settings_of;
use crate::context::Context as Node;
use crate::jobs::{Job, JobContext, JobError};
use crate::outbound::OutboundRequest;
use crate::storage::gateway::{self as store, ToolRow};

/// Checks kept per tool.
pub const KEPT_CHECKS: usize = 10;
/// How long one check may take.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(10);
/// Checks run at once.
const PARALLEL_CHECKS: usize = 8;

/// The recurring job: checks every tool that is due.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CheckHealth {}

impl Job for CheckHealth {
    const NAME: &'static str = "gateway.health";
    // Recurring upkeep, beside the node sweep and the agents' sweep: the default queue
    // is for tenants' work.
    const QUEUE: &'static str = "system";
    const MAX_ATTEMPTS: u32 = 1;
    type State = Arc<Gateway>;

    async fn run(self, gateway: Arc<Gateway>, ctx: JobContext) -> Result<(), JobError> {
        check_due(&ctx.ctx, &gateway).await
    }
}

fn interval_of(gateway: &Gateway, row: &ToolRow) -> Duration {
    settings_of(row)
        .health_check
        .and_then(|h| h.interval)
        .map(|s| Duration::from_secs(u64::from(s)))
        .unwrap_or(gateway.config.health_interval.get())
}

/// Checks every tool whose last check is older than its interval.
pub async fn check_due(node: &Node, gateway: &Gateway) -> Result<(), JobError> {
    let rows = store::all(&node.db).await?;
    let now = chrono::Utc::now();
    let due: Vec<ToolRow> = rows
        .into_iter()
        .filter(|row| {
            let health: Health = serde_json::from_str(&row.health).unwrap_or_default();
            let interval = chrono::Duration::from_std(interval_of(gateway, row))
                .unwrap_or(chrono::Duration::MAX);
            // A little early rather than a tick late.
            let slack = chrono::Duration::from_std(gateway.config.health_tick.get() / 2)
                .unwrap_or_default();
            health
                .checks
                .last()
                .is_none_or(|c| c.at + interval - slack <= now)
        })
        .collect();
    futures_util::stream::iter(due)
        .for_each_concurrent(PARALLEL_CHECKS, |row| async move {
            if let Err(e) = check_one(node, gateway, &row).await {
                tracing::warn!(tool = %row.id, error = %e, "cannot store a health check");
            }
        })
        .await;
    Ok(())
}

/// Probes one tool and stores the outcome; a change of status reaches every node's
/// catalog (the organization's generation moves).
pub async fn check_one(
    node: &Node,
    gateway: &Gateway,
    row: &ToolRow,
) -> Result<Health, crate::storage::StorageError> {
    let probe = probe(gateway, row).await;
    let mut health: Health = serde_json::from_str(&row.health).unwrap_or_default();
    let before = health.status.clone();
    if probe.ok {
        health.consecutive_failures = 0;
        health.failing_since = None;
        if health.status != "healthy" {
            health.status = "healthy".into();
            health.since = Some(probe.at);
        }
    } else {
        health.consecutive_failures += 1;
        let failing_since = *health.failing_since.get_or_insert(probe.at);
        if health.consecutive_failures >= gateway.config.failure_threshold
            && health.status != "unhealthy"
        {
            // Down since its first failed check, not the one that opened the circuit.
            health.status = "unhealthy".into();
            health.since = Some(failing_since);
        } else if health.status.is_empty() {
            health.status = "unknown".into();
        }
    }
    if !probe.ok {
        tracing::info!(tool = %row.id, outcome = %probe.outcome, "a tool's health check failed");
    }
    health.checks.push(probe);
    let excess = health.checks.len().saturating_sub(KEPT_CHECKS);
    health.checks.drain(..excess);
    store::set_health(
        &node.db,
        &row.id,
        &serde_json::to_string(&health).expect("health serializes"),
    )
    .await?;
    if before != health.status {
        node.bus
            .generations
            .advance(
                &super::generation(&row.organization_id),
                Duration::from_secs(300),
            )
            .await;
    }
    Ok(health)
}

async fn probe(gateway: &Gateway, row: &ToolRow) -> Probe {
    let at = chrono::Utc::now();
    let started = Instant::now();
    let outcome = async {
        let base =
            Url::parse(&row.base_url).map_err(|_| "the base URL is not a URL".to_string())?;
        let settings = settings_of(row);
        let url = match settings.health_check.and_then(|h| h.path) {
            Some(path) => {
                let mut base = base.clone();
                if !base.path().ends_with('/') {
                    base.set_path(&format!("{}/", base.path()));
                }
                base.join(path.trim_start_matches('/'))
                    .map_err(|e| format!("the health check path is not usable: {e}"))?
            }
            None => base,
        };
        let mut request = OutboundRequest::get(url);
        request.timeout = Some(CHECK_TIMEOUT);
        if let Some(sealed) = &row.auth_sealed {
            let (headers, names) = super::execute::applied_headers(
                gateway,
                &row.organization_id,
                &auth_purpose(&row.id),
                sealed,
            )
            .await?;
            request.headers = headers;
            request.credential_headers = names;
        }
        let response = gateway
            .outbound
            .send(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        if status.is_success() || status.is_redirection() {
            Ok(format!("HTTP {}", status.as_u16()))
        } else {
            Err(format!("HTTP {}", status.as_u16()))
        }
    }
    .await;
    let elapsed_ms = started.elapsed().as_millis() as u64;
    match outcome {
        Ok(outcome) => Probe {
            at,
            ok: true,
            outcome,
            elapsed_ms,
        },
        Err(outcome) => Probe {
            at,
            ok: false,
            outcome: super::operations::cap(&outcome, 300),
            elapsed_ms,
        },
    }
}
