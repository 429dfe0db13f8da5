//! The finished OpenAPI document: what the handlers declare (see [`super::ApiDoc`]), plus
//! what every route shares: the security schemes, the API key header as an alternative
//! to the bearer token, the error answers of authentication, scopes, rate limits and
//! request bodies, and the list of scopes.

use std::sync::OnceLock;

use serde_json::{Map, Value, json};
use utoipa::OpenApi;

use super::ApiDoc;
use crate::tenancy::scopes::Scope;

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc =
            serde_json::to_value(ApiDoc::openapi()).expect("the OpenAPI document serializes");
        complete(&mut doc);
        doc
    })
}

pub fn document_text() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| serde_json::to_string_pretty(document()).expect("serializes"))
}

fn scopes_table() -> String {
    let mut text = String::from(
        "Authenticate with `Authorization: Bearer <credential>` (or `X-API-Key: <API key>`), where the credential is \
         an API key (`dmk_...`) or an access token from `/api/v1/auth/login`. Each route names the scope it needs; \
         a user's scopes follow from their role (owner and admin: all; member: organization:read, users:read, \
         contexts:read, contexts:write; viewer: organization:read, users:read, contexts:read).\n\n\
         Errors are `{\"error\": {\"code\": \"...\", \"message\": \"...\"}}`. Lists take `?limit=&cursor=` and \
         answer `next_cursor`. Authenticated answers carry `RateLimit-Limit`, `RateLimit-Remaining`, \
         `RateLimit-Reset` and `RateLimit-Policy`; a 429 adds `Retry-After`.\n\n| scope | allows |\n|---|---|\n",
    );
    for s in Scope::ALL {
        let admin = if s.is_admin() {
            " (admin keys only)"
        } else {
            ""
        };
        text.push_str(&format!(
            "| `{}` | {}{admin} |\n",
            s.as_str(),
            s.description()
        ));
    }
    text
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ErrorBody" } } }
    })
}

fn complete(doc: &mut Value) {
    doc["info"] = json!({
        "title": "devmesh REST API",
        "version": env!("CARGO_PKG_VERSION"),
        "description": scopes_table(),
    });
    let components = doc["components"]
        .as_object_mut()
        .map(std::mem::take)
        .unwrap_or_default();
    let mut components = Value::Object(components);
    components["securitySchemes"] = json!({
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key (`dmk_...`) or an access token (JWT) from `/api/v1/auth/login`."
        },
        "api_key": { "type": "apiKey", "in": "header", "name": "X-API-Key", "description": "An API key." }
    });
    components["responses"] = json!({
        "BadRequest": error_response("The body or the query is malformed, has an unknown field, or a value of the wrong type; the message names it"),
        "Unprocessable": error_response("A value breaks its field's rule (a name too long, a cursor this API did not give out), or the request breaks a rule of the state of things (a token budget, a limit); the message names it"),
        "Unauthenticated": error_response("No credentials, or credentials that are not valid (with `WWW-Authenticate`)"),
        "MissingScope": error_response("The credentials lack the scope this route needs; the message names it"),
        "RateLimited": error_response("Over the rate limit of the key or the organization; see `Retry-After`"),
        "TooLarge": error_response("The body is larger than the limit"),
        "UnsupportedMediaType": error_response("The body is not sent as application/json"),
    });
    doc["components"] = components;

    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    for item in paths.values_mut() {
        for method in METHODS {
            let Some(op) = item.get_mut(method).and_then(Value::as_object_mut) else {
                continue;
            };
            complete_operation(op);
        }
    }
}

/// Adds a shared error answer to an operation, unless it declares its own for that status.
fn add_response(op: &mut Map<String, Value>, code: &str, name: &str) {
    if let Some(responses) = op
        .entry("responses")
        .or_insert_with(|| json!({}))
        .as_object_mut()
    {
        responses
            .entry(code.to_string())
            .or_insert_with(|| json!({ "$ref": format!("#/components/responses/{name}") }));
    }
}

