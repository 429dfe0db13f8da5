//! Input schemas for tools: an API description's schemas made into self-contained JSON
//! Schema 2020-12 (MCP `inputSchema`), with every `$ref` inlined.
//!
//! - OpenAPI 3.0 `nullable: true` and Swagger's `x-nullable` become `type: [T, "null"]`;
//!   Swagger's `type: file` becomes a base64 string; `example` becomes `examples`.
//! - `readOnly` properties are left out (a caller cannot send them), and out of
//!   `required`.
//! - What is not JSON Schema is dropped: `discriminator`, `xml`, `externalDocs`, `x-*`.
//! - **Cuts**: a `$ref` that leads back into itself (a recursive schema), a nesting
//!   deeper than [`MAX_DEPTH`], or a schema past [`MAX_NODES`] subschemas becomes `{}`
//!   (any value) with a description saying it was cut and why, rather than growing
//!   without bound.

use serde_json::{Map, Value, json};

use super::document::DocumentSet;

/// Nesting of object properties, items and compositions kept in an input schema.
pub const MAX_DEPTH: usize = 12;
/// Subschemas kept in one tool's input schema (Kubernetes' bodies would otherwise run to
/// hundreds of thousands).
pub const MAX_NODES: usize = 4_000;

const KEPT: &[&str] = &[
    "type",
    "format",
    "title",
    "description",
    "default",
    "enum",
    "const",
    "multipleOf",
    "maximum",
    "exclusiveMaximum",
    "minimum",
    "exclusiveMinimum",
    "maxLength",
    "minLength",
    "pattern",
    "maxItems",
    "minItems",
    "uniqueItems",
    "maxProperties",
    "minProperties",
    "required",
    "examples",
    "deprecated",
    "writeOnly",
    "contentMediaType",
    "contentEncoding",
];

const SUBSCHEMA_MAPS: &[&str] = &["properties", "patternProperties", "$defs"];
const SUBSCHEMA_LISTS: &[&str] = &["allOf", "anyOf", "oneOf", "prefixItems"];
const SUBSCHEMA_ONE: &[&str] = &["items", "additionalProperties", "not", "contains"];

/// Turns schemas of one description into input schemas.
pub struct Converter<'a> {
    set: &'a DocumentSet,
    nodes: usize,
    /// `(document, reference)` of the `$ref`s being expanded, outermost first.
    expanding: Vec<String>,
    /// What was cut, for the tool's notes.
    pub cuts: Vec<String>,
    /// Whether each `pattern` met compiles: large descriptions repeat theirs thousands
    /// of times (GitHub's `owner`, `repo`), and compiling one is the costly part.
    patterns: std::collections::HashMap<String, bool>,
}

impl<'a> Converter<'a> {
    pub fn new(set: &'a DocumentSet) -> Self {
        Self {
            set,
            nodes: 0,
            expanding: Vec::new(),
            cuts: Vec::new(),
            patterns: std::collections::HashMap::new(),
        }
    }

    /// Starts a new tool: the node budget is per input schema.
    pub fn reset(&mut self) {
        self.nodes = 0;
        self.cuts.clear();
    }

    /// The input schema of `schema`, found in the document at `base`.
    pub fn convert(&mut self, base: &str, schema: &Value) -> Value {
        self.convert_at(base, schema, 0)
    }

    fn cut(&mut self, why: String) -> Value {
        if self.cuts.len() < 20 {
            self.cuts.push(why.clone());
        }
        json!({ "description": format!("(cut: {why}; any value is accepted here)") })
    }

