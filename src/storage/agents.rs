//! Agents and their statistics. An agent's `load` (its tasks assigned or running) changes
//! only inside a task's transition (`storage::tasks`), so that no agent is ever over its
//! `max_concurrent_tasks`; presence is `last_seen_at`, written by heartbeats and by the
//! connections an agent holds.

use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::schema::{agent_stats, agents};
use super::{Db, StorageResult};
use crate::read_conn;
use crate::with_conn;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = agents)]
pub struct AgentRow {
    pub id: String,
    pub organization_id: String,
    pub name: String,
    pub description: String,
    pub capabilities: String,
    pub capability_names: String,
    pub tags: String,
    pub model: Option<String>,
    pub cost_per_task_usd: Option<f64>,
    pub cost_per_1k_tokens_usd: Option<f64>,
    pub max_concurrent_tasks: i32,
    pub metadata: String,
    pub status: String,
    pub load: i32,
    pub last_seen_at: Option<chrono::NaiveDateTime>,
    pub last_assigned_at: Option<chrono::NaiveDateTime>,
    pub consecutive_failures: i32,
    pub circuit_open_until: Option<chrono::NaiveDateTime>,
    pub created_at: chrono::NaiveDateTime,
    pub updated_at: chrono::NaiveDateTime,
}

/// Fields of an agent to change; `None` leaves one alone, `Some(None)` clears it.
#[derive(Debug, Clone, Default, AsChangeset)]
#[diesel(table_name = agents)]
pub struct AgentChanges {
    pub name: Option<String>,
    pub description: Option<String>,
    pub capabilities: Option<String>,
    pub capability_names: Option<String>,
    pub tags: Option<String>,
    pub model: Option<Option<String>>,
    pub cost_per_task_usd: Option<Option<f64>>,
    pub cost_per_1k_tokens_usd: Option<Option<f64>>,
    pub max_concurrent_tasks: Option<i32>,
    pub metadata: Option<String>,
    pub updated_at: Option<chrono::NaiveDateTime>,
}

#[derive(Debug, Clone, Default)]
pub struct AgentFilter {
    pub capability: Option<String>,
    pub tag: Option<String>,
    pub status: Option<String>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = agent_stats)]
pub struct StatsRow {
    pub agent_id: String,
    pub organization_id: String,
    pub task_type: String,
    pub completed: i64,
    pub failed: i64,
    pub timed_out: i64,
    pub latency_ewma_ms: Option<f64>,
    pub recent_latencies_ms: String,
    pub cost_usd: f64,
    pub updated_at: chrono::NaiveDateTime,
}

/// How a task ended, for the statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Completed,
    Failed,
    TimedOut,
}

/// The statistics' rows that cover every task type.
pub const ALL_TYPES: &str = "*";
/// The latencies kept for the median.
pub const RECENT_LATENCIES: usize = 50;
/// The weight of a new latency in the exponentially weighted mean.
pub const EWMA_ALPHA: f64 = 0.2;

/// `LIKE` matching ` value ` inside a space-delimited list, with `%` and `_` taken literally.
fn word_pattern(value: &str) -> String {
    let escaped = value
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("% {escaped} %")
}

pub async fn insert(db: &Db, agent: &AgentRow) -> StorageResult<()> {
    with_conn!(db, [agent], |conn| {
        diesel::insert_into(agents::table)
            .values(agent)
            .execute(conn)
            .await?;
        Ok(())
    })
}

pub async fn get(db: &Db, org: &str, id: &str) -> StorageResult<Option<AgentRow>> {
    read_conn!(db, [org, id], |conn| {
        Ok(agents::table
            .filter(agents::organization_id.eq(org).and(agents::id.eq(id)))
            .select(AgentRow::as_select())
            .first(conn)
            .await
            .optional()?)
    })
}

/// Newest first.
pub async fn list(
    db: &Db,
    org: &str,
    filter: &AgentFilter,
    after: Option<&str>,
    limit: i64,
) -> StorageResult<Vec<AgentRow>> {
    read_conn!(db, [org, filter, after], |conn| {
        let mut q = agents::table
            .filter(agents::organization_id.eq(org))
            .select(AgentRow::as_select())
            .order(agents::id.desc())
            .limit(limit)
            .into_boxed();
        if let Some(after) = after {
            q = q.filter(agents::id.lt(after.clone()));
        }
        if let Some(c) = &filter.capability {
            q = q.filter(agents::capability_names.like(word_pattern(c)).escape('\\'));
        }
        if let Some(t) = &filter.tag {
            q = q.filter(agents::tags.like(word_pattern(t)).escape('\\'));
        }
        if let Some(s) = &filter.status {
            q = q.filter(agents::status.eq(s.clone()));
        }
        Ok(q.load(conn).await?)
    })
}

