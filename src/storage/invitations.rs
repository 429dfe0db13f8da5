//! Invitations: a one-time token per invited email, accepted by creating the user.

use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::schema::{invitations, users};
use super::users::UserRow;
use super::{Db, StorageResult};
use crate::with_conn;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = invitations)]
pub struct InvitationRow {
    pub id: String,
    pub organization_id: String,
    pub email: String,
    pub role: String,
    pub token_hash: String,
    pub invited_by: String,
    pub expires_at: chrono::NaiveDateTime,
    pub accepted_at: Option<chrono::NaiveDateTime>,
    pub revoked_at: Option<chrono::NaiveDateTime>,
    pub created_at: chrono::NaiveDateTime,
}

pub async fn insert(db: &Db, row: &InvitationRow) -> StorageResult<()> {
    with_conn!(db, [row], |conn| {
        diesel::insert_into(invitations::table)
            .values(row)
            .execute(conn)
            .await?;
        Ok(())
    })
}

pub async fn by_hash(db: &Db, hash: &str) -> StorageResult<Option<InvitationRow>> {
    with_conn!(db, [hash], |conn| {
        Ok(invitations::table
            .filter(invitations::token_hash.eq(hash))
            .select(InvitationRow::as_select())
            .first(conn)
            .await
            .optional()?)
    })
}

/// Newest first.
pub async fn list(
    db: &Db,
    org: &str,
    after: Option<&str>,
    limit: i64,
) -> StorageResult<Vec<InvitationRow>> {
    with_conn!(db, [org, after], |conn| {
        let mut q = invitations::table
            .filter(invitations::organization_id.eq(org))
            .select(InvitationRow::as_select())
            .order(invitations::id.desc())
            .limit(limit)
            .into_boxed();
        if let Some(after) = after {
            q = q.filter(invitations::id.lt(after.to_string()));
        }
        Ok(q.load(conn).await?)
    })
}

/// Revokes an open invitation; returns it as it now is, or `None` if there is none.
pub async fn revoke(db: &Db, org: &str, id: &str) -> StorageResult<Option<InvitationRow>> {
    with_conn!(db, [org, id], |conn| {
        let scoped = invitations::organization_id
            .eq(org)
            .and(invitations::id.eq(id));
        diesel::update(
            invitations::table.filter(
                scoped
                    .and(invitations::accepted_at.is_null())
                    .and(invitations::revoked_at.is_null()),
            ),
        )
        .set(invitations::revoked_at.eq(super::now()))
        .execute(conn)
        .await?;
        Ok(invitations::table
            .filter(scoped)
            .select(InvitationRow::as_select())
            .first(conn)
            .await
            .optional()?)
    })
}

/// Marks the invitation accepted and creates its user, in one transaction; false when the
/// invitation was used, revoked or expired meanwhile (nothing is written then).
pub async fn accept(db: &Db, id: &str, user: &UserRow) -> StorageResult<bool> {
    with_conn!(db, [id, user], |conn| {
        let accepted = conn
            .transaction::<_, diesel::result::Error, _>(async move |conn| {
                let now = super::now();
                let n = diesel::update(
                    invitations::table.filter(
                        invitations::id
                            .eq(id)
                            .and(invitations::accepted_at.is_null())
                            .and(invitations::revoked_at.is_null())
                            .and(invitations::expires_at.gt(now)),
                    ),
                )
                .set(invitations::accepted_at.eq(now))
                .execute(conn)
                .await?;
                if n == 1 {
                    diesel::insert_into(users::table)
                        .values(user)
                        .execute(conn)
                        .await?;
                }
                Ok(n == 1)
            })
            .await?;
        Ok(accepted)
    })
}
