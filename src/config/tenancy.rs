//! Configuration of the tenancy layer: sign-in and sessions, rate limits and the limits on
//! contexts.

use serde::{Deserialize, Serialize};

use super::types::{Duration, SecretString};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Whether anyone may register an organization over the API
    /// (`devmesh org create` always can).
    pub open_registration: bool,
    /// Key that signs access tokens (JWT, HS256), at least 32 bytes. Unset: a random key
    /// is made once and kept in the database, so every node shares it.
    pub jwt_secret: Option<SecretString>,
    /// Lifetime of an access token (JWT).
    pub access_token_ttl: Duration,
    /// Lifetime of a refresh token; each refresh rotates it.
    pub refresh_token_ttl: Duration,
    /// How long a node trusts an API key it has looked up before asking the database
    /// again. Revocations reach every node at once; this is the backstop.
    pub key_cache_ttl: Duration,
    /// How often each node re-checks the credentials of its open connections and streams
    /// (WebSockets, MCP sessions, listen streams), closing those whose credential was
    /// revoked or expired.
    pub recheck_interval: Duration,
    /// How long an invitation can be accepted.
    pub invitation_ttl: Duration,
    pub lockout: LockoutConfig,
    pub argon2: Argon2Config,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockoutConfig {
    /// Failed logins for one account, within `window`, that lock it.
    pub max_failures: u32,
    pub window: Duration,
    /// How long a locked account stays locked.
    pub duration: Duration,
}

/// argon2id cost parameters for password hashes (defaults: OWASP's recommendation).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Argon2Config {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

/// A token bucket: `per_minute` requests refill it, `burst` is its size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    pub per_minute: u32,
    pub burst: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    pub enabled: bool,
    /// Each API key or signed-in user (a key's own `rate_limit` overrides it).
    pub key: Quota,
    /// Each organization, all of its principals together.
    pub organization: Quota,
    /// Each client address, on the routes that take no credentials (registration, login,
    /// refresh, logout, accepting an invitation).
    pub anonymous: Quota,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContextsConfig {
    /// Items one context may hold.
    pub max_items: u32,
    /// Size of one item's content, in bytes.
    pub max_item_bytes: usize,
    /// Size of a context's or an item's metadata, in bytes of JSON.
    pub max_metadata_bytes: usize,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            open_registration: true,
            jwt_secret: None,
            access_token_ttl: Duration::from_secs(15 * 60),
            refresh_token_ttl: Duration::from_secs(30 * 24 * 3600),
            key_cache_ttl: Duration::from_secs(30),
            recheck_interval: Duration::from_millis(500),
            invitation_ttl: Duration::from_secs(7 * 24 * 3600),
            lockout: LockoutConfig {
                max_failures: 5,
                window: Duration::from_secs(15 * 60),
                duration: Duration::from_secs(15 * 60),
            },
            argon2: Argon2Config {
                memory_kib: 19 * 1024,
                iterations: 2,
                parallelism: 1,
            },
        }
    }
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            key: Quota {
                per_minute: 1000,
                burst: 3000,
            },
            organization: Quota {
                per_minute: 10_000,
                burst: 30_000,
            },
            anonymous: Quota {
                per_minute: 60,
                burst: 30,
            },
        }
    }
}

impl Default for ContextsConfig {
    fn default() -> Self {
        Self {
            max_items: 10_000,
            max_item_bytes: 64 * 1024,
            max_metadata_bytes: 16 * 1024,
        }
    }
}
