//! Streamable HTTP at `/mcp`: POST carries one JSON-RPC message; GET opens a session's
//! stream of server messages; DELETE ends a session.
//!
//! Which protocol a message speaks is read from the message itself: `initialize` opens a
//! session (2025-06-18, 2025-11-25), `Mcp-Session-Id` names one, and anything else must
//! carry its protocol version, capabilities and client in `params._meta` (2026-07-28).

use std::sync::Arc;
use std::time::Instant;

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use futures_util::{StreamExt, stream};
use serde_json::{Map, Value};

use super::Mcp;
use super::call::{Call, Speaking};
use super::protocol::{Incoming, RpcError, Version, code, response};
use super::respond::{self, count_error, json_response, method_label};
use super::sessions::Session;
use super::stateless::{header_str, param_headers, stateless_meta};
use super::{engine, listen, origin, sse};
use crate::context::Context;
use crate::http::errors::ApiError;
use crate::tenancy::Principal;
use crate::tenancy::extract::{authenticate_credential, charge, credential, missing};
use crate::tenancy::grants::Grant;

const SESSION_ID: &str = "mcp-session-id";
const PROTOCOL_VERSION: &str = "mcp-protocol-version";
const LAST_EVENT_ID: &str = "last-event-id";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/mcp")
            .route(web::post().to(post))
            .route(web::get().to(get))
            .route(web::delete().to(delete))
            .default_service(web::to(|req: HttpRequest| async move {
                crate::http::errors::method_not_allowed_for(&req, &["POST", "GET", "DELETE"])
            })),
    );
}

/// A refusal before or around the JSON-RPC exchange.
pub(super) enum Refusal {
    /// Authentication, rate limits: the REST error body, with its headers.
    Http(ApiError),
    Rpc(RpcError),
}

impl From<RpcError> for Refusal {
    fn from(e: RpcError) -> Self {
        Refusal::Rpc(e)
    }
}

impl From<ApiError> for Refusal {
    fn from(e: ApiError) -> Self {
        Refusal::Http(e)
    }
}

impl Refusal {
    pub(super) fn into_response(self) -> HttpResponse {
        match self {
            // The HTTP status and headers (WWW-Authenticate, Retry-After) of the API's
            // error, in a JSON-RPC body.
            Refusal::Http(e) => {
                let code = match e.status() {
                    StatusCode::UNAUTHORIZED => code::UNAUTHENTICATED,
                    StatusCode::FORBIDDEN => code::FORBIDDEN,
                    StatusCode::TOO_MANY_REQUESTS => code::RATE_LIMITED,
                    s if s.is_server_error() => code::INTERNAL_ERROR,
                    _ => code::INVALID_REQUEST,
                };
                let mut data = serde_json::json!({ "reason": e.code() });
                // When to retry, as over WebSocket: the Retry-After header in milliseconds.
                if let Some(seconds) = e
                    .headers()
                    .iter()
                    .find(|(name, _)| *name == header::RETRY_AFTER)
                    .and_then(|(_, value)| value.parse::<u64>().ok())
                {
                    data["retryAfterMs"] = serde_json::json!(seconds * 1000);
                }
                let error = RpcError::new(code, e.message()).with_data(data);
                let mut response = json_response(e.status(), &error.to_message());
                for (name, value) in e.headers() {
                    if let Ok(value) = header::HeaderValue::from_str(value) {
                        response.headers_mut().insert(name.clone(), value);
                    }
                }
                response
            }
            Refusal::Rpc(e) => {
                count_error(&e);
                json_response(e.status, &e.to_message())
            }
        }
    }
}

/// Refuses a request from a browser origin that is not allowed.
pub(super) fn check_origin(req: &HttpRequest, ctx: &Context) -> Result<(), RpcError> {
    match req.headers().get(header::ORIGIN) {
        None => Ok(()),
        Some(o) => {
            let o = o.to_str().unwrap_or("");
            if origin::allowed(o, &ctx.config.mcp.allowed_origins) {
                Ok(())
            } else {
                Err(RpcError::invalid_request(format!(
                    "origin {o:?} is not allowed: add it to mcp.allowed_origins"
                ))
                .with_status(StatusCode::FORBIDDEN))
            }
        }
    }
}

/// Who makes a request: the principal, and the credential it authenticated with (`None`
/// for the anonymous tenant), which long-lived streams keep checking ([`Grant`]).
pub(super) struct Caller {
    pub principal: Principal,
    pub credential: Option<String>,
}

