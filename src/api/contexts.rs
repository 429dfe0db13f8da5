//! `/api/v1/contexts`: conversation and session contexts. A context's `ETag` is its
//! version; whole-context writes take `If-Match`, appends need none (they are atomic).

use actix_web::http::header::{ETAG, IF_MATCH, LOCATION};
use actix_web::{HttpRequest, HttpResponse, delete, get, patch, post, web};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::context::Context as Node;
use crate::contexts::model::{AppendItems, Appended, Context, ContextPatch, NewContext, Summary};
use crate::contexts::{self, NO_VERSION, Precondition};
use crate::http::errors::{ApiError, ErrorBody};
use crate::http::json::StrictJson;
use crate::service::{Page, PageRequest};
use crate::storage::contexts::ContextFilter;
use crate::tenancy::extract::Authenticated;

fn etag(version: i64) -> String {
    format!("\"{version}\"")
}

/// `If-Match` (RFC 9110, section 13.1.1): `*`, or a list of entity tags. Ours are versions
/// (`"3"`, weak or strong); another tag can never match, and an empty list matches
/// nothing. A value that is not such a list is a 400.
fn precondition(req: &HttpRequest) -> Result<Precondition, ApiError> {
    let Some(value) = req.headers().get(IF_MATCH) else {
        return Ok(Precondition::None);
    };
    let value = value.to_str().unwrap_or("\u{0}").trim();
    if value == "*" {
        return Ok(Precondition::Any);
    }
    let invalid = || {
        ApiError::bad_request(
            "invalid_header",
            format!(
                "If-Match {value:?} is neither * nor a list of entity tags such as \"3\" (RFC 9110, section 13.1.1)"
            ),
        )
    };
    let mut versions = Vec::new();
    let mut rest = value;
    while !rest.is_empty() {
        let tag = rest.strip_prefix("W/").unwrap_or(rest);
        let opaque = tag.strip_prefix('"').ok_or_else(invalid)?;
        let end = opaque.find('"').ok_or_else(invalid)?;
        versions.push(opaque[..end].parse::<i64>().unwrap_or(NO_VERSION));
        rest = &opaque[end + 1..];
        rest = rest.trim_start_matches([' ', '\t']);
        if let Some(next) = rest.strip_prefix(',') {
            rest = next.trim_start_matches([' ', '\t']);
        } else if !rest.is_empty() {
            return Err(invalid());
        }
    }
    Ok(Precondition::OneOf(versions))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ContextQuery {
    pub agent_id: Option<String>,
    pub session_id: Option<String>,
    /// The context type.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub context_type: Option<String>,
    /// Only contexts active at or after this time (RFC 3339).
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Only contexts last active before this time (RFC 3339).
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    /// Items per page, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(value_type = Option<uuid::Uuid>)]
    pub cursor: Option<String>,
}

/// List contexts, newest first, without their items.
#[utoipa::path(
    tag = "contexts",
    params(ContextQuery),
    responses((status = 200, description = "A page of contexts", body = Page<Context>)),
    security(("bearer" = ["contexts:read"]))
)]
#[get("/api/v1/contexts")]
pub async fn list_contexts(
    node: web::Data<Node>,
    auth: Authenticated,
    query: web::Query<ContextQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let page = PageRequest::parse(q.limit, q.cursor.as_deref())?;
    let filter = ContextFilter {
        agent_id: q.agent_id,
        session_id: q.session_id,
        context_type: q.context_type,
        since: q.since.map(|t| t.naive_utc()),
        until: q.until.map(|t| t.naive_utc()),
        given_to: None,
    };
    Ok(HttpResponse::Ok().json(contexts::list(&node, &auth.0, filter, page).await?))
}

/// Create a context, optionally with its first items.
#[utoipa::path(
    tag = "contexts",
    request_body = NewContext,
    responses(
        (status = 201, description = "Created", body = Context, headers(("ETag" = String, description = "The context's version"))),
        (status = 413, description = "An item or the metadata is too large", body = ErrorBody),
        (status = 422, description = "Too many items, over the token budget, or a field breaks its rules", body = ErrorBody),
    ),
    security(("bearer" = ["contexts:write"]))
)]
#[post("/api/v1/contexts")]
pub async fn create_context(
    node: web::Data<Node>,
    auth: Authenticated,
    body: StrictJson<NewContext>,
) -> Result<HttpResponse, ApiError> {
    let context = contexts::create(&node, &auth.0, body.into_inner()).await?;
    Ok(HttpResponse::Created()
        .insert_header((ETAG, etag(context.version)))
        .insert_header((LOCATION, format!("/api/v1/contexts/{}", context.id)))
        .json(context))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct GetQuery {
    /// Only the newest `last` items.
    #[param(value_type = Option<i64>, minimum = 0, maximum = 4294967295u32)]
    pub last: Option<u32>,
}

/// One context with its items in order.
#[utoipa::path(
    tag = "contexts",
    params(("id" = String, Path, description = "The context's id"), GetQuery),
    responses(
        (status = 200, description = "The context", body = Context, headers(("ETag" = String, description = "The context's version"))),
        (status = 404, description = "No such context in this organization", body = ErrorBody),
    ),
    security(("bearer" = ["contexts:read"]))
)]
#[get("/api/v1/contexts/{id}")]
pub async fn get_context(
    node: web::Data<Node>,
    auth: Authenticated,
    id: web::Path<String>,
    query: web::Query<GetQuery>,
) -> Result<HttpResponse, ApiError> {
    // The read runs on SQLite's reader connections or PostgreSQL's async driver, both safe
    // to drop mid-way, so it needs no detaching: one thread hop less on the hottest route.
    let context = contexts::get(&node, &auth.0, &id, query.last).await?;
    Ok(HttpResponse::Ok()
        .insert_header((ETAG, etag(context.version)))
        .json(context))
}

