//! `/api/v1/tools`: HTTP APIs registered as MCP tools (the tools gateway, DESIGN §5.5).
//! Thin handlers over [`crate::gateway::registry`]. Bodies that may carry a whole API
//! description (`POST /tools` with `openapi`, `PUT /tools/{id}/openapi`) are read up to
//! `gateway.max_document_bytes` instead of `http.body_limit_bytes`.

use actix_web::http::StatusCode;
use actix_web::http::header::LOCATION;
use actix_web::{HttpRequest, HttpResponse, delete, get, patch, post, put, web};
use futures_util::StreamExt;

use super::pagination::PageQuery;
use crate::context::Context as Node;
use crate::gateway::Gateway;
use crate::gateway::model::{
    AuthView, Execute, Health, NewTool, OperationView, OwnCredential, ToolPatch, ToolView,
};
use crate::gateway::{own_credentials, provider, registry};
use crate::http::errors::{ApiError, ErrorBody};
use crate::http::json::StrictJson;
use crate::service::{Page, ServiceError};
use crate::tenancy::extract::Authenticated;
use crate::tenancy::scopes::Scope;

/// Reads a body of at most `limit` bytes (413 beyond), refusing other media types than
/// `accept` allows (415).
async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
    accept: fn(&str) -> bool,
    expected: &str,
) -> Result<web::Bytes, ApiError> {
    let essence = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    if !accept(&essence) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("the body must be {expected}"),
        ));
    }
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "the body is larger than the limit of {limit} bytes (gateway.max_document_bytes)"
            ),
        )
    };
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::bad_request("invalid_body", format!("cannot read the body: {e}"))
        })?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

fn is_json(essence: &str) -> bool {
    essence == "application/json" || essence.ends_with("+json")
}

fn is_description(essence: &str) -> bool {
    is_json(essence)
        || matches!(
            essence,
            "application/yaml" | "application/x-yaml" | "text/yaml" | "text/x-yaml" | "text/plain"
        )
}

/// Room for the fields around an inline description.
const ENVELOPE_BYTES: usize = 64 * 1024;

/// Register an HTTP API as tools. Discovery runs in the background (see `discovery` in
/// the answer); with `openapi`, the description given is converted at once.
#[utoipa::path(
    tag = "tools",
    request_body = NewTool,
    responses(
        (status = 201, description = "Registered", body = ToolView),
        (status = 409, description = "The name collides with another tool's", body = ErrorBody),
        (status = 422, description = "A field breaks its rules, the description cannot be read, no master key for a credential, or too many tools", body = ErrorBody),
    ),
    security(("bearer" = ["tools:write"]))
)]
#[post("/api/v1/tools")]
pub async fn create_tool(
    node: web::Data<Node>,
    gateway: web::Data<Gateway>,
    auth: Authenticated,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    auth.0.require(Scope::ToolsWrite)?;
    let limit = gateway.config.max_document_bytes + ENVELOPE_BYTES;
    let body = read_body(
        &req,
        payload,
        limit,
        is_json,
        "JSON, sent with Content-Type: application/json",
    )
    .await?;
    let new: NewTool = crate::http::json::parse(&body)?;
    let tool = registry::create(&node, &gateway, &auth.0, new).await?;
    Ok(HttpResponse::Created()
        .insert_header((LOCATION, format!("/api/v1/tools/{}", tool.id)))
        .json(tool))
}

/// List the organization's tools, oldest first.
#[utoipa::path(
    tag = "tools",
    params(PageQuery),
    responses((status = 200, description = "A page of tools", body = Page<ToolView>)),
    security(("bearer" = ["tools:read"]))
)]
#[get("/api/v1/tools")]
pub async fn list_tools(
    node: web::Data<Node>,
    auth: Authenticated,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = query.page()?;
    Ok(HttpResponse::Ok().json(registry::list(&node, &auth.0, page).await?))
}

/// One tool: its settings, credential kind, discovery (status, every URL tried and why
/// it failed) and health.
#[utoipa::path(
    tag = "tools",
    params(("id" = String, Path, description = "The tool's id")),
    responses(
        (status = 200, description = "The tool", body = ToolView),
        (status = 404, description = "No such tool in this organization", body = ErrorBody),
    ),
    security(("bearer" = ["tools:read"]))
)]
#[get("/api/v1/tools/{id}")]
pub async fn get_tool(
    node: web::Data<Node>,
    auth: Authenticated,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(registry::get(&node, &auth.0, &id).await?))
}

