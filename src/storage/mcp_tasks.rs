//! MCP tasks: one row per task, read by its owner on any node until it expires. Changes
//! are compare-and-set on `revision`, so two nodes changing one task at once (an answer
//! on one, a cancellation on another) cannot overwrite each other.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::schema::{mcp_tasks, organizations};
use super::{Db, StorageResult};
use crate::with_conn;

/// Statuses in which a task has not ended.
pub const ACTIVE: [&str; 2] = ["working", "input_required"];

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = mcp_tasks)]
pub struct TaskRow {
    pub id: String,
    pub organization_id: String,
    pub owner: String,
    pub tool: String,
    /// The call, as JSON (`tasks::TaskRequest`).
    pub request: String,
    pub status: String,
    pub status_message: Option<String>,
    /// input_required: what the task waits for, as JSON (`tasks::Pending`).
    pub pending: Option<String>,
    /// completed: the tool's result; failed: the JSON-RPC error object (JSON).
    pub outcome: Option<String>,
    pub runner_node: Option<String>,
    pub revision: i64,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
}

/// What a change may set: everything but who made the task, for what, and when.
#[derive(AsChangeset)]
#[diesel(table_name = mcp_tasks, treat_none_as_null = true)]
struct TaskChange<'a> {
    status: &'a str,
    status_message: Option<&'a str>,
    pending: Option<&'a str>,
    outcome: Option<&'a str>,
    runner_node: Option<&'a str>,
    revision: i64,
    updated_at: NaiveDateTime,
}

/// Stores a new task unless its owner already has `max_active` tasks not ended (nor
/// expired): `Ok(Err(active))` then, and nothing is written. Creations in one
/// organization take turns (the transaction's first statement writes the
/// organization's row), so concurrent calls cannot all pass the count.
pub async fn insert_within(
    db: &Db,
    row: &TaskRow,
    max_active: i64,
) -> StorageResult<Result<(), i64>> {
    with_conn!(db, [row], |conn| {
        let outcome = conn
            .transaction::<_, diesel::result::Error, _>(async move |conn| {
                diesel::update(
                    organizations::table.filter(organizations::id.eq(&row.organization_id)),
                )
                .set(organizations::updated_at.eq(organizations::updated_at))
                .execute(conn)
                .await?;
                let active: i64 = mcp_tasks::table
                    .filter(mcp_tasks::organization_id.eq(&row.organization_id))
                    .filter(mcp_tasks::owner.eq(&row.owner))
                    .filter(mcp_tasks::status.eq_any(ACTIVE))
                    .filter(mcp_tasks::expires_at.gt(row.created_at))
                    .count()
                    .get_result(conn)
                    .await?;
                if active >= max_active {
                    return Ok(Err(active));
                }
                diesel::insert_into(mcp_tasks::table)
                    .values(row)
                    .execute(conn)
                    .await?;
                Ok(Ok(()))
            })
            .await?;
        Ok(outcome)
    })
}

/// The task `id` of this owner in this organization, unless it expired before `now`.
pub async fn get(
    db: &Db,
    organization_id: &str,
    owner: &str,
    id: &str,
    now: NaiveDateTime,
) -> StorageResult<Option<TaskRow>> {
    with_conn!(db, [organization_id, owner, id], |conn| {
        Ok(mcp_tasks::table
            .filter(mcp_tasks::id.eq(id))
            .filter(mcp_tasks::organization_id.eq(organization_id))
            .filter(mcp_tasks::owner.eq(owner))
            .filter(mcp_tasks::expires_at.gt(now))
            .select(TaskRow::as_select())
            .first(conn)
            .await
            .optional()?)
    })
}

/// Writes `row` over the stored task if the stored one is still at revision
/// `row.revision - 1`; false (nothing written) when another change came first.
pub async fn replace(db: &Db, row: &TaskRow) -> StorageResult<bool> {
    with_conn!(db, [row], |conn| {
        let change = TaskChange {
            status: &row.status,
            status_message: row.status_message.as_deref(),
            pending: row.pending.as_deref(),
            outcome: row.outcome.as_deref(),
            runner_node: row.runner_node.as_deref(),
            revision: row.revision,
            updated_at: row.updated_at,
        };
        let n = diesel::update(
            mcp_tasks::table
                .filter(mcp_tasks::id.eq(&row.id))
                .filter(mcp_tasks::revision.eq(row.revision - 1)),
        )
        .set(change)
        .execute(conn)
        .await?;
        Ok(n == 1)
    })
}

/// Fails the working tasks whose round ran on one of `nodes` (which stopped or
/// restarted) and that were last changed before `before`, with `error` (a JSON-RPC error
/// object as JSON text). Returns them as they are now.
pub async fn fail_orphans(
    db: &Db,
    nodes: &[String],
    error: &str,
    before: NaiveDateTime,
) -> StorageResult<Vec<TaskRow>> {
    with_conn!(db, [nodes, error], |conn| {
        let now = super::now();
        let ids: Vec<String> = mcp_tasks::table
            .filter(mcp_tasks::runner_node.eq_any(nodes))
            .filter(mcp_tasks::status.eq("working"))
            .filter(mcp_tasks::updated_at.lt(before))
            .select(mcp_tasks::id)
            .load(conn)
            .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        diesel::update(
            mcp_tasks::table
                .filter(mcp_tasks::id.eq_any(&ids))
                .filter(mcp_tasks::runner_node.eq_any(nodes))
                .filter(mcp_tasks::status.eq("working")),
        )
        .set((
            mcp_tasks::status.eq("failed"),
            mcp_tasks::outcome.eq(Some(error)),
            mcp_tasks::runner_node.eq(None::<String>),
            mcp_tasks::revision.eq(mcp_tasks::revision + 1),
            mcp_tasks::updated_at.eq(now),
        ))
        .execute(conn)
        .await?;
        Ok(mcp_tasks::table
            .filter(mcp_tasks::id.eq_any(&ids))
            .filter(mcp_tasks::status.eq("failed"))
            .filter(mcp_tasks::updated_at.eq(now))
            .select(TaskRow::as_select())
            .load(conn)
            .await?)
    })
}

/// Deletes tasks that expired before `now`; how many.
pub async fn purge_expired(db: &Db, now: NaiveDateTime) -> StorageResult<usize> {
    with_conn!(db, |conn| {
        Ok(
            diesel::delete(mcp_tasks::table.filter(mcp_tasks::expires_at.le(now)))
                .execute(conn)
                .await?,
        )
    })
}
