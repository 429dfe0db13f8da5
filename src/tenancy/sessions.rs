//! Signing in: login with email, password and organization; refresh with rotation (a
//! reused refresh token revokes its whole family); logout. Repeated failures lock an
//! account for a while, and every refusal reads the same whether the account exists or not.

use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use std::sync::Arc;

use crate::context::Context;
use crate::service::{ServiceError, ServiceResult};
use crate::storage::refresh_tokens::{self as store, RefreshTokenRow};
use crate::storage::users::UserRow;
use crate::storage::{organizations, users as user_store};
use crate::tenancy::audit::{self, Event};
use crate::tenancy::secrets::{REFRESH_TOKEN_PREFIX, generate_token, hash_token};
use crate::tenancy::users::User;
use crate::tenancy::{TenancyState, new_id, utc};

#[derive(Debug, Serialize, ToSchema)]
pub struct Tokens {
    /// A JWT for `Authorization: Bearer`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    pub expires_at: chrono::DateTime<chrono::Utc>,
    /// Exchange at `/api/v1/auth/refresh` for new tokens; each can be used once.
    pub refresh_token: String,
    pub refresh_expires_at: chrono::DateTime<chrono::Utc>,
    pub user: User,
}

pub struct Login<'a> {
    pub email: &'a str,
    pub password: &'a str,
    pub organization_slug: &'a str,
    pub ip: Option<&'a str>,
}

fn refused() -> ServiceError {
    ServiceError::Unauthenticated(
        "the email, password or organization is not right, or the account is locked for a while after repeated failures"
            .into(),
    )
}

/// The lockout counters live on the bus; without it no login can be judged.
fn bus_down(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Storage(crate::storage::StorageError::Unavailable(format!(
        "the bus (login counters): {e}"
    )))
}

fn invalid_refresh() -> ServiceError {
    ServiceError::Unauthenticated("the refresh token is not valid; log in again".into())
}

/// Logs in; the counters, the session and the audit entries of an attempt are written to
/// their end, whoever stops waiting.
pub async fn login(
    ctx: &Context,
    tenancy: &Arc<TenancyState>,
    login: Login<'_>,
) -> ServiceResult<Tokens> {
    let tenancy = tenancy.clone();
    let email = login.email.trim().to_lowercase();
    let slug = login.organization_slug.trim().to_string();
    let password = login.password.to_string();
    let ip = login.ip.map(str::to_string);
    ctx.run_to_end(move |ctx| async move {
        do_login(&ctx, &tenancy, &email, &slug, &password, ip.as_deref()).await
    })
    .await
}

async fn do_login(
    ctx: &Context,
    tenancy: &TenancyState,
    email: &str,
    slug: &str,
    password: &str,
    ip: Option<&str>,
) -> ServiceResult<Tokens> {
    let account = format!("{slug}:{email}");
    let lock_key = format!("login:lock:{account}");
    let failures_key = format!("login:failures:{account}");
    let cache = &ctx.bus.cache;
    let lockout = &ctx.config.auth.lockout;

    let locked = cache.get(&lock_key).await.map_err(bus_down)?.is_some();
    let org = organizations::by_slug(&ctx.db, slug).await?;
    let user = match &org {
        Some(org) => user_store::by_email(&ctx.db, &org.id, email).await?,
        None => None,
    };
    // Always one argon2 verification, so that time tells nothing either.
    let verified = tenancy
        .passwords
        .verify(password, user.as_ref().map(|u| u.password_hash.as_str()))
        .await;
    match (verified && !locked, &org, user) {
        (true, Some(org), Some(user)) => {
            let _ = cache.delete(&failures_key).await;
            let tokens = start_session(ctx, tenancy, user, None).await?;
            audit::record(
                ctx,
                Event {
                    organization_id: &org.id,
                    actor_type: "user",
                    actor_id: Some(&tokens.user.id),
                    action: "auth.login",
                    target: None,
                    success: true,
                    details: json!({}),
                    ip,
                },
            )
            .await;
            Ok(tokens)
        }
        (_, org, user) => {
            let reason = if locked { "locked" } else { "bad credentials" };
            let failures = if locked {
                0
            } else {
                cache
                    .incr(&failures_key, 1, lockout.window.get())
                    .await
                    .map_err(bus_down)?
            };
            let now_locked = failures >= i64::from(lockout.max_failures);
            if now_locked {
                cache
                    .set(&lock_key, "1", lockout.duration.get())
                    .await
                    .map_err(bus_down)?;
                let _ = cache.delete(&failures_key).await;
            }
            if let Some(org) = org {
                let target = user.as_ref().map(|u| ("user", u.id.as_str()));
                let failed =
                    |action, reason| failed_login(&org.id, target, action, reason, email, ip);
                audit::record(ctx, failed("auth.login_failed", reason)).await;
                if now_locked {
                    audit::record(ctx, failed("auth.locked", "too many failed logins")).await;
                }
            }
            Err(refused())
        }
    }
}

