//! The checks of a stateless request (protocol 2026-07-28): its `_meta`, and the headers
//! that must agree with its body.

use actix_web::http::header::HeaderMap;
use serde_json::{Map, Value};

use super::catalog::ToolSpec;
use super::header_value;
use super::protocol::{RpcError, Version, code, meta, named_target};

const MCP_METHOD: &str = "mcp-method";
const MCP_NAME: &str = "mcp-name";

/// A member of the params that is an object (`_meta`, `capabilities`).
pub(super) fn object<'a>(
    params: &'a Map<String, Value>,
    key: &str,
) -> Option<&'a Map<String, Value>> {
    params.get(key).and_then(Value::as_object)
}

pub(super) fn header_str<'a>(
    headers: &'a HeaderMap,
    name: &str,
) -> Result<Option<&'a str>, RpcError> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v.to_str().map(|s| Some(s.trim())).map_err(|_| {
            header_mismatch(format!(
                "the {name} header is not visible ASCII: send a value outside it as \
                     =?base64?{{Base64 of its UTF-8}}?="
            ))
        }),
    }
}

/// Checks a stateless request's `_meta` and headers; returns its version and the
/// client's capabilities.
pub(super) fn stateless_meta(
    headers: &HeaderMap,
    header_version: Option<&str>,
    method: &str,
    params: &Map<String, Value>,
) -> Result<(Version, Map<String, Value>), RpcError> {
    let (meta_version, capabilities) = meta_fields(params, header_version)?;
    match header_version {
        None => {
            return Err(header_mismatch(format!(
                "the MCP-Protocol-Version header is required and must equal _meta[\"{}\"] ({meta_version})",
                meta::PROTOCOL_VERSION
            )));
        }
        Some(h) if h != meta_version => {
            return Err(header_mismatch(format!(
                "the MCP-Protocol-Version header ({h}) does not match _meta[\"{}\"] ({meta_version})",
                meta::PROTOCOL_VERSION
            )));
        }
        Some(_) => {}
    }
    let version = stateless_version(meta_version)?;
    // The headers that let a proxy route without reading the body must say what it says.
    match header_str(headers, MCP_METHOD)? {
        Some(h) if h == method => {}
        Some(h) => {
            return Err(header_mismatch(format!(
                "the Mcp-Method header ({h}) does not match the method ({method})"
            )));
        }
        None => {
            return Err(header_mismatch(format!(
                "the Mcp-Method header is required (here: {method})"
            )));
        }
    }
    let named = named_target(method, params);
    let name_header = match header_str(headers, MCP_NAME)? {
        None => None,
        Some(raw) => Some(
            header_value::decode(raw)
                .map_err(|e| header_mismatch(format!("the Mcp-Name header ({raw}) {e}")))?,
        ),
    };
    match (name_header.as_deref(), named) {
        (Some(h), Some(n)) if h == n => {}
        (None, None) => {}
        (Some(h), n) => {
            return Err(header_mismatch(format!(
                "the Mcp-Name header ({h}) does not match the request ({})",
                n.unwrap_or("which names nothing")
            )));
        }
        (None, Some(n)) => {
            return Err(header_mismatch(format!(
                "the Mcp-Name header is required for {method} (here: {n})"
            )));
        }
    }
    Ok((version, capabilities.clone()))
}

/// Checks the `_meta` of a stateless request that arrives without HTTP headers (one
/// WebSocket message); returns its version and the client's capabilities.
pub(super) fn message_meta(
    params: &Map<String, Value>,
) -> Result<(Version, Map<String, Value>), RpcError> {
    let (meta_version, capabilities) = meta_fields(params, None)?;
    Ok((stateless_version(meta_version)?, capabilities.clone()))
}

