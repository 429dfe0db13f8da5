//! The node registry: one row per devmesh node, kept current by its heartbeat.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::Serialize;

use super::schema::nodes;
use super::{Db, StorageResult};
use crate::with_conn;

#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Queryable, Selectable, Insertable, AsChangeset,
)]
#[diesel(table_name = nodes)]
pub struct NodeRow {
    pub id: String,
    pub name: String,
    pub roles: String,
    pub version: String,
    /// JSON object of listener name to bound address.
    pub addresses: String,
    pub status: String,
    pub started_at: NaiveDateTime,
    pub last_seen_at: NaiveDateTime,
}

pub const ACTIVE: &str = "active";
pub const STOPPED: &str = "stopped";
pub const GONE: &str = "gone";

/// Registers the node or records a heartbeat: the row is written whole, status `active`.
pub async fn upsert(db: &Db, row: &NodeRow) -> StorageResult<()> {
    with_conn!(db, [row], |conn| {
        diesel::insert_into(nodes::table)
            .values(row)
            .on_conflict(nodes::id)
            .do_update()
            .set(row)
            .execute(conn)
            .await?;
        Ok(())
    })
}

pub async fn set_status(db: &Db, id: &str, status: &str, at: NaiveDateTime) -> StorageResult<()> {
    with_conn!(db, [id, status], |conn| {
        diesel::update(nodes::table.find(id))
            .set((nodes::status.eq(status), nodes::last_seen_at.eq(at)))
            .execute(conn)
            .await?;
        Ok(())
    })
}

/// Marks active nodes that have not beaten since `cutoff` as gone; returns their ids.
pub async fn mark_gone(db: &Db, cutoff: NaiveDateTime) -> StorageResult<Vec<String>> {
    with_conn!(db, |conn| {
        let ids: Vec<String> = diesel::update(
            nodes::table
                .filter(nodes::status.eq(ACTIVE))
                .filter(nodes::last_seen_at.lt(cutoff)),
        )
        .set(nodes::status.eq(GONE))
        .returning(nodes::id)
        .get_results(conn)
        .await?;
        Ok(ids)
    })
}

pub async fn list(db: &Db) -> StorageResult<Vec<NodeRow>> {
    with_conn!(db, |conn| {
        Ok(nodes::table
            .select(NodeRow::as_select())
            .order(nodes::started_at.desc())
            .load(conn)
            .await?)
    })
}

pub async fn get(db: &Db, id: &str) -> StorageResult<Option<NodeRow>> {
    with_conn!(db, [id], |conn| {
        Ok(nodes::table
            .find(id)
            .select(NodeRow::as_select())
            .first(conn)
            .await
            .optional()?)
    })
}
