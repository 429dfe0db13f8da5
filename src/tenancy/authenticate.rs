//! Turning a credential (an API key or an access token) into a [`Principal`].
//!
//! API keys are long random secrets, so a SHA-256 hash is enough to keep them and no
//! per-request argon2 is needed. Each node caches what it looked up, with the generation
//! of [`AUTH`] it saw then (`bus::generation`); every change that takes authority away (a
//! key revoked, a user removed or given another role) advances that generation after it is
//! stored, so a revoked key stops working at once on every node, and a generation that
//! cannot be read, or that a reset store made anew, makes the node ask the database.
//! Expiry is checked on every request.
//!
//! The bus's generation is fast but not the truth: a Redis restored from a snapshot, or a
//! replica promoted while behind, can bring back a value a node has seen. So each change
//! also writes a fresh value to the database ([`AUTH_SETTING`]), and every node reads it
//! once per `auth.recheck_interval` ([`check_database_generation`]); when it moved, the
//! node forgets every cached key and re-checks its open connections. Whatever the bus
//! does, a revoked key works nowhere for longer than that interval.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::Quota;
use crate::context::Context;
use crate::service::{ServiceError, ServiceResult};
use crate::storage::{api_keys, users};
use crate::tenancy::scopes::{KeyType, Role, ScopeSet};
use crate::tenancy::{Actor, Principal, TenancyState, secrets};

/// The generation that moves whenever authority is taken away from a credential.
pub const AUTH: &str = "auth";
/// The `settings` row holding the database's copy of the [`AUTH`] generation.
pub const AUTH_SETTING: &str = "generation:auth";
/// How often a key's `last_used_at` is written, at most.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

#[derive(Clone)]
struct CachedKey {
    id: String,
    organization_id: String,
    key_hash: String,
    key_type: KeyType,
    agent_id: Option<String>,
    scopes: ScopeSet,
    quota: Option<Quota>,
    expires_at: Option<chrono::NaiveDateTime>,
    revoked: bool,
    generation: Option<Arc<str>>,
    fetched: Instant,
    touched: Option<Instant>,
}

pub struct KeyCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, CachedKey>>,
    /// The database's [`AUTH_SETTING`] as this node last read it.
    truth: Mutex<Option<String>>,
}

impl KeyCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::default(),
            truth: Mutex::default(),
        }
    }

    /// Notes the database's generation; when it differs from the one read before, every
    /// cached key is forgotten and `true` returned.
    fn observe_truth(&self, value: Option<String>) -> bool {
        let mut truth = self.truth.lock().unwrap_or_else(|p| p.into_inner());
        if *truth == value {
            return false;
        }
        let first = truth.is_none();
        *truth = value;
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        !first
    }

    /// A cached key, if it was looked up under the current generation and not too long ago.
    fn lookup(&self, lookup: &str, generation: &Option<Arc<str>>) -> Option<CachedKey> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(lookup)
            .filter(|k| {
                generation.is_some()
                    && &k.generation == generation
                    && k.fetched.elapsed() < self.ttl
            })
            .cloned()
    }

    fn store(&self, lookup: &str, key: CachedKey) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() > 100_000 {
            entries.clear();
        }
        entries.insert(lookup.to_string(), key);
    }

    /// Whether this key's last use should be written now (and notes that it is).
    fn due_for_touch(&self, lookup: &str) -> bool {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        match entries.get_mut(lookup) {
            Some(k) if k.touched.is_none_or(|t| t.elapsed() >= TOUCH_EVERY) => {
                k.touched = Some(Instant::now());
                true
            }
            _ => false,
        }
    }
}

/// Tells every node that authority was taken away (a key revoked, a user removed or
/// demoted): call it after the change is stored.
pub async fn authority_changed(ctx: &Context, tenancy: &TenancyState) {
    let fresh = format!("{:032x}", rand::random::<u128>());
    if let Err(e) = crate::storage::settings::set(&ctx.db, AUTH_SETTING, &fresh).await {
        tracing::warn!(error = %e, "cannot store the auth generation; other nodes rely on the bus's alone");
    }
    tenancy.keys.observe_truth(Some(fresh));
    ctx.bus
        .generations
        .advance(AUTH, ctx.config.auth.key_cache_ttl.get())
        .await;
    tenancy.grants.wake();
}

/// Reads the database's [`AUTH`] generation; `true` when it moved since the last read
/// (this node's cached keys are then forgotten). A database that cannot be read changes
/// nothing: the bus's generation and the cache's time limit still hold.
pub async fn check_database_generation(ctx: &Context, tenancy: &TenancyState) -> bool {
    match crate::storage::settings::get(&ctx.db, AUTH_SETTING).await {
        Ok(value) => tenancy.keys.observe_truth(value),
        Err(e) => {
            tracing::debug!(error = %e, "cannot read the auth generation from the database");
            false
        }
    }
}

