//! TLS to PostgreSQL, as the URL's `sslmode` asks, against the local server's TLS
//! (Debian's self-signed "snakeoil" certificate).

use std::time::Duration;

use devmesh::config::SecretUrl;
use devmesh::storage::{Db, StorageError};
use diesel_async::RunQueryDsl;
use serde_json::Value;

use crate::helpers::{Shape, TestApp, TestEnv};

#[derive(diesel::QueryableByName)]
struct Ssl {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    ssl: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmode_require_encrypts_the_connection() {
    let env = TestEnv::new(Shape::Postgres).await;
    let mut config = env.config.clone();
    let url = format!(
        "{}?sslmode=require",
        config.database.url.as_ref().unwrap().expose()
    );
    config.database.url = Some(SecretUrl::new(url));
    let app = TestApp::spawn(config.clone(), devmesh::jobs::Registry::new()).await;
    app.wait_ready().await;

    let db = Db::connect(&config).unwrap();
    let ssl: Result<Ssl, StorageError> = async {
        devmesh::with_conn!(&db, |conn| Ok(diesel::sql_query(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
        )
        .get_result(conn)
        .await?))
    }
    .await;
    assert!(ssl.unwrap().ssl, "the session is encrypted");
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmode_verify_full_refuses_an_untrusted_certificate() {
    let env = TestEnv::new(Shape::Postgres).await;
    let mut config = env.config.clone();
    let url = format!(
        "{}?sslmode=verify-full",
        config.database.url.as_ref().unwrap().expose()
    );
    config.database.url = Some(SecretUrl::new(url));
    let app = TestApp::spawn(config, devmesh::jobs::Registry::new()).await;
    // Readiness first says "starting", then why the database cannot be used.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let res = app.http.get(app.api_url("/ready")).send().await.unwrap();
        assert_eq!(res.status(), 503, "an unverified server is never used");
        let body: Value = res.json().await.unwrap();
        let error = body["checks"]["database"]["error"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if error.contains("certificate") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "readiness never said why: {error}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.stop().await.unwrap();
}
