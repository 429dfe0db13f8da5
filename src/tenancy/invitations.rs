//! Inviting people: an admin invites an email with a role and hands the one-time token to
//! the person (devmesh sends no mail); they accept it with their name and a password,
//! which creates their account and signs them in.

use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use std::sync::Arc;

use crate::context::Context;
use crate::service::{Page, PageRequest, ServiceError, ServiceResult, is_unique_violation};
use crate::storage::invitations::{self as store, InvitationRow};
use crate::storage::users as user_store;
use crate::tenancy::audit::{self, Event};
use crate::tenancy::names::{DisplayName, Email, Password};
use crate::tenancy::scopes::{Role, Scope};
use crate::tenancy::secrets::{INVITATION_TOKEN_PREFIX, generate_token, hash_token};
use crate::tenancy::sessions::{self, Tokens};
use crate::tenancy::{Actor, Principal, TenancyState, new_id, users, utc};

#[derive(Debug, Serialize, ToSchema)]
pub struct Invitation {
    pub id: String,
    pub email: String,
    pub role: Role,
    /// The user or key that invited.
    pub invited_by: String,
    pub expires_at: chrono::DateTime<chrono::Utc>,
    pub accepted_at: Option<chrono::DateTime<chrono::Utc>>,
    pub revoked_at: Option<chrono::DateTime<chrono::Utc>>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

impl From<InvitationRow> for Invitation {
    fn from(r: InvitationRow) -> Self {
        Self {
            id: r.id,
            email: r.email,
            role: Role::from_stored(&r.role).unwrap_or(Role::Viewer),
            invited_by: r.invited_by,
            expires_at: utc(r.expires_at),
            accepted_at: r.accepted_at.map(utc),
            revoked_at: r.revoked_at.map(utc),
            created_at: utc(r.created_at),
        }
    }
}

/// An invitation just made: the only time its token is shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedInvitation {
    /// Give this to the person invited; they accept at `/api/v1/auth/accept-invitation`.
    pub token: String,
    pub invitation: Invitation,
}

pub async fn invite(
    ctx: &Context,
    principal: &Principal,
    email: &str,
    role: Role,
) -> ServiceResult<CreatedInvitation> {
    principal.require(Scope::UsersWrite)?;
    let email = Email::parse("email", email)?;
    if role == Role::Owner
        && !matches!(
            principal.actor,
            Actor::User {
                role: Role::Owner,
                ..
            }
        )
    {
        return Err(ServiceError::Forbidden(
            "only an owner can invite an owner".into(),
        ));
    }
    if user_store::by_email(&ctx.db, &principal.organization_id, email.as_str())
        .await?
        .is_some()
    {
        return Err(ServiceError::Conflict(format!(
            "{} is already a user of this organization",
            email.as_str()
        )));
    }
    let token = generate_token(INVITATION_TOKEN_PREFIX);
    let now = crate::storage::now();
    let ttl = chrono::Duration::from_std(ctx.config.auth.invitation_ttl.get())
        .unwrap_or(chrono::Duration::days(7));
    let row = InvitationRow {
        id: new_id(),
        organization_id: principal.organization_id.clone(),
        email: email.as_str().to_string(),
        role: role.as_str().to_string(),
        token_hash: hash_token(&token),
        invited_by: principal.actor_id().to_string(),
        expires_at: now + ttl,
        accepted_at: None,
        revoked_at: None,
        created_at: now,
    };
    let principal = principal.clone();
    let row = ctx
        .run_to_end(move |ctx| async move {
            store::insert(&ctx.db, &row).await?;
            audit::record(
                &ctx,
                Event::by(&principal, "user.invited")
                    .target("invitation", &row.id)
                    .details(json!({ "email": row.email, "role": row.role })),
            )
            .await;
            Ok(row)
        })
        .await?;
    Ok(CreatedInvitation {
        token,
        invitation: row.into(),
    })
}

pub async fn list(
    ctx: &Context,
    principal: &Principal,
    page: PageRequest,
) -> ServiceResult<Page<Invitation>> {
    principal.require(Scope::UsersRead)?;
    let rows = store::list(
        &ctx.db,
        &principal.organization_id,
        page.after.as_deref(),
        page.fetch(),
    )
    .await?;
    Ok(page.page(rows, |r| &r.id, Invitation::from))
}

pub async fn revoke(ctx: &Context, principal: &Principal, id: &str) -> ServiceResult<Invitation> {
    principal.require(Scope::UsersWrite)?;
    let (principal, id) = (principal.clone(), id.to_string());
    ctx.run_to_end(move |ctx| async move {
        let row = store::revoke(&ctx.db, &principal.organization_id, &id)
            .await?
            .ok_or(ServiceError::NotFound("invitation"))?;
        audit::record(
            &ctx,
            Event::by(&principal, "user.invitation_revoked").target("invitation", &id),
        )
        .await;
        Ok(row.into())
    })
    .await
}

fn invalid_invitation() -> ServiceError {
    ServiceError::Unauthenticated(
        "the invitation is not valid: unknown, used, revoked or expired".into(),
    )
}

/// Accepts an invitation: creates the user and signs them in.
pub async fn accept(
    ctx: &Context,
    tenancy: &Arc<TenancyState>,
    token: &str,
    name: &str,
    password: &str,
) -> ServiceResult<Tokens> {
    let name = DisplayName::parse("name", name)?;
    let password = Password::parse("password", password)?;
    let invitation = store::by_hash(&ctx.db, &hash_token(token))
        .await?
        .ok_or_else(invalid_invitation)?;
    let open = invitation.accepted_at.is_none()
        && invitation.revoked_at.is_none()
        && invitation.expires_at > crate::storage::now();
    if !open {
        return Err(invalid_invitation());
    }
    let email = Email::parse("email", &invitation.email)?;
    let role = Role::from_stored(&invitation.role).unwrap_or(Role::Viewer);
    let user = users::build_row(
        tenancy,
        &invitation.organization_id,
        &email,
        &name,
        role,
        &password,
    )
    .await?;
    // The account, its audit entry and the first login go together.
    let tenancy = tenancy.clone();
    ctx.run_to_end(move |ctx| async move {
        let accepted = store::accept(&ctx.db, &invitation.id, &user)
            .await
            .map_err(|e| {
                let e = ServiceError::from(e);
                if is_unique_violation(&e) {
                    ServiceError::Conflict(format!(
                        "{} is already a user of this organization",
                        user.email
                    ))
                } else {
                    e
                }
            })?;
        if !accepted {
            return Err(invalid_invitation());
        }
        audit::record(
            &ctx,
            Event {
                organization_id: &invitation.organization_id,
                actor_type: "user",
                actor_id: Some(&user.id),
                action: "user.invitation_accepted",
                target: Some(("invitation", &invitation.id)),
                success: true,
                details: json!({ "email": user.email, "role": user.role }),
                ip: None,
            },
        )
        .await;
        sessions::start_session(&ctx, &tenancy, user, None).await
    })
    .await
}
