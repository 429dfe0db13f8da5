//! Turning a credential (an API key or an access token) into a [`Principal`].
//!
//! API keys are long random secrets, so a SHA-256 hash is enough to keep them and no
//! per-request argon2 is needed. Each node caches what it looked up; a revocation bumps a
//! counter that every check reads, so a revoked key stops working at once everywhere.
//! The counter lives where the nodes of a shape meet: in Redis when the bus is
//! distributed, else in a file in the data directory next to the SQLite database.
//! Expiry is checked on every request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::Quota;
use crate::context::Context;
use crate::service::{ServiceError, ServiceResult};
use crate::storage::{api_keys, users};
use crate::tenancy::scopes::{KeyType, Role, ScopeSet};
use crate::tenancy::{Actor, Principal, secrets};

/// The bus counter that changes whenever a key is revoked.
pub const KEYS_EPOCH: &str = "auth:keys_epoch";
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
    epoch: Option<String>,
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

    fn lookup(&self, lookup: &str, epoch: &Option<String>) -> Option<CachedKey> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(lookup)
            .filter(|k| epoch.is_some() && &k.epoch == epoch && k.fetched.elapsed() < self.ttl)
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

/// The file that holds the revocation counter when the bus is not distributed.
fn epoch_file(ctx: &Context) -> std::path::PathBuf {
    ctx.config.data_dir.join("auth-keys.epoch")
}

/// The revocation counter; `None` when it cannot be read (then nothing cached is trusted).
async fn current_epoch(ctx: &Context) -> Option<String> {
    if ctx.bus.is_distributed() {
        match ctx.bus.cache.get(KEYS_EPOCH).await {
            Ok(v) => Some(v.unwrap_or_else(|| "0".into())),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the key revocation counter; checking keys in the database");
                None
            }
        }
    } else {
        // Each bump replaces the file (a rename), so its inode and time name the epoch:
        // one stat per request instead of opening and reading it.
        use std::os::unix::fs::MetadataExt;
        match std::fs::metadata(epoch_file(ctx)) {
            Ok(m) => Some(format!("{}.{}.{}", m.ino(), m.mtime(), m.mtime_nsec())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some("0".into()),
            Err(_) => None,
        }
    }
}

/// Tells every node that cached key lookups are stale.
pub async fn keys_changed(ctx: &Context) {
    let result = if ctx.bus.is_distributed() {
        let year = Duration::from_secs(365 * 24 * 3600);
        ctx.bus
            .cache
            .incr(KEYS_EPOCH, 1, year)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    } else {
        // A fresh id rather than an increment: two nodes bumping at once still change it.
        let path = epoch_file(ctx);
        let temp = path.with_extension(format!("epoch.{}", crate::tenancy::new_id()));
        std::fs::create_dir_all(&ctx.config.data_dir)
            .and_then(|()| std::fs::write(&temp, crate::tenancy::new_id()))
            .and_then(|()| std::fs::rename(&temp, &path))
            .map_err(|e| e.to_string())
    };
    if let Err(e) = result {
        tracing::error!(error = %e, "cannot announce a key revocation; other nodes see it within auth.key_cache_ttl");
    }
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

/// The principal behind a credential when this node can tell without the database (an API
/// key it has cached, and the revocation counter unchanged); `None` when it cannot.
/// Nothing here blocks or touches the SQLite driver, so it may run on an HTTP worker.
pub async fn from_cache(ctx: &Context, credential: &str) -> Option<ServiceResult<Principal>> {
    let lookup = secrets::api_key_lookup(credential)?;
    let epoch = current_epoch(ctx).await;
    let cached = ctx.tenancy.keys.lookup(lookup, &epoch)?;
    Some(check_key(ctx, credential, lookup, cached))
}

async fn authenticate_key(ctx: &Context, key: &str, lookup: &str) -> ServiceResult<Principal> {
    let cache = &ctx.tenancy.keys;
    let epoch = current_epoch(ctx).await;
    let cached = match cache.lookup(lookup, &epoch) {
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
                epoch,
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
    })
}
