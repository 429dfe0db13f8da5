//! The operations of an OpenAPI 3.x or Swagger 2.0 description, in one model (OpenAPI
//! 3.x's: parameters with schemas, a request body by media type), each with the input
//! schema of its tool. Swagger 2.0 is read into the same model: `in: body` becomes the
//! request body, `in: formData` parameters one form body, `type`/`items` on a parameter
//! its schema, `collectionFormat` its style, `host` + `basePath` + `schemes` its server.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::document::{DocumentSet, without_fragment};
use super::naming::{self, Names};
use super::schema::Converter;

/// The HTTP methods a path item may hold (OpenAPI 3.1 §4.8.8).
pub const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// The longest tool description kept, in characters; longer ones end in "…".
pub const MAX_DESCRIPTION: usize = 2_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Location {
    Path,
    Query,
    Header,
    Cookie,
}

/// One parameter: where it goes, and the tool argument that carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Parameter {
    pub name: String,
    #[serde(rename = "in")]
    pub location: Location,
    /// The argument's name in the tool's input schema (the parameter's name unless two
    /// locations share it, then `<in>_<name>`).
    pub argument: String,
    pub required: bool,
    /// OpenAPI 3 `style` (`form`, `simple`, `spaceDelimited`, `pipeDelimited`, `deepObject`, ...).
    pub style: String,
    pub explode: bool,
}

/// The request body: its media type and the argument that carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Body {
    pub media_type: String,
    pub argument: String,
    pub required: bool,
}

/// MCP tool annotations derived from the method (MCP `ToolAnnotations`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hints {
    pub read_only: bool,
    pub destructive: bool,
    pub idempotent: bool,
}

/// One operation, ready to be a tool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Operation {
    /// The tool name, `<prefix>_<operation>` (see `naming`).
    pub name: String,
    pub operation_id: Option<String>,
    /// Upper case: `GET`, `POST`, ...
    pub method: String,
    /// The path template, as the description writes it (`/repos/{owner}/{repo}`).
    pub path: String,
    pub description: String,
    pub tags: Vec<String>,
    pub deprecated: bool,
    pub parameters: Vec<Parameter>,
    pub body: Option<Body>,
    /// JSON Schema 2020-12 of the tool's arguments.
    pub input_schema: Value,
    pub hints: Hints,
    /// What was cut from the input schema, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cuts: Vec<String>,
}

/// Reads the operations of an OpenAPI 3.x (`swagger` false) or Swagger 2.0 description.
pub fn read(set: &DocumentSet, prefix: &str, swagger: bool) -> Vec<Operation> {
    let root = set.root_document();
    let root_url = without_fragment(&set.root);
    let mut names = Names::default();
    let mut converter = Converter::new(set);
    let mut out = Vec::new();
    let Some(paths) = root.get("paths").and_then(Value::as_object) else {
        return out;
    };
    let consumes = string_list(root.get("consumes"));
    for (path, item) in paths {
        // A path item may live in another document (`$ref: v4/version.yaml`).
        let (item, base) = match item.get("$ref").and_then(Value::as_str) {
            Some(r) => match set.resolve(&root_url, r) {
                Some((v, b)) => (v.clone(), b),
                None => continue,
            },
            None => (item.clone(), root_url.clone()),
        };
        let Some(item_map) = item.as_object() else {
            continue;
        };
        let shared = parameter_list(set, &base, item_map.get("parameters"));
        for method in METHODS {
            let Some(op) = item_map.get(*method).and_then(Value::as_object) else {
                continue;
            };
            converter.reset();
            let mut params = shared.clone();
            for p in parameter_list(set, &base, op.get("parameters")) {
                params.retain(|(q, _)| !(name_of(q) == name_of(&p.0) && in_of(q) == in_of(&p.0)));
                params.push(p);
            }
            let op_consumes = match op.get("consumes") {
                Some(v) => string_list(Some(v)),
                None => consumes.clone(),
            };
            let operation_id = op
                .get("operationId")
                .and_then(Value::as_str)
                .map(str::to_string);
            let part = naming::operation_part(operation_id.as_deref(), method, path);
            let name = names.next(prefix, &part);
            let built = build(
                &mut converter,
                &base,
                op,
                &params,
                swagger,
                &op_consumes,
                set,
            );
            out.push(Operation {
                name,
                operation_id,
                method: method.to_uppercase(),
                path: path.clone(),
                description: describe(op),
                tags: string_list(op.get("tags")),
                deprecated: op.get("deprecated") == Some(&Value::Bool(true)),
                parameters: built.parameters,
                body: built.body,
                input_schema: built.schema,
                hints: hints(method),
                cuts: converter.cuts.clone(),
            });
        }
    }
    out
}

