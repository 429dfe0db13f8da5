//! Storage on SQLite (embedded shape) or PostgreSQL with pgvector (scale-out shape).
//!
//! [`Db`] is an enum of two pools. Storage functions are written once with [`with_conn!`],
//! which expands the same query body for each backend; SQL that differs between the two
//! lives in explicit `match` arms inside this module and nowhere else.
//!
//! SQLite rule: a transaction that writes must start with a write, so that it takes the
//! write lock at once and waits (busy timeout) instead of failing to upgrade a read lock.
//!
//! Cancellation rule: a storage call, once started, runs to its end on the node's runtime,
//! whoever stops waiting for it (an MCP cancellation, a client hanging up, a timeout). A
//! future dropped halfway through a transaction would otherwise leave its connection in
//! the pool with the transaction open, and on SQLite the write lock held, until the
//! connection happened to be taken again. [`with_conn!`] and [`Db::run_to_end`] do this.

pub mod agents;
pub mod api_keys;
pub mod audit;
pub mod contexts;
pub mod gateway;
pub mod invitations;
pub mod jobs;
pub mod mcp_tasks;
pub mod migrations;
pub mod nodes;
pub mod organizations;
pub mod postgres;
pub mod refresh_tokens;
pub mod schema;
pub mod settings;
pub mod sqlite_readers;
pub mod tasks;
pub mod users;

use std::path::Path;

use diesel::sqlite::SqliteConnection;
use diesel_async::pooled_connection::deadpool::{Pool, PoolError};
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use futures_util::FutureExt;

use crate::config::{Config, DatabaseTarget};

pub type SqliteConn = SyncConnectionWrapper<SqliteConnection>;
pub type PgPool = Pool<AsyncPgConnection>;
pub type SqlitePool = Pool<SqliteConn>;

/// A handle on the database: cheap to clone, shared by every part of a node.
#[derive(Clone)]
pub enum Db {
    Postgres(PgDb),
    Sqlite(SqliteDb),
}

/// The PostgreSQL pool (dereferences to it) and the runtime its calls run on.
#[derive(Clone)]
pub struct PgDb {
    pool: PgPool,
    runtime: tokio::runtime::Handle,
    /// How long a caller waits for a call (`database.request_timeout`).
    answer_within: std::time::Duration,
}

impl std::ops::Deref for PgDb {
    type Target = PgPool;
    fn deref(&self) -> &PgPool {
        &self.pool
    }
}

/// The SQLite pool (dereferences to it), the read-only connections of the hot reads, and
/// the runtime its calls run on.
#[derive(Clone)]
pub struct SqliteDb {
    pool: SqlitePool,
    pub readers: std::sync::Arc<sqlite_readers::SqliteReaders>,
    runtime: tokio::runtime::Handle,
}

impl std::ops::Deref for SqliteDb {
    type Target = SqlitePool;
    fn deref(&self) -> &SqlitePool {
        &self.pool
    }
}

/// A value a storage call borrows from its caller, carried into the call as an owned copy
/// (the call runs on its own task, see [`with_conn!`]): `&T` as `T::Owned`, and
/// `Option<&T>` as `Option<T::Owned>`.
pub trait Carry {
    type Owned: Send + 'static;
    fn carry(self) -> Self::Owned;
}

impl<T: ?Sized + ToOwned> Carry for &T
where
    T::Owned: Send + 'static,
{
    type Owned = T::Owned;
    fn carry(self) -> T::Owned {
        self.to_owned()
    }
}

impl<T: ?Sized + ToOwned> Carry for Option<&T>
where
    T::Owned: Send + 'static,
{
    type Owned = Option<T::Owned>;
    fn carry(self) -> Option<T::Owned> {
        self.map(ToOwned::to_owned)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error("record not found")]
    NotFound,
    #[error("database query failed: {0}")]
    Query(diesel::result::Error),
    #[error("migration failed: {0}")]
    Migration(String),
    /// The database cannot hold a value the caller sent (SQLSTATE class 22, "data
    /// exception": a NUL character in text, a timestamp or number out of its range).
    #[error("{0}")]
    Unrepresentable(String),
}

impl From<diesel::result::Error> for StorageError {
    fn from(e: diesel::result::Error) -> Self {
        match e {
            diesel::result::Error::NotFound => StorageError::NotFound,
            e if is_unavailable(&e) => StorageError::Unavailable(e.to_string()),
            e => match unrepresentable(&e) {
                Some(message) => StorageError::Unrepresentable(message.into()),
                None => StorageError::Query(e),
            },
        }
    }
}

/// Whether a query failed because the database could not be reached or could not serve it
/// now, rather than because of the query: a connection lost or closed (PostgreSQL restarting,
/// SQLSTATE classes 08 and 57P), a server starting up or shutting down, SQLite busy past
/// its busy timeout. These answer 503 with `Retry-After`, never 500.
fn is_unavailable(e: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind as K, Error as E};
    match e {
        E::DatabaseError(K::UnableToSendCommand | K::ClosedConnection, _) => true,
        E::DatabaseError(K::Unknown, info) => {
            // diesel-async hides the SQLSTATE; these are PostgreSQL's and SQLite's texts.
            const PHRASES: [&str; 9] = [
                "terminating connection",
                "the database system is",
                "connection closed",
                "server closed the connection",
                "could not connect",
                "canceling statement due to conflict with recovery",
                "database is locked",
                "database table is locked",
                "database is busy",
            ];
            let message = info.message().to_ascii_lowercase();
            PHRASES.iter().any(|p| message.contains(p))
        }
        E::BrokenTransactionManager => true,
        _ => false,
    }
}

