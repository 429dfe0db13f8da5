//! From an upstream's answer to the MCP `CallToolResult` of a tool call:
//! - a JSON answer is `structuredContent` (an object; other JSON values are wrapped as
//!   `{"result": value}`) and the same JSON as text;
//! - text (`text/*`, XML, YAML, JavaScript) is text;
//! - an image is image content; any other bytes an embedded resource blob;
//! - each cut at `max_response_bytes`, with a note saying so (and a cut JSON answer is
//!   text, since it no longer parses);
//! - a 4xx or 5xx is a tool error (`isError: true`) with the status and the start of
//!   the body, which a model can act on — never a protocol error.

use base64::Engine as _;
use serde_json::{Value, json};

/// The body of an answer as read: at most the limit, and whether more was there.
pub struct Answer<'a> {
    pub status: u16,
    pub content_type: Option<&'a str>,
    pub body: &'a [u8],
    pub truncated: bool,
    pub limit: usize,
    /// `GET /repos/{owner}/{repo}`, for error texts.
    pub operation: &'a str,
}

/// How much of an error body a tool error quotes.
pub const ERROR_BODY_CHARS: usize = 2_000;

pub fn to_result(answer: &Answer<'_>) -> Value {
    let essence = answer
        .content_type
        .and_then(|c| c.split(';').next())
        .map(|c| c.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let note = answer.truncated.then(|| {
        json!({ "type": "text", "text": format!("(the answer was cut at {} bytes: the tool's max_response_bytes)", answer.limit) })
    });
    if answer.status >= 400 {
        let text = String::from_utf8_lossy(answer.body);
        let text = super::operations::cap(text.trim(), ERROR_BODY_CHARS);
        let reason = reqwest::StatusCode::from_u16(answer.status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("");
        let mut message = format!(
            "the API answered HTTP {} {reason} to {}",
            answer.status, answer.operation
        );
        if !text.is_empty() {
            message.push_str(&format!(": {text}"));
        }
        return json!({ "isError": true, "content": [{ "type": "text", "text": message }] });
    }
    let is_json = essence == "application/json" || essence.ends_with("+json");
    let mut content = Vec::new();
    let mut structured = None;
    if is_json || (essence.is_empty() && looks_like_json(answer.body)) {
        match serde_json::from_slice::<Value>(answer.body) {
            Ok(value) if !answer.truncated => {
                content.push(json!({ "type": "text", "text": value.to_string() }));
                structured = Some(match value {
                    Value::Object(_) => value,
                    other => json!({ "result": other }),
                });
            }
            _ => content
                .push(json!({ "type": "text", "text": String::from_utf8_lossy(answer.body) })),
        }
    } else if is_text(&essence) || answer.body.is_empty() {
        content.push(json!({ "type": "text", "text": String::from_utf8_lossy(answer.body) }));
    } else if essence.starts_with("image/") {
        content.push(json!({
            "type": "image",
            "data": base64::engine::general_purpose::STANDARD.encode(answer.body),
            "mimeType": essence,
        }));
    } else {
        content.push(json!({
            "type": "resource",
            "resource": {
                "uri": format!("devmesh://gateway/answer/{}", uuid::Uuid::now_v7()),
                "mimeType": if essence.is_empty() { "application/octet-stream".to_string() } else { essence.clone() },
                "blob": base64::engine::general_purpose::STANDARD.encode(answer.body),
            }
        }));
    }
    content.extend(note);
    let mut result = json!({ "content": content, "isError": false });
    if let Some(s) = structured {
        result["structuredContent"] = s;
    }
    result
}

fn is_text(essence: &str) -> bool {
    essence.starts_with("text/")
        || matches!(
            essence,
            "application/xml"
                | "application/yaml"
                | "application/x-yaml"
                | "application/javascript"
                | "application/x-ndjson"
        )
        || essence.ends_with("+xml")
}

fn looks_like_json(body: &[u8]) -> bool {
    matches!(
        body.iter().find(|b| !b.is_ascii_whitespace()),
        Some(b'{' | b'[')
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer<'a>(status: u16, ct: Option<&'a str>, body: &'a [u8], truncated: bool) -> Value {
        to_result(&Answer {
            status,
            content_type: ct,
            body,
            truncated,
            limit: 10,
            operation: "GET /x",
        })
    }

    #[test]
    fn answers_map_by_status_and_media_type() {
        let ok = answer(
            200,
            Some("application/json; charset=utf-8"),
            br#"{"a":1}"#,
            false,
        );
        assert_eq!(ok["structuredContent"], json!({"a": 1}));
        assert_eq!(ok["isError"], false);
        let list = answer(200, Some("application/json"), b"[1,2]", false);
        assert_eq!(list["structuredContent"], json!({"result": [1, 2]}));
        let cut = answer(200, Some("application/json"), br#"{"a":"#, true);
        assert!(cut.get("structuredContent").is_none());
        assert!(
            cut["content"][1]["text"]
                .as_str()
                .unwrap()
                .contains("cut at 10 bytes")
        );
        let text = answer(200, Some("text/plain"), b"hello", false);
        assert_eq!(text["content"][0]["text"], "hello");
        let image = answer(200, Some("image/png"), b"\x89PNG", false);
        assert_eq!(image["content"][0]["type"], "image");
        assert_eq!(image["content"][0]["mimeType"], "image/png");
        let blob = answer(200, Some("application/zip"), b"PK\x03\x04", false);
        assert_eq!(
            blob["content"][0]["resource"]["mimeType"],
            "application/zip"
        );
        let error = answer(
            404,
            Some("application/json"),
            br#"{"message":"Not Found"}"#,
            false,
        );
        assert_eq!(error["isError"], true);
        let message = error["content"][0]["text"].as_str().unwrap();
        assert!(
            message.contains("HTTP 404 Not Found to GET /x") && message.contains("Not Found\"}"),
            "{message}"
        );
    }
}
