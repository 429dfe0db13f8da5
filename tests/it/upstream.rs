//! A real HTTP server on loopback standing in for the services devmesh calls out to (a
//! registered API, a token endpoint): it answers what a test asks and tells what it was
//! sent.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Map, Value, json};

/// A running upstream; stopped when dropped.
pub struct Upstream {
    pub addr: SocketAddr,
    /// What its OAuth token endpoint has done.
    pub oauth: Arc<OAuth>,
    handle: actix_web::dev::ServerHandle,
}

/// The state of the upstream's OAuth 2.0 token endpoint (RFC 6749, section 4.4) for the
/// client `client` / `client-secret`: it issues `tok-1`, `tok-2`, ...; `/oauth/echo`
/// accepts tokens from `min_accepted` on.
#[derive(Default)]
pub struct OAuth {
    pub issued: AtomicU64,
    pub min_accepted: AtomicU64,
}

impl OAuth {
    /// Refuses every token issued so far (as a token endpoint's revocation would).
    pub fn revoke_all(&self) {
        self.min_accepted
            .store(self.issued.load(Ordering::SeqCst) + 1, Ordering::SeqCst);
    }
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
        let oauth = Arc::new(OAuth::default());
        let state = oauth.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::from(files.clone()))
                .app_data(web::Data::from(state.clone()))
                .route("/echo", web::to(echo))
                .route("/echo/{rest:.*}", web::to(echo))
                .route("/redirect", web::to(redirect))
                .route("/status/{code}", web::to(status))
                .route("/slow", web::to(slow))
                .route("/slowdocs/{rest:.*}", web::to(slow_not_found))
                .route("/oauth/token", web::post().to(token))
                .route("/oauth/echo", web::to(oauth_echo))
                .default_service(web::to(file))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Self {
            addr,
            oauth,
            handle,
        }
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

/// `/status/{code}`: that status, with a small JSON body naming it.
async fn status(code: web::Path<u16>) -> HttpResponse {
    let status = actix_web::http::StatusCode::from_u16(*code)
        .unwrap_or(actix_web::http::StatusCode::IM_A_TEAPOT);
    HttpResponse::build(status).json(json!({ "message": format!("status {}", *code) }))
}

/// `/slow?ms=`: answers after that many milliseconds.
async fn slow(query: web::Query<std::collections::HashMap<String, String>>) -> HttpResponse {
    let ms: u64 = query.get("ms").and_then(|m| m.parse().ok()).unwrap_or(1000);
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    HttpResponse::Ok().json(json!({ "slept_ms": ms }))
}

/// `/slowdocs/...`: 404, after 300 ms (a host slow to say it has no description there).
async fn slow_not_found() -> HttpResponse {
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    HttpResponse::NotFound().finish()
}

/// `POST /oauth/token`: the client credentials grant for `client` / `client-secret`,
/// authenticated with HTTP basic or in the form.
async fn token(req: HttpRequest, body: web::Bytes, oauth: web::Data<OAuth>) -> HttpResponse {
    use base64::Engine as _;
    let form: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(&body).into_owned().collect();
    let basic = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok());
    let client_ok = basic.as_deref() == Some("client:client-secret")
        || (form.get("client_id").map(String::as_str) == Some("client")
            && form.get("client_secret").map(String::as_str) == Some("client-secret"));
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return HttpResponse::BadRequest().json(json!({ "error": "unsupported_grant_type" }));
    }
    if !client_ok {
        return HttpResponse::Unauthorized()
            .json(json!({ "error": "invalid_client", "error_description": "unknown client" }));
    }
    let n = oauth.issued.fetch_add(1, Ordering::SeqCst) + 1;
    HttpResponse::Ok().json(json!({
        "access_token": format!("tok-{n}"),
        "token_type": "Bearer",
        "expires_in": 3600,
        "scope": form.get("scope").cloned().unwrap_or_default(),
    }))
}

/// `/oauth/echo`: [`echo`] for a bearer token the endpoint issued and has not revoked;
/// 401 otherwise.
async fn oauth_echo(req: HttpRequest, body: web::Bytes, oauth: web::Data<OAuth>) -> HttpResponse {
    let n = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer tok-"))
        .and_then(|n| n.parse::<u64>().ok());
    match n {
        Some(n)
            if n >= oauth.min_accepted.load(Ordering::SeqCst)
                && n <= oauth.issued.load(Ordering::SeqCst) =>
        {
            echo(req, body).await
        }
        _ => HttpResponse::Unauthorized().json(json!({ "message": "bad token" })),
    }
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
