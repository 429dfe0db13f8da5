//! A real HTTP server on loopback standing in for the services devmesh calls out to (a
//! registered API, a token endpoint): it answers what a test asks and tells what it was
//! sent.

use std::net::SocketAddr;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Map, Value, json};

/// A running upstream; stopped when dropped.
pub struct Upstream {
    pub addr: SocketAddr,
    handle: actix_web::dev::ServerHandle,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        tokio::spawn(async move { handle.stop(false).await });
    }
}

impl Upstream {
    /// `GET|POST /echo`: the method, path, query and headers it was sent, as JSON.
    /// `GET /redirect?to=<url>&status=<3xx>`: a redirect there (302 unless told).
    pub async fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = HttpServer::new(|| {
            App::new()
                .route("/echo", web::to(echo))
                .route("/redirect", web::to(redirect))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Self { addr, handle }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

async fn echo(req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let headers: Map<String, Value> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or(""))))
        .collect();
    HttpResponse::Ok().json(json!({
        "method": req.method().as_str(),
        "path": req.path(),
        "query": req.query_string(),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    }))
}

async fn redirect(query: web::Query<std::collections::HashMap<String, String>>) -> HttpResponse {
    let status = query
        .get("status")
        .and_then(|s| s.parse::<u16>().ok())
        .unwrap_or(302);
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
        .insert_header(("Location", query.get("to").cloned().unwrap_or_default()))
        .finish()
}
