//! API keys: created with a type, scopes, an optional expiry and rate limit; shown once;
//! listed without their secret; revoked at once on every node.

use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use std::sync::Arc;

use crate::context::Context;
use crate::service::{Page, PageRequest, ServiceError, ServiceResult};
use crate::storage::api_keys::{self as store, ApiKeyRow};
use crate::tenancy::audit::{self, Event};
use crate::tenancy::authenticate::authority_changed;
use crate::tenancy::names::DisplayName;
use crate::tenancy::scopes::{KeyType, Scope, ScopeSet};
use crate::tenancy::secrets::{API_KEY_PREFIX, NewApiKey, hash_token};
use crate::tenancy::{Principal, TenancyState, new_id, utc};

/// A key's own rate limit, instead of the configured default.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Requests per minute (the bucket's refill rate), 1 to 1000000.
    #[schema(minimum = 1, maximum = 1000000)]
    pub per_minute: u32,
    /// Requests that may come at once (the bucket's size); three times `per_minute` if
    /// not given.
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 4294967295u32)]
    pub burst: Option<u32>,
}

/// An API key as listed: never its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyInfo {
    pub id: String,
    pub name: String,
    pub key_type: KeyType,
    /// The key's public start, to recognize it (`dmk_<lookup>`).
    pub prefix: String,
    pub scopes: Vec<Scope>,
    pub rate_limit: Option<RateLimit>,
    /// The agent a key of type `agent` acts as.
    pub agent_id: Option<String>,
    /// The user or key that created it.
    pub created_by: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub last_used_at: Option<chrono::DateTime<chrono::Utc>>,
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
    pub revoked_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl From<ApiKeyRow> for ApiKeyInfo {
    fn from(r: ApiKeyRow) -> Self {
        Self {
            id: r.id,
            name: r.name,
            key_type: KeyType::from_stored(&r.key_type).unwrap_or(KeyType::User),
            prefix: format!("{API_KEY_PREFIX}{}", r.prefix),
            scopes: ScopeSet::from_stored(&r.scopes).to_vec(),
            rate_limit: r.rate_per_minute.map(|per_minute| RateLimit {
                per_minute: per_minute as u32,
                burst: r.rate_burst.map(|b| b as u32),
            }),
            agent_id: r.agent_id,
            created_by: r.created_by,
            created_at: utc(r.created_at),
            last_used_at: r.last_used_at.map(utc),
            expires_at: r.expires_at.map(utc),
            revoked_at: r.revoked_at.map(utc),
        }
    }
}

/// A key just made: the only time its secret is shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedKey {
    /// The key itself. Store it now: it cannot be shown again.
    pub key: String,
    pub api_key: ApiKeyInfo,
}

pub struct NewKey {
    pub name: String,
    pub key_type: KeyType,
    pub scopes: Option<Vec<Scope>>,
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
    pub rate_limit: Option<RateLimit>,
    /// The agent the key acts as; only for keys of type `agent`, and the caller has
    /// checked that the agent exists in the organization.
    pub agent_id: Option<String>,
}

/// Checks a new key's settings and makes its row and secret; nothing is stored yet.
pub fn build(
    organization_id: &str,
    created_by: Option<&str>,
    new: NewKey,
) -> ServiceResult<(ApiKeyRow, String)> {
    let name = DisplayName::parse("name", &new.name)?;
    let scopes = match new.scopes {
        Some(s) => ScopeSet::of(&s),
        None => new.key_type.default_scopes(),
    };
    if let Some(s) = scopes.iter().find(|s| !new.key_type.allows(*s)) {
        return Err(ServiceError::invalid(
            "scopes",
            format!(
                "a {} key cannot hold {s}: only admin keys hold admin scopes",
                new.key_type
            ),
        ));
    }
    if new.agent_id.is_some() && new.key_type != KeyType::Agent {
        return Err(ServiceError::invalid(
            "agent_id",
            format!(
                "only a key of type agent acts as an agent (this one is of type {})",
                new.key_type
            ),
        ));
    }
    let now = crate::storage::now();
    let expires_at = new.expires_at.map(|t| t.naive_utc());
    if expires_at.is_some_and(|t| t <= now) {
        return Err(ServiceError::invalid("expires_at", "must be in the future"));
    }
    if let Some(r) = new.rate_limit
        && (r.per_minute == 0 || r.burst == Some(0) || r.per_minute > 1_000_000)
    {
        return Err(ServiceError::invalid(
            "rate_limit",
            "per_minute must be from 1 to 1000000 and burst at least 1",
        ));
    }
    let secret = NewApiKey::generate();
    let row = ApiKeyRow {
        id: new_id(),
        organization_id: organization_id.to_string(),
        created_by: created_by.map(str::to_string),
        name: name.as_str().to_string(),
        key_type: new.key_type.as_str().to_string(),
        prefix: secret.lookup.clone(),
        key_hash: hash_token(&secret.key),
        scopes: scopes.to_stored(),
        rate_per_minute: new.rate_limit.map(|r| r.per_minute as i32),
        rate_burst: new.rate_limit.map(|r| {
            r.burst
                .unwrap_or(r.per_minute.saturating_mul(3))
                .min(i32::MAX as u32) as i32
        }),
        expires_at,
        revoked_at: None,
        last_used_at: None,
        created_at: now,
        agent_id: new.agent_id,
    };
    Ok((row, secret.key))
}

