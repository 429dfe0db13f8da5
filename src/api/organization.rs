//! `/api/v1/organization`: the caller's organization.

use actix_web::{HttpResponse, get, patch, web};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::context::Context;
use crate::http::errors::ApiError;
use crate::http::json::StrictJson;
use crate::tenancy::extract::Authenticated;
use crate::tenancy::organization::{self, Organization};

/// The caller's organization.
#[utoipa::path(
    tag = "organization",
    responses((status = 200, description = "The organization", body = Organization)),
    security(("bearer" = ["organization:read"]))
)]
#[get("/api/v1/organization")]
pub async fn get_organization(
    ctx: web::Data<Context>,
    auth: Authenticated,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(organization::get(&ctx, &auth.0).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrganizationPatch {
    #[schema(schema_with = crate::tenancy::names::DisplayName::schema)]
    pub name: String,
}

/// Rename the organization (its slug stays).
#[utoipa::path(
    tag = "organization",
    request_body = OrganizationPatch,
    responses((status = 200, description = "Renamed", body = Organization)),
    security(("bearer" = ["organization:write"]))
)]
#[patch("/api/v1/organization")]
pub async fn update_organization(
    ctx: web::Data<Context>,
    auth: Authenticated,
    body: StrictJson<OrganizationPatch>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(organization::rename(&ctx, &auth.0, &body.name).await?))
}
