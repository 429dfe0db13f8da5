//! Users within an organization: create, list, change role, remove, change one's own
//! password. Only an owner may make or unmake an owner, and the last owner stays.

use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use std::sync::Arc;

use crate::context::Context;
use crate::service::{Page, PageRequest, ServiceError, ServiceResult, is_unique_violation};
use crate::storage::refresh_tokens;
use crate::storage::users::{self as store, UserRow};
use crate::tenancy::audit::{self, Event};
use crate::tenancy::authenticate::authority_changed;
use crate::tenancy::names::{DisplayName, Email, Password};
use crate::tenancy::scopes::{Role, Scope};
use crate::tenancy::{Actor, Principal, TenancyState, new_id, utc};

#[derive(Debug, Serialize, ToSchema)]
pub struct User {
    pub id: String,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl From<UserRow> for User {
    fn from(r: UserRow) -> Self {
        Self {
            id: r.id,
            email: r.email,
            name: r.name,
            role: Role::from_stored(&r.role).unwrap_or(Role::Viewer),
            created_at: utc(r.created_at),
            updated_at: utc(r.updated_at),
        }
    }
}

pub struct NewUser<'a> {
    pub email: &'a str,
    pub name: &'a str,
    pub role: Role,
    pub password: &'a str,
}

/// A user row with a hashed password, not yet stored.
pub async fn build_row(
    tenancy: &TenancyState,
    organization_id: &str,
    email: &Email,
    name: &DisplayName,
    role: Role,
    password: &Password,
) -> ServiceResult<UserRow> {
    let hash = tenancy
        .passwords
        .hash(password.expose())
        .await
        .map_err(ServiceError::Internal)?;
    let now = crate::storage::now();
    Ok(UserRow {
        id: new_id(),
        organization_id: organization_id.to_string(),
        email: email.as_str().to_string(),
        name: name.as_str().to_string(),
        password_hash: hash,
        role: role.as_str().to_string(),
        created_at: now,
        updated_at: now,
    })
}

fn is_owner(principal: &Principal) -> bool {
    matches!(
        principal.actor,
        Actor::User {
            role: Role::Owner,
            ..
        }
    )
}

fn owners_only() -> ServiceError {
    ServiceError::Forbidden("only an owner can grant, change or remove the owner role".into())
}

pub async fn create(
    ctx: &Context,
    tenancy: &TenancyState,
    principal: &Principal,
    new: NewUser<'_>,
) -> ServiceResult<User> {
    principal.require(Scope::UsersWrite)?;
    let email = Email::parse("email", new.email)?;
    let name = DisplayName::parse("name", new.name)?;
    let password = Password::parse("password", new.password)?;
    if new.role == Role::Owner && !is_owner(principal) {
        return Err(owners_only());
    }
    let org = &principal.organization_id;
    let row = build_row(tenancy, org, &email, &name, new.role, &password).await?;
    let principal = principal.clone();
    ctx.run_to_end(move |ctx| async move {
        store::insert(&ctx.db, &row).await.map_err(|e| {
            let e = ServiceError::from(e);
            if is_unique_violation(&e) {
                ServiceError::Conflict(format!(
                    "a user with the email {} already exists in this organization",
                    row.email
                ))
            } else {
                e
            }
        })?;
        audit::record(
            &ctx,
            Event::by(&principal, "user.created")
                .target("user", &row.id)
                .details(json!({ "email": row.email, "role": row.role })),
        )
        .await;
        Ok(row.into())
    })
    .await
}

pub async fn list(
    ctx: &Context,
    principal: &Principal,
    page: PageRequest,
) -> ServiceResult<Page<User>> {
    principal.require(Scope::UsersRead)?;
    let rows = store::list(
        &ctx.db,
        &principal.organization_id,
        page.after.as_deref(),
        page.fetch(),
    )
    .await?;
    Ok(page.page(rows, |r| &r.id, User::from))
}

async fn find(ctx: &Context, principal: &Principal, id: &str) -> ServiceResult<UserRow> {
    store::get(&ctx.db, &principal.organization_id, id)
        .await?
        .ok_or(ServiceError::NotFound("user"))
}

