//! SonarQube's own description format, `GET api/webservices/list`: `webServices[]`, each
//! with a `path` (`api/issues`) and `actions[]` (`key`, `post`, `params[]` of `key`,
//! `required`, `defaultValue`, `possibleValues`, `maximumLength`, `maximumValue`, ...).
//!
//! Each action becomes an operation at `/<path>/<key>`: GET with query parameters, or,
//! when `post` is true, POST with the parameters as an `application/x-www-form-urlencoded`
//! body (as SonarQube's web API takes them). Parameters are untyped in this format:
//! strings, with their enums, defaults and bounds kept. Internal actions are kept and say
//! so in their description; deprecated ones are marked.

use serde_json::{Map, Value, json};

use super::naming::{self, Names};
use super::operations::{Body, Hints, Location, MAX_DESCRIPTION, Operation, Parameter, cap};
use super::schema::closed_object;

/// Whether a document is a SonarQube web services list.
pub fn is_webservices_list(document: &Value) -> bool {
    document.get("webServices").is_some_and(Value::is_array)
}

pub fn read(document: &Value, prefix: &str) -> Vec<Operation> {
    let mut names = Names::default();
    let mut out = Vec::new();
    let services = document.get("webServices").and_then(Value::as_array);
    for service in services.into_iter().flatten() {
        let Some(path) = service.get("path").and_then(Value::as_str) else {
            continue;
        };
        let actions = service.get("actions").and_then(Value::as_array);
        for action in actions.into_iter().flatten() {
            let Some(key) = action.get("key").and_then(Value::as_str) else {
                continue;
            };
            let post = action.get("post") == Some(&Value::Bool(true));
            let http_path = format!("/{}/{}", path.trim_matches('/'), key);
            let part = naming::slug(&format!(
                "{}_{key}",
                path.trim_start_matches("api/").trim_matches('/')
            ));
            let mut properties = Map::new();
            let mut required = Vec::new();
            let mut parameters = Vec::new();
            for param in action
                .get("params")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let Some(name) = param.get("key").and_then(Value::as_str) else {
                    continue;
                };
                let is_required = param.get("required") == Some(&Value::Bool(true));
                properties.insert(name.to_string(), param_schema(param));
                if is_required {
                    required.push(json!(name));
                }
                if !post {
                    parameters.push(Parameter {
                        name: name.to_string(),
                        location: Location::Query,
                        argument: name.to_string(),
                        required: is_required,
                        style: "form".into(),
                        explode: true,
                    });
                }
            }
            let (schema, body) = if post {
                let body_required = !required.is_empty();
                let form = closed_object(properties, required);
                let schema = closed_object(
                    json!({ "body": form }),
                    if body_required {
                        vec![json!("body")]
                    } else {
                        Vec::new()
                    },
                );
                let body = Body {
                    media_type: "application/x-www-form-urlencoded".into(),
                    argument: "body".into(),
                    required: body_required,
                };
                (schema, Some(body))
            } else {
                (closed_object(properties, required), None)
            };
            let mut description = action
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or("")
                .trim()
                .to_string();
            if action.get("internal") == Some(&Value::Bool(true)) {
                description = format!("(internal to SonarQube) {description}");
            }
            let deprecated = action.get("deprecatedSince").is_some_and(|v| !v.is_null());
            out.push(Operation {
                name: names.next(prefix, &part),
                operation_id: Some(format!("{path}/{key}")),
                method: if post { "POST" } else { "GET" }.into(),
                path: http_path,
                description: cap(&description, MAX_DESCRIPTION),
                tags: vec![path.to_string()],
                deprecated,
                parameters,
                body,
                input_schema: schema,
                hints: Hints {
                    read_only: !post,
                    destructive: false,
                    idempotent: !post,
                },
                cuts: Vec::new(),
            });
        }
    }
    out
}

fn param_schema(param: &Value) -> Value {
    let mut schema = json!({ "type": "string" });
    if let Some(d) = param.get("description").and_then(Value::as_str) {
        schema["description"] = json!(cap(d.trim(), MAX_DESCRIPTION));
    }
    if let Some(Value::Array(values)) = param.get("possibleValues") {
        let values: Vec<Value> = values.iter().filter(|v| v.is_string()).cloned().collect();
        if !values.is_empty() {
            schema["enum"] = Value::Array(values);
        }
    }
    if let Some(d) = param.get("defaultValue").and_then(Value::as_str) {
        schema["default"] = json!(d);
    }
    if let Some(e) = param.get("exampleValue").and_then(Value::as_str) {
        schema["examples"] = json!([e]);
    }
    if let Some(n) = param.get("maximumLength").and_then(Value::as_u64) {
        schema["maxLength"] = json!(n);
    }
    if let Some(n) = param.get("minimumLength").and_then(Value::as_u64) {
        schema["minLength"] = json!(n);
    }
    schema
}
