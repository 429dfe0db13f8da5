//! Tasks and their events. Every transition is one transaction that starts by locking
//! the task ([`LockTask`]: `FOR UPDATE` on PostgreSQL; on SQLite, the process's one
//! writing connection), then checks the state it found, then writes (bumping `version`):
//! never a read-modify-write two writers could interleave. Assignments are in
//! [`super::assignments`].

use std::sync::Arc;

use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::schema::{agents, task_events, tasks};
use super::{Db, StorageResult};
use crate::read_conn;
use crate::with_conn;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = tasks)]
pub struct TaskRow {
    pub id: String,
    pub organization_id: String,
    pub title: String,
    pub task_type: String,
    pub description: String,
    pub input: String,
    /// JSON: routing (required capabilities, preferred tags, strategy, cost cap) and
    /// the timeouts, in milliseconds.
    pub spec: String,
    pub priority: i32,
    pub max_attempts: i32,
    pub attempts: i32,
    pub idempotency_key: Option<String>,
    pub request_hash: String,
    pub context_id: Option<String>,
    pub parent_id: Option<String>,
    pub pinned_agent_id: Option<String>,
    pub status: String,
    pub agent_id: Option<String>,
    pub deadline_at: Option<chrono::NaiveDateTime>,
    pub progress: Option<String>,
    pub output: Option<String>,
    pub error: Option<String>,
    pub decision: Option<String>,
    pub waiting_reason: Option<String>,
    pub created_by: String,
    pub version: i64,
    pub created_at: chrono::NaiveDateTime,
    pub assigned_at: Option<chrono::NaiveDateTime>,
    pub started_at: Option<chrono::NaiveDateTime>,
    pub finished_at: Option<chrono::NaiveDateTime>,
    pub updated_at: chrono::NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = task_events)]
pub struct TaskEventRow {
    pub id: String,
    pub task_id: String,
    pub organization_id: String,
    pub from_status: Option<String>,
    pub to_status: String,
    pub agent_id: Option<String>,
    pub actor: String,
    pub reason: Option<String>,
    pub at: chrono::NaiveDateTime,
}

/// What a transition writes besides the status; `None` leaves a field alone.
#[derive(Debug, Clone, Default, AsChangeset)]
#[diesel(table_name = tasks)]
pub struct TaskChanges {
    pub status: Option<String>,
    pub spec: Option<String>,
    pub agent_id: Option<Option<String>>,
    pub attempts: Option<i32>,
    pub deadline_at: Option<Option<chrono::NaiveDateTime>>,
    pub progress: Option<Option<String>>,
    pub output: Option<Option<String>>,
    pub error: Option<Option<String>>,
    pub waiting_reason: Option<Option<String>>,
    pub started_at: Option<Option<chrono::NaiveDateTime>>,
    pub finished_at: Option<Option<chrono::NaiveDateTime>>,
    pub updated_at: Option<chrono::NaiveDateTime>,
}

/// What a transition does once it has seen the task as it is.
#[derive(Debug, Clone)]
pub struct Plan {
    pub changes: TaskChanges,
    /// The task's agent gives back its slot (the task leaves `assigned` or `running`).
    pub release: bool,
    /// The event to record; `None` for a change that is not a transition (progress).
    pub event: Option<TaskEventRow>,
}

/// Decides a transition from the task as it is: a plan, or why it cannot happen.
pub type Decide = Arc<dyn Fn(&TaskRow) -> Result<Plan, String> + Send + Sync>;

/// The outcome of [`transition`].
#[derive(Debug)]
pub enum Moved {
    /// Done: the task before and after.
    Done {
        before: Box<TaskRow>,
        after: Box<TaskRow>,
    },
    /// Nothing written: why, as the decision said.
    Refused(String),
    Missing,
}

#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    pub status: Option<String>,
    pub agent_id: Option<String>,
    pub task_type: Option<String>,
    pub priority: Option<i32>,
    pub since: Option<chrono::NaiveDateTime>,
    /// Only tasks given to this agent or created by this actor (an agent key's view).
    pub visible_to: Option<(String, String)>,
}