    fn convert_at(&mut self, base: &str, schema: &Value, depth: usize) -> Value {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return self.cut(format!("the schema has more than {MAX_NODES} parts"));
        }
        if depth > MAX_DEPTH {
            return self.cut(format!("nested deeper than {MAX_DEPTH} levels"));
        }
        let Some(map) = schema.as_object() else {
            // `true`/`false` schemas, or junk where a schema should be.
            return if schema.is_boolean() {
                schema.clone()
            } else {
                json!({})
            };
        };
        if let Some(Value::String(reference)) = map.get("$ref") {
            let key = format!("{base} {reference}");
            if self.expanding.contains(&key) {
                let name = reference.rsplit('/').next().unwrap_or(reference);
                return self.cut(format!("{name} contains itself"));
            }
            let Some((target, target_base)) = self.set.resolve(base, reference) else {
                return self.cut(format!("the reference {reference:?} leads nowhere"));
            };
            let target = target.clone();
            self.expanding.push(key);
            let mut resolved = self.convert_at(&target_base, &target, depth);
            self.expanding.pop();
            // OpenAPI 3.1 lets keywords sit beside `$ref`: the annotations win.
            if let Some(out) = resolved.as_object_mut() {
                for k in ["description", "title", "default", "deprecated"] {
                    if let Some(v) = map.get(k) {
                        out.insert(k.into(), v.clone());
                    }
                }
            }
            return resolved;
        }
        let mut out = Map::new();
        for key in KEPT {
            if let Some(v) = map.get(*key) {
                out.insert((*key).into(), v.clone());
            }
        }
        if let Some(example) = map.get("example")
            && !out.contains_key("examples")
        {
            out.insert("examples".into(), json!([example]));
        }
        if !matches!(out.get("examples"), None | Some(Value::Array(_))) {
            out.remove("examples");
        }
        normalize_type(&mut out, map);
        for key in SUBSCHEMA_MAPS {
            if let Some(Value::Object(children)) = map.get(*key) {
                let mut converted = Map::new();
                for (name, child) in children {
                    if *key == "properties" && self.read_only(base, child) {
                        continue;
                    }
                    converted.insert(name.clone(), self.convert_at(base, child, depth + 1));
                }
                out.insert((*key).into(), Value::Object(converted));
            }
        }
        for key in SUBSCHEMA_LISTS {
            if let Some(Value::Array(children)) = map.get(*key) {
                let converted: Vec<Value> = children
                    .iter()
                    .map(|c| self.convert_at(base, c, depth + 1))
                    .collect();
                out.insert((*key).into(), Value::Array(converted));
            }
        }
        for key in SUBSCHEMA_ONE {
            match map.get(*key) {
                Some(child @ Value::Object(_)) => {
                    let converted = self.convert_at(base, child, depth + 1);
                    out.insert((*key).into(), converted);
                }
                Some(Value::Bool(b)) => {
                    out.insert((*key).into(), Value::Bool(*b));
                }
                // Swagger/OAS 3.0 tuple-ish `items: [..]` is not valid there: any item.
                _ => {}
            }
        }
        // `required` may only name properties that remain (readOnly ones were dropped)
        // and must be a list of strings.
        if let Some(required) = out.get("required").cloned() {
            let kept: Vec<Value> = match (&required, out.get("properties")) {
                (Value::Array(names), Some(Value::Object(props))) => names
                    .iter()
                    .filter(|n| n.as_str().is_some_and(|n| props.contains_key(n)))
                    .cloned()
                    .collect(),
                (Value::Array(names), None) => {
                    names.iter().filter(|n| n.is_string()).cloned().collect()
                }
                _ => Vec::new(),
            };
            if kept.is_empty() {
                out.remove("required");
            } else {
                out.insert("required".into(), Value::Array(kept));
            }
        }
        sanitize_keywords(&mut out, &mut self.patterns);
        Value::Object(out)
    }

    /// Whether a property schema is `readOnly` (itself or through its `$ref`).
    fn read_only(&self, base: &str, schema: &Value) -> bool {
        let Some(map) = schema.as_object() else {
            return false;
        };
        if map.get("readOnly") == Some(&Value::Bool(true)) {
            return true;
        }
        match map.get("$ref") {
            Some(Value::String(r)) => self
                .set
                .resolve(base, r)
                .is_some_and(|(t, _)| t.get("readOnly") == Some(&Value::Bool(true))),
            _ => false,
        }
    }
}

