//! The rules a tool's registration follows, each refusal naming the field and what is
//! wrong: names, URLs (through the SSRF guard as far as a literal address shows),
//! settings, credentials and uploaded descriptions.

use url::Url;

use super::Gateway;
use super::credentials::Credential;
use super::filters::Filters;
use super::model::Settings;
use crate::service::{ServiceError, ServiceResult};

/// Starts a tool name may not have: they would mix with devmesh's own tools.
const RESERVED: &[&str] = &["devmesh"];
/// Tags one tool may carry, and custom discovery paths.
const MAX_TAGS: usize = 20;
const MAX_CUSTOM_PATHS: usize = 20;
/// The longest URL accepted.
const MAX_URL_CHARS: usize = 2_048;

/// A credential that could never be sent is refused when it is given, not at its first
/// call.
pub fn check_credential(gateway: &Gateway, credential: &Credential) -> ServiceResult<()> {
    let invalid = |m: String| ServiceError::invalid("auth", m);
    let blank = |s: &str| s.trim().is_empty();
    let empty = match credential {
        Credential::Bearer { token } => blank(token),
        Credential::ApiKey { value, name, .. } => {
            blank(value) || name.as_deref().is_some_and(blank)
        }
        Credential::Basic { username, .. } => blank(username),
        Credential::Headers { headers } => {
            headers.is_empty() || headers.iter().any(|(k, v)| blank(k) || blank(v))
        }
        Credential::OAuth2ClientCredentials(grant) => {
            blank(&grant.client_id) || blank(&grant.client_secret)
        }
    };
    if empty {
        return Err(invalid(format!(
            "the {} credential is empty or blank: give its value (and name)",
            credential.kind()
        )));
    }
    // RFC 7617, section 2: the user-id cannot contain a colon.
    if let Credential::Basic { username, .. } = credential
        && username.contains(':')
    {
        return Err(invalid(
            "a basic credential's username cannot contain \":\" (RFC 7617)".into(),
        ));
    }
    // A credential sets the headers it names; the connection's are not among them.
    let header_names: Vec<&str> = match credential {
        Credential::Headers { headers } => headers.keys().map(String::as_str).collect(),
        Credential::ApiKey {
            location: Some(super::credentials::KeyLocation::Header),
            name: Some(name),
            ..
        } => vec![name.as_str()],
        _ => Vec::new(),
    };
    if let Some(name) = header_names
        .into_iter()
        .find(|n| super::request::is_connection_header(n))
    {
        return Err(invalid(format!(
            "a credential cannot set the header {name:?}: it belongs to the connection"
        )));
    }
    match credential {
        Credential::OAuth2ClientCredentials(grant) => {
            parse_url(gateway, "auth.token_url", &grant.token_url).map(drop)
        }
        Credential::ApiKey {
            location: None,
            name: None,
            ..
        } => Ok(()),
        Credential::ApiKey {
            location, name, ..
        } if location.is_none() || name.is_none() => Err(invalid(
            "give both location and name of the API key, or neither (then they come from the description's apiKey security scheme)".into(),
        )),
        other => {
            let mut headers = reqwest::header::HeaderMap::new();
            let mut url = Url::parse("http://check.invalid/").expect("a URL");
            other
                .apply(&mut headers, &mut url)
                .map(drop)
                .map_err(|e| invalid(e.0))
        }
    }
}

/// An `http` or `https` URL with a host, no user info, allowed by the SSRF guard as far
/// as an IP literal shows (names are checked as they resolve).
pub fn parse_url(gateway: &Gateway, field: &'static str, text: &str) -> ServiceResult<Url> {
    if text.chars().count() > MAX_URL_CHARS {
        return Err(ServiceError::invalid(
            field,
            format!("is longer than {MAX_URL_CHARS} characters"),
        ));
    }
    let url =
        Url::parse(text).map_err(|e| ServiceError::invalid(field, format!("is not a URL: {e}")))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ServiceError::invalid(
            field,
            "must not carry a user name or password: give the credential in auth",
        ));
    }
    gateway
        .outbound
        .check_url(&url)
        .map_err(|e| ServiceError::invalid(field, e.to_string()))?;
    Ok(url)
}

/// A base URL: [`parse_url`]'s rules, and no query or fragment (operations bring their
/// own queries; a credential goes in `auth`).
pub fn parse_base_url(gateway: &Gateway, text: &str) -> ServiceResult<Url> {
    let url = parse_url(gateway, "base_url", text)?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ServiceError::invalid(
            "base_url",
            "must not have a query or fragment: operations add their own query, and a key goes in auth",
        ));
    }
    Ok(url)
}

/// A path on the API's host: not a URL, not protocol-relative (`//other/x`), no
/// backslash (which URLs of http and https read as `/`).
fn is_host_path(path: &str) -> bool {
    !path.contains("://") && !path.starts_with("//") && !path.contains('\\')
}

