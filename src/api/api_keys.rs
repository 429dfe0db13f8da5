//! `/api/v1/api-keys`: the organization's API keys.

use actix_web::{HttpResponse, delete, get, post, web};
use serde::Deserialize;
use utoipa::ToSchema;

use super::pagination::PageQuery;
use crate::context::Context;
use crate::http::errors::{ApiError, ErrorBody};
use crate::http::json::StrictJson;
use crate::service::Page;
use crate::tenancy::TenancyState;
use crate::tenancy::api_keys::{self, ApiKeyInfo, CreatedKey, NewKey, RateLimit};
use crate::tenancy::extract::Authenticated;
use crate::tenancy::names::DisplayName;
use crate::tenancy::scopes::{KeyType, Scope};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    #[schema(schema_with = DisplayName::schema)]
    pub name: String,
    pub key_type: KeyType,
    /// Default: the key type's scopes (admin: all; user: organization:read, users:read,
    /// contexts:read, contexts:write; agent: contexts:read, contexts:write; gateway:
    /// contexts:read). Only admin keys hold admin scopes, and nobody can grant a scope
    /// they do not hold.
    pub scopes: Option<Vec<Scope>>,
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
    pub rate_limit: Option<RateLimit>,
    /// Binds a key of type `agent` to the agent it acts as (`/api/v1/agents`); such a key
    /// claims, updates and finishes only that agent's tasks.
    #[schema(value_type = Option<uuid::Uuid>)]
    pub agent_id: Option<String>,
}

/// Create an API key. Its secret is in this answer only.
#[utoipa::path(
    tag = "api-keys",
    request_body = CreateApiKey,
    responses(
        (status = 201, description = "Created", body = CreatedKey),
        (status = 422, description = "A scope the key type cannot hold, or a past expiry", body = ErrorBody),
    ),
    security(("bearer" = ["api_keys:write"]))
)]
#[post("/api/v1/api-keys")]
pub async fn create_api_key(
    ctx: web::Data<Context>,
    auth: Authenticated,
    body: StrictJson<CreateApiKey>,
) -> Result<HttpResponse, ApiError> {
    let b = body.into_inner();
    let new = NewKey {
        name: b.name,
        key_type: b.key_type,
        scopes: b.scopes,
        expires_at: b.expires_at,
        rate_limit: b.rate_limit,
        agent_id: None,
    };
    let created = match &b.agent_id {
        Some(agent) => match crate::agents::registry::create_key(&ctx, &auth.0, agent, new).await {
            Err(crate::service::ServiceError::NotFound(_)) => {
                return Err(crate::service::ServiceError::invalid(
                    "agent_id",
                    "no agent by this id in the organization",
                )
                .into());
            }
            created => created?,
        },
        None => api_keys::create(&ctx, &auth.0, new).await?,
    };
    Ok(HttpResponse::Created().json(created))
}

/// List API keys, newest first (never their secrets).
#[utoipa::path(
    tag = "api-keys",
    params(PageQuery),
    responses((status = 200, description = "A page of keys", body = Page<ApiKeyInfo>)),
    security(("bearer" = ["api_keys:read"]))
)]
#[get("/api/v1/api-keys")]
pub async fn list_api_keys(
    ctx: web::Data<Context>,
    auth: Authenticated,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(api_keys::list(&ctx, &auth.0, query.page()?).await?))
}

/// One API key.
#[utoipa::path(
    tag = "api-keys",
    params(("id" = String, Path, description = "The key's id")),
    responses(
        (status = 200, description = "The key", body = ApiKeyInfo),
        (status = 404, description = "No such key in this organization", body = ErrorBody),
    ),
    security(("bearer" = ["api_keys:read"]))
)]
#[get("/api/v1/api-keys/{id}")]
pub async fn get_api_key(
    ctx: web::Data<Context>,
    auth: Authenticated,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(api_keys::get(&ctx, &auth.0, &id).await?))
}

/// Revoke an API key; it stops working at once on every node.
#[utoipa::path(
    tag = "api-keys",
    params(("id" = String, Path, description = "The key's id")),
    responses(
        (status = 200, description = "The revoked key", body = ApiKeyInfo),
        (status = 404, description = "No such key in this organization", body = ErrorBody),
    ),
    security(("bearer" = ["api_keys:write"]))
)]
#[delete("/api/v1/api-keys/{id}")]
pub async fn revoke_api_key(
    ctx: web::Data<Context>,
    tenancy: web::Data<TenancyState>,
    auth: Authenticated,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(api_keys::revoke(&ctx, &tenancy, &auth.0, &id).await?))
}
