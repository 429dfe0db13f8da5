//! MCP over WebSocket at `/ws` on the mcp listener (`docs/websocket.md`).
//!
//! The same JSON-RPC messages and protocol eras as `/mcp`, one message per frame: text
//! frames carry JSON; binary frames carry it compressed ([`frame`]). `initialize` makes
//! the connection a session (2025-11-25, 2025-06-18); a request with `params._meta` is
//! a 2026-07-28 request on its own. Credentials are checked before the upgrade.
//!
//! - [`connection`]: one connection's loop, its requests and notifications.
//! - [`link`]: the bounded queue of frames to one client.
//! - [`hub`]: every connection addressable from any node; caps per key and per node.

mod connection;
pub mod frame;
pub mod hub;
pub mod link;

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};

use super::Mcp;
use super::endpoint::{Refusal, caller_with, check_origin};
use super::protocol::RpcError;
use crate::context::Context;
use crate::http::errors::ApiError;
use crate::tenancy::extract::credential;
use connection::Connection;
pub use connection::close;
use hub::Refused;
use link::Link;

/// The upgrade's answer names the connection, as other nodes and services address it.
pub const CONNECTION_ID: header::HeaderName =
    header::HeaderName::from_static("devmesh-connection-id");

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/ws")
            .route(web::get().to(upgrade))
            .default_service(web::to(|req: HttpRequest| async move {
                crate::http::errors::method_not_allowed_for(&req, &["GET"])
            })),
    );
}

/// Checks the origin, the credentials and the caps, then upgrades.
async fn upgrade(
    req: HttpRequest,
    body: web::Payload,
    ctx: web::Data<Context>,
    mcp: web::Data<Mcp>,
) -> HttpResponse {
    match accept(&req, body, &ctx, &mcp).await {
        Ok(response) => response,
        Err(refusal) => refusal.into_response(),
    }
}

async fn accept(
    req: &HttpRequest,
    body: web::Payload,
    ctx: &web::Data<Context>,
    mcp: &Arc<Mcp>,
) -> Result<HttpResponse, Refusal> {
    check_origin(req, ctx)?;
    let token = match credential(req)? {
        Some(token) => Some(token),
        None => query_token(req),
    };
    let caller = caller_with(req, ctx, mcp, token).await?;
    let (grant, principal) = (caller.grant(mcp), caller.principal);
    let slot = mcp
        .hub
        .admit(&ctx.config.mcp.ws, &principal)
        .map_err(refused)?;
    let (mut response, ws, frames) = actix_ws::handle(req, body).map_err(|e| {
        RpcError::invalid_request(format!("not a WebSocket upgrade: {e}"))
            .with_status(StatusCode::BAD_REQUEST)
    })?;
    let frames = frames
        .max_frame_size(ctx.config.mcp.max_message_bytes)
        .aggregate_continuations()
        .max_continuation_size(ctx.config.mcp.max_message_bytes);
    let (link, queued) = Link::new(ctx.config.mcp.ws.outbound_queue);
    let link = Arc::new(link);
    let node = ctx.get_ref().clone();
    let registration = mcp
        .hub
        .register(&node, slot, &principal, link.clone())
        .await;
    tracing::debug!(connection = %registration.info.id, "WebSocket connection opened");
    if let Ok(id) = header::HeaderValue::from_str(&registration.info.id) {
        response.headers_mut().insert(CONNECTION_ID.clone(), id);
    }
    let held = mcp.connection_opened(&node, &principal);
    let connection = Connection::new(node, mcp.clone(), grant, link, registration, held);
    // The frames of the connection can only be read on this worker.
    actix_web::rt::spawn(connection.run(ws, frames, queued));
    Ok(response)
}

/// `?token=...`, for clients that cannot set headers on an upgrade (browsers).
fn query_token(req: &HttpRequest) -> Option<String> {
    web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
        .ok()?
        .get("token")
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

fn refused(r: Refused) -> Refusal {
    let (status, reason, message) = match r {
        Refused::NodeFull(n) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "node_full",
            format!(
                "this node holds its limit of {n} WebSocket connections (mcp.ws.max_connections); retry on another node or later"
            ),
        ),
        Refused::KeyFull(n) => (
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_connections",
            format!(
                "this key or user holds its limit of {n} WebSocket connections on this node (mcp.ws.max_connections_per_key); close one first"
            ),
        ),
    };
    Refusal::Http(ApiError::new(status, reason, message).with_header(header::RETRY_AFTER, "5"))
}