/// Active agents seen at or after `online_after`: who the engine may choose from.
pub async fn online_active(
    db: &Db,
    org: &str,
    online_after: chrono::NaiveDateTime,
) -> StorageResult<Vec<AgentRow>> {
    read_conn!(db, [org], |conn| {
        Ok(agents::table
            .filter(agents::organization_id.eq(org))
            .filter(agents::status.eq("active"))
            .filter(agents::last_seen_at.ge(online_after))
            .select(AgentRow::as_select())
            .order(agents::id.asc())
            .load(conn)
            .await?)
    })
}

pub async fn update(
    db: &Db,
    org: &str,
    id: &str,
    changes: &AgentChanges,
) -> StorageResult<Option<AgentRow>> {
    with_conn!(db, [org, id, changes], |conn| {
        Ok(diesel::update(
            agents::table.filter(agents::organization_id.eq(org).and(agents::id.eq(id))),
        )
        .set(changes)
        .returning(AgentRow::as_returning())
        .get_result(conn)
        .await
        .optional()?)
    })
}

/// Moves an agent from one of `from` to `to` (a conditional write); `None` when it is in
/// none of them (or missing).
pub async fn set_status(
    db: &Db,
    org: &str,
    id: &str,
    from: &[&'static str],
    to: &'static str,
) -> StorageResult<Option<AgentRow>> {
    let from: Vec<String> = from.iter().map(|s| s.to_string()).collect();
    let from = from.as_slice();
    with_conn!(db, [org, id, from], |conn| {
        Ok(diesel::update(
            agents::table
                .filter(agents::organization_id.eq(org).and(agents::id.eq(id)))
                .filter(agents::status.eq_any(from)),
        )
        .set((agents::status.eq(to), agents::updated_at.eq(super::now())))
        .returning(AgentRow::as_returning())
        .get_result(conn)
        .await
        .optional()?)
    })
}

/// Whether a delete removed the agent, or why not.
#[derive(Debug, PartialEq, Eq)]
pub enum Deleted {
    Done,
    Missing,
    /// It still has tasks assigned or running.
    Busy(i32),
}

pub async fn delete(db: &Db, org: &str, id: &str) -> StorageResult<Deleted> {
    with_conn!(db, [org, id], |conn| {
        let scoped = agents::table.filter(agents::organization_id.eq(org).and(agents::id.eq(id)));
        let n = diesel::delete(scoped.filter(agents::load.eq(0)))
            .execute(conn)
            .await?;
        if n == 1 {
            return Ok(Deleted::Done);
        }
        let load: Option<i32> = scoped.select(agents::load).first(conn).await.optional()?;
        Ok(match load {
            Some(load) => Deleted::Busy(load),
            None => Deleted::Missing,
        })
    })
}

/// What a sign of life did.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen {
    /// The agent was offline (seen before `online_after`, or never) and is online now.
    CameOnline,
    StillOnline,
    Missing,
}

/// Records a sign of life of an agent at `now`.
pub async fn seen(
    db: &Db,
    org: &str,
    id: &str,
    now: chrono::NaiveDateTime,
    online_after: chrono::NaiveDateTime,
) -> StorageResult<Seen> {
    with_conn!(db, [org, id], |conn| {
        let scoped = agents::table.filter(agents::organization_id.eq(org).and(agents::id.eq(id)));
        let came = diesel::update(
            scoped.filter(
                agents::last_seen_at
                    .is_null()
                    .or(agents::last_seen_at.lt(online_after)),
            ),
        )
        .set(agents::last_seen_at.eq(now))
        .execute(conn)
        .await?;
        if came == 1 {
            return Ok(Seen::CameOnline);
        }
        let n = diesel::update(scoped)
            .set(agents::last_seen_at.eq(now))
            .execute(conn)
            .await?;
        Ok(if n == 1 {
            Seen::StillOnline
        } else {
            Seen::Missing
        })
    })
}

/// What an outcome does to the agent's circuit: a success closes it; a failure or a
/// timeout counts, and the `threshold`-th in a row opens it until `open_until`.
#[derive(Debug, Clone, Copy)]
pub struct Circuit {
    pub success: bool,
    pub threshold: i32,
    pub open_until: chrono::NaiveDateTime,
}

/// The circuit's writes, inside a transaction (one body for both backends' connections).
macro_rules! write_circuit {
    ($conn:ident, $agent_id:expr, $circuit:expr) => {{
        let target = agents::table.filter(agents::id.eq($agent_id));
        let circuit: &Circuit = $circuit;
        if circuit.success {
            // Nothing to write for a circuit already closed.
            diesel::update(
                target.filter(
                    agents::consecutive_failures
                        .gt(0)
                        .or(agents::circuit_open_until.is_not_null()),
                ),
            )
            .set((
                agents::consecutive_failures.eq(0),
                agents::circuit_open_until.eq(None::<chrono::NaiveDateTime>),
            ))
            .execute($conn)
            .await?;
        } else {
            let failures: i32 = diesel::update(target)
                .set(agents::consecutive_failures.eq(agents::consecutive_failures + 1))
                .returning(agents::consecutive_failures)
                .get_result($conn)
                .await?;
            if failures >= circuit.threshold {
                diesel::update(target)
                    .set(agents::circuit_open_until.eq(Some(circuit.open_until)))
                    .execute($conn)
                    .await?;
            }
        }
    }};
}

