//! The test harness: a fresh database (an SQLite file, or a new PostgreSQL database) and a
//! fresh Redis key prefix per test, configuration for port 0, and the real application.

use std::net::SocketAddr;
use std::time::Duration;

use devmesh::app::Application;
use devmesh::bus::Bus;
use devmesh::config::{Config, Duration as ConfigDuration, ListenAddr, SecretUrl};
use devmesh::jobs::Registry;
use devmesh::storage::{Db, migrations};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Declares, for each `module => Shape`, a module with one test per name that calls
/// `super::name(Shape)`: `for_shapes!([enqueue, ack] on sqlite => Sqlite, redis => PostgresRedis);`
macro_rules! for_shapes {
    ($tests:tt on $($module:ident => $shape:ident),+ $(,)?) => {
        $( for_shapes!(@module $module $shape $tests); )+
    };
    (@module $module:ident $shape:ident [$($name:ident),* $(,)?]) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(crate::helpers::Shape::$shape).await
                }
            )*
        }
    };
}

/// The two deployment shapes, and the embedded shape's storage on PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// SQLite, job queue in SQLite, everything else in memory.
    Sqlite,
    /// PostgreSQL without Redis: job queue in PostgreSQL.
    Postgres,
    /// PostgreSQL and Redis: the scale-out shape.
    PostgresRedis,
}

pub fn postgres_admin_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn unique(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::now_v7().simple())
}

/// A PostgreSQL database that exists for one test.
pub struct PgDatabase {
    pub name: String,
}

impl PgDatabase {
    pub async fn create() -> Self {
        let name = unique("devmesh_test_");
        let mut admin = AsyncPgConnection::establish(&format!("{}/postgres", postgres_admin_url()))
            .await
            .expect(
                "PostgreSQL answers on TEST_POSTGRES_URL (run scripts/test.sh, which starts it)",
            );
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create test database");
        Self { name }
    }

    pub fn url(&self) -> String {
        format!("{}/{}", postgres_admin_url(), self.name)
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let url = format!("{}/postgres", postgres_admin_url());
        // Drop runs outside any runtime's async context: use a thread with its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut admin = AsyncPgConnection::establish(&url).await.ok()?;
                diesel::sql_query(sql).execute(&mut admin).await.ok()
            })
        })
        .join();
    }
}

/// Everything one test owns: its configuration, data directory, database and key prefix.
pub struct TestEnv {
    pub config: Config,
    pub dir: TempDir,
    /// Dropped with the environment, which drops the database.
    _pg: Option<PgDatabase>,
}

impl TestEnv {
    pub async fn new(shape: Shape) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config {
            data_dir: dir.path().join("data"),
            ..Config::default()
        };
        config.mcp.listen = ListenAddr("127.0.0.1:0".parse().unwrap());
        config.api.listen = ListenAddr("127.0.0.1:0".parse().unwrap());
        config.http.workers = 1;
        // No test reaches past loopback, whatever it registers: public addresses are
        // refused by the guard (tests that call upstreams allow loopback themselves).
        config.outbound.allow_public = false;
        config.jobs.poll_interval = ConfigDuration::from_millis(100);
        config.shutdown.grace_period = ConfigDuration::from_secs(5);
        config.log.level = std::env::var("TEST_LOG").unwrap_or_else(|_| "warn".into());
        // Cheap password hashes: the same code path, without argon2's cost on every login.
        config.auth.argon2.memory_kib = 64;
        config.auth.argon2.iterations = 1;
        let pg = match shape {
            Shape::Sqlite => None,
            Shape::Postgres | Shape::PostgresRedis => Some(PgDatabase::create().await),
        };
        if let Some(pg) = &pg {
            config.database.url = Some(SecretUrl::new(pg.url()));
        }
        if shape == Shape::PostgresRedis {
            config.redis.url = Some(SecretUrl::new(redis_url()));
            config.redis.key_prefix = unique("devmesh-test:") + ":";
        }
        devmesh::telemetry::init_logs(&config.log);
        Self {
            config,
            dir,
            _pg: pg,
        }
    }

    /// The database with the schema applied.
    pub async fn migrated_db(&self) -> Db {
        migrations::run_pending(&self.config.database_target())
            .await
            .expect("migrations apply");
        Db::connect(&self.config).expect("pool")
    }

    /// A bus on a migrated database, as a node would have it.
    pub async fn bus(&self) -> Bus {
        let db = self.migrated_db().await;
        Bus::connect(&self.config, db).expect("bus")
    }

    pub async fn spawn_app(&self) -> TestApp {
        TestApp::spawn(self.config.clone(), Registry::new()).await
    }

    /// Another node on the same database and bus: its own data directory, so its own
    /// node id.
    pub async fn spawn_other_node(&self, name: &str) -> TestApp {
        let mut config = self.config.clone();
        config.data_dir = self.dir.path().join(name);
        TestApp::spawn(config, Registry::new()).await
    }
}

/// A running node on port 0.
pub struct TestApp {
    pub api: SocketAddr,
    pub mcp: SocketAddr,
    pub ctx: devmesh::context::Context,
    /// Each capability's state on this node.
    pub caps: devmesh::app::Capabilities,
    pub shutdown: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    pub http: reqwest::Client,
}

impl TestApp {
    pub async fn spawn(config: Config, registry: Registry) -> Self {
        let app = Application::build_with_jobs(config, registry)
            .await
            .expect("application builds");
        let api = app.addr("api").expect("api listener");
        let mcp = app.addr("mcp").expect("mcp listener");
        let ctx = app.context().clone();
        let caps = app.capabilities().clone();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(app.run(shutdown.clone()));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        Self {
            api,
            mcp,
            ctx,
            caps,
            shutdown,
            task: Some(task),
            http,
        }
    }

    pub fn api_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.api)
    }

    pub fn mcp_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.mcp)
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        let res = self.http.get(self.mcp_url("/metrics")).send().await;
        res.expect("/metrics answers").text().await.unwrap()
    }

    /// Polls `/ready` on the api listener until it answers 200.
    pub async fn wait_ready(&self) {
        wait_until(Duration::from_secs(20), || async {
            matches!(self.http.get(self.api_url("/ready")).send().await, Ok(r) if r.status() == 200)
        })
        .await
        .expect("the node becomes ready");
    }

    /// Stops the node the way SIGTERM does and waits for it to finish.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.task
            .take()
            .unwrap()
            .await
            .expect("the node's task does not panic")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Polls `check` every 50 ms until it holds or `limit` passes.
pub async fn wait_until<F, Fut>(limit: Duration, mut check: F) -> Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!("condition not met within {limit:?}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A TCP port that accepts connections and never answers: a dependency that hangs.
pub fn black_hole() -> (std::net::TcpListener, u16) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

/// A port with nothing listening on it: a dependency that is down.
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// `shared/corpus/openapi`, the published API descriptions the tests read in place:
/// `$DEVMESH_CORPUS` when set, else `shared/corpus/openapi` beside the project root or
/// one of its ancestors (the project's `../shared`).
pub fn openapi_corpus() -> std::path::PathBuf {
    if let Ok(dir) = std::env::var("DEVMESH_CORPUS") {
        return std::path::PathBuf::from(dir).join("openapi");
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    root.ancestors()
        .map(|a| a.join("shared/corpus/openapi"))
        .find(|c| c.join("INDEX.md").is_file())
        .unwrap_or_else(|| {
            panic!(
                "the API description corpus is not found: set DEVMESH_CORPUS to the shared corpus directory \
                 (the one holding openapi/INDEX.md), or keep the project beside ../shared"
            )
        })
}
