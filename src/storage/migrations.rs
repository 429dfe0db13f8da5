//! Embedded migrations for each backend, run on a synchronous connection inside
//! `spawn_blocking` (diesel's harness blocks; see STACK.md). On PostgreSQL an advisory
//! lock makes nodes that start together take turns.

use diesel::Connection;
use diesel::RunQueryDsl;
use diesel::backend::Backend;
use diesel::migration::{Migration, MigrationSource};
use diesel::pg::Pg;
use diesel::sqlite::{Sqlite, SqliteConnection};
use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use super::{StorageError, StorageResult, sqlite_pragmas};
use crate::config::DatabaseTarget;

const POSTGRES: EmbeddedMigrations = embed_migrations!("migrations/postgres");
const SQLITE: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
/// Arbitrary constant naming devmesh's migration lock.
/// How long opening the migration connection to PostgreSQL may take.
const PG_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
const PG_MIGRATION_LOCK: i64 = 0x0064_6576_6d65_7368;

type PgSyncConn = AsyncConnectionWrapper<AsyncPgConnection>;

/// One migration and whether it is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationState {
    pub version: String,
    pub name: String,
    pub applied: bool,
}

/// Applies every pending migration; returns the versions applied.
pub async fn run_pending(target: &DatabaseTarget) -> StorageResult<Vec<String>> {
    with_sync_conn(target, |conn| match conn {
        SyncConn::Pg(c) => locked(c, |c| apply::<Pg, _>(c, POSTGRES)),
        SyncConn::Sqlite(c) => apply::<Sqlite, _>(c, SQLITE),
    })
    .await
}

/// Reverts the most recently applied migration; `None` when nothing is applied.
pub async fn revert_last(target: &DatabaseTarget) -> StorageResult<Option<String>> {
    with_sync_conn(target, |conn| match conn {
        SyncConn::Pg(c) => locked(c, |c| revert::<Pg, _>(c, POSTGRES)),
        SyncConn::Sqlite(c) => revert::<Sqlite, _>(c, SQLITE),
    })
    .await
}

/// Every known migration, oldest first, with whether it is applied.
pub async fn status(target: &DatabaseTarget) -> StorageResult<Vec<MigrationState>> {
    with_sync_conn(target, |conn| match conn {
        SyncConn::Pg(c) => states::<Pg, _>(c, POSTGRES),
        SyncConn::Sqlite(c) => states::<Sqlite, _>(c, SQLITE),
    })
    .await
}

fn apply<DB: Backend, C: MigrationHarness<DB>>(
    c: &mut C,
    source: EmbeddedMigrations,
) -> StorageResult<Vec<String>> {
    c.run_pending_migrations(source)
        .map(versions)
        .map_err(migration_error)
}

fn revert<DB: Backend, C: MigrationHarness<DB>>(
    c: &mut C,
    source: EmbeddedMigrations,
) -> StorageResult<Option<String>> {
    if c.applied_migrations().map_err(migration_error)?.is_empty() {
        return Ok(None);
    }
    c.revert_last_migration(source)
        .map(|v| Some(v.to_string()))
        .map_err(migration_error)
}

fn states<DB: Backend, C: MigrationHarness<DB>>(
    c: &mut C,
    source: EmbeddedMigrations,
) -> StorageResult<Vec<MigrationState>> {
    let applied = versions(c.applied_migrations().map_err(migration_error)?);
    let mut states: Vec<_> = MigrationSource::<DB>::migrations(&source)
        .map_err(migration_error)?
        .iter()
        .map(|m| {
            let version = m.name().version().to_string();
            MigrationState {
                applied: applied.contains(&version),
                name: m.name().to_string(),
                version,
            }
        })
        .collect();
    states.sort_by(|a, b| a.version.cmp(&b.version));
    Ok(states)
}

/// Number of migrations not yet applied.
pub async fn pending_count(target: &DatabaseTarget) -> StorageResult<usize> {
    Ok(status(target).await?.iter().filter(|m| !m.applied).count())
}

enum SyncConn<'a> {
    Pg(&'a mut PgSyncConn),
    Sqlite(&'a mut SqliteConnection),
}

async fn with_sync_conn<T, F>(target: &DatabaseTarget, f: F) -> StorageResult<T>
where
    T: Send + 'static,
    F: FnOnce(SyncConn<'_>) -> StorageResult<T> + Send + 'static,
{
    let task = match target {
        DatabaseTarget::Postgres(url) => {
            // Connect here, under a timeout: a server that accepts but never answers must
            // not hold the blocking thread forever.
            let connector = super::postgres::PgConnector::from_url(url.expose())
                .map_err(StorageError::Unavailable)?;
            let conn = tokio::time::timeout(PG_CONNECT_TIMEOUT, connector.connect())
                .await
                .map_err(|_| {
                    StorageError::Unavailable(format!(
                        "no answer within {} s",
                        PG_CONNECT_TIMEOUT.as_secs()
                    ))
                })?
                .map_err(|e| StorageError::Unavailable(e.to_string()))?;
            let mut conn = PgSyncConn::from(conn);
            tokio::task::spawn_blocking(move || f(SyncConn::Pg(&mut conn)))
        }
        DatabaseTarget::Sqlite(path) => {
            let path = path.clone();
            tokio::task::spawn_blocking(move || {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| StorageError::Unavailable(e.to_string()))?;
                }
                let mut conn = SqliteConnection::establish(&path.to_string_lossy())
                    .map_err(|e| StorageError::Unavailable(e.to_string()))?;
                diesel::connection::SimpleConnection::batch_execute(
                    &mut conn,
                    &sqlite_pragmas(5_000),
                )?;
                f(SyncConn::Sqlite(&mut conn))
            })
        }
    };
    task.await
        .map_err(|e| StorageError::Migration(format!("migration task failed: {e}")))?
}

fn locked<T>(
    conn: &mut PgSyncConn,
    f: impl FnOnce(&mut PgSyncConn) -> StorageResult<T>,
) -> StorageResult<T> {
    diesel::sql_query(format!("SELECT pg_advisory_lock({PG_MIGRATION_LOCK})")).execute(conn)?;
    let result = f(conn);
    diesel::sql_query(format!("SELECT pg_advisory_unlock({PG_MIGRATION_LOCK})")).execute(conn)?;
    result
}

fn versions(vs: Vec<diesel::migration::MigrationVersion<'_>>) -> Vec<String> {
    vs.into_iter().map(|v| v.to_string()).collect()
}

fn migration_error(e: impl std::fmt::Display) -> StorageError {
    StorageError::Migration(e.to_string())
}
