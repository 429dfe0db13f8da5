//! The tenancy's side of the HTTP edge: [`Authenticated`] reads
//! `Authorization: Bearer <API key or access token>` (or `X-API-Key`), turns it into a
//! [`Principal`] and charges the request to the principal's and the organization's
//! rate-limit buckets. Scopes are checked by the service each handler calls.

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::http::header::{AUTHORIZATION, HeaderName, WWW_AUTHENTICATE};
use actix_web::{FromRequest, HttpRequest, web};
use futures_util::future::LocalBoxFuture;

use super::authenticate::authenticate;
use super::{Principal, TenancyState};
use crate::bus::ratelimit::Decision;
use crate::context::Context;
use crate::http::errors::ApiError;
use crate::http::rate_limit::{check_buckets, record};

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
            let (ctx, tenancy) = from_app(&req)?;
            let principal = authenticate_request(&req, &ctx, &tenancy)
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
    ctx: &Context,
    tenancy: &TenancyState,
) -> Result<Option<Principal>, ApiError> {
    authenticate_credential(req, ctx, tenancy, credential(req)?).await
}

/// The principal of a credential found elsewhere than the headers (a WebSocket's
/// `token` query parameter), charged like [`authenticate_request`].
pub async fn authenticate_credential(
    req: &HttpRequest,
    ctx: &Context,
    tenancy: &TenancyState,
    token: Option<String>,
) -> Result<Option<Principal>, ApiError> {
    let Some(token) = token else {
        return Ok(None);
    };
    let principal = authenticate(ctx, tenancy, &token).await?;
    charge(req, ctx, &principal).await?;
    Ok(Some(principal))
}

/// Charges a request to its principal's and organization's buckets.
pub async fn charge(
    req: &HttpRequest,
    ctx: &Context,
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

/// The node's context and the tenancy's state, as the app wiring registered them.
fn from_app(req: &HttpRequest) -> Result<(web::Data<Context>, web::Data<TenancyState>), ApiError> {
    let ctx = req
        .app_data::<web::Data<Context>>()
        .ok_or_else(|| ApiError::internal("no context in the app"))?;
    let tenancy = req
        .app_data::<web::Data<TenancyState>>()
        .ok_or_else(|| ApiError::internal("no tenancy state in the app"))?;
    Ok((ctx.clone(), tenancy.clone()))
}
