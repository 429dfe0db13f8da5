//! `/api/v1/invitations`: inviting people into the organization.

use actix_web::{HttpResponse, delete, get, post, web};
use serde::Deserialize;
use utoipa::ToSchema;

use super::pagination::PageQuery;
use crate::context::Context;
use crate::http::errors::{ApiError, ErrorBody};
use crate::http::json::StrictJson;
use crate::service::Page;
use crate::tenancy::extract::Authenticated;
use crate::tenancy::invitations::{self, CreatedInvitation, Invitation};
use crate::tenancy::scopes::Role;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateInvitation {
    #[schema(schema_with = crate::tenancy::names::Email::schema)]
    pub email: String,
    /// Default `member`. Only an owner can invite an owner.
    pub role: Option<Role>,
}

/// Invite someone: a one-time token, shown only in this answer, to hand to them.
///
/// It expires after `auth.invitation_ttl` (7 days by default).
#[utoipa::path(
    tag = "users",
    request_body = CreateInvitation,
    responses(
        (status = 201, description = "Invited", body = CreatedInvitation),
        (status = 409, description = "Already a user of this organization", body = ErrorBody),
    ),
    security(("bearer" = ["users:write"]))
)]
#[post("/api/v1/invitations")]
pub async fn create_invitation(
    ctx: web::Data<Context>,
    auth: Authenticated,
    body: StrictJson<CreateInvitation>,
) -> Result<HttpResponse, ApiError> {
    let b = body.into_inner();
    let role = b.role.unwrap_or(Role::Member);
    let created = invitations::invite(&ctx, &auth.0, &b.email, role).await?;
    Ok(HttpResponse::Created().json(created))
}

/// List invitations, newest first (never their tokens).
#[utoipa::path(
    tag = "users",
    params(PageQuery),
    responses((status = 200, description = "A page of invitations", body = Page<Invitation>)),
    security(("bearer" = ["users:read"]))
)]
#[get("/api/v1/invitations")]
pub async fn list_invitations(
    ctx: web::Data<Context>,
    auth: Authenticated,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = invitations::list(&ctx, &auth.0, query.page()?).await?;
    Ok(HttpResponse::Ok().json(page))
}

/// Revoke an invitation that was not accepted yet.
#[utoipa::path(
    tag = "users",
    params(("id" = String, Path, description = "The invitation's id")),
    responses(
        (status = 200, description = "The revoked invitation", body = Invitation),
        (status = 404, description = "No such invitation in this organization", body = ErrorBody),
    ),
    security(("bearer" = ["users:write"]))
)]
#[delete("/api/v1/invitations/{id}")]
pub async fn revoke_invitation(
    ctx: web::Data<Context>,
    auth: Authenticated,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let revoked = invitations::revoke(&ctx, &auth.0, &id).await?;
    Ok(HttpResponse::Ok().json(revoked))
}
