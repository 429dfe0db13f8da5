//! Rate limiting at the HTTP edge: charging a request to its buckets
//! ([`check_buckets`], [`record`]; callers without credentials by address with
//! [`Anonymous`]) and the `RateLimit-*` headers on the answer ([`rate_limit_headers`]).
//! Who the caller is, and so which buckets, is the tenancy's to say
//! (`tenancy::extract`).

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use futures_util::future::LocalBoxFuture;

use super::errors::ApiError;
use crate::bus::ratelimit::Decision;
use crate::config::Quota;
use crate::context::Context;
use crate::service::ServiceError;

pub async fn check_buckets(node: &Context, buckets: &[(String, Quota)]) -> Option<Decision> {
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
pub fn record(req: &HttpRequest, decision: Decision) -> Result<(), ApiError> {
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
