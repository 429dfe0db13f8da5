//! API keys: the stored hash and metadata, never the key itself.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::schema::api_keys;
use super::{Db, StorageResult};
use crate::with_conn;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = api_keys)]
pub struct ApiKeyRow {
    pub id: String,
    pub organization_id: String,
    pub created_by: Option<String>,
    pub name: String,
    pub key_type: String,
    pub prefix: String,
    pub key_hash: String,
    pub scopes: String,
    pub rate_per_minute: Option<i32>,
    pub rate_burst: Option<i32>,
    pub expires_at: Option<chrono::NaiveDateTime>,
    pub revoked_at: Option<chrono::NaiveDateTime>,
    pub last_used_at: Option<chrono::NaiveDateTime>,
    pub created_at: chrono::NaiveDateTime,
    /// The agent a key of type `agent` acts as.
    pub agent_id: Option<String>,
}

pub async fn insert(db: &Db, key: &ApiKeyRow) -> StorageResult<()> {
    with_conn!(db, [key], |conn| {
        diesel::insert_into(api_keys::table)
            .values(key)
            .execute(conn)
            .await?;
        Ok(())
    })
}

/// The key with this lookup prefix, in any organization: authentication starts here.
pub async fn by_prefix(db: &Db, prefix: &str) -> StorageResult<Option<ApiKeyRow>> {
    crate::read_conn!(db, [prefix], |conn| {
        Ok(api_keys::table
            .filter(api_keys::prefix.eq(prefix))
            .select(ApiKeyRow::as_select())
            .first(conn)
            .await
            .optional()?)
    })
}

pub async fn get(db: &Db, org: &str, id: &str) -> StorageResult<Option<ApiKeyRow>> {
    with_conn!(db, [org, id], |conn| {
        Ok(api_keys::table
            .filter(api_keys::organization_id.eq(org).and(api_keys::id.eq(id)))
            .select(ApiKeyRow::as_select())
            .first(conn)
            .await
            .optional()?)
    })
}

pub async fn list(
    db: &Db,
    org: &str,
    after: Option<&str>,
    limit: i64,
) -> StorageResult<Vec<ApiKeyRow>> {
    with_conn!(db, [org, after], |conn| {
        let mut q = api_keys::table
            .filter(api_keys::organization_id.eq(org))
            .select(ApiKeyRow::as_select())
            .order(api_keys::id.desc())
            .limit(limit)
            .into_boxed();
        if let Some(after) = after {
            q = q.filter(api_keys::id.lt(after.to_string()));
        }
        Ok(q.load(conn).await?)
    })
}

/// Marks a key revoked; returns it as it now is, or `None` if there is no such key.
pub async fn revoke(db: &Db, org: &str, id: &str) -> StorageResult<Option<ApiKeyRow>> {
    with_conn!(db, [org, id], |conn| {
        let now = super::now();
        diesel::update(
            api_keys::table.filter(
                api_keys::organization_id
                    .eq(org)
                    .and(api_keys::id.eq(id))
                    .and(api_keys::revoked_at.is_null()),
            ),
        )
        .set(api_keys::revoked_at.eq(now))
        .execute(conn)
        .await?;
        Ok(api_keys::table
            .filter(api_keys::organization_id.eq(org).and(api_keys::id.eq(id)))
            .select(ApiKeyRow::as_select())
            .first(conn)
            .await
            .optional()?)
    })
}

/// Revokes every key bound to an agent; how many were live.
pub async fn revoke_bound_to(db: &Db, org: &str, agent_id: &str) -> StorageResult<usize> {
    with_conn!(db, [org, agent_id], |conn| {
        Ok(diesel::update(
            api_keys::table
                .filter(api_keys::organization_id.eq(org))
                .filter(api_keys::agent_id.eq(agent_id))
                .filter(api_keys::revoked_at.is_null()),
        )
        .set(api_keys::revoked_at.eq(super::now()))
        .execute(conn)
        .await?)
    })
}

pub async fn touch(db: &Db, id: &str, at: chrono::NaiveDateTime) -> StorageResult<()> {
    with_conn!(db, [id], |conn| {
        diesel::update(api_keys::table.find(id))
            .set(api_keys::last_used_at.eq(at))
            .execute(conn)
            .await?;
        Ok(())
    })
}