/// `^[a-zA-Z][a-zA-Z0-9_-]{0,31}$`, not starting as devmesh's own tools do.
pub fn check_name(name: &str) -> ServiceResult<()> {
    let ok = (1..=32).contains(&name.len())
        && name.as_bytes()[0].is_ascii_alphabetic()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !ok {
        return Err(ServiceError::invalid(
            "name",
            format!(
                "{:?} is not a tool name: a letter, then letters, digits, _ or -, 1 to 32 characters in all",
                super::operations::cap(name, 80)
            ),
        ));
    }
    let lower = name.to_ascii_lowercase();
    if let Some(reserved) = RESERVED.iter().find(|r| lower.starts_with(*r)) {
        return Err(ServiceError::invalid(
            "name",
            format!(
                "{name:?} starts with {reserved:?}, which devmesh's own tools' names start with"
            ),
        ));
    }
    Ok(())
}

/// 409 when `name` is another tool's name, or one is the other's start up to `_`: their
/// MCP tool names could collide (`git` + `hub_x` and `git_hub` + `x`).
pub fn check_collision(names: &[(String, String)], id: &str, name: &str) -> ServiceResult<()> {
    let lower = name.to_ascii_lowercase();
    for (other_id, other) in names {
        if other_id == id {
            continue;
        }
        let other_lower = other.to_ascii_lowercase();
        if other_lower == lower
            || lower.starts_with(&format!("{other_lower}_"))
            || other_lower.starts_with(&format!("{lower}_"))
        {
            return Err(ServiceError::Conflict(format!(
                "the tool name {name:?} collides with the tool {other:?}: their MCP tool names could be the same"
            )));
        }
    }
    Ok(())
}

pub fn check_settings(gateway: &Gateway, s: &Settings) -> ServiceResult<()> {
    if let Some(url) = &s.openapi_url {
        parse_url(gateway, "openapi_url", url)?;
    }
    let paths = &s.discovery_hints.custom_paths;
    if paths.len() > MAX_CUSTOM_PATHS {
        return Err(ServiceError::invalid(
            "discovery_hints.custom_paths",
            format!("has {} paths; at most {MAX_CUSTOM_PATHS}", paths.len()),
        ));
    }
    if let Some(p) = paths
        .iter()
        .find(|p| p.is_empty() || p.len() > 512 || !is_host_path(p))
    {
        return Err(ServiceError::invalid(
            "discovery_hints.custom_paths",
            format!(
                "{:?} is not a path of 1 to 512 characters on the API's host",
                super::operations::cap(p, 80)
            ),
        ));
    }
    if s.tags.len() > MAX_TAGS
        || s.tags
            .iter()
            .any(|t| t.is_empty() || t.chars().count() > 64)
    {
        return Err(ServiceError::invalid(
            "tags",
            format!("at most {MAX_TAGS} tags of 1 to 64 characters"),
        ));
    }
    Filters::new(&s.include_operations, &s.exclude_operations).map_err(|m| {
        let field = if m.starts_with("include") {
            "include_operations"
        } else {
            "exclude_operations"
        };
        ServiceError::invalid(field, m)
    })?;
    if let Some(t) = s.timeout
        && !(0.1..=600.0).contains(&t)
    {
        return Err(ServiceError::invalid(
            "timeout",
            format!("must be 0.1 to 600 seconds (it is {t})"),
        ));
    }
    if let Some(n) = s.max_response_bytes
        && !(1024..=64 * 1024 * 1024).contains(&n)
    {
        return Err(ServiceError::invalid(
            "max_response_bytes",
            format!("must be 1024 to 67108864 bytes (it is {n})"),
        ));
    }
    if let Some(h) = &s.health_check {
        if let Some(i) = h.interval
            && !(5..=86_400).contains(&i)
        {
            return Err(ServiceError::invalid(
                "health_check.interval",
                format!("must be 5 to 86400 seconds (it is {i})"),
            ));
        }
        if let Some(p) = &h.path
            && (p.len() > 512 || !is_host_path(p))
        {
            return Err(ServiceError::invalid(
                "health_check.path",
                "must be a path of at most 512 characters on the API's host",
            ));
        }
    }
    Ok(())
}

/// The text of an uploaded description: a JSON object as JSON, a string as given.
pub fn document_text(gateway: &Gateway, value: serde_json::Value) -> ServiceResult<String> {
    let text = match value {
        serde_json::Value::String(s) => s,
        v @ serde_json::Value::Object(_) => v.to_string(),
        _ => {
            return Err(ServiceError::invalid(
                "openapi",
                "must be the description as a JSON object, or as JSON or YAML text",
            ));
        }
    };
    if text.len() > gateway.config.max_document_bytes {
        return Err(ServiceError::TooLarge(format!(
            "the description is {} bytes; the limit is {} (gateway.max_document_bytes)",
            text.len(),
            gateway.config.max_document_bytes
        )));
    }
    Ok(text)
}