fn complete_operation(op: &mut Map<String, Value>) {
    let secured = op
        .get("security")
        .is_some_and(|s| s.as_array().is_some_and(|a| !a.is_empty()));
    let has_body = op.contains_key("requestBody");
    // Query and header parameters are checked like bodies.
    let has_query = op
        .get("parameters")
        .and_then(Value::as_array)
        .is_some_and(|ps| ps.iter().any(|p| p["in"] == "query" || p["in"] == "header"));
    if has_body || has_query {
        add_response(op, "400", "BadRequest");
        add_response(op, "422", "Unprocessable");
    }
    if has_body {
        add_response(op, "413", "TooLarge");
        add_response(op, "415", "UnsupportedMediaType");
    }
    if secured {
        add_response(op, "401", "Unauthenticated");
        add_response(op, "403", "MissingScope");
        add_response(op, "429", "RateLimited");
        let security = op
            .get_mut("security")
            .and_then(Value::as_array_mut)
            .expect("checked above");
        let scopes = security
            .iter()
            .find_map(|r| r.get("bearer").cloned())
            .unwrap_or_else(|| json!([]));
        security.push(json!({ "api_key": scopes.clone() }));
        let needs = match scopes
            .as_array()
            .and_then(|a| a.first())
            .and_then(Value::as_str)
        {
            Some(scope) => format!("\n\nScope: `{scope}`."),
            None => "\n\nAny valid credentials.".to_string(),
        };
        let description = op
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        op.insert(
            "description".into(),
            Value::String(format!("{description}{needs}").trim().to_string()),
        );
    }
}

/// The methods the document lists for a concrete request path, if any route has that path.
pub fn methods_for(path: &str) -> Option<Vec<&'static str>> {
    let paths = document()["paths"].as_object()?;
    let (_, item) = paths
        .iter()
        .find(|(template, _)| template_matches(template, path))?;
    Some(
        METHODS
            .iter()
            .copied()
            .filter(|m| item.get(*m).is_some())
            .collect(),
    )
}

fn template_matches(template: &str, path: &str) -> bool {
    let (t, p): (Vec<_>, Vec<_>) = (template.split('/').collect(), path.split('/').collect());
    t.len() == p.len()
        && t.iter()
            .zip(&p)
            .all(|(t, p)| t == p || (t.starts_with('{') && t.ends_with('}') && !p.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_1_with_security_and_scopes() {
        let doc = document();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        let op = &doc["paths"]["/api/v1/contexts/{id}"]["get"];
        assert_eq!(op["security"][0]["bearer"][0], "contexts:read");
        assert!(op["responses"]["401"].is_object() && op["responses"]["429"].is_object());
        assert_eq!(op["security"][1]["api_key"][0], "contexts:read");
        for scope in Scope::ALL {
            assert!(
                doc["info"]["description"]
                    .as_str()
                    .unwrap()
                    .contains(scope.as_str())
            );
        }
    }

    #[test]
    fn paths_match_their_templates() {
        assert!(template_matches(
            "/api/v1/contexts/{id}",
            "/api/v1/contexts/abc"
        ));
        assert!(!template_matches(
            "/api/v1/contexts/{id}",
            "/api/v1/contexts/"
        ));
        assert!(!template_matches(
            "/api/v1/contexts/{id}",
            "/api/v1/contexts/a/b"
        ));
        assert_eq!(
            methods_for("/api/v1/organization"),
            Some(vec!["get", "patch"])
        );
        assert_eq!(methods_for("/nope"), None);
    }

    #[test]
    fn every_registered_route_has_its_own_operation() {
        // One operation per registered handler: two handlers claiming the same method and
        // path, or a handler without an operation, would make these differ.
        let api_operations: usize = document()["paths"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(path, _)| path.starts_with("/api/"))
            .map(|(_, item)| METHODS.iter().filter(|m| item.get(**m).is_some()).count())
            .sum();
        assert_eq!(api_operations, super::super::ROUTE_COUNT);
    }
}