fn hints(method: &str) -> Hints {
    Hints {
        read_only: matches!(method, "get" | "head" | "options"),
        destructive: method == "delete",
        idempotent: matches!(method, "get" | "head" | "options" | "put" | "delete"),
    }
}

/// Summary and description, trimmed and capped at [`MAX_DESCRIPTION`] characters.
fn describe(op: &Map<String, Value>) -> String {
    let summary = op
        .get("summary")
        .and_then(Value::as_str)
        .unwrap_or("")
        .trim();
    let description = op
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or("")
        .trim();
    let text = match (summary.is_empty(), description.is_empty()) {
        (false, false) if description.starts_with(summary) => description.to_string(),
        (false, false) => format!("{summary}\n\n{description}"),
        (false, true) => summary.to_string(),
        (true, _) => description.to_string(),
    };
    cap(&text, MAX_DESCRIPTION)
}

/// At most `max` characters, with "…" when cut.
pub fn cap(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max - 1).collect();
    out.push('…');
    out
}

fn string_list(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

/// Parameters with their `$ref`s followed: `(parameter, document it is in)`.
fn parameter_list(set: &DocumentSet, base: &str, value: Option<&Value>) -> Vec<(Value, String)> {
    let Some(Value::Array(items)) = value else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items {
        let mut current = (item.clone(), base.to_string());
        // A reference to a reference: follow a few.
        for _ in 0..8 {
            let Some(r) = current.0.get("$ref").and_then(Value::as_str) else {
                break;
            };
            match set.resolve(&current.1, r) {
                Some((v, b)) => current = (v.clone(), b),
                None => break,
            }
        }
        if current.0.get("name").and_then(Value::as_str).is_some() {
            out.push(current);
        }
    }
    out
}

fn name_of(p: &Value) -> &str {
    p.get("name").and_then(Value::as_str).unwrap_or("")
}

fn in_of(p: &Value) -> &str {
    p.get("in").and_then(Value::as_str).unwrap_or("")
}

struct Built {
    parameters: Vec<Parameter>,
    body: Option<Body>,
    schema: Value,
}

#[allow(clippy::too_many_arguments)]
fn build(
    converter: &mut Converter<'_>,
    base: &str,
    op: &Map<String, Value>,
    params: &[(Value, String)],
    swagger: bool,
    consumes: &[String],
    set: &DocumentSet,
) -> Built {
    let mut properties = Map::new();
    let mut required = Vec::new();
    let mut parameters = Vec::new();
    let mut form = Map::new();
    let mut form_required = Vec::new();
    let mut form_has_file = false;
    let mut body: Option<(String, Value, bool)> = None;
    let argument_for = |name: &str, location: &str, properties: &Map<String, Value>| {
        if properties.contains_key(name) || name == "body" {
            naming::slug(&format!("{location}_{name}"))
        } else {
            name.to_string()
        }
    };
    for (p, p_base) in params {
        let name = name_of(p).to_string();
        let location = in_of(p);
        let is_required = p.get("required") == Some(&Value::Bool(true)) || location == "path";
        let description = p.get("description").and_then(Value::as_str);
        let raw_schema = parameter_schema(p, swagger);
        match location {
            "body" => {
                let schema = p.get("schema").cloned().unwrap_or(json!({}));
                let media = consumes
                    .iter()
                    .find(|c| is_json(c))
                    .cloned()
                    .unwrap_or_else(|| "application/json".into());
                body = Some((media, converter.convert(p_base, &schema), is_required));
                continue;
            }
            "formData" => {
                let mut schema = converter.convert(p_base, &raw_schema);
                form_has_file |= p.get("type").and_then(Value::as_str) == Some("file");
                annotate(&mut schema, description);
                form.insert(name.clone(), schema);
                if is_required {
                    form_required.push(json!(name));
                }
                continue;
            }
            _ => {}
        }
        let location = match location {
            "path" => Location::Path,
            "query" => Location::Query,
            "header" => Location::Header,
            "cookie" => Location::Cookie,
            _ => continue,
        };
        let mut schema = converter.convert(p_base, &raw_schema);
        annotate(&mut schema, description);
        let argument = argument_for(&name, in_of(p), &properties);
        let (style, explode) = style_of(p, location, swagger);
        properties.insert(argument.clone(), schema);
        if is_required {
            required.push(json!(argument));
        }
        parameters.push(Parameter {
            name,
            location,
            argument,
            required: is_required,
            style,
            explode,
        });
    }
    if !form.is_empty() {
        let media = if form_has_file || consumes.iter().any(|c| c.starts_with("multipart/")) {
            "multipart/form-data"
        } else {
            "application/x-www-form-urlencoded"
        };
        let mut form = form;
        if media == "multipart/form-data" {
            files_in_multipart(&mut form);
        }
        let mut schema = json!({ "type": "object", "properties": form });
        if !form_required.is_empty() {
            schema["required"] = Value::Array(form_required.clone());
        }
        body = Some((media.into(), schema, !form_required.is_empty()));
    }
    if !swagger && let Some(request_body) = op.get("requestBody") {
        let (rb, rb_base) = match request_body.get("$ref").and_then(Value::as_str) {
            Some(r) => match set.resolve(base, r) {
                Some((v, b)) => (v.clone(), b),
                None => (json!({}), base.to_string()),
            },
            None => (request_body.clone(), base.to_string()),
        };
        if let Some(content) = rb.get("content").and_then(Value::as_object)
            && let Some((media, media_object)) = pick_media(content)
        {
            let schema = media_object.get("schema").cloned().unwrap_or(json!({}));
            let mut converted = converter.convert(&rb_base, &schema);
            if media.starts_with("multipart/form-data")
                && let Some(Value::Object(props)) = converted.get_mut("properties")
            {
                files_in_multipart(props);
            }
            if !is_json(&media) && !media.contains("form") && converted.get("type").is_none() {
                converted = json!({ "type": "string" });
            }
            annotate(
                &mut converted,
                rb.get("description").and_then(Value::as_str),
            );
            body = Some((
                media,
                converted,
                rb.get("required") == Some(&Value::Bool(true)),
            ));
        }
    }
    let body = body.map(|(media_type, schema, is_required)| {
        let argument = if properties.contains_key("body") {
            "request_body".to_string()
        } else {
            "body".to_string()
        };
        properties.insert(argument.clone(), schema);
        if is_required {
            required.push(json!(argument));
        }
        Body {
            media_type,
            argument,
            required: is_required,
        }
    });
    let schema = super::schema::closed_object(properties, required);
    Built {
        parameters,
        body,
        schema,
    }
}

fn annotate(schema: &mut Value, description: Option<&str>) {
    if let (Some(d), Some(map)) = (description, schema.as_object_mut())
        && !map.contains_key("description")
    {
        map.insert("description".into(), json!(cap(d.trim(), MAX_DESCRIPTION)));
    }
}

/// The schema a parameter declares: OpenAPI 3's `schema` (or its first `content`), or
/// Swagger 2.0's keywords on the parameter itself.
fn parameter_schema(p: &Value, swagger: bool) -> Value {
    if let Some(schema) = p.get("schema") {
        return schema.clone();
    }
    if let Some((_, media)) = p
        .get("content")
        .and_then(Value::as_object)
        .and_then(pick_media)
    {
        return media.get("schema").cloned().unwrap_or(json!({}));
    }
    if swagger || p.get("type").is_some() {
        let mut schema = Map::new();
        if let Some(map) = p.as_object() {
            for (k, v) in map {
                if !matches!(
                    k.as_str(),
                    "name"
                        | "in"
                        | "required"
                        | "description"
                        | "collectionFormat"
                        | "allowEmptyValue"
                ) {
                    schema.insert(k.clone(), v.clone());
                }
            }
        }
        return Value::Object(schema);
    }
    json!({})
}

/// OpenAPI 3 `style` and `explode`, with their defaults per location (OpenAPI 3.1
/// §4.8.12.4), or Swagger 2.0's `collectionFormat` (`csv` is the default there).
fn style_of(p: &Value, location: Location, swagger: bool) -> (String, bool) {
    if swagger {
        return match p.get("collectionFormat").and_then(Value::as_str) {
            Some("multi") => ("form".into(), true),
            Some("ssv") => ("spaceDelimited".into(), false),
            Some("pipes") => ("pipeDelimited".into(), false),
            Some("tsv") => ("tabDelimited".into(), false),
            _ => match location {
                Location::Query | Location::Cookie => ("form".into(), false),
                _ => ("simple".into(), false),
            },
        };
    }
    let default_style = match location {
        Location::Query | Location::Cookie => "form",
        Location::Path | Location::Header => "simple",
    };
    let style = p
        .get("style")
        .and_then(Value::as_str)
        .unwrap_or(default_style)
        .to_string();
    let explode = p
        .get("explode")
        .and_then(Value::as_bool)
        .unwrap_or(style == "form");
    (style, explode)
}

fn is_json(media: &str) -> bool {
    let essence = media.split(';').next().unwrap_or("").trim();
    essence == "application/json" || essence.ends_with("+json") || essence == "*/*"
}

/// The media type a tool sends: JSON first, then form, multipart, then the first listed.
fn pick_media(content: &Map<String, Value>) -> Option<(String, &Value)> {
    let ranked = |m: &str| {
        if is_json(m) {
            0
        } else if m.starts_with("application/x-www-form-urlencoded") {
            1
        } else if m.starts_with("multipart/form-data") {
            2
        } else {
            3
        }
    };
    content.iter().min_by_key(|(m, _)| ranked(m)).map(|(m, v)| {
        (
            if m == "*/*" {
                "application/json".into()
            } else {
                m.clone()
            },
            v,
        )
    })
}

/// The argument schema of a file in a multipart body: its content in base64, and
/// optionally its file name and media type.
pub fn file_schema(description: Option<&Value>) -> Value {
    let mut schema = json!({
        "type": "object",
        "properties": {
            "content_base64": { "type": "string", "contentEncoding": "base64", "description": "The file's bytes, in base64" },
            "filename": { "type": "string" },
            "media_type": { "type": "string", "description": "The file's media type (application/octet-stream when not given)" },
        },
        "required": ["content_base64"],
        "additionalProperties": false,
    });
    if let Some(d) = description {
        schema["description"] = d.clone();
    }
    schema
}

/// Multipart fields that are files (`format: binary`, or Swagger's `type: file`) take a
/// [`file_schema`] argument.
fn files_in_multipart(properties: &mut Map<String, Value>) {
    for field in properties.values_mut() {
        let is_file = field.get("contentEncoding").and_then(Value::as_str) == Some("base64")
            || field.get("format").and_then(Value::as_str) == Some("binary");
        if is_file {
            *field = file_schema(field.get("description"));
        }
    }
}
