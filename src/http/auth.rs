//! Authentication and rate limiting at the HTTP edge.
//!
//! [`Authenticated`] reads `Authorization: Bearer <API key or access token>` (or
//! `X-API-Key`), turns it into a [`Principal`] and charges the request to the principal's
//! and the organization's rate-limit buckets. Scopes are checked by the service each
//! handler calls. [`rate_limit_headers`] puts the `RateLimit-*` headers on the answer.

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{AUTHORIZATION, HeaderName, HeaderValue, WWW_AUTHENTICATE};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use futures_util::future::LocalBoxFuture;

use super::errors::ApiError;
use crate::bus::ratelimit::Decision;
use crate::config::Quota;
use crate::context::Context;
use crate::service::ServiceError;
use crate::tenancy::Principal;
use crate::tenancy::authenticate::authenticate;

pub const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// The caller, authenticated and within its rate limits.
pub struct Authenticated(pub Principal);

pub fn missing() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "this needs credentials: send Authorization: Bearer <API key or access token>, or X-API-Key",
    )
    .with_header(WWW_AUTHENTICATE, r#"Bearer realm="devmesh""#)
}

/// The credential a request's headers carry, if any.
pub fn credential(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    if let Some(value) = req.headers().get(AUTHORIZATION) {
        let value = value.to_str().map_err(|_| missing())?;
        let (scheme, token) = value.split_once(' ').ok_or_else(missing)?;
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Err(missing());
        }
        return Ok(Some(token.trim().to_string()));
    }
    match req.headers().get(X_API_KEY) {
        Some(v) => Ok(Some(v.to_str().map_err(|_| missing())?.trim().to_string())),
        None => Ok(None),
    }
}

impl FromRequest for Authenticated {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let ctx = req
                .app_data::<web::Data<Context>>()
                .ok_or_else(|| ApiError::internal("no context in the app"))?
                .clone();
            let principal = authenticate_request(&req, &ctx)
                .await?
                .ok_or_else(missing)?;
            Ok(Authenticated(principal))
        })
    }
}

/// The principal of a request's credentials, charged to its rate limits; `None` when
/// the request carries no credentials.
pub async fn authenticate_request(
    req: &HttpRequest,
    ctx: &web::Data<Context>,
) -> Result<Option<Principal>, ApiError> {
    authenticate_credential(req, ctx, credential(req)?).await
}

/// The principal of a credential found elsewhere than the headers (a WebSocket's
/// `token` query parameter), charged like [`authenticate_request`].
pub async fn authenticate_credential(
    req: &HttpRequest,
    ctx: &web::Data<Context>,
    token: Option<String>,
) -> Result<Option<Principal>, ApiError> {
    let Some(token) = token else {
        return Ok(None);
    };
    let principal = authenticate(ctx, &token).await?;
    charge(req, ctx, &principal).await?;
    Ok(Some(principal))
}

/// Charges a request to its principal's and organization's buckets.
pub async fn charge(
    req: &HttpRequest,
    ctx: &web::Data<Context>,
    principal: &Principal,
) -> Result<(), ApiError> {
    match check_limits(ctx, principal).await {
        Some(decision) => record(req, decision),
        None => Ok(()),
    }
}

/// Charges one request of `principal` to its and its organization's buckets: the
/// decision, counted when it refuses; `None` when limits are off or the limiter cannot
/// be asked (limits protect capacity, and a bus outage should not stop the API).
pub async fn check_limits(node: &Context, principal: &Principal) -> Option<Decision> {
    let limits = &node.config.rate_limits;
    if !limits.enabled {
        return None;
    }
    check_buckets(node, &principal.rate_buckets(limits)).await
}

async fn check_buckets(node: &Context, buckets: &[(String, Quota)]) -> Option<Decision> {
    match node.bus.rate_limiter.check(buckets).await {
        Ok(decision) => {
            if !decision.allowed {
                metrics::counter!("devmesh_http_rate_limited_total").increment(1);
            }
            Some(decision)
        }
        Err(e) => {
            crate::bus::went_without("rate_limit", &e);
            None
        }
    }
}

/// Charges a request without credentials to its address's bucket; returns the address.
pub async fn charge_anonymous(
    req: &HttpRequest,
    ctx: &web::Data<Context>,
) -> Result<Option<String>, ApiError> {
    let ip = client_ip(req, ctx.config.http.client_ip_header.as_deref());
    let limits = &ctx.config.rate_limits;
    if let (true, Some(ip)) = (limits.enabled, &ip) {
        let bucket = [(format!("ip:{ip}"), limits.anonymous)];
        if let Some(decision) = check_buckets(ctx, &bucket).await {
            record(req, decision)?;
        }
    }
    Ok(ip)
}

/// A caller without credentials, within the rate limit of its address
/// (`rate_limits.anonymous`): the routes that sign people in take it.
pub struct Anonymous {
    /// The client's address, for the audit log.
    pub ip: Option<String>,
}

impl FromRequest for Anonymous {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let ctx = req
                .app_data::<web::Data<Context>>()
                .ok_or_else(|| ApiError::internal("no context in the app"))?
                .clone();
            let ip = charge_anonymous(&req, &ctx).await?;
            Ok(Anonymous { ip })
        })
    }
}

/// The client's address: the last entry of the configured proxy header, else the peer.
fn client_ip(req: &HttpRequest, header: Option<&str>) -> Option<String> {
    let forwarded = header
        .and_then(|h| req.headers().get(h))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .and_then(|last| last.trim().parse::<std::net::IpAddr>().ok());
    forwarded
        .or_else(|| req.peer_addr().map(|a| a.ip()))
        .map(|ip| ip.to_string())
}

/// Records a rate-limit decision for the answer's headers; over the limit is a 429.
fn record(req: &HttpRequest, decision: Decision) -> Result<(), ApiError> {
    req.extensions_mut().insert(decision);
    if !decision.allowed {
        return Err(ServiceError::RateLimited(decision).into());
    }
    Ok(())
}

/// `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` (seconds) and
/// `RateLimit-Policy` for a decision.
pub fn rate_limit_header_values(d: &Decision) -> Vec<(HeaderName, String)> {
    vec![
        (
            HeaderName::from_static("ratelimit-limit"),
            d.quota.burst.to_string(),
        ),
        (
            HeaderName::from_static("ratelimit-remaining"),
            d.remaining.to_string(),
        ),
        (
            HeaderName::from_static("ratelimit-reset"),
            (d.reset.as_secs_f64().ceil() as u64).to_string(),
        ),
        (
            HeaderName::from_static("ratelimit-policy"),
            format!("{};w=60;burst={}", d.quota.per_minute, d.quota.burst),
        ),
    ]
}

/// Adds the rate-limit headers to answers of requests that were charged.
pub async fn rate_limit_headers(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let mut res = next.call(req).await?;
    let decision = res.request().extensions().get::<Decision>().copied();
    if let Some(d) = decision {
        for (name, value) in rate_limit_header_values(&d) {
            if let Ok(value) = HeaderValue::from_str(&value) {
                res.headers_mut().insert(name, value);
            }
        }
    }
    Ok(res)
}