/// The circuit after a task the agent never accepted (no statistics to count).
pub async fn record_circuit(db: &Db, agent_id: &str, circuit: Circuit) -> StorageResult<()> {
    with_conn!(db, [agent_id], |conn| {
        conn.transaction::<_, diesel::result::Error, _>(async move |conn| {
            write_circuit!(conn, agent_id, &circuit);
            Ok(())
        })
        .await?;
        Ok(())
    })
}

/// The statistics of agents: of the task types `types` (`ALL_TYPES` among them for the
/// totals), or of every type.
pub async fn stats(
    db: &Db,
    org: &str,
    agent_ids: &[String],
    types: Option<&[String]>,
) -> StorageResult<Vec<StatsRow>> {
    read_conn!(db, [org, agent_ids, types], |conn| {
        let mut rows = Vec::new();
        // Bounded statements: an IN list of a few hundred ids at most.
        for chunk in agent_ids.chunks(500) {
            let mut q = agent_stats::table
                .filter(agent_stats::organization_id.eq(org))
                .filter(agent_stats::agent_id.eq_any(chunk))
                .select(StatsRow::as_select())
                .into_boxed();
            if let Some(types) = types {
                q = q.filter(agent_stats::task_type.eq_any(types.clone()));
            }
            rows.extend(q.load(conn).await?);
        }
        Ok(rows)
    })
}

/// Counts a finished task in the agent's statistics, for all types and for its type,
/// and in its circuit, in one transaction. Each row is bumped before it is read, so two
/// tasks finishing at once are both counted (the bump locks the row).
#[allow(clippy::too_many_arguments)]
pub async fn record_outcome(
    db: &Db,
    org: &str,
    agent_id: &str,
    task_type: &str,
    outcome: Outcome,
    latency_ms: Option<f64>,
    cost_usd: f64,
    circuit: Circuit,
) -> StorageResult<()> {
    let types = [ALL_TYPES.to_string(), task_type.to_string()];
    let types = types.as_slice();
    with_conn!(db, [org, agent_id, types], |conn| {
        conn.transaction::<_, diesel::result::Error, _>(async move |conn| {
            write_circuit!(conn, agent_id, &circuit);
            let now = super::now();
            for task_type in types.iter() {
                diesel::insert_into(agent_stats::table)
                    .values(StatsRow {
                        agent_id: agent_id.clone(),
                        organization_id: org.clone(),
                        task_type: task_type.clone(),
                        completed: 0,
                        failed: 0,
                        timed_out: 0,
                        latency_ewma_ms: None,
                        recent_latencies_ms: "[]".into(),
                        cost_usd: 0.0,
                        updated_at: now,
                    })
                    .on_conflict_do_nothing()
                    .execute(conn)
                    .await?;
                let key = || {
                    agent_stats::table
                        .filter(agent_stats::agent_id.eq(agent_id.clone()))
                        .filter(agent_stats::task_type.eq(task_type.clone()))
                };
                let row: StatsRow = match outcome {
                    Outcome::Completed => {
                        diesel::update(key())
                            .set((
                                agent_stats::completed.eq(agent_stats::completed + 1),
                                agent_stats::cost_usd.eq(agent_stats::cost_usd + cost_usd),
                                agent_stats::updated_at.eq(now),
                            ))
                            .returning(StatsRow::as_returning())
                            .get_result(conn)
                            .await?
                    }
                    Outcome::Failed => {
                        diesel::update(key())
                            .set((
                                agent_stats::failed.eq(agent_stats::failed + 1),
                                agent_stats::cost_usd.eq(agent_stats::cost_usd + cost_usd),
                                agent_stats::updated_at.eq(now),
                            ))
                            .returning(StatsRow::as_returning())
                            .get_result(conn)
                            .await?
                    }
                    Outcome::TimedOut => {
                        diesel::update(key())
                            .set((
                                agent_stats::timed_out.eq(agent_stats::timed_out + 1),
                                agent_stats::updated_at.eq(now),
                            ))
                            .returning(StatsRow::as_returning())
                            .get_result(conn)
                            .await?
                    }
                };
                if let Some(ms) = latency_ms {
                    let mut recent: Vec<f64> =
                        serde_json::from_str(&row.recent_latencies_ms).unwrap_or_default();
                    recent.push(ms);
                    if recent.len() > RECENT_LATENCIES {
                        recent.remove(0);
                    }
                    let ewma = match row.latency_ewma_ms {
                        Some(old) => old + EWMA_ALPHA * (ms - old),
                        None => ms,
                    };
                    diesel::update(key())
                        .set((
                            agent_stats::latency_ewma_ms.eq(Some(ewma)),
                            agent_stats::recent_latencies_ms
                                .eq(serde_json::to_string(&recent).expect("numbers serialize")),
                        ))
                        .execute(conn)
                        .await?;
                }
            }
            Ok(())
        })
        .await?;
        Ok(())
    })
}
