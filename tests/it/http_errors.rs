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

/// A chunked body past `mcp.max_message_bytes` gets its 413 and the connection closes:
/// the server does not go on reading (and discarding) a body that may never end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_chunked_body_is_answered_and_the_connection_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut env = crate::helpers::TestEnv::new(crate::helpers::Shape::Sqlite).await;
    env.config.mcp.max_message_bytes = 4096;
    let app = env.spawn_app().await;
    app.wait_ready().await;
    let tenant = crate::rest::register(&app, "acme").await;
    for (addr, path) in [(app.mcp, "/mcp"), (app.api, "/api/v1/contexts")] {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Accept: application/json, text/event-stream\r\nAuthorization: Bearer {}\r\n\
             Transfer-Encoding: chunked\r\n\r\n",
            tenant.key
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let chunk = format!("{:x}\r\n{}\r\n", 65536, " ".repeat(65536));
        // A body without end: only the server closing the connection stops the writer.
        let (mut reader, mut writer) = stream.into_split();
        let writing = tokio::spawn(async move {
            let mut sent = 0usize;
            while writer.write_all(chunk.as_bytes()).await.is_ok() {
                sent += chunk.len();
            }
            sent
        });
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(20),
            reader.read_to_end(&mut answer),
        )
        .await;
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 413"), "{path}: {text}");
        assert!(
            text.to_ascii_lowercase().contains("connection: close"),
            "{path}: {text}"
        );
        let sent = tokio::time::timeout(std::time::Duration::from_secs(20), writing).await;
        let sent = sent.unwrap_or_else(|_| panic!("{path}: the server reads on and never closes"));
        eprintln!(
            "{path}: the server closed after {} MiB",
            sent.unwrap() >> 20
        );
    }
}
