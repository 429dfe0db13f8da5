//! Values of the `Mcp-*` request headers (`Mcp-Name`, `Mcp-Param-*`), encoded as the
//! 2026-07-28 Streamable HTTP transport says ("Value Encoding", SEP-2243): a value that is
//! not plain visible ASCII, has leading or trailing whitespace, or itself looks like the
//! sentinel travels as `=?base64?{standard Base64 of its UTF-8 bytes}?=`; anything else
//! travels as it is. A server decodes before comparing a header with the body.

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};

const PREFIX: &str = "=?base64?";
const SUFFIX: &str = "?=";

/// Why a header value could not be decoded.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeaderValueError {
    /// The sentinel holds something that is not padded standard Base64.
    #[error("is not valid Base64 inside =?base64?…?=")]
    Base64,
    /// The Base64 decodes to bytes that are not UTF-8.
    #[error("does not decode to UTF-8 text")]
    Utf8,
}

/// The encoding's name is matched without regard to case, as in RFC 2047's encoded
/// words that the form follows (section 2): `=?BASE64?…?=` is decoded too.
fn is_sentinel(value: &str) -> bool {
    value.len() >= PREFIX.len() + SUFFIX.len()
        && value.as_bytes()[..PREFIX.len()].eq_ignore_ascii_case(PREFIX.as_bytes())
        && value.ends_with(SUFFIX)
}

/// The value as it travels in a header.
pub fn encode(value: &str) -> Cow<'_, str> {
    let plain = value.bytes().all(|b| (0x20..=0x7e).contains(&b))
        && value.trim_matches(' ') == value
        && !is_sentinel(value);
    if plain {
        Cow::Borrowed(value)
    } else {
        Cow::Owned(format!(
            "{PREFIX}{}{SUFFIX}",
            STANDARD.encode(value.as_bytes())
        ))
    }
}

/// The value a header carries (already stripped of surrounding whitespace, RFC 9110
/// section 5.5): the decoded text of a sentinel, any other value literally.
pub fn decode(raw: &str) -> Result<Cow<'_, str>, HeaderValueError> {
    if !is_sentinel(raw) {
        return Ok(Cow::Borrowed(raw));
    }
    let payload = &raw[PREFIX.len()..raw.len() - SUFFIX.len()];
    let bytes = STANDARD
        .decode(payload)
        .map_err(|_| HeaderValueError::Base64)?;
    String::from_utf8(bytes)
        .map(Cow::Owned)
        .map_err(|_| HeaderValueError::Utf8)
}

/// The arguments an input schema asks a client to repeat in headers: its top-level
/// properties marked `"x-mcp-header": "{Name}"`, as (property, lowercase header name
/// `mcp-param-{name}`).
pub fn header_params(input_schema: &Map<String, Value>) -> Vec<(String, String)> {
    input_schema
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(property, schema)| {
            let name = schema.get("x-mcp-header")?.as_str()?;
            Some((
                property.clone(),
                format!("mcp-param-{}", name.to_ascii_lowercase()),
            ))
        })
        .collect()
}

/// An argument as its header carries it (before encoding): strings as they are, numbers
/// and booleans in their JSON spelling; other values are not carried in headers.
pub fn argument_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(_) | Value::Bool(_) => Some(value.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_ascii_travels_as_it_is() {
        assert_eq!(encode("devmesh_whoami"), "devmesh_whoami");
        assert_eq!(decode("devmesh_whoami").unwrap(), "devmesh_whoami");
    }

    #[test]
    fn what_a_header_cannot_hold_is_base64() {
        for value in [
            "devmesh://contexts/Załączniki 報告",
            " padded ",
            "line\nbreak",
            "=?base64?literal?=",
            "=?BASE64?literal?=",
        ] {
            let encoded = encode(value);
            assert!(encoded.starts_with(PREFIX), "{value:?} -> {encoded}");
            assert!(encoded.is_ascii());
            assert_eq!(decode(&encoded).unwrap(), value);
        }
        assert_eq!(
            decode("=?base64?ZGV2bWVzaF93aG9hbWk=?=").unwrap(),
            "devmesh_whoami"
        );
        assert_eq!(
            decode("=?BASE64?ZGV2bWVzaF93aG9hbWk=?=").unwrap(),
            "devmesh_whoami"
        );
    }

    #[test]
    fn broken_base64_is_refused_and_half_sentinels_are_literal() {
        // The specification's test-case table: missing padding, characters outside the
        // alphabet.
        assert_eq!(decode("=?base64?SGVsbG8?="), Err(HeaderValueError::Base64));
        assert_eq!(
            decode("=?base64?SGVs!!!bG8=?="),
            Err(HeaderValueError::Base64)
        );
        assert_eq!(decode("=?base64?/w==?="), Err(HeaderValueError::Utf8));
        assert_eq!(decode("SGVsbG8=").unwrap(), "SGVsbG8=");
        assert_eq!(decode("=?base64?SGVsbG8=").unwrap(), "=?base64?SGVsbG8=");
    }
}