fn invalid_key() -> ServiceError {
    ServiceError::Unauthenticated("the API key is not valid".into())
}

/// The principal behind a bearer credential.
pub async fn authenticate(
    ctx: &Context,
    tenancy: &TenancyState,
    credential: &str,
) -> ServiceResult<Principal> {
    match secrets::api_key_lookup(credential) {
        Some(lookup) => authenticate_key(ctx, tenancy, credential, lookup).await,
        None if credential.starts_with(secrets::API_KEY_PREFIX) => Err(invalid_key()),
        None if credential.split('.').count() != 3 => Err(ServiceError::Unauthenticated(
            "the credentials are neither an API key (dmk_...) nor an access token".into(),
        )),
        None => authenticate_token(ctx, tenancy, credential).await,
    }
}

async fn authenticate_key(
    ctx: &Context,
    tenancy: &TenancyState,
    key: &str,
    lookup: &str,
) -> ServiceResult<Principal> {
    let cache = &tenancy.keys;
    let generation = ctx.bus.generations.current(AUTH).await;
    let cached = match cache.lookup(lookup, &generation) {
        Some(k) => k,
        None => {
            let Some(row) = api_keys::by_prefix(&ctx.db, lookup).await? else {
                return Err(invalid_key());
            };
            let quota = match (row.rate_per_minute, row.rate_burst) {
                (Some(per_minute), burst) => Some(Quota {
                    per_minute: per_minute.max(1) as u32,
                    burst: burst.unwrap_or(per_minute).max(1) as u32,
                }),
                _ => None,
            };
            let entry = CachedKey {
                id: row.id,
                organization_id: row.organization_id,
                key_hash: row.key_hash,
                key_type: KeyType::from_stored(&row.key_type).unwrap_or(KeyType::User),
                agent_id: row.agent_id,
                scopes: ScopeSet::from_stored(&row.scopes),
                quota,
                expires_at: row.expires_at,
                revoked: row.revoked_at.is_some(),
                generation,
                fetched: Instant::now(),
                touched: None,
            };
            cache.store(lookup, entry.clone());
            entry
        }
    };
    check_key(ctx, tenancy, key, lookup, cached)
}

/// Checks a key against what is known of it: secret, revocation, expiry.
fn check_key(
    ctx: &Context,
    tenancy: &TenancyState,
    key: &str,
    lookup: &str,
    cached: CachedKey,
) -> ServiceResult<Principal> {
    if !secrets::token_matches(key, &cached.key_hash) || cached.revoked {
        return Err(invalid_key());
    }
    if cached
        .expires_at
        .is_some_and(|at| at <= crate::storage::now())
    {
        return Err(ServiceError::Unauthenticated(
            "the API key has expired".into(),
        ));
    }
    if tenancy.keys.due_for_touch(lookup) {
        let (db, id) = (ctx.db.clone(), cached.id.clone());
        // On the node's runtime: the write must not be tied to this request's worker.
        ctx.runtime.spawn(async move {
            if let Err(e) = api_keys::touch(&db, &id, crate::storage::now()).await {
                tracing::debug!(error = %e, "cannot record a key's last use");
            }
        });
    }
    Ok(Principal {
        organization_id: cached.organization_id,
        actor: Actor::ApiKey {
            id: cached.id,
            key_type: cached.key_type,
            agent_id: cached.agent_id,
        },
        scopes: cached.scopes,
        quota: cached.quota,
        expires_at: cached.expires_at,
    })
}

/// Access tokens name a user; the user's current role decides the scopes, so a role change
/// or a removal takes effect at once.
async fn authenticate_token(
    ctx: &Context,
    tenancy: &TenancyState,
    token: &str,
) -> ServiceResult<Principal> {
    let claims = tenancy.signer.verify(&ctx.db, token).await?;
    let user = users::get(&ctx.db, &claims.org, &claims.sub)
        .await?
        .ok_or_else(|| {
            ServiceError::Unauthenticated("the access token's user no longer exists".into())
        })?;
    let role = Role::from_stored(&user.role).unwrap_or(Role::Viewer);
    Ok(Principal {
        organization_id: user.organization_id,
        actor: Actor::User { id: user.id, role },
        scopes: role.scopes(),
        quota: None,
        expires_at: chrono::DateTime::from_timestamp(claims.exp, 0).map(|t| t.naive_utc()),
    })
}