/// What the caller sent that the database cannot hold, when a query failed for that
/// (PostgreSQL's SQLSTATE class 22; diesel-async hides the code, so by its texts).
fn unrepresentable(e: &diesel::result::Error) -> Option<&'static str> {
    let diesel::result::Error::DatabaseError(_, info) = e else {
        return None;
    };
    let message = info.message().to_ascii_lowercase();
    const CAUSES: [(&str, &str); 5] = [
        (
            "invalid byte sequence",
            "text must not contain the NUL character (\\u0000)",
        ),
        ("out of range", "a timestamp or number is out of range"),
        ("date/time field value", "a timestamp is out of range"),
        (
            "invalid input syntax",
            "a value is not in the form it must have",
        ),
        ("value too long", "a value is too long"),
    ];
    CAUSES
        .iter()
        .find(|(phrase, _)| message.contains(phrase))
        .map(|(_, says)| *says)
}

impl From<PoolError> for StorageError {
    fn from(e: PoolError) -> Self {
        StorageError::Unavailable(e.to_string())
    }
}

pub type StorageResult<T> = Result<T, StorageError>;

/// Runs `$body` with `$conn` bound to a pooled connection of whichever backend `$db` is,
/// and evaluates to the body's `StorageResult`. The body is expanded once per backend, so
/// it must compile against both.
///
/// The body runs on its own task on the node's runtime ([`Db::run_to_end`]), so it must
/// own what it uses: the caller's borrowed values it needs are named in brackets,
/// `with_conn!(db, [org, id], |conn| ...)`, and carried in as owned copies ([`Carry`]);
/// inside, each name is a reference to its copy. Copy values need no mention.
#[macro_export]
macro_rules! with_conn {
    ($db:expr, |$conn:ident| $body:expr) => {
        $crate::with_conn!($db, [], |$conn| $body)
    };
    ($db:expr, [$($carried:ident),* $(,)?], |$conn:ident| $body:expr) => {{
        let db: &$crate::storage::Db = $db;
        $( let $carried = $crate::storage::Carry::carry($carried); )*
        match db {
            $crate::storage::Db::Postgres(pg) => {
                let pool = ::std::clone::Clone::clone(&**pg);
                db.run_to_end(async move {
                    $( #[allow(unused_variables)] let $carried = &$carried; )*
                    let mut pooled = pool
                        .get()
                        .await
                        .map_err($crate::storage::StorageError::from)?;
                    let $conn = &mut *pooled;
                    $body
                })
                .await
            }
            $crate::storage::Db::Sqlite(sqlite) => {
                let pool = ::std::clone::Clone::clone(&**sqlite);
                db.run_to_end(async move {
                    $( #[allow(unused_variables)] let $carried = &$carried; )*
                    let mut pooled = pool
                        .get()
                        .await
                        .map_err($crate::storage::StorageError::from)?;
                    let $conn = &mut *pooled;
                    $body
                })
                .await
            }
        }
    }};
}

impl Db {
    /// Runs a storage call on the node's runtime to its end (see the module's rules):
    /// [`with_conn!`] does, and storage code that reads otherwise.
    pub async fn run_to_end<T: Send + 'static>(
        &self,
        call: impl Future<Output = StorageResult<T>> + Send + 'static,
    ) -> StorageResult<T> {
        let stopped = |e: tokio::task::JoinError| {
            StorageError::Unavailable(format!("a storage call stopped: {e}"))
        };
        match self {
            // A PostgreSQL that hangs (connections open, no answers) is unavailable to a
            // caller after `database.request_timeout`; the call runs on regardless.
            Db::Postgres(db) => {
                let call = db.runtime.spawn(call);
                match tokio::time::timeout(db.answer_within, call).await {
                    Ok(outcome) => outcome.map_err(stopped)?,
                    Err(_) => Err(StorageError::Unavailable(format!(
                        "the database did not answer within {} ms (database.request_timeout)",
                        db.answer_within.as_millis()
                    ))),
                }
            }
            Db::Sqlite(db) => db.runtime.spawn(call).await.map_err(stopped)?,
        }
    }
}

/// Usage of the connection pool, for metrics.
#[derive(Debug, Clone, Copy)]
pub struct PoolUsage {
    pub max: usize,
    pub open: usize,
    pub idle: usize,
    pub waiting: usize,
}

impl Db {
    /// Builds the pool. No connection is made yet: a database that is down at start is
    /// retried by whoever uses the pool, and readiness says so meanwhile.
    ///
    /// Must be called on the node's main runtime: every connection is opened there, so it
    /// outlives the HTTP workers' runtimes (an SQLite connection runs its queries on the
    /// runtime that opened it, a PostgreSQL connection's driver task lives there).
    pub fn connect(config: &Config) -> StorageResult<Self> {
        let db = &config.database;
        let runtime = tokio::runtime::Handle::current();
        match config.database_target() {
            DatabaseTarget::Postgres(url) => {
                let connector = postgres::PgConnector::from_url(url.expose())
                    .map_err(StorageError::Unavailable)?;
                let mut manager_config = ManagerConfig::<AsyncPgConnection>::default();
                let setup_runtime = runtime.clone();
                manager_config.custom_setup = Box::new(move |_url| {
                    let connector = connector.clone();
                    on_runtime(&setup_runtime, async move { connector.connect().await })
                });
                let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(
                    url.expose(),
                    manager_config,
                );
                let pool = Pool::builder(manager)
                    .max_size(db.max_connections)
                    .wait_timeout(Some(db.connect_timeout.get()))
                    .create_timeout(Some(db.connect_timeout.get()))
                    .recycle_timeout(Some(db.connect_timeout.get()))
                    .runtime(deadpool::Runtime::Tokio1)
                    .build()
                    .map_err(|e| StorageError::Unavailable(e.to_string()))?;
                Ok(Db::Postgres(PgDb {
                    pool,
                    runtime,
                    answer_within: db.request_timeout.get(),
                }))
            }
            DatabaseTarget::Sqlite(path) => {
                let busy_ms = db.sqlite_busy_timeout.get().as_millis();
                let mut manager_config = ManagerConfig::<SqliteConn>::default();
                let setup_runtime = runtime.clone();
                manager_config.custom_setup = Box::new(move |url| {
                    let url = url.to_string();
                    on_runtime(&setup_runtime, async move {
                        ensure_parent_dir(Path::new(&url))
                            .map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))?;
                        let mut conn = SqliteConn::establish(&url).await?;
                        conn.batch_execute(&sqlite_pragmas(busy_ms))
                            .await
                            .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
                        Ok(conn)
                    })
                });
                let manager = AsyncDieselConnectionManager::<SqliteConn>::new_with_config(
                    path.to_string_lossy(),
                    manager_config,
                );
                let pool = Pool::builder(manager)
                    .max_size(db.max_connections)
                    .wait_timeout(Some(db.sqlite_busy_timeout.get()))
                    .runtime(deadpool::Runtime::Tokio1)
                    .build()
                    .map_err(|e| StorageError::Unavailable(e.to_string()))?;
                let readers = sqlite_readers::SqliteReaders::new(
                    path.to_string_lossy().into_owned(),
                    db.sqlite_busy_timeout.get(),
                    db.max_connections,
                );
                Ok(Db::Sqlite(SqliteDb {
                    pool,
                    readers: std::sync::Arc::new(readers),
                    runtime,
                }))
            }
        }
    }

    pub fn backend_name(&self) -> &'static str {
        match self {
            Db::Postgres(_) => "postgres",
            Db::Sqlite(_) => "sqlite",
        }
    }

    /// One round trip to the database.
    pub async fn ping(&self) -> StorageResult<()> {
        with_conn!(self, |conn| {
            diesel::sql_query("SELECT 1").execute(conn).await?;
            Ok(())
        })
    }

    pub fn usage(&self) -> PoolUsage {
        let status = match self {
            Db::Postgres(pool) => pool.status(),
            Db::Sqlite(pool) => pool.status(),
        };
        PoolUsage {
            max: status.max_size,
            open: status.size,
            idle: status.available,
            waiting: status.waiting,
        }
    }

    pub fn close(&self) {
        match self {
            Db::Postgres(pool) => pool.close(),
            Db::Sqlite(db) => {
                db.close();
                db.readers.close();
            }
        }
    }
}

