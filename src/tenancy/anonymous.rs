//! The principal of requests without credentials, where the operator allowed them
//! (`mcp.anonymous_tenant`): a member of one organization, made if it does not exist.

use tokio::sync::OnceCell;

use crate::context::Context;
use crate::service::{ServiceError, ServiceResult, is_unique_violation};
use crate::storage::organizations::{self as store, OrganizationRow};
use crate::tenancy::names::Slug;
use crate::tenancy::new_id;
use crate::tenancy::principal::{Actor, Principal};
use crate::tenancy::scopes::{KeyType, Role};

/// The actor id that anonymous requests are recorded under.
pub const ANONYMOUS: &str = "anonymous";

/// The anonymous principal, resolved once per node.
#[derive(Default)]
pub struct AnonymousTenant {
    principal: OnceCell<Principal>,
}

impl AnonymousTenant {
    pub async fn principal(&self, ctx: &Context, slug: &str) -> ServiceResult<Principal> {
        self.principal
            .get_or_try_init(|| resolve(ctx, slug))
            .await
            .cloned()
    }
}

async fn resolve(ctx: &Context, slug: &str) -> ServiceResult<Principal> {
    let slug = Slug::parse("mcp.anonymous_tenant", slug)?;
    let organization = match store::by_slug(&ctx.db, slug.as_str()).await? {
        Some(org) => org,
        None => {
            let now = crate::storage::now();
            let org = OrganizationRow {
                id: new_id(),
                name: slug.as_str().to_string(),
                slug: slug.as_str().to_string(),
                created_at: now,
                updated_at: now,
            };
            match store::insert(&ctx.db, &org)
                .await
                .map_err(ServiceError::from)
            {
                Ok(()) => {
                    tracing::info!(slug = %org.slug, "created the organization of anonymous MCP requests");
                    org
                }
                // Another node made it meanwhile.
                Err(e) if is_unique_violation(&e) => store::by_slug(&ctx.db, slug.as_str())
                    .await?
                    .expect("a slug that collided exists"),
                Err(e) => return Err(e),
            }
        }
    };
    Ok(Principal {
        organization_id: organization.id,
        actor: Actor::ApiKey {
            id: ANONYMOUS.to_string(),
            key_type: KeyType::Agent,
            agent_id: None,
        },
        scopes: Role::Member.scopes(),
        quota: None,
        expires_at: None,
    })
}
