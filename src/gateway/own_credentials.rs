//! A principal's own credential for a tool (`/tools/{id}/credentials/me`), used instead
//! of the organization's by the tool's `passthrough` mode.

use serde_json::json;

use super::Gateway;
use super::model::{AuthView, OwnCredential, Passthrough};
use super::registry::get_row;
use super::sealed::{own_purpose, owner_of, seal_credential};
use super::stored::settings_of;
use crate::context::Context as Node;
use crate::service::{ServiceError, ServiceResult};
use crate::storage::gateway::{self as store, CredentialRow};
use crate::tenancy::Principal;
use crate::tenancy::audit::{self, Event};
use crate::tenancy::scopes::Scope;

/// Stores the caller's own credential for a tool whose passthrough is not `disabled`.
pub async fn put_own_credential(
    node: &Node,
    gateway: &Gateway,
    principal: &Principal,
    id: &str,
    body: OwnCredential,
) -> ServiceResult<AuthView> {
    principal.require(Scope::ToolsCall)?;
    let org = principal.organization_id.clone();
    let row = get_row(node, principal, id).await?;
    if settings_of(&row).passthrough == Passthrough::Disabled {
        return Err(ServiceError::Unprocessable(
            "this tool uses the organization's credential only (passthrough is disabled)".into(),
        ));
    }
    let owner = owner_of(principal);
    let (kind, sealed) = seal_credential(gateway, &org, &own_purpose(id, &owner), &body.auth)?;
    store::put_credential(
        &node.db,
        &CredentialRow {
            tool_id: id.to_string(),
            organization_id: org,
            owner,
            auth_kind: kind.clone(),
            auth_sealed: sealed,
            updated_at: crate::storage::now(),
        },
    )
    .await
    .map_err(ServiceError::Storage)?;
    audit::record(
        node,
        Event::by(principal, "tool.credential_stored")
            .target("tool", id)
            .details(json!({ "auth": kind })),
    )
    .await;
    Ok(AuthView {
        kind: Some(kind),
        has_credential: true,
    })
}

/// The kind of the caller's own credential for a tool, if they stored one.
pub async fn own_credential(
    node: &Node,
    principal: &Principal,
    id: &str,
) -> ServiceResult<AuthView> {
    principal.require(Scope::ToolsCall)?;
    get_row(node, principal, id).await?;
    let row = store::credential(
        &node.db,
        &principal.organization_id,
        id,
        &owner_of(principal),
    )
    .await
    .map_err(ServiceError::Storage)?;
    Ok(AuthView {
        has_credential: row.is_some(),
        kind: row.map(|r| r.auth_kind),
    })
}

pub async fn delete_own_credential(
    node: &Node,
    principal: &Principal,
    id: &str,
) -> ServiceResult<()> {
    principal.require(Scope::ToolsCall)?;
    get_row(node, principal, id).await?;
    if !store::delete_credential(
        &node.db,
        &principal.organization_id,
        id,
        &owner_of(principal),
    )
    .await
    .map_err(ServiceError::Storage)?
    {
        return Err(ServiceError::NotFound("credential"));
    }
    audit::record(
        node,
        Event::by(principal, "tool.credential_removed").target("tool", id),
    )
    .await;
    Ok(())
}
