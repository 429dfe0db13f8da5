//! The API reference page, rendered on the server from the OpenAPI document: operations
//! by tag with their descriptions (which name their scopes), parameters, bodies and
//! answers, then every schema.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::OnceLock;

use serde_json::Value;

use super::openapi::document;

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

const STYLE: &str = "body{font:15px/1.5 system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}\
code{background:#f3f3f3;padding:0 .25em;border-radius:3px}table{border-collapse:collapse;margin:.5em 0 1em}\
td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}\
section.op{border-top:1px solid #ddd;padding-top:.5em}.m{display:inline-block;min-width:4.5em;font-weight:bold}\
.get{color:#1a7f37}.post{color:#0969da}.patch{color:#9a6700}.delete{color:#cf222e}";

pub fn page() -> &'static str {
    static PAGE: OnceLock<String> = OnceLock::new();
    PAGE.get_or_init(|| render(document()))
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Escapes text and turns `code` spans into <code>.
fn inline(s: &str) -> String {
    esc(s)
        .split('`')
        .enumerate()
        .map(|(i, part)| {
            if i % 2 == 1 {
                format!("<code>{part}</code>")
            } else {
                part.to_string()
            }
        })
        .collect()
}

/// Paragraphs and pipe tables: all the Markdown the descriptions use.
fn markdown(text: &str) -> String {
    let mut out = String::new();
    for block in text.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let lines: Vec<&str> = block.lines().collect();
        if lines.iter().all(|l| l.trim_start().starts_with('|')) {
            out.push_str("<table>");
            for (i, line) in lines.iter().enumerate().filter(|(_, l)| !l.contains("---")) {
                let tag = if i == 0 { "th" } else { "td" };
                out.push_str("<tr>");
                for cell in line.trim().trim_matches('|').split('|') {
                    let _ = write!(out, "<{tag}>{}</{tag}>", inline(cell.trim()));
                }
                out.push_str("</tr>");
            }
            out.push_str("</table>");
        } else {
            let _ = write!(out, "<p>{}</p>", inline(block));
        }
    }
    out
}

fn schema_name(reference: &str) -> &str {
    reference.rsplit('/').next().unwrap_or(reference)
}

/// A short type description with links to named schemas.
fn type_of(schema: &Value) -> String {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = esc(schema_name(r));
        return format!("<a href=\"#schema-{name}\">{name}</a>");
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        if let Some(list) = schema.get(key).and_then(Value::as_array) {
            return list.iter().map(type_of).collect::<Vec<_>>().join(" | ");
        }
    }
    let types: Vec<String> = match schema.get("type") {
        Some(Value::String(t)) => vec![t.clone()],
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect(),
        _ => vec!["any".into()],
    };
    let mut parts: Vec<String> = types
        .into_iter()
        .map(|t| match t.as_str() {
            "array" => format!(
                "array of {}",
                schema.get("items").map_or("any".into(), type_of)
            ),
            _ => match schema.get("format").and_then(Value::as_str) {
                Some(f) => format!("{t} ({f})"),
                None => t,
            },
        })
        .collect();
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        let names: Vec<String> = values
            .iter()
            .filter_map(Value::as_str)
            .map(|v| format!("<code>{}</code>", esc(v)))
            .collect();
        parts.push(format!("one of {}", names.join(", ")));
    }
    parts.join(", ")
}

fn body_type(content: &Value) -> String {
    content
        .as_object()
        .and_then(|c| c.iter().next())
        .map(|(media, v)| match v.get("schema") {
            Some(s) => format!("{} <small>({})</small>", type_of(s), esc(media)),
            None => esc(media),
        })
        .unwrap_or_default()
}