/// Change a tool. A new name, base URL, `openapi_url` or discovery hints start a new
/// discovery; `auth: null` removes the organization's credential.
#[utoipa::path(
    tag = "tools",
    params(("id" = String, Path, description = "The tool's id")),
    request_body = ToolPatch,
    responses(
        (status = 200, description = "The changed tool", body = ToolView),
        (status = 404, description = "No such tool in this organization", body = ErrorBody),
        (status = 409, description = "The new name collides with another tool's", body = ErrorBody),
    ),
    security(("bearer" = ["tools:write"]))
)]
#[patch("/api/v1/tools/{id}")]
pub async fn update_tool(
    node: web::Data<Node>,
    gateway: web::Data<Gateway>,
    auth: Authenticated,
    id: web::Path<String>,
    body: StrictJson<ToolPatch>,
) -> Result<HttpResponse, ApiError> {
    let tool = registry::update(&node, &gateway, &auth.0, &id, body.into_inner()).await?;
    Ok(HttpResponse::Ok().json(tool))
}

/// Remove a tool, its credentials and its MCP tools.
#[utoipa::path(
    tag = "tools",
    params(("id" = String, Path, description = "The tool's id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "No such tool in this organization", body = ErrorBody),
    ),
    security(("bearer" = ["tools:write"]))
)]
#[delete("/api/v1/tools/{id}")]
pub async fn delete_tool(
    node: web::Data<Node>,
    auth: Authenticated,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    registry::delete(&node, &auth.0, &id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Discover the description again (in the background; an uploaded one is converted
/// again at once). The tools stay as they are until a description is found.
#[utoipa::path(
    tag = "tools",
    params(("id" = String, Path, description = "The tool's id")),
    responses(
        (status = 202, description = "Discovery started (or, for an upload, done)", body = ToolView),
        (status = 404, description = "No such tool in this organization", body = ErrorBody),
        (status = 422, description = "The uploaded description cannot be read", body = ErrorBody),
    ),
    security(("bearer" = ["tools:write"]))
)]
#[post("/api/v1/tools/{id}/rediscover")]
pub async fn rediscover_tool(
    node: web::Data<Node>,
    gateway: web::Data<Gateway>,
    auth: Authenticated,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let tool = registry::rediscover(&node, &gateway, &auth.0, &id).await?;
    Ok(HttpResponse::Accepted().json(tool))
}

/// Replace the tool's description by this one (JSON or YAML), converted at once; from
/// then on it stands in for discovery.
#[utoipa::path(
    tag = "tools",
    params(("id" = String, Path, description = "The tool's id")),
    request_body(content = Object, content_type = "application/json", description = "The API description: OpenAPI 3.x, Swagger 2.0 or SonarQube's webservices list, as JSON or YAML (application/yaml)"),
    responses(
        (status = 200, description = "The tool, with its new operations", body = ToolView),
        (status = 404, description = "No such tool in this organization", body = ErrorBody),
        (status = 422, description = "The description cannot be read", body = ErrorBody),
    ),
    security(("bearer" = ["tools:write"]))
)]
#[put("/api/v1/tools/{id}/openapi")]
pub async fn upload_description(
    node: web::Data<Node>,
    gateway: web::Data<Gateway>,
    auth: Authenticated,
    req: HttpRequest,
    id: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    auth.0.require(Scope::ToolsWrite)?;
    let limit = gateway.config.max_document_bytes;
    let body = read_body(
        &req,
        payload,
        limit,
        is_description,
        "JSON or YAML (application/json, application/yaml)",
    )
    .await?;
    let tool = registry::upload(&node, &gateway, &auth.0, &id, &body).await?;
    Ok(HttpResponse::Ok().json(tool))
}

/// Every operation of the tool's description: its MCP tool, whether the filters let it
/// through, and its input schema.
#[utoipa::path(
    tag = "tools",
    params(("id" = String, Path, description = "The tool's id")),
    responses(
        (status = 200, description = "The operations", body = Vec<OperationView>),
        (status = 404, description = "No such tool in this organization", body = ErrorBody),
    ),
    security(("bearer" = ["tools:read"]))
)]
#[get("/api/v1/tools/{id}/operations")]
pub async fn list_operations(
    node: web::Data<Node>,
    auth: Authenticated,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(registry::operations(&node, &auth.0, &id).await?))
}

