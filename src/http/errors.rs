//! The HTTP error shape, `{"error": {"code": "...", "message": "..."}}`, the extractor
//! settings that turn bad queries and paths into clear 4xx answers, and the one mapping of
//! domain errors to HTTP.

use std::fmt;

use actix_web::http::StatusCode;
use actix_web::http::header::{ALLOW, HeaderName, RETRY_AFTER, WWW_AUTHENTICATE};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::service::ServiceError;
use crate::storage::StorageError;

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    headers: Vec<(HeaderName, String)>,
}

/// Every error answer: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody<'a> {
    error: Detail<'a>,
}

#[derive(Serialize, ToSchema)]
struct Detail<'a> {
    /// A stable, machine-readable code such as `not_found` or `missing_scope`.
    code: &'a str,
    /// What went wrong, in words.
    message: &'a str,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            headers: Vec::new(),
        }
    }
    pub fn with_header(mut self, name: HeaderName, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    pub fn status(&self) -> StatusCode {
        self.status
    }
    /// The machine-readable code (`rate_limited`, `unauthenticated`, ...).
    pub fn code(&self) -> &'static str {
        self.code
    }
    pub fn message(&self) -> &str {
        &self.message
    }
    pub fn headers(&self) -> &[(HeaderName, String)] {
        &self.headers
    }
    /// A server fault: the cause is logged, the client sees nothing of it.
    pub fn internal(cause: impl fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the server log",
        )
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }
    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status);
        for (name, value) in &self.headers {
            res.insert_header((name.clone(), value.as_str()));
        }
        res.json(ErrorBody {
            error: Detail {
                code: self.code,
                message: &self.message,
            },
        })
    }
}

/// Query strings: unknown or malformed parameters are a 400 that names them.
pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err, _req| {
        ApiError::bad_request(
            "invalid_query",
            format!("the query string is not valid: {err}"),
        )
        .into()
    })
}

pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|err, _req| {
        ApiError::bad_request("invalid_path", format!("the path is not valid: {err}")).into()
    })
}

/// Bodies read whole as bytes or text.
pub fn payload_config(limit: usize) -> web::PayloadConfig {
    web::PayloadConfig::new(limit)
}

/// Any path no route matches.
pub async fn not_found(req: HttpRequest) -> HttpResponse {
    ApiError::not_found(format!("no route for {} {}", req.method(), req.path())).error_response()
}

/// A known path asked with a method it does not take.
/// The system endpoints take GET only.
pub async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    method_not_allowed_for(&req, &["GET"])
}

/// 405 with `Allow`, for a path that takes only `allowed`.
pub fn method_not_allowed_for(req: &HttpRequest, allowed: &[&str]) -> HttpResponse {
    let allow = allowed.join(", ");
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{} does not accept {}; it accepts {allow}",
            req.path(),
            req.method()
        ),
    )
    .with_header(ALLOW, allow)
    .error_response()
}

/// The one place where a domain error becomes an HTTP answer.
impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        use StatusCode as S;
        let message = e.to_string();
        match e {
            ServiceError::Invalid(f) => ApiError::new(
                S::UNPROCESSABLE_ENTITY,
                "invalid_field",
                format!("{}: {}", f.field, f.message),
            ),
            ServiceError::Unauthenticated(_) => {
                ApiError::new(S::UNAUTHORIZED, "unauthenticated", message).with_header(
                    WWW_AUTHENTICATE,
                    r#"Bearer realm="devmesh", error="invalid_token""#,
                )
            }
            ServiceError::MissingScope(scope) => ApiError::new(
                S::FORBIDDEN,
                "missing_scope",
                format!("this needs the scope {scope}, which the credentials do not hold"),
            ),
            ServiceError::Forbidden(_) => ApiError::new(S::FORBIDDEN, "forbidden", message),
            ServiceError::NotFound(_) => ApiError::new(S::NOT_FOUND, "not_found", message),
            ServiceError::Conflict(_) => ApiError::new(S::CONFLICT, "conflict", message),
            ServiceError::PreconditionFailed(_) => {
                ApiError::new(S::PRECONDITION_FAILED, "precondition_failed", message)
            }
            ServiceError::PreconditionRequired(_) => {
                ApiError::new(S::PRECONDITION_REQUIRED, "precondition_required", message)
            }
            ServiceError::TooLarge(_) => {
                ApiError::new(S::PAYLOAD_TOO_LARGE, "payload_too_large", message)
            }
            ServiceError::Unprocessable(_) => {
                ApiError::new(S::UNPROCESSABLE_ENTITY, "unprocessable", message)
            }
            ServiceError::RateLimited(d) => {
                let retry = d.retry_after.as_secs_f64().ceil().max(1.0) as u64;
                let mut err = ApiError::new(
                    S::TOO_MANY_REQUESTS,
                    "rate_limited",
                    format!("rate limit exceeded; retry in {retry} s"),
                )
                .with_header(RETRY_AFTER, retry.to_string());
                for (name, value) in super::rate_limit::rate_limit_header_values(&d) {
                    err = err.with_header(name, value);
                }
                err
            }
            ServiceError::RegistrationClosed => ApiError::new(
                S::FORBIDDEN,
                "registration_closed",
                "open registration is off on this server (auth.open_registration); ask an operator to run `devmesh org create`",
            ),
            ServiceError::Storage(StorageError::Unavailable(cause)) => {
                tracing::warn!(error = %cause, "database unavailable");
                ApiError::new(
                    S::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the database is unavailable; retry shortly",
                )
                .with_header(RETRY_AFTER, "1")
            }
            ServiceError::Storage(StorageError::Unrepresentable(message)) => {
                ApiError::new(S::UNPROCESSABLE_ENTITY, "unprocessable", message)
            }
            ServiceError::Storage(StorageError::NotFound) => {
                ApiError::new(S::NOT_FOUND, "not_found", "not found")
            }
            ServiceError::Storage(e @ (StorageError::Query(_) | StorageError::Migration(_))) => {
                ApiError::internal(e)
            }
            ServiceError::Internal(cause) => ApiError::internal(cause),
        }
    }
}

impl From<ServiceError> for actix_web::Error {
    fn from(e: ServiceError) -> Self {
        ApiError::from(e).into()
    }
}
