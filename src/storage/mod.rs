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
pub mod assignments;
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
pub mod sqlite_planner;
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

/// An SQLite connection whose queries run in place: a storage call ([`with_conn!`]) runs
/// whole, at once, on the thread that makes it ([`at_once`]).
pub type SqliteConn = SyncConnectionWrapper<SqliteConnection, InPlace>;

/// Runs diesel-async's "blocking" SQLite work where it is asked, on the calling thread.
///
/// An SQLite storage call takes microseconds to a few milliseconds of CPU; handing it to
/// the blocking pool and back cost more than that in thread wake-ups (two per call,
/// measured with `benches/agents_load.rs`). It can block for longer only where SQLite
/// waits for a lock (`database.sqlite_busy_timeout`): the writing connection, while
/// another process (a `devmesh` admin command) writes to the same file. Connections are
/// opened on a blocking thread.
pub struct InPlace;

impl diesel_async::sync_connection_wrapper::SpawnBlocking for InPlace {
    fn spawn_blocking<'a, R>(
        &mut self,
        task: impl FnOnce() -> R + Send + 'static,
    ) -> futures_util::future::BoxFuture<
        'a,
        Result<R, Box<dyn std::error::Error + Send + Sync + 'static>>,
    >
    where
        R: Send + 'static,
    {
        std::future::ready(Ok(task())).boxed()
    }

    fn get_runtime() -> Self {
        InPlace
    }
}

/// Connections of the SQLite pool. SQLite has one writer at a time; a second connection
/// that writes only waits in SQLite's busy handler, which sleeps (1, 2, 5, 10 ms and
/// longer) instead of being woken. With one connection, calls queue for it in order and
/// each runs as soon as the one before ends. The hottest reads do not queue: they run on
/// [`sqlite_readers`], as many at once as `database.max_connections`.
const SQLITE_CONNECTIONS: usize = 1;
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

/// The SQLite pool (dereferences to it: the writing connection), the pool of read-only
/// connections ([`read_conn!`]), the read-only connections of the hottest reads, and the
/// runtime its calls run on.
#[derive(Clone)]
pub struct SqliteDb {
    pool: SqlitePool,
    read_pool: SqlitePool,
    pub readers: std::sync::Arc<sqlite_readers::SqliteReaders>,
    runtime: tokio::runtime::Handle,
}

impl SqliteDb {
    /// The pool of the one writing connection ([`with_conn!`]).
    pub fn writer(&self) -> SqlitePool {
        self.pool.clone()
    }

    /// The pool of read-only connections ([`read_conn!`]).
    pub fn reader(&self) -> SqlitePool {
        self.read_pool.clone()
    }
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
/// On PostgreSQL the body runs on its own task on the node's runtime ([`Db::run_to_end`]);
/// on SQLite at once, in one poll, once the connection is taken ([`at_once`]): either way
/// a call that has begun runs to its end even if its caller goes. The body must own what
/// it uses: the caller's borrowed values it needs are named in brackets,
/// `with_conn!(db, [org, id], |conn| ...)`, and carried in as owned copies ([`Carry`]);
/// inside, each name is a reference to its copy. Copy values need no mention.
#[macro_export]
macro_rules! with_conn {
    ($db:expr, |$conn:ident| $body:expr) => {
        $crate::with_conn!($db, [], |$conn| $body)
    };
    ($db:expr, [$($carried:ident),* $(,)?], |$conn:ident| $body:expr) => {
        $crate::with_conn!(@on writer, $db, [$($carried),*], |$conn| $body)
    };
    (@on $pool:ident, $db:expr, [$($carried:ident),* $(,)?], |$conn:ident| $body:expr) => {{
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
                let pool = sqlite.$pool();
                let mut pooled = pool
                    .get()
                    .await
                    .map_err($crate::storage::StorageError::from)?;
                // The whole call here, at once: its queries run in place.
                $crate::storage::at_once(async move {
                    $( #[allow(unused_variables)] let $carried = &$carried; )*
                    let $conn = &mut *pooled;
                    $body
                })
                .await
            }
        }
    }};
}

