//! The caller's own organization: read it, rename it.

use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::context::Context;
use crate::service::{ServiceError, ServiceResult};
use crate::storage::organizations::{self as store, OrganizationRow};
use crate::tenancy::audit::{self, Event};
use crate::tenancy::names::DisplayName;
use crate::tenancy::scopes::Scope;
use crate::tenancy::{Principal, utc};

#[derive(Debug, Serialize, ToSchema)]
pub struct Organization {
    pub id: String,
    pub name: String,
    pub slug: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl From<OrganizationRow> for Organization {
    fn from(r: OrganizationRow) -> Self {
        Self {
            id: r.id,
            name: r.name,
            slug: r.slug,
            created_at: utc(r.created_at),
            updated_at: utc(r.updated_at),
        }
    }
}

pub async fn get(ctx: &Context, principal: &Principal) -> ServiceResult<Organization> {
    principal.require(Scope::OrganizationRead)?;
    store::by_id(&ctx.db, &principal.organization_id)
        .await?
        .map(Organization::from)
        .ok_or(ServiceError::NotFound("organization"))
}

pub async fn rename(
    ctx: &Context,
    principal: &Principal,
    name: &str,
) -> ServiceResult<Organization> {
    principal.require(Scope::OrganizationWrite)?;
    let name = DisplayName::parse("name", name)?;
    let (principal, name) = (principal.clone(), name.as_str().to_string());
    ctx.run_to_end(move |ctx| async move {
        let row = store::rename(&ctx.db, &principal.organization_id, &name)
            .await?
            .ok_or(ServiceError::NotFound("organization"))?;
        audit::record(
            &ctx,
            Event::by(&principal, "organization.updated")
                .target("organization", &row.id)
                .details(json!({ "name": row.name })),
        )
        .await;
        Ok(row.into())
    })
    .await
}
