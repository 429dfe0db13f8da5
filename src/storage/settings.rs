//! Settings every node must share, made once by whichever node needs them first.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::schema::settings;
use super::{Db, StorageResult};
use crate::with_conn;

/// The value of `key`, storing `candidate` first if there is none: every caller gets the
/// same value, whoever came first.
pub async fn get_or_insert(db: &Db, key: &str, candidate: &str) -> StorageResult<String> {
    with_conn!(db, [key, candidate], |conn| {
        diesel::insert_into(settings::table)
            .values((
                settings::key.eq(key),
                settings::value.eq(candidate),
                settings::created_at.eq(super::now()),
            ))
            .on_conflict_do_nothing()
            .execute(conn)
            .await?;
        Ok(settings::table
            .find(key)
            .select(settings::value)
            .first(conn)
            .await?)
    })
}

/// The value of `key`, if it has one.
pub async fn get(db: &Db, key: &str) -> StorageResult<Option<String>> {
    with_conn!(db, [key], |conn| {
        Ok(settings::table
            .find(key)
            .select(settings::value)
            .first(conn)
            .await
            .optional()?)
    })
}

/// Sets `key` to `value`, whether it had one or not.
pub async fn set(db: &Db, key: &str, value: &str) -> StorageResult<()> {
    with_conn!(db, [key, value], |conn| {
        diesel::insert_into(settings::table)
            .values((
                settings::key.eq(key),
                settings::value.eq(value),
                settings::created_at.eq(super::now()),
            ))
            .on_conflict(settings::key)
            .do_update()
            .set(settings::value.eq(value))
            .execute(conn)
            .await?;
        Ok(())
    })
}
