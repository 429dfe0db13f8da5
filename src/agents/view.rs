//! Agents as the API shows them, from their stored rows: capabilities, tags, the
//! circuit as it stands now, presence, and statistics (median and weighted mean latency).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::json;

use super::Agents;
use super::model::{Agent, AgentStatus, Capability, Circuit, Cost, Presence, Statistics};
use crate::storage::agents::{ALL_TYPES, AgentRow, StatsRow};
use crate::tenancy::utc;

/// The agent's circuit as it stands at `now`.
pub fn circuit(row: &AgentRow, threshold: u32, now: chrono::NaiveDateTime) -> Circuit {
    let state = if row.consecutive_failures < threshold as i32 {
        "closed"
    } else if row.circuit_open_until.is_some_and(|t| t > now) {
        "open"
    } else {
        "half_open"
    };
    Circuit {
        state: state.into(),
        consecutive_failures: row.consecutive_failures,
        open_until: row.circuit_open_until.filter(|t| *t > now).map(utc),
    }
}

/// Statistics from their stored row.
pub fn statistics(row: &StatsRow) -> Statistics {
    let finished = row.completed + row.failed + row.timed_out;
    let mut recent: Vec<f64> = serde_json::from_str(&row.recent_latencies_ms).unwrap_or_default();
    recent.sort_by(f64::total_cmp);
    let p50 = (!recent.is_empty()).then(|| {
        let mid = recent.len() / 2;
        if recent.len().is_multiple_of(2) {
            (recent[mid - 1] + recent[mid]) / 2.0
        } else {
            recent[mid]
        }
    });
    Statistics {
        completed: row.completed,
        failed: row.failed,
        timed_out: row.timed_out,
        success_rate: (finished > 0).then(|| row.completed as f64 / finished as f64),
        latency_p50_ms: p50,
        latency_ewma_ms: row.latency_ewma_ms,
        cost_usd: row.cost_usd,
    }
}

/// The capability list and tags of a stored agent.
pub fn stored_capabilities(row: &AgentRow) -> Vec<Capability> {
    serde_json::from_str(&row.capabilities).unwrap_or_default()
}

pub fn stored_tags(row: &AgentRow) -> Vec<String> {
    row.tags.split_whitespace().map(str::to_string).collect()
}

/// An agent as the API shows it; with `stats`, its statistics too.
pub fn view(agents: &Arc<Agents>, row: AgentRow, stats: Option<&[StatsRow]>) -> Agent {
    let now = crate::storage::now();
    let online = row
        .last_seen_at
        .is_some_and(|t| t >= agents.online_after(now));
    let (statistics, statistics_by_type) = match stats {
        Some(rows) => {
            let all = rows
                .iter()
                .find(|r| r.task_type == ALL_TYPES)
                .map(statistics)
                .unwrap_or_default();
            let by_type: BTreeMap<String, Statistics> = rows
                .iter()
                .filter(|r| r.task_type != ALL_TYPES)
                .map(|r| (r.task_type.clone(), statistics(r)))
                .collect();
            (Some(all), Some(by_type))
        }
        None => (None, None),
    };
    Agent {
        circuit: circuit(&row, agents.config.breaker_failures, now),
        capabilities: stored_capabilities(&row),
        tags: stored_tags(&row),
        id: row.id,
        name: row.name,
        description: row.description,
        model: row.model,
        cost: Cost {
            per_task_usd: row.cost_per_task_usd,
            per_1k_tokens_usd: row.cost_per_1k_tokens_usd,
        },
        max_concurrent_tasks: row.max_concurrent_tasks,
        metadata: serde_json::from_str(&row.metadata).unwrap_or(json!({})),
        status: AgentStatus::from_stored(&row.status).unwrap_or(AgentStatus::Pending),
        presence: Presence {
            online,
            last_seen_at: row.last_seen_at.map(utc),
        },
        load: row.load,
        statistics,
        statistics_by_type,
        created_at: utc(row.created_at),
        updated_at: utc(row.updated_at),
    }
}