/// The protocol version and capabilities a stateless request's `_meta` must carry.
fn meta_fields<'a>(
    params: &'a Map<String, Value>,
    header_version: Option<&str>,
) -> Result<(&'a str, &'a Map<String, Value>), RpcError> {
    let Some(request_meta) = object(params, "_meta") else {
        return Err(match header_version.and_then(Version::parse) {
            Some(v) if !v.is_stateless() => RpcError::invalid_request(format!(
                "protocol {v} needs a session: send initialize first, then Mcp-Session-Id"
            )),
            _ => RpcError::invalid_params(format!(
                "params._meta is required: protocol {} requests carry {}, {} and {} in it \
                 (or send initialize to open a session of an older protocol)",
                Version::V2026_07_28,
                meta::PROTOCOL_VERSION,
                meta::CLIENT_CAPABILITIES,
                meta::CLIENT_INFO
            )),
        });
    };
    let Some(meta_version) = request_meta
        .get(meta::PROTOCOL_VERSION)
        .and_then(Value::as_str)
    else {
        return Err(RpcError::invalid_params(format!(
            "params._meta[\"{}\"] is required",
            meta::PROTOCOL_VERSION
        )));
    };
    let Some(capabilities) = request_meta
        .get(meta::CLIENT_CAPABILITIES)
        .and_then(Value::as_object)
    else {
        return Err(RpcError::invalid_params(format!(
            "params._meta[\"{}\"] is required (an object)",
            meta::CLIENT_CAPABILITIES
        )));
    };
    Ok((meta_version, capabilities))
}

/// A version from `_meta` that must be a stateless one.
fn stateless_version(meta_version: &str) -> Result<Version, RpcError> {
    let version =
        Version::parse(meta_version).ok_or_else(|| RpcError::unsupported_version(meta_version))?;
    if !version.is_stateless() {
        return Err(RpcError::invalid_request(format!(
            "protocol {version} needs a session: send initialize first, then Mcp-Session-Id"
        )));
    }
    Ok(version)
}

fn header_mismatch(message: String) -> RpcError {
    RpcError::new(code::HEADER_MISMATCH, message)
}

/// The request's `Mcp-Param-*` headers, as (lowercase name, value with surrounding
/// whitespace removed); a value that is not visible ASCII is refused with -32020.
pub(super) fn param_headers(headers: &HeaderMap) -> Result<Vec<(String, String)>, RpcError> {
    let mut found = Vec::new();
    for name in headers.keys() {
        if name.as_str().starts_with("mcp-param-") {
            let value = header_str(headers, name.as_str())?.unwrap_or_default();
            found.push((name.as_str().to_string(), value.to_string()));
        }
    }
    Ok(found)
}

/// Checks the `Mcp-Param-*` headers of a 2026-07-28 `tools/call` over Streamable HTTP
/// against its arguments ("Custom Headers", SEP-2243): every argument the tool's schema
/// marks with `x-mcp-header` must be repeated, encoded as [`header_value`] says, in its
/// header, and a header must not name an argument that is absent. A mismatch is 400 with
/// -32020 (HeaderMismatch).
pub(super) fn check_param_headers(
    sent: &[(String, String)],
    spec: &ToolSpec,
    arguments: &Map<String, Value>,
) -> Result<(), RpcError> {
    for (property, header) in &spec.header_params {
        let body = arguments
            .get(property)
            .and_then(header_value::argument_text);
        let raw = sent
            .iter()
            .find(|(n, _)| n == header)
            .map(|(_, v)| v.as_str());
        match (raw, body) {
            (None, None) => {}
            (Some(raw), body) => {
                let decoded = header_value::decode(raw)
                    .map_err(|e| header_mismatch(format!("the {header} header ({raw}) {e}")))?;
                if body.as_deref() != Some(decoded.as_ref()) {
                    return Err(header_mismatch(format!(
                        "the {header} header ({raw}) does not match the argument `{property}`"
                    )));
                }
            }
            (None, Some(_)) => {
                return Err(header_mismatch(format!(
                    "the {header} header is required: it repeats the argument `{property}`"
                )));
            }
        }
    }
    Ok(())
}
