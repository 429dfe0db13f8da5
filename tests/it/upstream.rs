//! A real HTTP server on loopback standing in for the services devmesh calls out to (a
//! registered API, a token endpoint): it answers what a test asks and tells what it was
//! sent.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

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
        Self::serving(Files::default()).await
    }

    /// [`Upstream::start`]'s routes, and `files`: each file under `files.root` at
    /// `/files/<relative path>`, and the aliases' paths answering with their files.
    pub async fn serving(files: Files) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let files = Arc::new(files);
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::from(files.clone()))
                .route("/echo", web::to(echo))
                .route("/redirect", web::to(redirect))
                .default_service(web::to(file))
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

/// Files an upstream serves (see [`Upstream::serving`]).
#[derive(Default)]
pub struct Files {
    pub root: Option<PathBuf>,
    /// `(path, file under root)`: `("/v3/api-docs", "petstore3-v3.yaml")`.
    pub aliases: Vec<(String, String)>,
}

async fn file(req: HttpRequest, files: web::Data<Files>) -> HttpResponse {
    let Some(root) = &files.root else {
        return HttpResponse::NotFound().finish();
    };
    let path = req.path();
    let relative = match files.aliases.iter().find(|(alias, _)| alias == path) {
        Some((_, file)) => file.clone(),
        None => match path.strip_prefix("/files/") {
            Some(rest) => percent_decode(rest),
            None => return HttpResponse::NotFound().finish(),
        },
    };
    let Ok(root) = root.canonicalize() else {
        return HttpResponse::NotFound().finish();
    };
    let Ok(full) = root.join(&relative).canonicalize() else {
        return HttpResponse::NotFound().finish();
    };
    if !full.starts_with(&root) {
        return HttpResponse::Forbidden().finish();
    }
    match std::fs::read(&full) {
        Ok(bytes) => {
            let yaml = relative.ends_with(".yaml") || relative.ends_with(".yml");
            let content_type = if yaml {
                "application/yaml"
            } else {
                "application/json"
            };
            HttpResponse::Ok().content_type(content_type).body(bytes)
        }
        Err(_) => HttpResponse::NotFound().finish(),
    }
}

fn percent_decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", text.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}