impl Caller {
    /// A grant for a connection or stream this caller opens.
    pub(super) fn grant(&self, mcp: &Mcp) -> Arc<Grant> {
        mcp.tenancy
            .grants
            .grant(self.credential.as_deref(), self.principal.clone())
    }
}

/// The caller: its credentials, or the anonymous tenant where configured.
async fn caller(
    req: &HttpRequest,
    ctx: &web::Data<Context>,
    mcp: &Arc<Mcp>,
) -> Result<Caller, Refusal> {
    caller_with(req, ctx, mcp, credential(req)?).await
}

/// The caller of a credential (`None`: the request carries none).
pub(super) async fn caller_with(
    req: &HttpRequest,
    ctx: &web::Data<Context>,
    mcp: &Arc<Mcp>,
    credential: Option<String>,
) -> Result<Caller, Refusal> {
    if let Some(principal) =
        authenticate_credential(req, ctx, &mcp.tenancy, credential.clone()).await?
    {
        return Ok(Caller {
            principal,
            credential,
        });
    }
    let Some(slug) = ctx.config.mcp.anonymous_tenant.clone() else {
        return Err(Refusal::Http(missing()));
    };
    let principal = mcp
        .anonymous
        .principal(ctx, &slug)
        .await
        .map_err(ApiError::from)?;
    charge(req, ctx, &principal).await?;
    Ok(Caller {
        principal,
        credential: None,
    })
}

/// Reads the body, up to `mcp.max_message_bytes`.
async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<Bytes, RpcError> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| RpcError::invalid_request(format!("cannot read the body: {e}")))?;
        if body.len() + chunk.len() > limit {
            crate::http::unread::leave_unread(req, payload);
            return Err(RpcError::invalid_request(format!(
                "the message is larger than the limit of {limit} bytes (mcp.max_message_bytes)"
            ))
            .with_status(StatusCode::PAYLOAD_TOO_LARGE));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

fn check_content_type(req: &HttpRequest) -> Result<(), RpcError> {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = ct.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(
            RpcError::invalid_request(format!("Content-Type must be application/json, not {ct:?}"))
                .with_status(StatusCode::UNSUPPORTED_MEDIA_TYPE),
        )
    }
}

/// Whether the client takes an event stream in answer to a POST.
pub(super) fn accepts_sse(req: &HttpRequest) -> bool {
    accepts(req, "text/event-stream")
}

fn accepts(req: &HttpRequest, media: &str) -> bool {
    let Some(accept) = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    accept.split(',').any(|part| {
        let m = part.split(';').next().unwrap_or("").trim();
        m.eq_ignore_ascii_case(media) || m == "*/*"
    })
}

async fn post(
    req: HttpRequest,
    payload: web::Payload,
    ctx: web::Data<Context>,
    mcp: web::Data<Mcp>,
) -> HttpResponse {
    let started = Instant::now();
    let (method, result) = match handle_post(&req, payload, &ctx, &mcp).await {
        Ok((method, response)) => (method, Ok(response)),
        Err((method, refusal)) => (method, Err(refusal)),
    };
    let outcome = match &result {
        Ok(r) if r.status().is_success() => "ok",
        _ => "error",
    };
    let label = method_label(method.as_deref());
    metrics::counter!("devmesh_mcp_requests_total", "method" => label, "outcome" => outcome)
        .increment(1);
    metrics::histogram!("devmesh_mcp_request_duration_seconds", "method" => label)
        .record(started.elapsed().as_secs_f64());
    result.unwrap_or_else(Refusal::into_response)
}

type Posted = Result<(Option<String>, HttpResponse), (Option<String>, Refusal)>;

async fn handle_post(
    req: &HttpRequest,
    payload: web::Payload,
    ctx: &web::Data<Context>,
    mcp: &Arc<Mcp>,
) -> Posted {
    let early = |r: Refusal| (None, r);
    check_origin(req, ctx).map_err(|e| early(e.into()))?;
    let caller = caller(req, ctx, mcp).await.map_err(early)?;
    check_content_type(req).map_err(|e| early(e.into()))?;
    let body = read_body(req, payload, ctx.config.mcp.max_message_bytes)
        .await
        .map_err(|e| early(e.into()))?;
    let incoming = Incoming::parse(&body).map_err(|e| early(e.into()))?;
    let method = match &incoming {
        Incoming::Request { method, .. } | Incoming::Notification { method, .. } => {
            Some(method.clone())
        }
        Incoming::Response { .. } => None,
    };
    let request_id = match &incoming {
        Incoming::Request { id, .. } => Some(id.clone()),
        _ => None,
    };
    dispatch(req, ctx, mcp, caller, incoming)
        .await
        .map(|r| (method.clone(), r))
        .map_err(|refusal| {
            // Every error names the request it answers.
            let refusal = match (refusal, &request_id) {
                (Refusal::Rpc(e), Some(id)) if e.id.is_none() => {
                    Refusal::Rpc(e.with_id(id.clone()))
                }
                (r, _) => r,
            };
            (method, refusal)
        })
}

