//! Assignments: a queued task given to an agent, each one transaction of two conditional
//! writes (the agent's `load` below its capacity, the task still `queued`), and where
//! each `round_robin` rotation stands.

use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::schema::{agent_rotations, agents, task_events, tasks};
use super::tasks::{TaskEventRow, TxError};
use super::{Db, StorageResult};
use crate::read_conn;
use crate::with_conn;

/// An assignment to make: the task, its agent, and what the task records of it.
#[derive(Debug, Clone)]
pub struct Assignment {
    pub task_id: String,
    pub agent_id: String,
    pub now: chrono::NaiveDateTime,
    pub deadline: chrono::NaiveDateTime,
    /// JSON: the decision (strategy, scores).
    pub decision: String,
    /// The agent's circuit: failures in a row at or past which it takes one task at most.
    pub breaker_failures: i32,
    pub event: TaskEventRow,
    /// For `round_robin`: the capability set whose rotation now stands at this agent.
    pub rotation: Option<String>,
}

/// Assigns a queued task to an agent in one transaction, or does nothing: `false` when
/// the agent has no free slot (or is not active, or its circuit is open) or the task is
/// no longer queued. Evaluates to `Result<bool, diesel::result::Error>`.
macro_rules! write_assignment {
    ($conn:ident, $org:expr, $a:expr) => {{
        let (org, a): (&str, &Assignment) = ($org, $a);
        let result = $conn
            .transaction::<_, TxError, _>(async move |conn| {
                let took = diesel::update(
                    agents::table
                        .filter(agents::organization_id.eq(org))
                        .filter(agents::id.eq(&a.agent_id))
                        .filter(agents::status.eq("active"))
                        .filter(
                            agents::circuit_open_until
                                .is_null()
                                .or(agents::circuit_open_until.le(a.now)),
                        )
                        .filter(
                            agents::consecutive_failures
                                .lt(a.breaker_failures)
                                .and(agents::load.lt(agents::max_concurrent_tasks))
                                .or(agents::consecutive_failures
                                    .ge(a.breaker_failures)
                                    .and(agents::load.eq(0))),
                        ),
                )
                .set((
                    agents::load.eq(agents::load + 1),
                    agents::last_assigned_at.eq(Some(a.now)),
                ))
                .execute(conn)
                .await?;
                if took == 0 {
                    return Err(TxError::Refused("no free slot".into()));
                }
                let moved = diesel::update(
                    tasks::table
                        .filter(tasks::organization_id.eq(org))
                        .filter(tasks::id.eq(&a.task_id))
                        .filter(tasks::status.eq("queued")),
                )
                .set((
                    tasks::status.eq("assigned"),
                    tasks::agent_id.eq(Some(&a.agent_id)),
                    tasks::assigned_at.eq(Some(a.now)),
                    tasks::deadline_at.eq(Some(a.deadline)),
                    tasks::decision.eq(Some(&a.decision)),
                    tasks::waiting_reason.eq(None::<String>),
                    tasks::version.eq(tasks::version + 1),
                    tasks::updated_at.eq(a.now),
                ))
                .execute(conn)
                .await?;
                if moved == 0 {
                    return Err(TxError::Refused("the task is no longer queued".into()));
                }
                if let Some(set) = &a.rotation {
                    diesel::insert_into(agent_rotations::table)
                        .values((
                            agent_rotations::organization_id.eq(org),
                            agent_rotations::capabilities.eq(set),
                            agent_rotations::last_agent_id.eq(&a.agent_id),
                            agent_rotations::updated_at.eq(a.now),
                        ))
                        .on_conflict((
                            agent_rotations::organization_id,
                            agent_rotations::capabilities,
                        ))
                        .do_update()
                        .set((
                            agent_rotations::last_agent_id.eq(&a.agent_id),
                            agent_rotations::updated_at.eq(a.now),
                        ))
                        .execute(conn)
                        .await?;
                }
                diesel::insert_into(task_events::table)
                    .values(&a.event)
                    .execute(conn)
                    .await?;
                Ok(())
            })
            .await;
        match result {
            Ok(()) => Ok(true),
            Err(TxError::Refused(_)) => Ok(false),
            Err(TxError::Db(e)) => Err(e),
        }
    }};
}

/// Makes a round's assignments, in order, on one connection: each its own transaction
/// (as [`write_assignment!`] says), so one refused leaves the others, and no
/// transaction holds two agents' rows (no lock-order deadlock between nodes). On SQLite
/// the round takes the one writing connection once, not once per task. Whether each was
/// made, in order.
pub async fn assign_all(db: &Db, org: &str, all: &[Assignment]) -> StorageResult<Vec<bool>> {
    with_conn!(db, [org, all], |conn| {
        let mut made = Vec::with_capacity(all.len());
        for a in all.iter() {
            made.push(write_assignment!(conn, org, a)?);
        }
        Ok(made)
    })
}

/// Where each `round_robin` rotation of the organization stands: capability set (see
/// `agents::engine::rotation_key`) to the agent chosen last.
pub async fn rotations(
    db: &Db,
    org: &str,
) -> StorageResult<std::collections::HashMap<String, String>> {
    read_conn!(db, [org], |conn| {
        let rows: Vec<(String, String)> = agent_rotations::table
            .filter(agent_rotations::organization_id.eq(org))
            .select((
                agent_rotations::capabilities,
                agent_rotations::last_agent_id,
            ))
            .load(conn)
            .await?;
        Ok(rows.into_iter().collect())
    })
}