/// Change a context's fields. Needs `If-Match` with its current `ETag`.
#[utoipa::path(
    tag = "contexts",
    params(
        ("id" = String, Path, description = "The context's id"),
        ("If-Match" = String, Header, description = "The ETag the change is based on, or `*`", pattern = r#"^(\*|((W/)?"[^"]*"([ \t]*,[ \t]*(W/)?"[^"]*")*)?)$"#),
    ),
    request_body = ContextPatch,
    responses(
        (status = 200, description = "The changed context", body = Context, headers(("ETag" = String, description = "The new version"))),
        (status = 404, description = "No such context in this organization", body = ErrorBody),
        (status = 412, description = "The context changed since that ETag", body = ErrorBody),
        (status = 428, description = "No If-Match", body = ErrorBody),
    ),
    security(("bearer" = ["contexts:write"]))
)]
#[patch("/api/v1/contexts/{id}")]
pub async fn update_context(
    node: web::Data<Node>,
    auth: Authenticated,
    req: HttpRequest,
    id: web::Path<String>,
    body: StrictJson<ContextPatch>,
) -> Result<HttpResponse, ApiError> {
    let pre = precondition(&req)?;
    let context = contexts::update(&node, &auth.0, &id, pre, body.into_inner()).await?;
    Ok(HttpResponse::Ok()
        .insert_header((ETAG, etag(context.version)))
        .json(context))
}

/// Delete a context and its items; with `If-Match`, only if unchanged.
#[utoipa::path(
    tag = "contexts",
    params(
        ("id" = String, Path, description = "The context's id"),
        ("If-Match" = Option<String>, Header, nullable = false, description = "Delete only if the context is still at this ETag", pattern = r#"^(\*|((W/)?"[^"]*"([ \t]*,[ \t]*(W/)?"[^"]*")*)?)$"#),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such context in this organization", body = ErrorBody),
        (status = 412, description = "The context changed since that ETag", body = ErrorBody),
    ),
    security(("bearer" = ["contexts:write"]))
)]
#[delete("/api/v1/contexts/{id}")]
pub async fn delete_context(
    node: web::Data<Node>,
    auth: Authenticated,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let pre = precondition(&req)?;
    contexts::delete(&node, &auth.0, &id, pre).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Append items at the end, atomically: concurrent appends all land, each in one run.
#[utoipa::path(
    tag = "contexts",
    params(("id" = String, Path, description = "The context's id")),
    request_body = AppendItems,
    responses(
        (status = 201, description = "Appended", body = Appended, headers(("ETag" = String, description = "The new version"))),
        (status = 404, description = "No such context in this organization", body = ErrorBody),
        (status = 413, description = "An item is too large", body = ErrorBody),
        (status = 422, description = "Over the token budget (with truncation `refuse`) or the item limit", body = ErrorBody),
    ),
    security(("bearer" = ["contexts:write"]))
)]
#[post("/api/v1/contexts/{id}/items")]
pub async fn append_items(
    node: web::Data<Node>,
    auth: Authenticated,
    id: web::Path<String>,
    body: StrictJson<AppendItems>,
) -> Result<HttpResponse, ApiError> {
    let appended = contexts::append(&node, &auth.0, &id, body.into_inner()).await?;
    Ok(HttpResponse::Created()
        .insert_header((ETAG, etag(appended.context.version)))
        .json(appended))
}

/// Counts, token totals per role, first and last activity.
#[utoipa::path(
    tag = "contexts",
    params(("id" = String, Path, description = "The context's id")),
    responses(
        (status = 200, description = "The summary", body = Summary),
        (status = 404, description = "No such context in this organization", body = ErrorBody),
    ),
    security(("bearer" = ["contexts:read"]))
)]
#[get("/api/v1/contexts/{id}/summary")]
pub async fn context_summary(
    node: web::Data<Node>,
    auth: Authenticated,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(contexts::summary(&node, &auth.0, &id).await?))
}