#[derive(Debug)]
pub(super) enum TxError {
    Db(diesel::result::Error),
    Refused(String),
}

impl From<diesel::result::Error> for TxError {
    fn from(e: diesel::result::Error) -> Self {
        TxError::Db(e)
    }
}

/// Inserts a task with its first event. A taken idempotency key is a unique violation.
pub async fn insert(db: &Db, task: &TaskRow, event: &TaskEventRow) -> StorageResult<()> {
    with_conn!(db, [task, event], |conn| {
        conn.transaction::<_, diesel::result::Error, _>(async move |conn| {
            diesel::insert_into(tasks::table)
                .values(task)
                .execute(conn)
                .await?;
            diesel::insert_into(task_events::table)
                .values(event)
                .execute(conn)
                .await?;
            Ok(())
        })
        .await?;
        Ok(())
    })
}

pub async fn get(db: &Db, org: &str, id: &str) -> StorageResult<Option<TaskRow>> {
    read_conn!(db, [org, id], |conn| {
        Ok(tasks::table
            .filter(tasks::organization_id.eq(org).and(tasks::id.eq(id)))
            .select(TaskRow::as_select())
            .first(conn)
            .await
            .optional()?)
    })
}

/// The task `creator` made with this idempotency key (keys are each creator's own).
pub async fn by_idempotency_key(
    db: &Db,
    org: &str,
    creator: &str,
    key: &str,
) -> StorageResult<Option<TaskRow>> {
    read_conn!(db, [org, creator, key], |conn| {
        Ok(tasks::table
            .filter(tasks::organization_id.eq(org))
            .filter(tasks::created_by.eq(creator))
            .filter(tasks::idempotency_key.eq(key))
            .select(TaskRow::as_select())
            .first(conn)
            .await
            .optional()?)
    })
}

/// Newest first.
pub async fn list(
    db: &Db,
    org: &str,
    filter: &TaskFilter,
    after: Option<&str>,
    limit: i64,
) -> StorageResult<Vec<TaskRow>> {
    read_conn!(db, [org, filter, after], |conn| {
        let mut q = tasks::table
            .filter(tasks::organization_id.eq(org))
            .select(TaskRow::as_select())
            .order(tasks::id.desc())
            .limit(limit)
            .into_boxed();
        if let Some(after) = after {
            q = q.filter(tasks::id.lt(after.clone()));
        }
        if let Some(v) = &filter.status {
            q = q.filter(tasks::status.eq(v.clone()));
        }
        if let Some(v) = &filter.agent_id {
            q = q.filter(tasks::agent_id.eq(v.clone()));
        }
        if let Some(v) = &filter.task_type {
            q = q.filter(tasks::task_type.eq(v.clone()));
        }
        if let Some(v) = filter.priority {
            q = q.filter(tasks::priority.eq(v));
        }
        if let Some(v) = filter.since {
            q = q.filter(tasks::created_at.ge(v));
        }
        if let Some((agent, actor)) = &filter.visible_to {
            q = q.filter(
                tasks::agent_id
                    .eq(agent.clone())
                    .or(tasks::created_by.eq(actor.clone())),
            );
        }
        Ok(q.load(conn).await?)
    })
}

/// A task's events, oldest first.
pub async fn events(db: &Db, org: &str, task_id: &str) -> StorageResult<Vec<TaskEventRow>> {
    read_conn!(db, [org, task_id], |conn| {
        Ok(task_events::table
            .filter(task_events::organization_id.eq(org))
            .filter(task_events::task_id.eq(task_id))
            .select(TaskEventRow::as_select())
            .order(task_events::id.asc())
            .load(conn)
            .await?)
    })
}

/// Queued tasks pinned to an agent.
pub async fn pinned_waiting(db: &Db, org: &str, agent_id: &str) -> StorageResult<i64> {
    read_conn!(db, [org, agent_id], |conn| {
        Ok(tasks::table
            .filter(tasks::organization_id.eq(org))
            .filter(tasks::pinned_agent_id.eq(agent_id))
            .filter(tasks::status.eq("queued"))
            .count()
            .get_result(conn)
            .await?)
    })
}

