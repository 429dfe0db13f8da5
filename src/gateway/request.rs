//! From a tool's arguments to the HTTP request of its operation (OpenAPI 3.1 §4.8.12,
//! "Parameter Object", and RFC 6570 for the styles):
//! - **path** parameters percent-encoded (everything but RFC 3986's unreserved
//!   characters), `simple` style: arrays and objects comma-joined;
//! - **query** parameters in the declared style: `form` (exploded: `a=1&a=2`; not:
//!   `a=1,2`), `spaceDelimited`, `pipeDelimited`, `deepObject` (`a[k]=v`);
//! - **header** and **cookie** parameters as text (a value with a line break is refused);
//! - the **body** as JSON, `application/x-www-form-urlencoded`, `multipart/form-data`
//!   (a `contentEncoding: base64` field becomes a file part), or as given text for other
//!   media types.
//!
//! Arguments have passed the input schema before this; absent or null optional
//! parameters are left out.

use bytes::Bytes;
use reqwest::Method;
use reqwest::header::{CONTENT_TYPE, COOKIE, HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value};
use url::Url;

use super::operations::{Location, Operation, Parameter};

/// Headers that belong to the connection or the message framing (RFC 9110 section 7.6.1,
/// RFC 9112): a description may declare them as parameters, but a call never sets them.
const CONNECTION_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-authorization",
    "proxy-connection",
];

/// Header parameters OpenAPI says to ignore.
const IGNORED_HEADERS: &[&str] = &["accept", "content-type", "authorization"];

/// Whether a header is the connection's or the framing's (or a cookie or an expectation,
/// which the credential and the client own): never an argument's, nor a credential's.
pub fn is_connection_header(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    CONNECTION_HEADERS.contains(&lower.as_str()) || lower == "cookie" || lower == "expect"
}

/// A request ready for the outbound client, before the credential is applied.
#[derive(Debug, Clone)]
pub struct Built {
    pub method: Method,
    pub url: Url,
    pub headers: HeaderMap,
    pub body: Option<Bytes>,
}

/// Why the arguments cannot make a request. Names the argument.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BuildError(pub String);

/// Everything but RFC 3986 unreserved characters (section 2.3: `A-Z a-z 0-9 - . _ ~`).
const RESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes all but RFC 3986 unreserved characters (`A-Z a-z 0-9 - . _ ~`).
pub fn encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, RESERVED).to_string()
}

/// A scalar as the text a parameter carries; `None` for null.
fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        other => Some(other.to_string()),
    }
}

/// Items of an array, or key/value pairs of an object, as texts.
fn parts(value: &Value) -> Vec<(Option<String>, String)> {
    match value {
        Value::Array(items) => items.iter().filter_map(scalar).map(|s| (None, s)).collect(),
        Value::Object(map) => map
            .iter()
            .filter_map(|(k, v)| scalar(v).map(|s| (Some(k.clone()), s)))
            .collect(),
        v => scalar(v).map(|s| vec![(None, s)]).unwrap_or_default(),
    }
}

