//! Tenants and who acts in them: organizations, users, API keys, sessions, the audit log.
//!
//! Everything here but [`extract`] (the actix extractors that authenticate a request) is
//! transport-free: the REST handlers and the MCP tools parse a request, call a function of
//! these modules with the caller's [`Principal`], and shape the answer. Every query names
//! the principal's organization. The tenancy's per-node state, [`TenancyState`], is made
//! by `app` and handed to whoever needs it; the node's [`crate::context::Context`] does
//! not hold it.

pub mod anonymous;
pub mod api_keys;
pub mod audit;
pub mod authenticate;
pub mod extract;
pub mod grants;
pub mod invitations;
pub mod names;
pub mod organization;
pub mod passwords;
pub mod principal;
pub mod registration;
pub mod scopes;
pub mod secrets;
pub mod sessions;
pub mod tokens;
pub mod users;

use std::sync::Arc;

use crate::config::Config;
pub use principal::{Actor, Principal};

/// The tenancy layer's per-node state: the password hasher, the token signer, the cache
/// of API key lookups and the grants of open connections.
pub struct TenancyState {
    pub passwords: passwords::PasswordHashing,
    pub signer: tokens::Signer,
    pub keys: authenticate::KeyCache,
    pub grants: Arc<grants::Grants>,
}

impl TenancyState {
    pub fn new(config: &Config) -> Arc<Self> {
        Arc::new(Self {
            passwords: passwords::PasswordHashing::new(&config.auth.argon2),
            signer: tokens::Signer::new(config.auth.jwt_secret.clone()),
            keys: authenticate::KeyCache::new(config.auth.key_cache_ttl.get()),
            grants: Arc::default(),
        })
    }
}

/// A new identifier (UUIDv7, so ids sort by creation time).
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Times as the API shows them: UTC, RFC 3339.
pub fn utc(t: chrono::NaiveDateTime) -> chrono::DateTime<chrono::Utc> {
    t.and_utc()
}
