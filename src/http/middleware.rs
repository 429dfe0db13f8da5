//! Per-request observation: a request id (an incoming `X-Request-Id` is kept) carried by
//! the request's log span and returned in the response, an access log line, and metrics.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use tracing::Instrument;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The name of the listener a request came in on, as a metrics label.
#[derive(Clone, Copy)]
pub struct ListenerName(pub &'static str);

pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let request_id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_acceptable_id(v))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let listener = req
        .app_data::<ListenerName>()
        .map(|l| l.0)
        .unwrap_or("unknown");
    let method = req.method().to_string();
    let span = tracing::info_span!("request", request_id = %request_id, method = %method, path = %req.path());
    let started = Instant::now();

    let mut res = next.call(req).instrument(span.clone()).await?;

    let route = res
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_string());
    let status = res.status().as_u16();
    let elapsed = started.elapsed();
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        res.headers_mut().insert(REQUEST_ID, value);
    }
    let labels = [
        ("listener", listener.to_string()),
        ("method", method),
        ("route", route),
        ("status", status.to_string()),
    ];
    metrics::counter!("devmesh_http_requests_total", &labels).increment(1);
    metrics::histogram!("devmesh_http_request_duration_seconds", &labels)
        .record(elapsed.as_secs_f64());
    span.in_scope(|| {
        tracing::info!(
            status,
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            "request handled"
        );
    });
    Ok(res)
}

/// Request ids from clients are echoed back and logged, so they must be short and plain.
fn is_acceptable_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

#[cfg(test)]
mod tests {
    #[test]
    fn request_ids_from_clients_must_be_plain() {
        assert!(super::is_acceptable_id(
            "0192f1c2-7c1e-7a1b-9c3d-6f5e4d3c2b1a"
        ));
        assert!(super::is_acceptable_id("trace:abc_123.x"));
        assert!(!super::is_acceptable_id(""));
        assert!(!super::is_acceptable_id("has space"));
        assert!(!super::is_acceptable_id("new\nline"));
        assert!(!super::is_acceptable_id(&"a".repeat(129)));
    }
}