pub async fn create(
    ctx: &Context,
    principal: &Principal,
    new: NewKey,
) -> ServiceResult<CreatedKey> {
    principal.require(Scope::ApiKeysWrite)?;
    let (row, key) = build(&principal.organization_id, Some(principal.actor_id()), new)?;
    let beyond = ScopeSet::from_stored(&row.scopes).missing_from(&principal.scopes);
    if !beyond.is_empty() {
        let names: Vec<_> = beyond.iter().map(|s| s.as_str()).collect();
        return Err(ServiceError::Forbidden(format!(
            "a key cannot be given scopes its creator does not hold: {}",
            names.join(", ")
        )));
    }
    let principal = principal.clone();
    let row = ctx
        .run_to_end(move |ctx| async move {
            store::insert(&ctx.db, &row).await?;
            audit::record(
                &ctx,
                Event::by(&principal, "api_key.created")
                    .target("api_key", &row.id)
                    .details(
                        json!({ "name": row.name, "key_type": row.key_type, "scopes": row.scopes }),
                    ),
            )
            .await;
            Ok(row)
        })
        .await?;
    Ok(CreatedKey {
        key,
        api_key: row.into(),
    })
}

pub async fn list(
    ctx: &Context,
    principal: &Principal,
    page: PageRequest,
) -> ServiceResult<Page<ApiKeyInfo>> {
    principal.require(Scope::ApiKeysRead)?;
    let rows = store::list(
        &ctx.db,
        &principal.organization_id,
        page.after.as_deref(),
        page.fetch(),
    )
    .await?;
    Ok(page.page(rows, |r| &r.id, ApiKeyInfo::from))
}

pub async fn get(ctx: &Context, principal: &Principal, id: &str) -> ServiceResult<ApiKeyInfo> {
    principal.require(Scope::ApiKeysRead)?;
    store::get(&ctx.db, &principal.organization_id, id)
        .await?
        .map(ApiKeyInfo::from)
        .ok_or(ServiceError::NotFound("API key"))
}

/// Revokes the keys bound to an agent that is gone, at once on every node.
pub async fn revoke_bound_to(
    ctx: &Context,
    tenancy: &TenancyState,
    organization_id: &str,
    agent_id: &str,
) -> ServiceResult<usize> {
    let n = store::revoke_bound_to(&ctx.db, organization_id, agent_id).await?;
    if n > 0 {
        authority_changed(ctx, tenancy).await;
    }
    Ok(n)
}

pub async fn revoke(
    ctx: &Context,
    tenancy: &Arc<TenancyState>,
    principal: &Principal,
    id: &str,
) -> ServiceResult<ApiKeyInfo> {
    principal.require(Scope::ApiKeysWrite)?;
    let (tenancy, principal, id) = (tenancy.clone(), principal.clone(), id.to_string());
    ctx.run_to_end(move |ctx| async move {
        let row = store::revoke(&ctx.db, &principal.organization_id, &id)
            .await?
            .ok_or(ServiceError::NotFound("API key"))?;
        authority_changed(&ctx, &tenancy).await;
        audit::record(
            &ctx,
            Event::by(&principal, "api_key.revoked")
                .target("api_key", &id)
                .details(json!({ "name": row.name })),
        )
        .await;
        Ok(row.into())
    })
    .await
}
