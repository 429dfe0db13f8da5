//! The audit log's rows.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::schema::audit_log;
use super::{Db, StorageResult};
use crate::with_conn;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = audit_log)]
pub struct AuditRow {
    pub id: String,
    pub organization_id: String,
    pub actor_type: String,
    pub actor_id: Option<String>,
    pub action: String,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub outcome: String,
    pub details: String,
    pub ip: Option<String>,
    pub created_at: chrono::NaiveDateTime,
}

pub async fn insert(db: &Db, row: &AuditRow) -> StorageResult<()> {
    with_conn!(db, [row], |conn| {
        diesel::insert_into(audit_log::table)
            .values(row)
            .execute(conn)
            .await?;
        Ok(())
    })
}

#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor_id: Option<String>,
    pub action: Option<String>,
    pub since: Option<chrono::NaiveDateTime>,
    pub until: Option<chrono::NaiveDateTime>,
}

/// Newest first.
pub async fn list(
    db: &Db,
    org: &str,
    filter: &AuditFilter,
    after: Option<&str>,
    limit: i64,
) -> StorageResult<Vec<AuditRow>> {
    with_conn!(db, [org, filter, after], |conn| {
        let mut q = audit_log::table
            .filter(audit_log::organization_id.eq(org))
            .select(AuditRow::as_select())
            .order(audit_log::id.desc())
            .limit(limit)
            .into_boxed();
        if let Some(after) = after {
            q = q.filter(audit_log::id.lt(after.to_string()));
        }
        if let Some(actor) = &filter.actor_id {
            q = q.filter(audit_log::actor_id.eq(actor.clone()));
        }
        if let Some(action) = &filter.action {
            q = q.filter(audit_log::action.eq(action.clone()));
        }
        if let Some(since) = filter.since {
            q = q.filter(audit_log::created_at.ge(since));
        }
        if let Some(until) = filter.until {
            q = q.filter(audit_log::created_at.lt(until));
        }
        Ok(q.load(conn).await?)
    })
}
