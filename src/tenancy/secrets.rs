//! Generated credentials (API keys, refresh tokens) and how they are kept: only a SHA-256
//! hash of a high-entropy secret is stored, and hashes are compared in constant time.
//! Passwords, which people choose, are hashed with argon2id instead ([`super::passwords`]).

use rand::Rng;
use rand::distr::Alphanumeric;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The start of every API key, so that scanners and people recognize one.
pub const API_KEY_PREFIX: &str = "dmk_";
/// The start of every refresh token.
pub const REFRESH_TOKEN_PREFIX: &str = "dmr_";
/// The start of every invitation token.
pub const INVITATION_TOKEN_PREFIX: &str = "dmi_";
/// Length of the public lookup part of an API key.
const LOOKUP_LEN: usize = 12;
/// Length of the secret part (62^40 is about 2^238).
const SECRET_LEN: usize = 40;

fn random_text(len: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// SHA-256 of a credential, in hex: what the database keeps.
pub fn hash_token(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `token` hashes to `stored`, without leaking where they differ.
pub fn token_matches(token: &str, stored: &str) -> bool {
    hash_token(token).as_bytes().ct_eq(stored.as_bytes()).into()
}

/// A new API key: `dmk_<lookup>_<secret>`. The lookup part is stored in clear to find the
/// key; the whole key only as a hash.
pub struct NewApiKey {
    pub key: String,
    pub lookup: String,
}

impl NewApiKey {
    pub fn generate() -> Self {
        let lookup = random_text(LOOKUP_LEN);
        let key = format!("{API_KEY_PREFIX}{lookup}_{}", random_text(SECRET_LEN));
        Self { key, lookup }
    }
}

/// The lookup part of something that looks like an API key.
pub fn api_key_lookup(token: &str) -> Option<&str> {
    let rest = token.strip_prefix(API_KEY_PREFIX)?;
    let (lookup, secret) = rest.split_once('_')?;
    (lookup.len() == LOOKUP_LEN && secret.len() == SECRET_LEN).then_some(lookup)
}

/// A new one-time token (a refresh token, an invitation) that starts with `prefix`.
pub fn generate_token(prefix: &str) -> String {
    format!("{prefix}{}", random_text(48))
}

/// A random secret for signing tokens when none is configured.
pub fn generate_signing_secret() -> String {
    random_text(64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_are_found_by_lookup_and_checked_by_hash() {
        let k = NewApiKey::generate();
        assert_eq!(api_key_lookup(&k.key), Some(k.lookup.as_str()));
        let stored = hash_token(&k.key);
        assert!(token_matches(&k.key, &stored));
        let mut wrong = k.key.clone();
        wrong.pop();
        wrong.push('!');
        assert!(!token_matches(&wrong, &stored));
        assert_eq!(api_key_lookup("dmk_short_x"), None);
        assert_eq!(api_key_lookup("eyJhbGciOi.x.y"), None);
        assert_ne!(NewApiKey::generate().key, k.key);
    }
}