fn render_operation(out: &mut String, doc: &Value, path: &str, method: &str, op: &Value) {
    let id = op["operationId"].as_str().unwrap_or(method);
    let _ = write!(
        out,
        "<section class=op id=\"op-{id}\"><h3><span class=\"m {method}\">{}</span> <code>{}</code></h3>",
        method.to_uppercase(),
        esc(path)
    );
    if let Some(summary) = op["summary"].as_str() {
        let _ = write!(out, "<p><b>{}</b></p>", inline(summary));
    }
    if let Some(description) = op["description"].as_str() {
        out.push_str(&markdown(description));
    }
    if let Some(params) = op["parameters"].as_array().filter(|p| !p.is_empty()) {
        out.push_str("<table><tr><th>parameter</th><th>in</th><th>type</th><th>required</th><th>description</th></tr>");
        for p in params {
            let _ = write!(
                out,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(p["name"].as_str().unwrap_or("")),
                esc(p["in"].as_str().unwrap_or("")),
                type_of(&p["schema"]),
                if p["required"].as_bool().unwrap_or(false) {
                    "yes"
                } else {
                    "no"
                },
                inline(p["description"].as_str().unwrap_or(""))
            );
        }
        out.push_str("</table>");
    }
    if let Some(body) = op.get("requestBody") {
        let _ = write!(out, "<p>Body: {}</p>", body_type(&body["content"]));
    }
    out.push_str("<table><tr><th>status</th><th>answer</th><th>body</th></tr>");
    if let Some(responses) = op["responses"].as_object() {
        for (code, r) in responses {
            let r = match r.get("$ref").and_then(Value::as_str) {
                Some(reference) => &doc["components"]["responses"][schema_name(reference)],
                None => r,
            };
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(code),
                inline(r["description"].as_str().unwrap_or("")),
                body_type(&r["content"])
            );
        }
    }
    out.push_str("</table></section>");
}

fn render_schema(out: &mut String, name: &str, schema: &Value) {
    let _ = write!(out, "<section id=\"schema-{0}\"><h3>{0}</h3>", esc(name));
    if let Some(d) = schema["description"].as_str() {
        out.push_str(&markdown(d));
    }
    match schema["properties"].as_object() {
        Some(props) => {
            let required: Vec<&str> = schema["required"]
                .as_array()
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            out.push_str(
                "<table><tr><th>field</th><th>type</th><th>required</th><th>description</th></tr>",
            );
            for (field, p) in props {
                let _ = write!(
                    out,
                    "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(field),
                    type_of(p),
                    if required.contains(&field.as_str()) {
                        "yes"
                    } else {
                        "no"
                    },
                    inline(p["description"].as_str().unwrap_or(""))
                );
            }
            out.push_str("</table>");
        }
        None => {
            let _ = write!(out, "<p>{}</p>", type_of(schema));
        }
    }
    out.push_str("</section>");
}

fn render(doc: &Value) -> String {
    let title = esc(doc["info"]["title"].as_str().unwrap_or("API"));
    let version = esc(doc["info"]["version"].as_str().unwrap_or(""));
    let mut by_tag: BTreeMap<String, Vec<(String, &str, &Value)>> = BTreeMap::new();
    if let Some(paths) = doc["paths"].as_object() {
        for (path, item) in paths {
            for method in METHODS {
                if let Some(op) = item.get(method) {
                    let tag = op["tags"][0].as_str().unwrap_or("other").to_string();
                    by_tag
                        .entry(tag)
                        .or_default()
                        .push((path.clone(), method, op));
                }
            }
        }
    }
    let mut out = format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>{title}</title><style>{STYLE}</style></head><body>\
         <h1>{title} <small>{version}</small></h1><p>Machine-readable: <a href=\"/api/v1/openapi.json\">openapi.json</a> (OpenAPI 3.1).</p>"
    );
    out.push_str(&markdown(doc["info"]["description"].as_str().unwrap_or("")));
    out.push_str("<h2>Operations</h2><ul>");
    for (tag, ops) in &by_tag {
        let _ = write!(out, "<li>{}<ul>", esc(tag));
        for (path, method, op) in ops {
            let id = op["operationId"].as_str().unwrap_or(method);
            let _ = write!(
                out,
                "<li><a href=\"#op-{id}\"><span class=\"m {method}\">{}</span> {}</a></li>",
                method.to_uppercase(),
                esc(path)
            );
        }
        out.push_str("</ul></li>");
    }
    out.push_str("</ul>");
    for (tag, ops) in &by_tag {
        let _ = write!(out, "<h2>{}</h2>", esc(tag));
        for (path, method, op) in ops {
            render_operation(&mut out, doc, path, method, op);
        }
    }
    out.push_str("<h2>Schemas</h2>");
    if let Some(schemas) = doc["components"]["schemas"].as_object() {
        for (name, schema) in schemas {
            render_schema(&mut out, name, schema);
        }
    }
    out.push_str("</body></html>");
    out
}
