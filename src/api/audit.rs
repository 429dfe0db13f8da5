//! `/api/v1/audit`: the audit log.

use actix_web::{HttpResponse, get, web};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::context::Context;
use crate::http::errors::ApiError;
use crate::service::{Page, PageRequest};
use crate::storage::audit::AuditFilter;
use crate::tenancy::audit::{self, AuditEntry};
use crate::tenancy::extract::Authenticated;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only entries by this user or key.
    pub actor_id: Option<String>,
    /// Only this action, such as `auth.login_failed`.
    pub action: Option<String>,
    /// Only entries at or after this time (RFC 3339).
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Only entries before this time (RFC 3339).
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    /// Items per page, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(value_type = Option<uuid::Uuid>)]
    pub cursor: Option<String>,
}

/// The audit log, newest first.
#[utoipa::path(
    tag = "audit",
    params(AuditQuery),
    responses((status = 200, description = "A page of entries", body = Page<AuditEntry>)),
    security(("bearer" = ["audit:read"]))
)]
#[get("/api/v1/audit")]
pub async fn list_audit(
    ctx: web::Data<Context>,
    auth: Authenticated,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let page = PageRequest::parse(q.limit, q.cursor.as_deref())?;
    let filter = AuditFilter {
        actor_id: q.actor_id,
        action: q.action,
        since: q.since.map(|t| t.naive_utc()),
        until: q.until.map(|t| t.naive_utc()),
    };
    Ok(HttpResponse::Ok().json(audit::list(&ctx, &auth.0, filter, page).await?))
}