/// Whether the task was ever assigned to the agent.
pub async fn was_assigned(db: &Db, task_id: &str, agent_id: &str) -> StorageResult<bool> {
    read_conn!(db, [task_id, agent_id], |conn| {
        let n: i64 = task_events::table
            .filter(task_events::task_id.eq(task_id))
            .filter(task_events::agent_id.eq(agent_id))
            .filter(task_events::to_status.eq("assigned"))
            .count()
            .get_result(conn)
            .await?;
        Ok(n > 0)
    })
}

/// What an assignment round reads of a queued task: its routing, not its payload.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = tasks)]
pub struct QueuedRow {
    pub id: String,
    pub organization_id: String,
    pub task_type: String,
    /// JSON, as in [`TaskRow::spec`].
    pub spec: String,
    pub pinned_agent_id: Option<String>,
    pub waiting_reason: Option<String>,
}

/// Queued tasks in the order they are served: highest priority first, then oldest.
pub async fn queued(db: &Db, org: &str, limit: i64) -> StorageResult<Vec<QueuedRow>> {
    read_conn!(db, [org], |conn| {
        Ok(tasks::table
            .filter(tasks::organization_id.eq(org))
            .filter(tasks::status.eq("queued"))
            .select(QueuedRow::as_select())
            .order((tasks::priority.desc(), tasks::id.asc()))
            .limit(limit)
            .load(conn)
            .await?)
    })
}

/// An agent's tasks in `statuses`, oldest first.
pub async fn of_agent(
    db: &Db,
    org: &str,
    agent_id: &str,
    statuses: &[&'static str],
) -> StorageResult<Vec<TaskRow>> {
    let statuses: Vec<String> = statuses.iter().map(|s| s.to_string()).collect();
    let statuses = statuses.as_slice();
    read_conn!(db, [org, agent_id, statuses], |conn| {
        let query = tasks::table
            .filter(tasks::organization_id.eq(org))
            .filter(tasks::agent_id.eq(agent_id))
            .select(TaskRow::as_select())
            .order((tasks::priority.desc(), tasks::id.asc()))
            .into_boxed();
        // One status is an `=`: a statement that stays prepared (an `IN` list is
        // prepared again on each call).
        let query = match statuses.as_slice() {
            [one] => query.filter(tasks::status.eq(one.clone())),
            many => query.filter(tasks::status.eq_any(many.to_vec())),
        };
        Ok(query.load(conn).await?)
    })
}

/// The organizations with queued tasks.
pub async fn organizations_with_queued(db: &Db) -> StorageResult<Vec<String>> {
    read_conn!(db, |conn| {
        Ok(tasks::table
            .filter(tasks::status.eq("queued"))
            .select(tasks::organization_id)
            .distinct()
            .load(conn)
            .await?)
    })
}

/// Tasks in `status` whose deadline passed before `now` (any organization).
pub async fn past_deadline(
    db: &Db,
    status: &'static str,
    now: chrono::NaiveDateTime,
    limit: i64,
) -> StorageResult<Vec<TaskRow>> {
    read_conn!(db, |conn| {
        Ok(tasks::table
            .filter(tasks::status.eq(status))
            .filter(tasks::deadline_at.lt(now))
            .select(TaskRow::as_select())
            .order(tasks::deadline_at.asc())
            .limit(limit)
            .load(conn)
            .await?)
    })
}

/// Assigned tasks whose agent was last seen before `online_after` (or never).
pub async fn assigned_to_offline(
    db: &Db,
    online_after: chrono::NaiveDateTime,
    limit: i64,
) -> StorageResult<Vec<TaskRow>> {
    read_conn!(db, |conn| {
        Ok(tasks::table
            .inner_join(agents::table.on(agents::id.nullable().eq(tasks::agent_id)))
            .filter(tasks::status.eq("assigned"))
            .filter(
                agents::last_seen_at
                    .is_null()
                    .or(agents::last_seen_at.lt(online_after)),
            )
            .select(TaskRow::as_select())
            .limit(limit)
            .load(conn)
            .await?)
    })
}

/// The organization's task with this id.
#[diesel::dsl::auto_type(no_type_alias)]
fn by_id<'a>(org: &'a str, id: &'a str) -> _ {
    tasks::table.filter(tasks::organization_id.eq(org).and(tasks::id.eq(id)))
}