async fn dispatch(
    req: &HttpRequest,
    ctx: &web::Data<Context>,
    mcp: &Arc<Mcp>,
    caller: Caller,
    incoming: Incoming,
) -> Result<HttpResponse, Refusal> {
    let headers = req.headers();
    let header_version = header_str(headers, PROTOCOL_VERSION)?;
    if let Some(session_id) = header_str(headers, SESSION_ID)? {
        let session = mcp
            .sessions
            .get(session_id)
            .filter(|s| s.belongs_to(&caller.principal))
            .ok_or_else(session_not_found)?;
        if let Some(v) = header_version
            && v != session.version.as_str()
        {
            return Err(match Version::parse(v) {
                None => RpcError::unsupported_version(v),
                Some(_) => RpcError::invalid_request(format!(
                    "this session speaks protocol {}, not {v}",
                    session.version
                )),
            }
            .into());
        }
        // The session's streams go on with the credential of its latest request (an access
        // token refreshed meanwhile).
        session.renew(caller.credential.as_deref(), &caller.principal);
        return in_session(req, ctx, mcp, session, caller.principal, incoming).await;
    }
    match incoming {
        // `initialize` opens a session, unless the request speaks the stateless protocol,
        // which has no such method.
        Incoming::Request { id, method, params }
            if method == "initialize"
                && !header_version
                    .and_then(Version::parse)
                    .is_some_and(Version::is_stateless) =>
        {
            initialize(ctx, mcp, &caller, id, &params).await
        }
        Incoming::Request { id, method, params } => {
            let (version, client_capabilities) =
                stateless_meta(headers, header_version, &method, &params)?;
            let speaking = Speaking::Alone {
                version,
                client_capabilities,
            };
            let mut call = Call::start(ctx, mcp, caller.principal.clone(), speaking, &params)?;
            if method == "subscriptions/listen" {
                let owner = super::tasks::owner(&caller.principal);
                let listen = listen::Listen::parse(id, &params, owner)?;
                super::engine::refuse_unreadable(mcp, &call.0, listen.resources()).await?;
                let held = mcp.connection_opened(ctx, &caller.principal);
                return Ok(listen::open(ctx, caller.grant(mcp), listen, held).await?);
            }
            call.0.param_headers = Some(param_headers(headers)?);
            Ok(respond::run(req, ctx, call, None, id, method, params).await)
        }
        Incoming::Notification { .. } => Ok(HttpResponse::Accepted().finish()),
        Incoming::Response { .. } => Err(RpcError::invalid_request(
            "a response to a server request needs the Mcp-Session-Id of its session",
        )
        .into()),
    }
}

fn session_not_found() -> RpcError {
    RpcError::invalid_request("session not found: it ended or expired; send initialize again")
        .with_status(StatusCode::NOT_FOUND)
}

async fn initialize(
    ctx: &web::Data<Context>,
    mcp: &Arc<Mcp>,
    caller: &Caller,
    id: Value,
    params: &Map<String, Value>,
) -> Result<HttpResponse, Refusal> {
    let (version, capabilities) = engine::negotiate(params)?;
    let session = mcp
        .sessions
        .open(ctx, version, caller.grant(mcp), capabilities)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "cannot open an MCP session");
            RpcError::internal()
        })?;
    tracing::debug!(session = %session.id, %version, "MCP session opened");
    let body = response(&id, engine::initialize_result(version));
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((SESSION_ID, session.id.clone()))
        .body(serde_json::to_vec(&body).expect("messages serialize")))
}