/// Opens a connection on `runtime`, whichever runtime asks for it.
fn on_runtime<C: Send + 'static>(
    runtime: &tokio::runtime::Handle,
    establish: impl Future<Output = diesel::ConnectionResult<C>> + Send + 'static,
) -> futures_util::future::BoxFuture<'static, diesel::ConnectionResult<C>> {
    let task = runtime.spawn(establish);
    async move {
        task.await.map_err(|e| {
            diesel::ConnectionError::BadConnection(format!("the connection task stopped: {e}"))
        })?
    }
    .boxed()
}

/// Settings applied to every SQLite connection. The busy timeout comes first: switching to
/// WAL needs a lock, and without the timeout a busy database fails the connection at once.
pub(crate) fn sqlite_pragmas(busy_timeout_ms: u128) -> String {
    format!(
        "PRAGMA busy_timeout = {busy_timeout_ms}; PRAGMA journal_mode = WAL; \
         PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;"
    )
}

fn ensure_parent_dir(path: &Path) -> StorageResult<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| {
            StorageError::Unavailable(format!(
                "cannot create the data directory {}: {e}",
                dir.display()
            ))
        })?;
    }
    Ok(())
}

/// The current time as stored in the database (UTC, microsecond precision on both backends).
pub fn now() -> chrono::NaiveDateTime {
    use chrono::{SubsecRound, Utc};
    Utc::now().naive_utc().trunc_subsecs(6)
}