/// `simple` style (path, header): `a,b,c`; objects `k,v,k,v` (exploded: `k=v,k=v`).
fn simple(value: &Value, explode: bool, enc: fn(&str) -> String) -> String {
    parts(value)
        .into_iter()
        .map(|(k, v)| match k {
            Some(k) if explode => format!("{}={}", enc(&k), enc(&v)),
            Some(k) => format!("{},{}", enc(&k), enc(&v)),
            None => enc(&v),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// A path parameter in its style (OpenAPI 3.1, section 4.8.12.4.3): `simple` (`a,b`),
/// `label` (`.a.b` exploded, `.a,b` not) or `matrix` (`;x=a;x=b` exploded, `;x=a,b`
/// not; objects `;k=v` exploded, `;x=k,v` not). Every value is percent-encoded.
fn path_value(p: &Parameter, value: &Value) -> String {
    let items = parts(value);
    match p.style.as_str() {
        "label" => {
            let joined = simple(value, p.explode, encode);
            let sep = if p.explode { "." } else { "," };
            let text = if p.explode {
                items
                    .iter()
                    .map(|(k, v)| match k {
                        Some(k) => format!("{}={}", encode(k), encode(v)),
                        None => encode(v),
                    })
                    .collect::<Vec<_>>()
                    .join(sep)
            } else {
                joined
            };
            format!(".{text}")
        }
        "matrix" => {
            let name = encode(&p.name);
            let is_list = matches!(value, Value::Array(_) | Value::Object(_));
            if !is_list || !p.explode {
                return format!(";{name}={}", simple(value, false, encode));
            }
            items
                .iter()
                .map(|(k, v)| match k {
                    Some(k) => format!(";{}={}", encode(k), encode(v)),
                    None => format!(";{name}={}", encode(v)),
                })
                .collect()
        }
        _ => simple(value, p.explode, encode),
    }
}

fn query_pairs(p: &Parameter, value: &Value) -> Vec<(String, String)> {
    let is_list = matches!(value, Value::Array(_) | Value::Object(_));
    if !is_list {
        return scalar(value)
            .map(|v| vec![(p.name.clone(), v)])
            .unwrap_or_default();
    }
    let items = parts(value);
    match p.style.as_str() {
        "deepObject" => items
            .into_iter()
            .map(|(k, v)| (format!("{}[{}]", p.name, k.unwrap_or_default()), v))
            .collect(),
        "spaceDelimited" | "pipeDelimited" | "tabDelimited" => {
            let sep = match p.style.as_str() {
                "spaceDelimited" => " ",
                "pipeDelimited" => "|",
                _ => "\t",
            };
            let joined = items
                .into_iter()
                .map(|(_, v)| v)
                .collect::<Vec<_>>()
                .join(sep);
            vec![(p.name.clone(), joined)]
        }
        // form
        _ if p.explode => items
            .into_iter()
            .map(|(k, v)| (k.unwrap_or_else(|| p.name.clone()), v))
            .collect(),
        _ => {
            let joined = items
                .into_iter()
                .flat_map(|(k, v)| k.into_iter().chain(std::iter::once(v)))
                .collect::<Vec<_>>()
                .join(",");
            vec![(p.name.clone(), joined)]
        }
    }
}

/// Builds the request of `operation` at `base` (the API's base URL, with the server's
/// path) from `arguments`.
pub fn build(
    operation: &Operation,
    base: &Url,
    arguments: &Map<String, Value>,
) -> Result<Built, BuildError> {
    let mut path = operation.path.clone();
    let mut query: Vec<(String, String)> = Vec::new();
    let mut headers = HeaderMap::new();
    let mut cookies: Vec<String> = Vec::new();
    for p in &operation.parameters {
        let value = match arguments.get(&p.argument) {
            None | Some(Value::Null) => {
                if p.location == Location::Path {
                    return Err(BuildError(format!(
                        "the path parameter {:?} is required",
                        p.argument
                    )));
                }
                continue;
            }
            Some(v) => v,
        };
        match p.location {
            Location::Path => {
                let text = path_value(p, value);
                if text.is_empty() || text == ";" || text == "." {
                    return Err(BuildError(format!(
                        "the path parameter {:?} may not be empty: the request would name another path",
                        p.argument
                    )));
                }
                path = path.replace(&format!("{{{}}}", p.name), &text);
            }
            Location::Query => query.extend(query_pairs(p, value)),
            Location::Header => {
                let text = simple(value, p.explode, |s| s.to_string());
                let name = HeaderName::from_bytes(p.name.as_bytes())
                    .map_err(|_| BuildError(format!("{:?} is not a header name", p.name)))?;
                // OpenAPI 3.1, section 4.8.12.1: Accept, Content-Type and Authorization
                // header parameters are ignored (the body and the credential set them).
                if IGNORED_HEADERS.contains(&name.as_str()) {
                    continue;
                }
                if is_connection_header(name.as_str()) {
                    return Err(BuildError(format!(
                        "the header {:?} is the connection's, not an argument a call may set",
                        p.name
                    )));
                }
                let value = HeaderValue::from_str(&text).map_err(|_| {
                    BuildError(format!("the argument {:?} cannot be sent in a header (line breaks or control characters)", p.argument))
                })?;
                headers.insert(name, value);
            }
            Location::Cookie => {
                let text = simple(value, p.explode, encode);
                cookies.push(format!("{}={}", p.name, text));
            }
        }
    }
    if !cookies.is_empty() {
        let value = HeaderValue::from_str(&cookies.join("; "))
            .map_err(|_| BuildError("a cookie argument cannot be sent".into()))?;
        headers.insert(COOKIE, value);
    }
    // RFC 3986, section 5.2.4: "." and ".." segments are removed from a path, so a value
    // of ".." would climb out of the operation's path, and out of the base URL's.
    if path
        .split('/')
        .any(|segment| segment == "." || segment == "..")
    {
        return Err(BuildError(
            "a path parameter may not be \".\" or \"..\": it would leave the operation's path"
                .into(),
        ));
    }
    let mut url = join(base, &path);
    if !query.is_empty() {
        let mut pairs = url.query_pairs_mut();
        for (k, v) in &query {
            pairs.append_pair(k, v);
        }
    }
    let mut body = None;
    if let Some(spec) = &operation.body {
        match arguments.get(&spec.argument) {
            None | Some(Value::Null) if !spec.required => {}
            None | Some(Value::Null) => {
                return Err(BuildError(format!(
                    "the request body {:?} is required",
                    spec.argument
                )));
            }
            Some(value) => {
                let (content_type, bytes) = encode_body(&spec.media_type, value)?;
                headers.insert(
                    CONTENT_TYPE,
                    HeaderValue::from_str(&content_type)
                        .map_err(|_| BuildError("the media type is not a header value".into()))?,
                );
                body = Some(bytes);
            }
        }
    }
    let method = Method::from_bytes(operation.method.as_bytes())
        .map_err(|_| BuildError(format!("{:?} is not an HTTP method", operation.method)))?;
    Ok(Built {
        method,
        url,
        headers,
        body,
    })
}

/// `base` + `path`, keeping the base's own path (`https://h/api/v3` + `/repos` is
/// `https://h/api/v3/repos`).
fn join(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    let joined = format!(
        "{}/{}",
        base.path().trim_end_matches('/'),
        path.trim_start_matches('/')
    );
    url.set_path(&joined);
    url.set_query(None);
    url
}

fn encode_body(media_type: &str, value: &Value) -> Result<(String, Bytes), BuildError> {
    let essence = media_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence == "application/x-www-form-urlencoded" {
        let Value::Object(fields) = value else {
            return Err(BuildError("a form body must be an object of fields".into()));
        };
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in fields {
            for (_, text) in parts(v) {
                form.append_pair(k, &text);
            }
        }
        return Ok((media_type.to_string(), Bytes::from(form.finish())));
    }
    if essence == "multipart/form-data" {
        return multipart(value);
    }
    let is_json = essence == "application/json" || essence.ends_with("+json");
    if !is_json && let Value::String(text) = value {
        return Ok((media_type.to_string(), Bytes::from(text.clone())));
    }
    let bytes = serde_json::to_vec(value).expect("JSON values serialize");
    let content_type = if is_json {
        media_type.to_string()
    } else {
        "application/json".into()
    };
    Ok((content_type, Bytes::from(bytes)))
}

/// `multipart/form-data` (RFC 7578): a part per field; a file field (see
/// [`super::operations::file_schema`]: `{"content_base64", "filename"?, "media_type"?}`)
/// as a file part, strings as text, other values as JSON.
fn multipart(value: &Value) -> Result<(String, Bytes), BuildError> {
    use base64::Engine as _;
    let Value::Object(fields) = value else {
        return Err(BuildError(
            "a multipart body must be an object of fields".into(),
        ));
    };
    let boundary = format!("devmesh-{:032x}", rand::random::<u128>());
    let mut out: Vec<u8> = Vec::new();
    for (name, field) in fields {
        let safe_name = name.replace(['"', '\r', '\n'], "_");
        out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match field {
            Value::Object(file) if file.contains_key("content_base64") => {
                let content = file["content_base64"].as_str().unwrap_or("");
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(content)
                    .map_err(|_| BuildError(format!("{name}.content_base64 is not base64")))?;
                let filename = file
                    .get("filename")
                    .and_then(Value::as_str)
                    .unwrap_or(name)
                    .replace(['"', '\r', '\n'], "_");
                let media = file
                    .get("media_type")
                    .and_then(Value::as_str)
                    .filter(|m| !m.contains(['\r', '\n']))
                    .unwrap_or("application/octet-stream");
                out.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{safe_name}\"; filename=\"{filename}\"\r\nContent-Type: {media}\r\n\r\n").as_bytes(),
                );
                out.extend_from_slice(&bytes);
            }
            other => {
                let text = match other {
                    Value::String(s) => s.clone(),
                    v => v.to_string(),
                };
                out.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{safe_name}\"\r\n\r\n")
                        .as_bytes(),
                );
                out.extend_from_slice(text.as_bytes());
            }
        }
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    Ok((
        format!("multipart/form-data; boundary={boundary}"),
        Bytes::from(out),
    ))
}
