//! Migrations up and down on both backends, through the library and the CLI.

use devmesh::storage::{StorageError, migrations};
use diesel_async::RunQueryDsl;

use crate::helpers::{Shape, TestEnv};

async fn tables(env: &TestEnv) -> Vec<String> {
    #[derive(diesel::QueryableByName)]
    struct Name {
        #[diesel(sql_type = diesel::sql_types::Text)]
        name: String,
    }
    let db = devmesh::storage::Db::connect(&env.config).unwrap();
    let sql = match &db {
        devmesh::storage::Db::Postgres(_) => {
            "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1"
        }
        devmesh::storage::Db::Sqlite(_) => {
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY 1"
        }
    };
    let names: Result<Vec<Name>, StorageError> =
        async { devmesh::with_conn!(&db, |conn| Ok(diesel::sql_query(sql).load(conn).await?)) }
            .await;
    let names = names.unwrap();
    names
        .into_iter()
        .map(|n| n.name)
        .filter(|n| !n.starts_with("__") && !n.starts_with("sqlite_"))
        .collect()
}

/// Every table the migrations create, in name order.
const TABLES: [&str; 21] = [
    "agent_rotations",
    "agent_stats",
    "agents",
    "api_keys",
    "audit_log",
    "context_items",
    "contexts",
    "gateway_credentials",
    "gateway_learned_paths",
    "gateway_tools",
    "invitations",
    "job_dedup",
    "jobs",
    "mcp_tasks",
    "nodes",
    "organizations",
    "refresh_tokens",
    "settings",
    "task_events",
    "tasks",
    "users",
];

async fn up_and_down(shape: Shape) {
    let env = TestEnv::new(shape).await;
    let target = env.config.database_target();
    let status = migrations::status(&target).await.unwrap();
    assert!(!status.is_empty() && status.iter().all(|m| !m.applied));
    assert!(tables(&env).await.is_empty());

    let applied = migrations::run_pending(&target).await.unwrap();
    assert_eq!(applied.len(), status.len());
    assert_eq!(tables(&env).await, TABLES);
    assert_eq!(migrations::pending_count(&target).await.unwrap(), 0);
    assert!(
        migrations::run_pending(&target).await.unwrap().is_empty(),
        "running again applies nothing"
    );

    for _ in 0..status.len() {
        assert!(migrations::revert_last(&target).await.unwrap().is_some());
    }
    assert!(
        tables(&env).await.is_empty(),
        "down migrations remove what up created"
    );
    assert_eq!(migrations::revert_last(&target).await.unwrap(), None);
    migrations::run_pending(&target).await.unwrap();
    assert_eq!(tables(&env).await, TABLES, "and up again works");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_up_and_down() {
    up_and_down(Shape::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_up_and_down() {
    up_and_down(Shape::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_migrations_create_the_vector_extension() {
    let env = TestEnv::new(Shape::Postgres).await;
    migrations::run_pending(&env.config.database_target())
        .await
        .unwrap();
    #[derive(diesel::QueryableByName)]
    struct Ext {
        #[diesel(sql_type = diesel::sql_types::Text)]
        extname: String,
    }
    let db = env.migrated_db().await;
    let exts: Result<Vec<Ext>, StorageError> = async {
        devmesh::with_conn!(&db, |conn| {
            Ok(
                diesel::sql_query("SELECT extname::text AS extname FROM pg_extension")
                    .load(conn)
                    .await?,
            )
        })
    }
    .await;
    let exts = exts.unwrap();
    assert!(
        exts.iter().any(|e| e.extname == "vector"),
        "pgvector is installed in the database"
    );
}

/// Several nodes starting at once on one PostgreSQL take turns migrating.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_migrations_do_not_collide() {
    let env = TestEnv::new(Shape::Postgres).await;
    let target = env.config.database_target();
    let runs =
        futures_util::future::join_all((0..4).map(|_| migrations::run_pending(&target))).await;
    let applied: usize = runs
        .into_iter()
        .map(|r| r.expect("no node fails").len())
        .sum();
    assert_eq!(
        applied,
        migrations::status(&target).await.unwrap().len(),
        "each migration applied once"
    );
}