/// Call one operation, as `tools/call` would: the answer is the MCP `CallToolResult`
/// (an upstream error is `isError: true`, not an HTTP error).
#[utoipa::path(
    tag = "tools",
    params(("id" = String, Path, description = "The tool's id")),
    request_body = Execute,
    responses(
        (status = 200, description = "The CallToolResult", body = Object),
        (status = 404, description = "No such tool or operation", body = ErrorBody),
        (status = 409, description = "The operationId names several operations: name one by its tool name", body = ErrorBody),
        (status = 422, description = "The arguments do not match the operation's input schema", body = ErrorBody),
    ),
    security(("bearer" = ["tools:call"]))
)]
#[post("/api/v1/tools/{id}/execute")]
pub async fn execute_operation(
    node: web::Data<Node>,
    gateway: web::Data<Gateway>,
    auth: Authenticated,
    id: web::Path<String>,
    body: StrictJson<Execute>,
) -> Result<HttpResponse, ApiError> {
    auth.0.require(Scope::ToolsCall)?;
    let body = body.into_inner();
    let catalog = gateway
        .catalogs
        .of(&node, &auth.0.organization_id)
        .await
        .map_err(ServiceError::Storage)?;
    let entry = catalog.entry(&id).ok_or(ServiceError::NotFound("tool"))?;
    let (offered, arguments) =
        provider::find_operation(entry, &body.operation, body.arguments.unwrap_or_default())
            .map_err(|e| match e {
                provider::NotOffered::Unknown => ServiceError::NotFound("operation"),
                provider::NotOffered::Ambiguous(names) => ServiceError::Conflict(format!(
                    "the operationId {:?} is shared by the operations {}: name one of them",
                    body.operation,
                    names.join(", ")
                )),
            })?;
    offered
        .spec
        .check_arguments(&arguments)
        .map_err(|why| ServiceError::Unprocessable(format!("invalid arguments: {why}")))?;
    // The request goes on if the client hangs up: an upstream write is not undone.
    let cancel = tokio_util::sync::CancellationToken::new();
    let caller = crate::gateway::execute::Caller {
        principal: &auth.0,
        progress: &(),
        cancel: &cancel,
    };
    let result = provider::run(&node, &gateway, entry, offered, arguments, &caller).await;
    Ok(HttpResponse::Ok().json(result))
}

/// The tool's health: its recent checks and whether its circuit is open.
#[utoipa::path(
    tag = "tools",
    params(("id" = String, Path, description = "The tool's id")),
    responses(
        (status = 200, description = "The health", body = Health),
        (status = 404, description = "No such tool in this organization", body = ErrorBody),
    ),
    security(("bearer" = ["tools:read"]))
)]
#[get("/api/v1/tools/{id}/health")]
pub async fn tool_health(
    node: web::Data<Node>,
    auth: Authenticated,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(registry::health(&node, &auth.0, &id).await?))
}

/// Store your own credential for this tool (used instead of the organization's when the
/// tool's `passthrough` is `optional` or `required`). Never shown again.
#[utoipa::path(
    tag = "tools",
    params(("id" = String, Path, description = "The tool's id")),
    request_body = OwnCredential,
    responses(
        (status = 200, description = "Stored", body = AuthView),
        (status = 404, description = "No such tool in this organization", body = ErrorBody),
        (status = 422, description = "Pass-through is disabled for this tool, the credential is unusable, or no master key", body = ErrorBody),
    ),
    security(("bearer" = ["tools:call"]))
)]
#[put("/api/v1/tools/{id}/credentials/me")]
pub async fn put_my_credential(
    node: web::Data<Node>,
    gateway: web::Data<Gateway>,
    auth: Authenticated,
    id: web::Path<String>,
    body: StrictJson<OwnCredential>,
) -> Result<HttpResponse, ApiError> {
    let view =
        own_credentials::put_own_credential(&node, &gateway, &auth.0, &id, body.into_inner())
            .await?;
    Ok(HttpResponse::Ok().json(view))
}

/// Whether you stored a credential of your own for this tool, and its kind.
#[utoipa::path(
    tag = "tools",
    params(("id" = String, Path, description = "The tool's id")),
    responses(
        (status = 200, description = "Your credential's kind", body = AuthView),
        (status = 404, description = "No such tool in this organization", body = ErrorBody),
    ),
    security(("bearer" = ["tools:call"]))
)]
#[get("/api/v1/tools/{id}/credentials/me")]
pub async fn get_my_credential(
    node: web::Data<Node>,
    auth: Authenticated,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(own_credentials::own_credential(&node, &auth.0, &id).await?))
}

/// Remove your own credential for this tool.
#[utoipa::path(
    tag = "tools",
    params(("id" = String, Path, description = "The tool's id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "No such tool, or no credential of yours for it", body = ErrorBody),
    ),
    security(("bearer" = ["tools:call"]))
)]
#[delete("/api/v1/tools/{id}/credentials/me")]
pub async fn delete_my_credential(
    node: web::Data<Node>,
    auth: Authenticated,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    own_credentials::delete_own_credential(&node, &auth.0, &id).await?;
    Ok(HttpResponse::NoContent().finish())
}
