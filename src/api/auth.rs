//! `/api/v1/auth/*`: registration, login, refresh, logout, and who am I.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, get, post, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::context::Context;
use crate::http::errors::ApiError;
use crate::http::json::StrictJson;
use crate::http::rate_limit::Anonymous;
use crate::tenancy::TenancyState;
use crate::tenancy::extract::Authenticated;
use crate::tenancy::names::{DisplayName, Email, Password, Slug};
use crate::tenancy::registration::{self, Channel, Registered, Registration};
use crate::tenancy::scopes::{KeyType, Role, Scope};
use crate::tenancy::sessions::{self, Login, Tokens};
use crate::tenancy::{Actor, invitations, users};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterOrganization {
    #[schema(schema_with = DisplayName::schema)]
    pub organization_name: String,
    /// 3 to 63 lowercase letters, digits and dashes, starting with a letter and not ending
    /// with a dash; unique.
    #[schema(schema_with = Slug::schema)]
    pub organization_slug: String,
    #[schema(schema_with = Email::schema)]
    pub admin_email: String,
    #[schema(schema_with = DisplayName::schema)]
    pub admin_name: String,
    /// 12 to 256 characters, not one character repeated.
    #[schema(schema_with = Password::schema)]
    pub admin_password: String,
}

/// Register an organization with its owner and a first admin API key.
///
/// The key is shown only in this answer. Allowed when `auth.open_registration` is on.
#[utoipa::path(
    tag = "auth",
    request_body = RegisterOrganization,
    responses(
        (status = 429, description = "Too many requests from this address", body = crate::http::errors::ErrorBody),
        (status = 201, description = "Registered", body = Registered),
        (status = 403, description = "Open registration is off", body = crate::http::errors::ErrorBody),
        (status = 409, description = "The slug is taken", body = crate::http::errors::ErrorBody),
        (status = 422, description = "A field breaks its rules", body = crate::http::errors::ErrorBody),
    )
)]
#[post("/api/v1/auth/register/organization")]
pub async fn register_organization(
    ctx: web::Data<Context>,
    tenancy: web::Data<TenancyState>,
    _caller: Anonymous,
    body: StrictJson<RegisterOrganization>,
) -> Result<HttpResponse, ApiError> {
    let b = body.into_inner();
    let registered = registration::register(
        &ctx,
        &tenancy,
        Registration {
            organization_name: &b.organization_name,
            organization_slug: &b.organization_slug,
            admin_email: &b.admin_email,
            admin_name: &b.admin_name,
            admin_password: &b.admin_password,
        },
        Channel::Api,
    )
    .await?;
    Ok(HttpResponse::Created().json(registered))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
    pub organization_slug: String,
}

/// Log in: an access token (JWT) and a refresh token.
///
/// Repeated failures lock the account for a while (`auth.lockout`); the answer is the
/// same 401 whether the account exists, the password is wrong, or it is locked.
#[utoipa::path(
    tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 429, description = "Too many requests from this address", body = crate::http::errors::ErrorBody),
        (status = 200, description = "Logged in", body = Tokens),
        (status = 401, description = "Refused", body = crate::http::errors::ErrorBody),
    )
)]
#[post("/api/v1/auth/login")]
pub async fn login(
    ctx: web::Data<Context>,
    tenancy: web::Data<TenancyState>,
    caller: Anonymous,
    body: StrictJson<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    let ip = caller.ip;
    let tokens = sessions::login(
        &ctx,
        &tenancy,
        Login {
            email: &body.email,
            password: &body.password,
            organization_slug: &body.organization_slug,
            ip: ip.as_deref(),
        },
    )
    .await?;
    Ok(HttpResponse::Ok().json(tokens))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

/// Exchange a refresh token for new tokens.
///
/// The refresh token is rotated: the old one stops working, and presenting it again
/// revokes every token of that login.
#[utoipa::path(
    tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 429, description = "Too many requests from this address", body = crate::http::errors::ErrorBody),
        (status = 200, description = "New tokens", body = Tokens),
        (status = 401, description = "The refresh token is not valid", body = crate::http::errors::ErrorBody),
    )
)]
#[post("/api/v1/auth/refresh")]
pub async fn refresh(
    ctx: web::Data<Context>,
    tenancy: web::Data<TenancyState>,
    _caller: Anonymous,
    body: StrictJson<RefreshRequest>,
) -> Result<HttpResponse, ApiError> {
    let tokens = sessions::refresh(&ctx, &tenancy, &body.refresh_token).await?;
    Ok(HttpResponse::Ok().json(tokens))
}

