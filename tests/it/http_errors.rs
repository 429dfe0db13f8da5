//! Bad bodies get clear 4xx answers: the JSON extractor and settings every listener uses,
//! on a route of its own served over real HTTP.

use actix_web::{App, HttpResponse, HttpServer, web};
use devmesh::http::json::StrictJson;
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Registration {
    name: String,
    replicas: u32,
}

async fn register(body: StrictJson<Registration>) -> HttpResponse {
    HttpResponse::Ok().json(json!({"name": body.name}))
}

async fn spawn_json_route(limit: usize) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = HttpServer::new(move || {
        App::new()
            .configure(|cfg| devmesh::http::configure_extractors(cfg, limit))
            .route("/things", web::post().to(register))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    format!("http://{addr}/things")
}

async fn post(url: &str, content_type: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
    let res = reqwest::Client::new()
        .post(url)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_get_clear_4xx() {
    let url = spawn_json_route(2048).await;
    let (status, body) = post(&url, "application/json", r#"{"name":"api","replicas":3}"#).await;
    assert_eq!((status, body), (200, json!({"name": "api"})));

    let (status, body) = post(&url, "application/json", r#"{"name": "api", "replicas": 3"#).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "malformed_json");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("line 1 column"),
        "{body}"
    );

    let (status, body) = post(
        &url,
        "application/json",
        r#"{"name": "api", "replicas": "three"}"#,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "invalid_body");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("invalid type") && message.contains("u32"),
        "{message}"
    );

    let (status, body) = post(
        &url,
        "application/json",
        r#"{"name": "api", "replicas": 1, "replica": 2}"#,
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown field `replica`"),
        "{body}"
    );

    let (status, body) = post(&url, "text/plain", r#"{"name":"api","replicas":3}"#).await;
    assert_eq!(status, 415);
    assert_eq!(body["error"]["code"], "unsupported_media_type");

    let big = format!(r#"{{"name":"{}","replicas":1}}"#, "x".repeat(4096));
    let (status, body) = post(&url, "application/json", big).await;
    assert_eq!(status, 413);
    assert_eq!(body["error"]["code"], "payload_too_large");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("2048"),
        "{body}"
    );
}
