//! Refresh tokens: rotated on every use; a token used twice revokes its whole family.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::schema::refresh_tokens;
use super::{Db, StorageResult};
use crate::with_conn;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = refresh_tokens)]
pub struct RefreshTokenRow {
    pub id: String,
    pub organization_id: String,
    pub user_id: String,
    pub family_id: String,
    pub token_hash: String,
    pub expires_at: chrono::NaiveDateTime,
    pub rotated_at: Option<chrono::NaiveDateTime>,
    pub revoked_at: Option<chrono::NaiveDateTime>,
    pub created_at: chrono::NaiveDateTime,
}

pub async fn insert(db: &Db, row: &RefreshTokenRow) -> StorageResult<()> {
    with_conn!(db, [row], |conn| {
        diesel::insert_into(refresh_tokens::table)
            .values(row)
            .execute(conn)
            .await?;
        Ok(())
    })
}

pub async fn by_hash(db: &Db, hash: &str) -> StorageResult<Option<RefreshTokenRow>> {
    with_conn!(db, [hash], |conn| {
        Ok(refresh_tokens::table
            .filter(refresh_tokens::token_hash.eq(hash))
            .select(RefreshTokenRow::as_select())
            .first(conn)
            .await
            .optional()?)
    })
}

/// Marks a token used, if nobody did first: true for the one caller that wins.
pub async fn mark_rotated(db: &Db, id: &str) -> StorageResult<bool> {
    with_conn!(db, [id], |conn| {
        let n = diesel::update(
            refresh_tokens::table.filter(
                refresh_tokens::id
                    .eq(id)
                    .and(refresh_tokens::rotated_at.is_null())
                    .and(refresh_tokens::revoked_at.is_null()),
            ),
        )
        .set(refresh_tokens::rotated_at.eq(super::now()))
        .execute(conn)
        .await?;
        Ok(n == 1)
    })
}

pub async fn revoke_family(db: &Db, family: &str) -> StorageResult<usize> {
    with_conn!(db, [family], |conn| {
        Ok(diesel::update(
            refresh_tokens::table.filter(
                refresh_tokens::family_id
                    .eq(family)
                    .and(refresh_tokens::revoked_at.is_null()),
            ),
        )
        .set(refresh_tokens::revoked_at.eq(super::now()))
        .execute(conn)
        .await?)
    })
}

pub async fn revoke_user(db: &Db, user: &str) -> StorageResult<usize> {
    with_conn!(db, [user], |conn| {
        Ok(diesel::update(
            refresh_tokens::table.filter(
                refresh_tokens::user_id
                    .eq(user)
                    .and(refresh_tokens::revoked_at.is_null()),
            ),
        )
        .set(refresh_tokens::revoked_at.eq(super::now()))
        .execute(conn)
        .await?)
    })
}
