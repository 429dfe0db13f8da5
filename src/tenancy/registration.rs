//! Registering an organization: the organization, its owner and a first admin key, in one
//! transaction. Used by `POST /api/v1/auth/register/organization` and `devmesh org create`.

use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::context::Context;
use crate::service::{ServiceError, ServiceResult, is_unique_violation};
use crate::storage::organizations::{self as store, OrganizationRow};
use crate::tenancy::api_keys::{self, CreatedKey, NewKey};
use crate::tenancy::audit::{self, Event};
use crate::tenancy::names::{DisplayName, Email, Password, Slug};
use crate::tenancy::organization::Organization;
use crate::tenancy::scopes::{KeyType, Role};
use crate::tenancy::users::{self, User};
use crate::tenancy::{TenancyState, new_id};

pub struct Registration<'a> {
    pub organization_name: &'a str,
    pub organization_slug: &'a str,
    pub admin_email: &'a str,
    pub admin_name: &'a str,
    pub admin_password: &'a str,
}

/// Where a registration comes from: the API obeys `auth.open_registration`, the CLI (run
/// by the operator) does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Api,
    Cli,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Registered {
    pub organization: Organization,
    /// The organization's first user, its owner.
    pub user: User,
    /// A first admin key; its secret is shown only here.
    pub api_key: CreatedKey,
}

pub async fn register(
    ctx: &Context,
    tenancy: &TenancyState,
    reg: Registration<'_>,
    channel: Channel,
) -> ServiceResult<Registered> {
    if channel == Channel::Api && !ctx.config.auth.open_registration {
        return Err(ServiceError::RegistrationClosed);
    }
    let org_name = DisplayName::parse("organization_name", reg.organization_name)?;
    let slug = Slug::parse("organization_slug", reg.organization_slug)?;
    let email = Email::parse("admin_email", reg.admin_email)?;
    let admin_name = DisplayName::parse("admin_name", reg.admin_name)?;
    let password = Password::parse("admin_password", reg.admin_password)?;

    let now = crate::storage::now();
    let org = OrganizationRow {
        id: new_id(),
        name: org_name.as_str().to_string(),
        slug: slug.as_str().to_string(),
        created_at: now,
        updated_at: now,
    };
    let owner = users::build_row(
        tenancy,
        &org.id,
        &email,
        &admin_name,
        Role::Owner,
        &password,
    )
    .await?;
    let (key_row, key) = api_keys::build(
        &org.id,
        Some(&owner.id),
        NewKey {
            name: "first admin key".into(),
            key_type: KeyType::Admin,
            scopes: None,
            expires_at: None,
            rate_limit: None,
            agent_id: None,
        },
    )?;
    let (org, owner, key_row) = ctx
        .run_to_end(move |ctx| async move {
            store::register(&ctx.db, &org, &owner, &key_row)
                .await
                .map_err(|e| {
                    let e = ServiceError::from(e);
                    if is_unique_violation(&e) {
                        ServiceError::Conflict(format!(
                            "the organization slug {:?} is taken",
                            org.slug
                        ))
                    } else {
                        e
                    }
                })?;
            audit::record(
                &ctx,
                Event {
                    organization_id: &org.id,
                    actor_type: "user",
                    actor_id: Some(&owner.id),
                    action: "organization.registered",
                    target: Some(("organization", &org.id)),
                    success: true,
                    details: json!({
                        "slug": org.slug,
                        "channel": match channel { Channel::Api => "api", Channel::Cli => "cli" },
                        "api_key_id": key_row.id,
                    }),
                    ip: None,
                },
            )
            .await;
            Ok((org, owner, key_row))
        })
        .await?;
    Ok(Registered {
        organization: org.into(),
        user: owner.into(),
        api_key: CreatedKey {
            key,
            api_key: key_row.into(),
        },
    })
}