/// OpenAPI's type spellings into JSON Schema 2020-12's.
fn normalize_type(out: &mut Map<String, Value>, source: &Map<String, Value>) {
    if out.get("type").and_then(Value::as_str) == Some("file") {
        out.insert("type".into(), json!("string"));
        out.insert("contentEncoding".into(), json!("base64"));
    }
    let nullable = source.get("nullable") == Some(&Value::Bool(true))
        || source.get("x-nullable") == Some(&Value::Bool(true));
    let known = |t: &str| {
        matches!(
            t,
            "string" | "number" | "integer" | "boolean" | "object" | "array" | "null"
        )
    };
    match out.get("type").cloned() {
        Some(Value::String(t)) if !known(&t) => {
            out.remove("type");
        }
        Some(Value::String(t)) if nullable && t != "null" => {
            out.insert("type".into(), json!([t, "null"]));
        }
        Some(Value::Array(types)) => {
            let mut kept: Vec<Value> = types
                .into_iter()
                .filter(|t| t.as_str().is_some_and(known))
                .collect();
            kept.dedup();
            if nullable && !kept.contains(&json!("null")) {
                kept.push(json!("null"));
            }
            if kept.is_empty() {
                out.remove("type");
            } else {
                out.insert("type".into(), Value::Array(kept));
            }
        }
        Some(Value::String(_)) | None => {}
        Some(_) => {
            out.remove("type");
        }
    }
}

/// Drops keyword values of the wrong JSON type (a real description may say
/// `minimum: "1"` or `enum: "a"`), so that the input schema is a valid schema.
fn sanitize_keywords(
    out: &mut Map<String, Value>,
    patterns: &mut std::collections::HashMap<String, bool>,
) {
    let numeric = [
        "multipleOf",
        "maximum",
        "exclusiveMaximum",
        "minimum",
        "exclusiveMinimum",
    ];
    for key in numeric {
        if out.get(key).is_some_and(|v| !v.is_number()) {
            out.remove(key);
        }
    }
    if out
        .get("multipleOf")
        .and_then(Value::as_f64)
        .is_some_and(|m| m <= 0.0)
    {
        out.remove("multipleOf");
    }
    for key in [
        "maxLength",
        "minLength",
        "maxItems",
        "minItems",
        "maxProperties",
        "minProperties",
    ] {
        if out.get(key).is_some_and(|v| !v.is_u64()) {
            out.remove(key);
        }
    }
    for key in ["uniqueItems", "deprecated", "writeOnly"] {
        if out.get(key).is_some_and(|v| !v.is_boolean()) {
            out.remove(key);
        }
    }
    for key in [
        "title",
        "description",
        "format",
        "pattern",
        "contentMediaType",
        "contentEncoding",
    ] {
        if out.get(key).is_some_and(|v| !v.is_string()) {
            out.remove(key);
        }
    }
    if out.get("enum").is_some_and(|v| !v.is_array()) {
        out.remove("enum");
    }
    // A pattern in a dialect the validator cannot read would make the whole schema
    // unusable: keep it only when it compiles.
    if let Some(Value::String(p)) = out.get("pattern") {
        let compiles = *patterns
            .entry(p.clone())
            .or_insert_with(|| jsonschema::validator_for(&json!({ "pattern": p })).is_ok());
        if !compiles {
            out.remove("pattern");
        }
    }
}

/// A closed object schema (`additionalProperties: false`) of `properties`, with
/// `required` when any are: the shape of every tool's arguments.
pub fn closed_object(properties: impl Into<Value>, required: Vec<Value>) -> Value {
    let mut schema = serde_json::json!({
        "type": "object",
        "properties": properties.into(),
        "additionalProperties": false,
    });
    if !required.is_empty() {
        schema["required"] = Value::Array(required);
    }
    schema
}