/// Reads a task inside a transaction so that no other writer changes it before the
/// transaction ends: the row lock that makes a transition a conditional write, never a
/// read-modify-write that two callers could both make.
pub(crate) trait LockTask {
    /// The task, locked until the transaction ends; `None` when there is none.
    async fn lock_task(&mut self, org: &str, id: &str) -> QueryResult<Option<TaskRow>>;
}

impl LockTask for diesel_async::AsyncPgConnection {
    /// `SELECT ... FOR UPDATE`: other transactions wait for this one.
    async fn lock_task(&mut self, org: &str, id: &str) -> QueryResult<Option<TaskRow>> {
        by_id(org, id)
            .select(TaskRow::as_select())
            .for_update()
            .first(self)
            .await
            .optional()
    }
}

impl LockTask for super::SqliteConn {
    /// A plain read: SQLite has one writer, and this process writes on one connection
    /// only (`storage::SQLITE_CONNECTIONS`), so nothing else writes the row before this
    /// transaction ends; another process's write in between makes this transaction's
    /// first write fail (`SQLITE_BUSY_SNAPSHOT`) rather than overwrite it. A read keeps its
    /// prepared statement; an `UPDATE` is prepared again on every call.
    async fn lock_task(&mut self, org: &str, id: &str) -> QueryResult<Option<TaskRow>> {
        by_id(org, id)
            .select(TaskRow::as_select())
            .first(self)
            .await
            .optional()
    }
}

/// One transition of a task, decided by `decide` from the task as it is once locked.
pub async fn transition(db: &Db, org: &str, id: &str, decide: &Decide) -> StorageResult<Moved> {
    with_conn!(db, [org, id, decide], |conn| {
        let outcome = conn
            .transaction::<_, TxError, _>(async move |conn| {
                let scoped = by_id(org, id);
                let Some(before) = LockTask::lock_task(conn, org, id).await? else {
                    return Ok(None);
                };
                let plan = decide(&before).map_err(TxError::Refused)?;
                let after = diesel::update(scoped)
                    .set((&plan.changes, tasks::version.eq(tasks::version + 1)))
                    .returning(TaskRow::as_returning())
                    .get_result(conn)
                    .await?;
                if plan.release
                    && let Some(agent) = &before.agent_id
                {
                    // The task gives back its agent's slot.
                    diesel::update(
                        agents::table.filter(agents::id.eq(agent).and(agents::load.gt(0))),
                    )
                    .set(agents::load.eq(agents::load - 1))
                    .execute(conn)
                    .await?;
                }
                if let Some(event) = &plan.event {
                    diesel::insert_into(task_events::table)
                        .values(event)
                        .execute(conn)
                        .await?;
                }
                Ok(Some((before, after)))
            })
            .await;
        match outcome {
            Ok(Some((before, after))) => Ok(Moved::Done {
                before: Box::new(before),
                after: Box::new(after),
            }),
            Ok(None) => Ok(Moved::Missing),
            Err(TxError::Refused(why)) => Ok(Moved::Refused(why)),
            Err(TxError::Db(e)) => Err(e.into()),
        }
    })
}

/// Says why a queued task waits (only when the reason changed: no write otherwise).
pub async fn set_waiting(db: &Db, org: &str, id: &str, reason: &str) -> StorageResult<()> {
    with_conn!(db, [org, id, reason], |conn| {
        diesel::update(
            tasks::table
                .filter(tasks::organization_id.eq(org))
                .filter(tasks::id.eq(id))
                .filter(tasks::status.eq("queued"))
                .filter(
                    tasks::waiting_reason
                        .is_null()
                        .or(tasks::waiting_reason.ne(reason.clone())),
                ),
        )
        .set(tasks::waiting_reason.eq(Some(reason)))
        .execute(conn)
        .await?;
        Ok(())
    })
}