/// [`with_conn!`] for a body that only reads: on SQLite it runs on a read-only
/// connection, beside the writer and other readers (WAL), instead of queueing for the
/// writing connection. On PostgreSQL it is [`with_conn!`].
#[macro_export]
macro_rules! read_conn {
    ($db:expr, |$conn:ident| $body:expr) => {
        $crate::with_conn!(@on reader, $db, [], |$conn| $body)
    };
    ($db:expr, [$($carried:ident),* $(,)?], |$conn:ident| $body:expr) => {
        $crate::with_conn!(@on reader, $db, [$($carried),*], |$conn| $body)
    };
}

/// Runs an SQLite storage call, whose queries run in place ([`InPlace`]), to its end in
/// one poll on the caller's thread: no hop to another thread and back. A call that does
/// wait on something (none does today) is finished on a blocking thread.
pub async fn at_once<T: Send + 'static>(
    call: impl Future<Output = StorageResult<T>> + Send + 'static,
) -> StorageResult<T> {
    let mut call = Box::pin(call);
    if let std::task::Poll::Ready(result) = futures_util::poll!(call.as_mut()) {
        return result;
    }
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || runtime.block_on(call))
        .await
        .map_err(|e| StorageError::Unavailable(format!("a storage call stopped: {e}")))?
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
                sqlite_planner::install();
                let busy = db.sqlite_busy_timeout.get();
                let pool = sqlite_pool(&path, busy, SQLITE_CONNECTIONS, false, &runtime)?;
                let read_pool = sqlite_pool(&path, busy, db.max_connections, true, &runtime)?;
                let readers = sqlite_readers::SqliteReaders::new(
                    path.to_string_lossy().into_owned(),
                    db.sqlite_busy_timeout.get(),
                    db.max_connections,
                );
                Ok(Db::Sqlite(SqliteDb {
                    pool,
                    read_pool,
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
    /// On SQLite a read-only connection: readiness does not queue behind the writes.
    pub async fn ping(&self) -> StorageResult<()> {
        read_conn!(self, |conn| {
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
                db.read_pool.close();
                db.readers.close();
            }
        }
    }
}

/// A pool of `size` SQLite connections to `path` (read-only ones with `read_only`), each
/// opened on a blocking thread of `runtime`: it runs in place, and may wait for a lock.
fn sqlite_pool(
    path: &Path,
    busy: std::time::Duration,
    size: usize,
    read_only: bool,
    runtime: &tokio::runtime::Handle,
) -> StorageResult<SqlitePool> {
    let mut pragmas = sqlite_pragmas(busy.as_millis());
    if read_only {
        pragmas.push_str(" PRAGMA query_only = ON;");
    }
    let mut manager_config = ManagerConfig::<SqliteConn>::default();
    // No query when a connection is taken: that would run in place on an async worker.
    manager_config.recycling_method = diesel_async::pooled_connection::RecyclingMethod::Fast;
    let setup_runtime = runtime.clone();
    manager_config.custom_setup = Box::new(move |url| {
        let (url, pragmas) = (url.to_string(), pragmas.clone());
        on_runtime(&setup_runtime, async move {
            let runtime = tokio::runtime::Handle::current();
            let open = tokio::task::spawn_blocking(move || {
                runtime.block_on(async move {
                    ensure_parent_dir(Path::new(&url))
                        .map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))?;
                    let mut conn = SqliteConn::establish(&url).await?;
                    conn.batch_execute(&pragmas)
                        .await
                        .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
                    Ok(conn)
                })
            });
            open.await.map_err(|e| {
                diesel::ConnectionError::BadConnection(format!("the connection task stopped: {e}"))
            })?
        })
    });
    let manager = AsyncDieselConnectionManager::<SqliteConn>::new_with_config(
        path.to_string_lossy(),
        manager_config,
    );
    Pool::builder(manager)
        .max_size(size)
        .wait_timeout(Some(busy))
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .map_err(|e| StorageError::Unavailable(e.to_string()))
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