/// Log out: revoke the refresh token and every token of its login.
#[utoipa::path(
    tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 204, description = "Logged out"),
        (status = 429, description = "Too many requests from this address", body = crate::http::errors::ErrorBody),
    )
)]
#[post("/api/v1/auth/logout")]
pub async fn logout(
    ctx: web::Data<Context>,
    _caller: Anonymous,
    body: StrictJson<RefreshRequest>,
) -> Result<HttpResponse, ApiError> {
    sessions::logout(&ctx, &body.refresh_token).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Serialize, ToSchema)]
pub struct Me {
    pub organization_id: String,
    /// `user` or `api_key`.
    pub actor_type: &'static str,
    pub actor_id: String,
    /// For a user.
    pub role: Option<Role>,
    /// For an API key.
    pub key_type: Option<KeyType>,
    pub scopes: Vec<Scope>,
}

/// Who the credentials belong to, and what they may do.
#[utoipa::path(
    tag = "auth",
    responses((status = 200, description = "The caller", body = Me)),
    security(("bearer" = []))
)]
#[get("/api/v1/auth/me")]
pub async fn me(auth: Authenticated) -> HttpResponse {
    let p = auth.0;
    let (role, key_type) = match &p.actor {
        Actor::User { role, .. } => (Some(*role), None),
        Actor::ApiKey { key_type, .. } => (None, Some(*key_type)),
    };
    HttpResponse::Ok().json(Me {
        actor_type: p.actor_type(),
        actor_id: p.actor_id().to_string(),
        organization_id: p.organization_id.clone(),
        role,
        key_type,
        scopes: p.scopes.to_vec(),
    })
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePassword {
    pub current_password: String,
    /// 12 to 256 characters, not one character repeated.
    #[schema(schema_with = Password::schema)]
    pub new_password: String,
}

/// Change your own password (signed-in users only). Your other logins end.
#[utoipa::path(
    tag = "auth",
    request_body = ChangePassword,
    responses(
        (status = 204, description = "Changed"),
        (status = 403, description = "Not a signed-in user", body = crate::http::errors::ErrorBody),
        (status = 422, description = "Wrong current password, or a weak new one", body = crate::http::errors::ErrorBody),
    ),
    security(("bearer" = []))
)]
#[post("/api/v1/auth/password")]
pub async fn change_password(
    ctx: web::Data<Context>,
    tenancy: web::Data<TenancyState>,
    auth: Authenticated,
    body: StrictJson<ChangePassword>,
) -> Result<HttpResponse, ApiError> {
    users::change_password(
        &ctx,
        &tenancy,
        &auth.0,
        &body.current_password,
        &body.new_password,
    )
    .await?;
    Ok(HttpResponse::build(StatusCode::NO_CONTENT).finish())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptInvitation {
    /// The invitation token (`dmi_...`).
    pub token: String,
    /// Your name.
    #[schema(schema_with = DisplayName::schema)]
    pub name: String,
    /// 12 to 256 characters, not one character repeated.
    #[schema(schema_with = Password::schema)]
    pub password: String,
}

/// Accept an invitation: creates your account with the invited email and role, and logs
/// you in.
#[utoipa::path(
    tag = "auth",
    request_body = AcceptInvitation,
    responses(
        (status = 429, description = "Too many requests from this address", body = crate::http::errors::ErrorBody),
        (status = 201, description = "Account created; logged in", body = Tokens),
        (status = 401, description = "The invitation is unknown, used, revoked or expired", body = crate::http::errors::ErrorBody),
        (status = 409, description = "The invited email has become a user of the organization meanwhile", body = crate::http::errors::ErrorBody),
        (status = 422, description = "A weak password or an empty name", body = crate::http::errors::ErrorBody),
    )
)]
#[post("/api/v1/auth/accept-invitation")]
pub async fn accept_invitation(
    ctx: web::Data<Context>,
    tenancy: web::Data<TenancyState>,
    _caller: Anonymous,
    body: StrictJson<AcceptInvitation>,
) -> Result<HttpResponse, ApiError> {
    let b = body.into_inner();
    let tokens = invitations::accept(&ctx, &tenancy, &b.token, &b.name, &b.password).await?;
    Ok(HttpResponse::Created().json(tokens))
}
