//! How a tool authenticates to its API, and how the credential is applied to a request:
//! a bearer token (RFC 6750), an API key in a header, query parameter or cookie (named as
//! the description's security scheme names it), HTTP basic (RFC 7617), or extra headers.
//! OAuth 2.0 client credentials (RFC 6749, section 4.4) are exchanged for a bearer token
//! by [`super::oauth`] before a request is sent.
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
    /// Without `location` and `name`, those of the description's `apiKey` security
    /// scheme ([`Credential::with_scheme`]).
    ApiKey {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        location: Option<KeyLocation>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        value: String,
    },
    Basic {
        username: String,
        password: String,
    },
    Headers {
        headers: std::collections::BTreeMap<String, String>,
    },
    /// OAuth 2.0 client credentials grant (RFC 6749, section 4.4): the token comes from
    /// `token_url` and is sent as a bearer token.
    #[serde(rename = "oauth2_client_credentials")]
    OAuth2ClientCredentials(ClientCredentials),
}

/// How a client authenticates at the token endpoint (RFC 6749, section 2.3.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// HTTP basic with the form-encoded id and secret (`client_secret_basic`).
    #[default]
    Basic,
    /// `client_id` and `client_secret` in the form body (`client_secret_post`).
    Post,
}

/// The parts of a client credentials grant.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientCredentials {
    pub token_url: String,
    pub client_id: String,
    pub client_secret: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// An `audience` parameter, for token endpoints that want one (Auth0, Okta).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    #[serde(default)]
    pub client_auth: ClientAuth,
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
            Credential::OAuth2ClientCredentials(_) => "oauth2_client_credentials",
        }
    }

    /// An API key without `location` or `name` takes them from the first `apiKey`
    /// scheme of the description's security schemes (OpenAPI 3.x `components.
    /// securitySchemes`, Swagger 2.0 `securityDefinitions`: `{"in", "name"}`).
    pub fn with_scheme(mut self, schemes: &serde_json::Value) -> Self {
        if let Credential::ApiKey { location, name, .. } = &mut self
            && (location.is_none() || name.is_none())
            && let Some(scheme) = schemes.as_object().and_then(|all| {
                all.values()
                    .find(|s| s.get("type").and_then(|t| t.as_str()) == Some("apiKey"))
            })
        {
            if location.is_none() {
                *location = match scheme.get("in").and_then(|v| v.as_str()) {
                    Some("header") => Some(KeyLocation::Header),
                    Some("query") => Some(KeyLocation::Query),
                    Some("cookie") => Some(KeyLocation::Cookie),
                    _ => None,
                };
            }
            if name.is_none() {
                *name = scheme
                    .get("name")
                    .and_then(|v| v.as_str())
                    .map(str::to_string);
            }
        }
        self
    }

    /// Applies the credential to a request's headers and URL; returns the headers that
    /// carry it (to drop on a redirect to another origin). Client credentials are first
    /// exchanged for a bearer token ([`super::oauth::Tokens`]): applied as they are, they
    /// are an error.
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
            if super::request::is_connection_header(name) {
                return Err(CredentialError(format!(
                    "a credential cannot set the header {name:?}: it belongs to the connection"
                )));
            }
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
                location,
                name,
                value: key,
            } => {
                let (Some(location), Some(name)) = (location, name) else {
                    return Err(CredentialError(
                        "the API key has no location and name, and the description has no apiKey security scheme to take them from".into(),
                    ));
                };
                match location {
                    KeyLocation::Header => {
                        let name = header_name(name)?;
                        headers.insert(name.clone(), value(key, "API key")?);
                        Ok(vec![name])
                    }
                    // The credential replaces a same-named value the arguments put there:
                    // the caller cannot stand in for it, nor send two.
                    KeyLocation::Query => {
                        let kept: Vec<(String, String)> = url
                            .query_pairs()
                            .filter(|(k, _)| k != name.as_str())
                            .map(|(k, v)| (k.into_owned(), v.into_owned()))
                            .collect();
                        url.set_query(None);
                        let mut pairs = url.query_pairs_mut();
                        pairs.extend_pairs(kept);
                        pairs.append_pair(name, key);
                        drop(pairs);
                        Ok(Vec::new())
                    }
                    KeyLocation::Cookie => {
                        let pair = format!("{name}={key}");
                        let others: Vec<&str> = headers
                            .get(COOKIE)
                            .and_then(|v| v.to_str().ok())
                            .map(|existing| {
                                existing
                                    .split(';')
                                    .map(str::trim)
                                    .filter(|c| {
                                        !c.is_empty() && c.split('=').next() != Some(name.as_str())
                                    })
                                    .collect()
                            })
                            .unwrap_or_default();
                        let joined = others
                            .into_iter()
                            .chain(std::iter::once(pair.as_str()))
                            .collect::<Vec<_>>()
                            .join("; ");
                        headers.insert(COOKIE, value(&joined, "API key")?);
                        Ok(vec![COOKIE])
                    }
                }
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
            Credential::OAuth2ClientCredentials(_) => Err(CredentialError(
                "client credentials are exchanged for a token before they are applied".into(),
            )),
        }
    }
}