pub async fn get(ctx: &Context, principal: &Principal, id: &str) -> ServiceResult<User> {
    principal.require(Scope::UsersRead)?;
    find(ctx, principal, id).await.map(User::from)
}

/// Refuses to leave the organization without an owner.
async fn keep_an_owner(
    ctx: &Context,
    principal: &Principal,
    target: &UserRow,
) -> ServiceResult<()> {
    if target.role == Role::Owner.as_str()
        && store::count_with_role(&ctx.db, &principal.organization_id, Role::Owner.as_str()).await?
            <= 1
    {
        return Err(ServiceError::Conflict(
            "this is the organization's last owner; make someone else owner first".into(),
        ));
    }
    Ok(())
}

pub async fn change_role(
    ctx: &Context,
    tenancy: &Arc<TenancyState>,
    principal: &Principal,
    id: &str,
    role: Role,
) -> ServiceResult<User> {
    principal.require(Scope::UsersWrite)?;
    let target = find(ctx, principal, id).await?;
    let from = target.role.clone();
    if (role == Role::Owner || from == Role::Owner.as_str()) && !is_owner(principal) {
        return Err(owners_only());
    }
    if role != Role::Owner {
        keep_an_owner(ctx, principal, &target).await?;
    }
    let (tenancy, principal, id) = (tenancy.clone(), principal.clone(), id.to_string());
    ctx.run_to_end(move |ctx| async move {
        let updated = store::set_role(&ctx.db, &principal.organization_id, &id, role.as_str())
            .await?
            .ok_or(ServiceError::NotFound("user"))?;
        authority_changed(&ctx, &tenancy).await;
        audit::record(
            &ctx,
            Event::by(&principal, "user.role_changed")
                .target("user", &id)
                .details(json!({ "from": from, "to": role.as_str() })),
        )
        .await;
        Ok(updated.into())
    })
    .await
}

pub async fn remove(
    ctx: &Context,
    tenancy: &Arc<TenancyState>,
    principal: &Principal,
    id: &str,
) -> ServiceResult<()> {
    principal.require(Scope::UsersWrite)?;
    let target = find(ctx, principal, id).await?;
    if target.role == Role::Owner.as_str() && !is_owner(principal) {
        return Err(owners_only());
    }
    keep_an_owner(ctx, principal, &target).await?;
    let (tenancy, principal) = (tenancy.clone(), principal.clone());
    ctx.run_to_end(move |ctx| async move {
        if !store::delete(&ctx.db, &principal.organization_id, &target.id).await? {
            return Err(ServiceError::NotFound("user"));
        }
        authority_changed(&ctx, &tenancy).await;
        audit::record(
            &ctx,
            Event::by(&principal, "user.removed")
                .target("user", &target.id)
                .details(json!({ "email": target.email })),
        )
        .await;
        Ok(())
    })
    .await
}

/// The signed-in user changes their own password; their other sessions end.
pub async fn change_password(
    ctx: &Context,
    tenancy: &TenancyState,
    principal: &Principal,
    current: &str,
    new: &str,
) -> ServiceResult<()> {
    let (user_id, _) = principal.user()?;
    let new = Password::parse("new_password", new)?;
    let user = find(ctx, principal, user_id).await?;
    if !tenancy
        .passwords
        .verify(current, Some(&user.password_hash))
        .await
    {
        return Err(ServiceError::invalid(
            "current_password",
            "is not your current password",
        ));
    }
    let hash = tenancy
        .passwords
        .hash(new.expose())
        .await
        .map_err(ServiceError::Internal)?;
    let (principal, user_id) = (principal.clone(), user_id.to_string());
    ctx.run_to_end(move |ctx| async move {
        store::set_password(&ctx.db, &principal.organization_id, &user_id, &hash).await?;
        refresh_tokens::revoke_user(&ctx.db, &user_id).await?;
        audit::record(
            &ctx,
            Event::by(&principal, "user.password_changed").target("user", &user_id),
        )
        .await;
        Ok(())
    })
    .await
}
