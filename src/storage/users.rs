//! Users of an organization. Every function takes the organization's id.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::schema::users;
use super::{Db, StorageResult};
use crate::with_conn;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = users)]
pub struct UserRow {
    pub id: String,
    pub organization_id: String,
    pub email: String,
    pub name: String,
    pub password_hash: String,
    pub role: String,
    pub created_at: chrono::NaiveDateTime,
    pub updated_at: chrono::NaiveDateTime,
}

pub async fn insert(db: &Db, user: &UserRow) -> StorageResult<()> {
    with_conn!(db, [user], |conn| {
        diesel::insert_into(users::table)
            .values(user)
            .execute(conn)
            .await?;
        Ok(())
    })
}

pub async fn get(db: &Db, org: &str, id: &str) -> StorageResult<Option<UserRow>> {
    with_conn!(db, [org, id], |conn| {
        Ok(users::table
            .filter(users::organization_id.eq(org).and(users::id.eq(id)))
            .select(UserRow::as_select())
            .first(conn)
            .await
            .optional()?)
    })
}

pub async fn by_email(db: &Db, org: &str, email: &str) -> StorageResult<Option<UserRow>> {
    with_conn!(db, [org, email], |conn| {
        Ok(users::table
            .filter(users::organization_id.eq(org).and(users::email.eq(email)))
            .select(UserRow::as_select())
            .first(conn)
            .await
            .optional()?)
    })
}

/// Newest first, `limit` rows after the cursor id.
pub async fn list(
    db: &Db,
    org: &str,
    after: Option<&str>,
    limit: i64,
) -> StorageResult<Vec<UserRow>> {
    with_conn!(db, [org, after], |conn| {
        let mut q = users::table
            .filter(users::organization_id.eq(org))
            .select(UserRow::as_select())
            .order(users::id.desc())
            .limit(limit)
            .into_boxed();
        if let Some(after) = after {
            q = q.filter(users::id.lt(after.to_string()));
        }
        Ok(q.load(conn).await?)
    })
}

/// Changes a user's role; the user as it now is, or `None` if there is none.
pub async fn set_role(db: &Db, org: &str, id: &str, role: &str) -> StorageResult<Option<UserRow>> {
    with_conn!(db, [org, id, role], |conn| {
        Ok(diesel::update(
            users::table.filter(users::organization_id.eq(org).and(users::id.eq(id))),
        )
        .set((users::role.eq(role), users::updated_at.eq(super::now())))
        .returning(UserRow::as_returning())
        .get_result(conn)
        .await
        .optional()?)
    })
}

pub async fn set_password(db: &Db, org: &str, id: &str, hash: &str) -> StorageResult<bool> {
    with_conn!(db, [org, id, hash], |conn| {
        let n = diesel::update(
            users::table.filter(users::organization_id.eq(org).and(users::id.eq(id))),
        )
        .set((
            users::password_hash.eq(hash),
            users::updated_at.eq(super::now()),
        ))
        .execute(conn)
        .await?;
        Ok(n == 1)
    })
}

pub async fn delete(db: &Db, org: &str, id: &str) -> StorageResult<bool> {
    with_conn!(db, [org, id], |conn| {
        let n = diesel::delete(
            users::table.filter(users::organization_id.eq(org).and(users::id.eq(id))),
        )
        .execute(conn)
        .await?;
        Ok(n == 1)
    })
}

pub async fn count_with_role(db: &Db, org: &str, role: &str) -> StorageResult<i64> {
    with_conn!(db, [org, role], |conn| {
        Ok(users::table
            .filter(users::organization_id.eq(org).and(users::role.eq(role)))
            .count()
            .get_result(conn)
            .await?)
    })
}
