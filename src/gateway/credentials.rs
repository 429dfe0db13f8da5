//! How a tool authenticates to its API, and how the credential is applied to a request:
//! a bearer token (RFC 6750), an API key in a header, query parameter or cookie (named as
//! the description's security scheme names it), HTTP basic (RFC 7617), or extra headers.
//! (OAuth 2.0 client credentials come with the token cache.)
//!
//! A credential is stored only sealed (`sealing`), is never printed (its `Debug` shows
//! the kind alone), and is described to callers by [`Credential::kind`] only.

use base64::Engine as _;
use reqwest::header::{AUTHORIZATION, COOKIE, HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use url::Url;

/// Where an API key goes (OpenAPI `securitySchemes` `apiKey.in`).
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyLocation {
    Header,
    Query,
    Cookie,
}

/// A tool's credential, as given at registration and as sealed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Credential {
    Bearer {
        token: String,
    },
    ApiKey {
        location: KeyLocation,
        name: String,
        value: String,
    },
    Basic {
        username: String,
        password: String,
    },
    Headers {
        headers: std::collections::BTreeMap<String, String>,
    },
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credential({}, ..)", self.kind())
    }
}

/// Why a credential cannot be applied. Never contains the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CredentialError(pub String);

impl Credential {
    /// The kind, which responses and logs may show: `bearer`, `api_key`, `basic`, `headers`.
    pub fn kind(&self) -> &'static str {
        match self {
            Credential::Bearer { .. } => "bearer",
            Credential::ApiKey { .. } => "api_key",
            Credential::Basic { .. } => "basic",
            Credential::Headers { .. } => "headers",
        }
    }

    /// Applies the credential to a request's headers and URL; returns the headers that
    /// carry it (to drop on a redirect to another origin).
    pub fn apply(
        &self,
        headers: &mut HeaderMap,
        url: &mut Url,
    ) -> Result<Vec<HeaderName>, CredentialError> {
        let value = |text: &str, what: &str| {
            let mut v = HeaderValue::from_str(text).map_err(|_| {
                CredentialError(format!(
                    "the {what} cannot be sent in a header (line breaks or control characters)"
                ))
            })?;
            v.set_sensitive(true);
            Ok::<_, CredentialError>(v)
        };
        let header_name = |name: &str| {
            HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| CredentialError(format!("{name:?} is not a header name")))
        };
        match self {
            Credential::Bearer { token } => {
                headers.insert(
                    AUTHORIZATION,
                    value(&format!("Bearer {token}"), "bearer token")?,
                );
                Ok(vec![AUTHORIZATION])
            }
            Credential::Basic { username, password } => {
                let pair = base64::engine::general_purpose::STANDARD
                    .encode(format!("{username}:{password}"));
                headers.insert(
                    AUTHORIZATION,
                    value(&format!("Basic {pair}"), "basic credential")?,
                );
                Ok(vec![AUTHORIZATION])
            }
            Credential::ApiKey {
                location: KeyLocation::Header,
                name,
                value: key,
            } => {
                let name = header_name(name)?;
                headers.insert(name.clone(), value(key, "API key")?);
                Ok(vec![name])
            }
            Credential::ApiKey {
                location: KeyLocation::Query,
                name,
                value: key,
            } => {
                url.query_pairs_mut().append_pair(name, key);
                Ok(Vec::new())
            }
            Credential::ApiKey {
                location: KeyLocation::Cookie,
                name,
                value: key,
            } => {
                let pair = format!("{name}={key}");
                let joined = match headers.get(COOKIE).and_then(|v| v.to_str().ok()) {
                    Some(existing) => format!("{existing}; {pair}"),
                    None => pair,
                };
                headers.insert(COOKIE, value(&joined, "API key")?);
                Ok(vec![COOKIE])
            }
            Credential::Headers { headers: extra } => {
                let mut names = Vec::new();
                for (name, text) in extra {
                    let name = header_name(name)?;
                    headers.insert(name.clone(), value(text, "header")?);
                    names.push(name);
                }
                Ok(names)
            }
        }
    }
}
