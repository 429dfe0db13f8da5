//! Turning a credential (an API key or an access token) into a [`Principal`].
//!
//! API keys are long random secrets, so a SHA-256 hash is enough to keep them and no
//! per-request argon2 is needed. Each node caches what it looked up, with the generation
//! of [`AUTH`] it saw then (`bus::generation`); every change that takes authority away (a
//! key revoked, a user removed or given another role) advances that generation after it is
//! stored, so a revoked key stops working at once on every node, and a generation that
//! cannot be read, or that a reset store made anew, makes the node ask the database.
//! Expiry is checked on every request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::Quota;
use crate::context::Context;
use crate::service::{ServiceError, ServiceResult};
use crate::storage::{api_keys, users};
use crate::tenancy::scopes::{KeyType, Role, ScopeSet};
use crate::tenancy::{Actor, Principal, secrets};

/// The generation that moves whenever authority is taken away from a credential.
pub const AUTH: &str = "auth";
/// How often a key's `last_used_at` is written, at most.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

#[derive(Clone)]
struct CachedKey {
    id: String,
    organization_id: String,
    key_hash: String,
    key_type: KeyType,
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
}

impl KeyCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::default(),
        }
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
pub async fn authority_changed(ctx: &Context) {
    ctx.bus
        .generations
        .advance(AUTH, ctx.config.auth.key_cache_ttl.get())
        .await;
    ctx.tenancy.grants.wake();
}

fn invalid_key() -> ServiceError {
    ServiceError::Unauthenticated("the API key is not valid".into())
}

/// The principal behind a bearer credential.
pub async fn authenticate(ctx: &Context, credential: &str) -> ServiceResult<Principal> {
    match secrets::api_key_lookup(credential) {
        Some(lookup) => authenticate_key(ctx, credential, lookup).await,
        None if credential.starts_with(secrets::API_KEY_PREFIX) => Err(invalid_key()),
        None if credential.split('.').count() != 3 => Err(ServiceError::Unauthenticated(
            "the credentials are neither an API key (dmk_...) nor an access token".into(),
        )),
        None => authenticate_token(ctx, credential).await,
    }
}

async fn authenticate_key(ctx: &Context, key: &str, lookup: &str) -> ServiceResult<Principal> {
    let cache = &ctx.tenancy.keys;
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
    check_key(ctx, key, lookup, cached)
}

/// Checks a key against what is known of it: secret, revocation, expiry.
fn check_key(
    ctx: &Context,
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
    if ctx.tenancy.keys.due_for_touch(lookup) {
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
        },
        scopes: cached.scopes,
        quota: cached.quota,
        expires_at: cached.expires_at,
    })
}

/// Access tokens name a user; the user's current role decides the scopes, so a role change
/// or a removal takes effect at once.
async fn authenticate_token(ctx: &Context, token: &str) -> ServiceResult<Principal> {
    let claims = ctx.tenancy.signer.verify(&ctx.db, token).await?;
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
