//! Organizations (tenants), and registration: an organization, its owner and its first
//! admin key in one transaction.

use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::api_keys::ApiKeyRow;
use super::schema::{api_keys, organizations, users};
use super::users::UserRow;
use super::{Db, StorageResult};
use crate::with_conn;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = organizations)]
pub struct OrganizationRow {
    pub id: String,
    pub name: String,
    pub slug: String,
    pub created_at: chrono::NaiveDateTime,
    pub updated_at: chrono::NaiveDateTime,
}

/// Inserts the three rows of a new organization, or none of them.
pub async fn register(
    db: &Db,
    org: &OrganizationRow,
    owner: &UserRow,
    key: &ApiKeyRow,
) -> StorageResult<()> {
    with_conn!(db, [org, owner, key], |conn| {
        conn.transaction::<_, diesel::result::Error, _>(async move |conn| {
            diesel::insert_into(organizations::table)
                .values(org)
                .execute(conn)
                .await?;
            diesel::insert_into(users::table)
                .values(owner)
                .execute(conn)
                .await?;
            diesel::insert_into(api_keys::table)
                .values(key)
                .execute(conn)
                .await?;
            Ok(())
        })
        .await?;
        Ok(())
    })
}

pub async fn by_id(db: &Db, id: &str) -> StorageResult<Option<OrganizationRow>> {
    with_conn!(db, [id], |conn| {
        Ok(organizations::table
            .find(id)
            .select(OrganizationRow::as_select())
            .first(conn)
            .await
            .optional()?)
    })
}

pub async fn by_slug(db: &Db, slug: &str) -> StorageResult<Option<OrganizationRow>> {
    with_conn!(db, [slug], |conn| {
        Ok(organizations::table
            .filter(organizations::slug.eq(slug))
            .select(OrganizationRow::as_select())
            .first(conn)
            .await
            .optional()?)
    })
}

pub async fn rename(db: &Db, id: &str, name: &str) -> StorageResult<Option<OrganizationRow>> {
    with_conn!(db, [id, name], |conn| {
        Ok(diesel::update(organizations::table.find(id))
            .set((
                organizations::name.eq(name),
                organizations::updated_at.eq(super::now()),
            ))
            .returning(OrganizationRow::as_returning())
            .get_result(conn)
            .await
            .optional()?)
    })
}

/// Inserts an organization on its own (one without users yet).
pub async fn insert(db: &Db, org: &OrganizationRow) -> StorageResult<()> {
    with_conn!(db, [org], |conn| {
        diesel::insert_into(organizations::table)
            .values(org)
            .execute(conn)
            .await?;
        Ok(())
    })
}