/// The audit entry of a refused login: nobody is authenticated, so the actor is anonymous
/// and the account tried is the target.
fn failed_login<'e>(
    org: &'e str,
    target: Option<(&'static str, &'e str)>,
    action: &'static str,
    reason: &str,
    email: &str,
    ip: Option<&'e str>,
) -> Event<'e> {
    Event {
        organization_id: org,
        actor_type: "anonymous",
        actor_id: None,
        action,
        target,
        success: false,
        details: json!({ "email": email, "reason": reason }),
        ip,
    }
}

/// Issues an access token and a refresh token of `family` (a new family when `None`).
pub(crate) async fn start_session(
    ctx: &Context,
    tenancy: &TenancyState,
    user: UserRow,
    family: Option<String>,
) -> ServiceResult<Tokens> {
    let auth = &ctx.config.auth;
    let (access_token, expires_at) = tenancy
        .signer
        .issue(
            &ctx.db,
            &user.id,
            &user.organization_id,
            auth.access_token_ttl.get(),
        )
        .await?;
    let refresh_token = generate_token(REFRESH_TOKEN_PREFIX);
    let now = crate::storage::now();
    let refresh_ttl = chrono::Duration::from_std(auth.refresh_token_ttl.get())
        .unwrap_or(chrono::Duration::days(30));
    let row = RefreshTokenRow {
        id: new_id(),
        organization_id: user.organization_id.clone(),
        user_id: user.id.clone(),
        family_id: family.unwrap_or_else(new_id),
        token_hash: hash_token(&refresh_token),
        expires_at: now + refresh_ttl,
        rotated_at: None,
        revoked_at: None,
        created_at: now,
    };
    store::insert(&ctx.db, &row).await?;
    Ok(Tokens {
        expires_in: (expires_at - chrono::Utc::now()).num_seconds().max(0),
        access_token,
        token_type: "Bearer",
        expires_at,
        refresh_token,
        refresh_expires_at: utc(row.expires_at),
        user: user.into(),
    })
}

/// Exchanges a refresh token for new tokens; the rotation and the new session are written
/// together, whoever stops waiting.
pub async fn refresh(
    ctx: &Context,
    tenancy: &Arc<TenancyState>,
    token: &str,
) -> ServiceResult<Tokens> {
    let (tenancy, token) = (tenancy.clone(), token.to_string());
    ctx.run_to_end(move |ctx| async move { do_refresh(&ctx, &tenancy, &token).await })
        .await
}

async fn do_refresh(ctx: &Context, tenancy: &TenancyState, token: &str) -> ServiceResult<Tokens> {
    let row = store::by_hash(&ctx.db, &hash_token(token))
        .await?
        .ok_or_else(invalid_refresh)?;
    if row.revoked_at.is_some() {
        return Err(invalid_refresh());
    }
    let first_use = row.rotated_at.is_none() && store::mark_rotated(&ctx.db, &row.id).await?;
    if !first_use {
        // Someone used this token before: it may be stolen. End the whole login.
        store::revoke_family(&ctx.db, &row.family_id).await?;
        audit::record(
            ctx,
            Event {
                organization_id: &row.organization_id,
                actor_type: "user",
                actor_id: Some(&row.user_id),
                action: "auth.refresh_reused",
                target: Some(("user", &row.user_id)),
                success: false,
                details: json!({ "family": row.family_id }),
                ip: None,
            },
        )
        .await;
        return Err(invalid_refresh());
    }
    if row.expires_at <= crate::storage::now() {
        return Err(ServiceError::Unauthenticated(
            "the refresh token has expired; log in again".into(),
        ));
    }
    let user = user_store::get(&ctx.db, &row.organization_id, &row.user_id)
        .await?
        .ok_or_else(invalid_refresh)?;
    start_session(ctx, tenancy, user, Some(row.family_id)).await
}

/// Ends the login the refresh token belongs to. Unknown tokens are ignored.
pub async fn logout(ctx: &Context, token: &str) -> ServiceResult<()> {
    let token = token.to_string();
    ctx.run_to_end(move |ctx| async move { do_logout(&ctx, &token).await })
        .await
}

async fn do_logout(ctx: &Context, token: &str) -> ServiceResult<()> {
    if let Some(row) = store::by_hash(&ctx.db, &hash_token(token)).await? {
        store::revoke_family(&ctx.db, &row.family_id).await?;
        audit::record(
            ctx,
            Event {
                organization_id: &row.organization_id,
                actor_type: "user",
                actor_id: Some(&row.user_id),
                action: "auth.logout",
                target: None,
                success: true,
                details: json!({}),
                ip: None,
            },
        )
        .await;
    }
    Ok(())
}
