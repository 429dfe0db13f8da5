//! `/api/v1/users`: the organization's users.

use actix_web::{HttpResponse, delete, get, patch, post, web};
use serde::Deserialize;
use utoipa::ToSchema;

use super::pagination::PageQuery;
use crate::context::Context;
use crate::http::errors::{ApiError, ErrorBody};
use crate::http::json::StrictJson;
use crate::service::Page;
use crate::tenancy::TenancyState;
use crate::tenancy::extract::Authenticated;
use crate::tenancy::names::{DisplayName, Email, Password};
use crate::tenancy::scopes::Role;
use crate::tenancy::users::{self, NewUser, User};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    #[schema(schema_with = Email::schema)]
    pub email: String,
    #[schema(schema_with = DisplayName::schema)]
    pub name: String,
    /// Default `member`. Only an owner can make an owner.
    pub role: Option<Role>,
    /// 12 to 256 characters, not one character repeated; tell it to the user, who can
    /// change it.
    #[schema(schema_with = Password::schema)]
    pub password: String,
}

/// Create a user in the organization.
#[utoipa::path(
    tag = "users",
    request_body = CreateUser,
    responses(
        (status = 201, description = "Created", body = User),
        (status = 409, description = "The email is taken in this organization", body = ErrorBody),
    ),
    security(("bearer" = ["users:write"]))
)]
#[post("/api/v1/users")]
pub async fn create_user(
    ctx: web::Data<Context>,
    tenancy: web::Data<TenancyState>,
    auth: Authenticated,
    body: StrictJson<CreateUser>,
) -> Result<HttpResponse, ApiError> {
    let user = users::create(
        &ctx,
        &tenancy,
        &auth.0,
        NewUser {
            email: &body.email,
            name: &body.name,
            role: body.role.unwrap_or(Role::Member),
            password: &body.password,
        },
    )
    .await?;
    Ok(HttpResponse::Created().json(user))
}

/// List the organization's users, newest first.
#[utoipa::path(
    tag = "users",
    params(PageQuery),
    responses((status = 200, description = "A page of users", body = Page<User>)),
    security(("bearer" = ["users:read"]))
)]
#[get("/api/v1/users")]
pub async fn list_users(
    ctx: web::Data<Context>,
    auth: Authenticated,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(users::list(&ctx, &auth.0, query.page()?).await?))
}

/// One user.
#[utoipa::path(
    tag = "users",
    params(("id" = String, Path, description = "The user's id")),
    responses(
        (status = 200, description = "The user", body = User),
        (status = 404, description = "No such user in this organization", body = ErrorBody),
    ),
    security(("bearer" = ["users:read"]))
)]
#[get("/api/v1/users/{id}")]
pub async fn get_user(
    ctx: web::Data<Context>,
    auth: Authenticated,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(users::get(&ctx, &auth.0, &id).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    pub role: Role,
}

/// Change a user's role.
#[utoipa::path(
    tag = "users",
    params(("id" = String, Path, description = "The user's id")),
    request_body = UserPatch,
    responses(
        (status = 200, description = "The user", body = User),
        (status = 404, description = "No such user in this organization", body = ErrorBody),
        (status = 409, description = "It would leave the organization without an owner", body = ErrorBody),
    ),
    security(("bearer" = ["users:write"]))
)]
#[patch("/api/v1/users/{id}")]
pub async fn update_user(
    ctx: web::Data<Context>,
    tenancy: web::Data<TenancyState>,
    auth: Authenticated,
    id: web::Path<String>,
    body: StrictJson<UserPatch>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(users::change_role(&ctx, &tenancy, &auth.0, &id, body.role).await?))
}

/// Remove a user from the organization.
#[utoipa::path(
    tag = "users",
    params(("id" = String, Path, description = "The user's id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "No such user in this organization", body = ErrorBody),
        (status = 409, description = "The organization's last owner", body = ErrorBody),
    ),
    security(("bearer" = ["users:write"]))
)]
#[delete("/api/v1/users/{id}")]
pub async fn delete_user(
    ctx: web::Data<Context>,
    tenancy: web::Data<TenancyState>,
    auth: Authenticated,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    users::remove(&ctx, &tenancy, &auth.0, &id).await?;
    Ok(HttpResponse::NoContent().finish())
}
