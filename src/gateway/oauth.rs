//! OAuth 2.0 client credentials (RFC 6749, section 4.4): a token fetched from the token
//! endpoint through the outbound client, cached until shortly before it expires, and
//! dropped when the API answers 401 so that the next request fetches a fresh one.
//!
//! The cache is per node and keyed by the sealed credential (its ciphertext, never the
//! secret), so a changed credential never reuses the old one's token.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use reqwest::Method;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use serde::Deserialize;
use url::Url;

use super::credentials::{ClientAuth, ClientCredentials};
use crate::outbound::{Outbound, OutboundRequest};

/// How long before its expiry a token is no longer used.
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(30);
/// How long a token without `expires_in` is kept.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);
/// The largest token response read.
const MAX_TOKEN_RESPONSE: usize = 64 * 1024;

/// The token endpoint's answer (RFC 6749, section 5.1).
#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<f64>,
}

/// Why no token was had. Never contains the secret or the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot get an OAuth token from {endpoint}: {why}")]
pub struct TokenError {
    /// The token URL without its query.
    pub endpoint: String,
    pub why: String,
}

struct Cached {
    token: String,
    until: Instant,
}

/// The node's cache of client-credentials tokens.
#[derive(Default)]
pub struct Tokens {
    cached: Mutex<HashMap<String, Cached>>,
}

impl Tokens {
    /// A token for the grant: the cached one while it is fresh, else a new one. `key`
    /// names the credential (its sealed form).
    pub async fn token(
        &self,
        outbound: &Outbound,
        key: &str,
        grant: &ClientCredentials,
    ) -> Result<String, TokenError> {
        if let Some(token) = self.fresh(key) {
            return Ok(token);
        }
        let (token, lifetime) = fetch(outbound, grant).await?;
        let usable = lifetime.saturating_sub(EXPIRY_MARGIN).max(lifetime / 2);
        let mut cached = self.cached.lock().expect("the token cache lock");
        cached.retain(|_, c| c.until > Instant::now());
        cached.insert(
            key.to_string(),
            Cached {
                token: token.clone(),
                until: Instant::now() + usable,
            },
        );
        Ok(token)
    }

    /// Forgets the token of `key` (the API refused it).
    pub fn forget(&self, key: &str) {
        self.cached
            .lock()
            .expect("the token cache lock")
            .remove(key);
    }

    fn fresh(&self, key: &str) -> Option<String> {
        let cached = self.cached.lock().expect("the token cache lock");
        cached
            .get(key)
            .filter(|c| c.until > Instant::now())
            .map(|c| c.token.clone())
    }
}

/// `application/x-www-form-urlencoded` (RFC 6749, appendix B).
fn form(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

async fn fetch(
    outbound: &Outbound,
    grant: &ClientCredentials,
) -> Result<(String, Duration), TokenError> {
    let url = Url::parse(&grant.token_url).map_err(|e| TokenError {
        endpoint: "the token URL".into(),
        why: format!("it is not a URL: {e}"),
    })?;
    let endpoint = crate::outbound::redacted(&url);
    let failed = |why: String| TokenError {
        endpoint: endpoint.clone(),
        why,
    };
    let scope = grant.scopes.join(" ");
    let mut pairs = vec![("grant_type", "client_credentials")];
    if !scope.is_empty() {
        pairs.push(("scope", &scope));
    }
    if let Some(audience) = &grant.audience {
        pairs.push(("audience", audience));
    }
    let mut headers = HeaderMap::new();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
    let mut credential_headers = Vec::new();
    match grant.client_auth {
        ClientAuth::Basic => {
            // RFC 6749, section 2.3.1: each part form-encoded, then HTTP basic.
            let encode =
                |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let pair = format!(
                "{}:{}",
                encode(&grant.client_id),
                encode(&grant.client_secret)
            );
            let value = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            );
            let mut value = HeaderValue::from_str(&value)
                .map_err(|_| failed("the client id or secret cannot be sent".into()))?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
            credential_headers.push(AUTHORIZATION);
        }
        ClientAuth::Post => {
            pairs.push(("client_id", &grant.client_id));
            pairs.push(("client_secret", &grant.client_secret));
        }
    }
    let request = OutboundRequest {
        method: Method::POST,
        url,
        headers,
        body: Some(Bytes::from(form(&pairs))),
        credential_headers,
        timeout: None,
    };
    let mut response = outbound
        .send(request)
        .await
        .map_err(|e| failed(e.to_string()))?;
    let status = response.status();
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| failed(format!("the answer broke off: {e}")))?
    {
        if body.len() + chunk.len() > MAX_TOKEN_RESPONSE {
            return Err(failed("the answer is too large".into()));
        }
        body.extend_from_slice(&chunk);
    }
    if !status.is_success() {
        // RFC 6749, section 5.2: `error` and `error_description` say why; nothing else
        // of the body is quoted (it might echo what was sent).
        let error: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let code = error.get("error").and_then(|v| v.as_str()).unwrap_or("");
        let description = error
            .get("error_description")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        let detail = [code, description]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(": ");
        return Err(failed(format!(
            "HTTP {}{}",
            status.as_u16(),
            if detail.is_empty() {
                String::new()
            } else {
                format!(" ({})", super::operations::cap(&detail, 300))
            }
        )));
    }
    let answer: TokenResponse = serde_json::from_slice(&body)
        .map_err(|_| failed("the answer is not a token response (RFC 6749, section 5.1)".into()))?;
    if let Some(kind) = &answer.token_type
        && !kind.eq_ignore_ascii_case("bearer")
    {
        return Err(failed(format!(
            "the token type is {:?}; only bearer tokens are supported",
            super::operations::cap(kind, 40)
        )));
    }
    if answer.access_token.is_empty() {
        return Err(failed("the answer has an empty access_token".into()));
    }
    let lifetime = answer
        .expires_in
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(|s| Duration::from_secs_f64(s.min(365.0 * 86_400.0)))
        .unwrap_or(DEFAULT_LIFETIME);
    Ok((answer.access_token, lifetime))
}