async fn in_session(
    req: &HttpRequest,
    ctx: &web::Data<Context>,
    mcp: &Arc<Mcp>,
    session: Arc<Session>,
    principal: Principal,
    incoming: Incoming,
) -> Result<HttpResponse, Refusal> {
    match incoming {
        Incoming::Request { method, .. } if method == "initialize" => {
            Err(RpcError::invalid_request(
                "this session is already initialized; omit Mcp-Session-Id to start another",
            )
            .into())
        }
        Incoming::Request { id, method, params } => {
            // The principal as of this request: a role changed since initialize counts.
            let speaking = Speaking::InSession {
                session: &session,
                streams: accepts_sse(req),
            };
            let call = Call::start(ctx, mcp, principal, speaking, &params)?;
            Ok(respond::run(req, ctx, call, Some(session), id, method, params).await)
        }
        Incoming::Notification { method, params } => {
            match method.as_str() {
                "notifications/initialized" => session.mark_initialized(),
                "notifications/cancelled" => {
                    if let Some(id) = params.get("requestId") {
                        session.cancel(id);
                    }
                }
                _ => {}
            }
            Ok(HttpResponse::Accepted().finish())
        }
        Incoming::Response { id, outcome } => {
            if session.requests.answer(&id, outcome) {
                Ok(HttpResponse::Accepted().finish())
            } else {
                Err(RpcError::invalid_request(format!(
                    "no request with id {id} is waiting for an answer"
                ))
                .into())
            }
        }
    }
}

/// GET: the session's stream of server messages (notifications that belong to no request).
async fn get(req: HttpRequest, ctx: web::Data<Context>, mcp: web::Data<Mcp>) -> HttpResponse {
    match open_stream(&req, &ctx, &mcp).await {
        Ok(r) => r,
        Err(refusal) => refusal.into_response(),
    }
}

async fn open_stream(
    req: &HttpRequest,
    ctx: &web::Data<Context>,
    mcp: &Arc<Mcp>,
) -> Result<HttpResponse, Refusal> {
    check_origin(req, ctx)?;
    let caller = caller(req, ctx, mcp).await?;
    let Some(session_id) = header_str(req.headers(), SESSION_ID)? else {
        return Ok(crate::http::errors::method_not_allowed_for(req, &["POST"]));
    };
    let session = mcp
        .sessions
        .get(session_id)
        .filter(|s| s.belongs_to(&caller.principal))
        .ok_or_else(session_not_found)?;
    session.renew(caller.credential.as_deref(), &caller.principal);
    if !accepts(req, "text/event-stream") {
        return Err(
            RpcError::invalid_request("GET /mcp needs Accept: text/event-stream")
                .with_status(StatusCode::NOT_ACCEPTABLE)
                .into(),
        );
    }
    let after = match header_str(req.headers(), LAST_EVENT_ID)? {
        None => None,
        Some(v) => Some(v.parse::<u64>().map_err(|_| {
            RpcError::invalid_request(format!(
                "Last-Event-ID {v:?} is not an event id of this server"
            ))
        })?),
    };
    let rx = session.open_stream(after);
    let keepalive = sse::keepalive_timer(ctx.config.mcp.sse_keepalive.get());
    let closed = session.closed().clone();
    // Held with the stream: dropped when the client goes.
    let held = Arc::new(mcp.connection_opened(ctx, &caller.principal));
    let body = stream::unfold(
        (rx, keepalive, closed, held),
        |(mut rx, mut keepalive, closed, held)| async move {
            tokio::select! {
                // What was pushed before the session closed (its last word) goes first.
                biased;
                event = rx.recv() => {
                    let (id, text) = event?;
                    Some((Ok::<_, actix_web::Error>(sse::event(Some(id), &text)), (rx, keepalive, closed, held)))
                }
                _ = closed.cancelled() => None,
                _ = keepalive.tick() => Some((Ok(sse::keepalive()), (rx, keepalive, closed, held))),
            }
        },
    );
    Ok(sse::response(body))
}

/// DELETE: ends a session.
async fn delete(req: HttpRequest, ctx: web::Data<Context>, mcp: web::Data<Mcp>) -> HttpResponse {
    let result = async {
        check_origin(&req, &ctx)?;
        let caller = caller(&req, &ctx, &mcp).await?;
        let Some(session_id) = header_str(req.headers(), SESSION_ID)? else {
            return Ok(crate::http::errors::method_not_allowed_for(&req, &["POST"]));
        };
        let owned = mcp
            .sessions
            .get(session_id)
            .is_some_and(|s| s.belongs_to(&caller.principal));
        if !owned || !mcp.sessions.remove(session_id) {
            return Err(Refusal::Rpc(session_not_found()));
        }
        tracing::debug!(session = %session_id, "MCP session ended by the client");
        Ok(HttpResponse::NoContent().finish())
    }
    .await;
    result.unwrap_or_else(Refusal::into_response)
}
