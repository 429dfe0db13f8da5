//! What the tools API (`/api/v1/tools`) takes and gives. Request bodies are strict: an
//! unknown field is an error that names it. A credential goes in; only its kind and
//! `has_credential` ever come out.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::ApiFormat;
use super::credentials::Credential;
use super::discovery::Attempt;

/// Whose credential a call uses (the original gateway's `passthrough` modes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Passthrough {
    /// The organization's credential only; `PUT /credentials/me` is refused.
    #[default]
    Disabled,
    /// The caller's own credential when they stored one, else the organization's.
    Optional,
    /// The caller's own credential only: a caller without one gets a tool error saying how
    /// to store it.
    Required,
}

/// Where to look for the description besides the well-known paths.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DiscoveryHints {
    /// Paths (relative to the base URL, or absolute from its origin) tried after
    /// `openapi_url` and before the learned and well-known ones; at most 20.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub custom_paths: Vec<String>,
    /// The format expected; a description found in another format is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_format: Option<ApiFormat>,
}

/// How the health checks probe a tool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// A path relative to the base URL, answered with a 2xx or 3xx when the API is up;
    /// the base URL itself when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Seconds between checks, 5 to 86400 (default `gateway.health_interval`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 5, maximum = 86400)]
    pub interval: Option<u32>,
}

/// A tool's settings as stored (JSON in `gateway_tools.settings`) and shown.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Settings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openapi_url: Option<String>,
    #[serde(default)]
    pub discovery_hints: DiscoveryHints,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub include_operations: Vec<String>,
    #[serde(default)]
    pub exclude_operations: Vec<String>,
    #[serde(default)]
    pub group_operations: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// Seconds a call may take (default `gateway.call_timeout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<f64>,
    /// The largest answer a call returns, in bytes (default `gateway.max_response_bytes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_response_bytes: Option<u64>,
    #[serde(default)]
    pub passthrough: Passthrough,
}

/// `POST /api/v1/tools`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTool {
    /// The prefix of the tool's MCP tool names: a letter, then letters, digits, `_` or
    /// `-`, 1 to 32 characters; unique in the organization, and not the start (up to
    /// `_`) of another tool's name.
    #[schema(pattern = "^[a-zA-Z][a-zA-Z0-9_-]{0,31}$")]
    pub name: String,
    /// `http` or `https` URL the operations' paths are relative to (unless the
    /// description names absolute servers).
    pub base_url: String,
    /// Where the description is, when known: tried first.
    #[serde(default)]
    pub openapi_url: Option<String>,
    #[serde(default)]
    pub discovery_hints: Option<DiscoveryHints>,
    /// The organization's credential for the API.
    #[serde(default)]
    #[schema(schema_with = credential_schema)]
    pub auth: Option<Credential>,
    /// The description itself (JSON object, or JSON or YAML text): no discovery.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub openapi: Option<Value>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// operationId or `METHOD /path` globs (`*` any run, `?` one character); only
    /// matching operations become tools. Empty: all.
    #[serde(default)]
    pub include_operations: Vec<String>,
    /// Globs of operations left out (after `include_operations`).
    #[serde(default)]
    pub exclude_operations: Vec<String>,
    /// One MCP tool per tag, with the operation as an argument: for APIs with hundreds
    /// of operations.
    #[serde(default)]
    pub group_operations: bool,
    #[serde(default)]
    pub health_check: Option<HealthCheck>,
    /// Seconds a call may take, 0.1 to 600.
    #[serde(default)]
    #[schema(minimum = 0.1, maximum = 600)]
    pub timeout: Option<f64>,
    /// Bytes of an answer returned, 1 KiB to 64 MiB; the rest is cut with a note.
    #[serde(default)]
    #[schema(minimum = 1024, maximum = 67108864)]
    pub max_response_bytes: Option<u64>,
    #[serde(default)]
    pub passthrough: Option<Passthrough>,
}

/// `PATCH /api/v1/tools/{id}`: absent fields stay, `null` clears an optional one. A
/// change to where or how the description is found starts a new discovery.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolPatch {
    #[schema(pattern = "^[a-zA-Z][a-zA-Z0-9_-]{0,31}$")]
    pub name: Option<String>,
    pub base_url: Option<String>,
    #[serde(default, deserialize_with = "crate::decode::present")]
    #[schema(value_type = Option<String>)]
    pub openapi_url: Option<Option<String>>,
    pub discovery_hints: Option<DiscoveryHints>,
    /// `null` removes the organization's credential.
    #[serde(default, deserialize_with = "crate::decode::present")]
    #[schema(schema_with = credential_or_null_schema)]
    pub auth: Option<Option<Credential>>,
    pub tags: Option<Vec<String>>,
    pub include_operations: Option<Vec<String>>,
    pub exclude_operations: Option<Vec<String>>,
    pub group_operations: Option<bool>,
    #[serde(default, deserialize_with = "crate::decode::present")]
    #[schema(value_type = Option<HealthCheck>)]
    pub health_check: Option<Option<HealthCheck>>,
    #[serde(default, deserialize_with = "crate::decode::present")]
    #[schema(value_type = Option<f64>, minimum = 0.1, maximum = 600)]
    pub timeout: Option<Option<f64>>,
    #[serde(default, deserialize_with = "crate::decode::present")]
    #[schema(value_type = Option<u64>, minimum = 1024, maximum = 67108864)]
    pub max_response_bytes: Option<Option<u64>>,
    pub passthrough: Option<Passthrough>,
}

/// `POST /api/v1/tools/{id}/execute`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Execute {
    /// The operation's MCP tool name (`github_repos_get`) or its operationId.
    pub operation: String,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub arguments: Option<serde_json::Map<String, Value>>,
}

/// `PUT /api/v1/tools/{id}/credentials/me`: the caller's own credential.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OwnCredential {
    #[schema(schema_with = credential_schema)]
    pub auth: Credential,
}

/// What is known of a credential: its kind, and that there is one.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuthView {
    /// `bearer`, `api_key`, `basic`, `headers` or `oauth2_client_credentials`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub has_credential: bool,
}

/// Where discovery is (`GET /tools/{id}` `discovery`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DiscoveryStatus {
    /// Waiting for a worker.
    Pending,
    Running,
    /// A description was read; its operations are tools.
    Ready,
    /// Nothing usable was found; `error` and `tried` say why.
    Failed,
}

/// A discovery: its state, every URL tried with why it failed, and what was found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DiscoveryState {
    pub status: DiscoveryStatus,
    /// Distinguishes discoveries, so a late one cannot overwrite a newer one.
    pub attempt_id: String,
    /// `upload` or `url`.
    pub source: String,
    #[schema(value_type = Vec<Object>)]
    pub tried: Vec<Attempt>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<ApiFormat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Operations in the description.
    #[serde(default)]
    pub operation_count: usize,
    /// The MCP tools offered: operations left after the filters, or their groups.
    #[serde(default)]
    pub tool_count: usize,
    /// Schemas cut, external references not followed: what the conversion left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub requested_at: chrono::DateTime<chrono::Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// One health check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Probe {
    #[schema(value_type = String, format = DateTime)]
    pub at: chrono::DateTime<chrono::Utc>,
    pub ok: bool,
    /// `HTTP 200`, or why not.
    pub outcome: String,
    /// Milliseconds the check took.
    pub elapsed_ms: u64,
}

/// A tool's health: the last checks and its circuit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `unknown` (never checked), `healthy` or `unhealthy` (its circuit is open: calls
    /// fail fast until a check passes).
    pub status: String,
    /// When the current status began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Failed checks in a row.
    #[serde(default)]
    pub consecutive_failures: u32,
    /// When the current run of failed checks began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub failing_since: Option<chrono::DateTime<chrono::Utc>>,
    /// The newest last, at most 10.
    #[serde(default)]
    pub checks: Vec<Probe>,
}

impl Health {
    /// `unknown` for a tool never checked.
    pub fn or_unknown(mut self) -> Self {
        if self.status.is_empty() {
            self.status = "unknown".into();
        }
        self
    }
}

/// A registered tool as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ToolView {
    pub id: String,
    pub name: String,
    pub base_url: String,
    #[serde(flatten)]
    pub settings: Settings,
    pub auth: AuthView,
    /// Whether an uploaded description stands in for discovery.
    pub uploaded: bool,
    pub discovery: DiscoveryState,
    pub health: Health,
    /// Moves whenever the MCP tools this row offers change.
    pub revision: i64,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: chrono::DateTime<chrono::Utc>,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// One operation of a tool, as `GET /tools/{id}/operations` lists it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OperationView {
    /// The MCP tool name (or, when grouped, the operation's name within its group).
    pub name: String,
    /// The MCP tool that carries it.
    pub tool: String,
    pub operation_id: Option<String>,
    pub method: String,
    pub path: String,
    pub description: String,
    pub tags: Vec<String>,
    pub deprecated: bool,
    /// Whether the filters let it through.
    pub included: bool,
    #[schema(value_type = Object)]
    pub input_schema: Value,
}

/// The JSON Schema of a credential: one object per kind, with what each requires.
fn credential_variants() -> Vec<serde_json::Value> {
    use serde_json::json;
    let kind = |name: &str| json!({ "type": "string", "enum": [name] });
    let text = json!({ "type": "string", "minLength": 1 });
    vec![
        json!({
            "type": "object", "title": "bearer",
            "properties": { "type": kind("bearer"), "token": text },
            "required": ["type", "token"], "additionalProperties": false,
        }),
        json!({
            "type": "object", "title": "api_key",
            "description": "Without location and name, those of the description's apiKey security scheme.",
            "properties": {
                "type": kind("api_key"),
                "location": { "type": "string", "enum": ["header", "query", "cookie"] },
                "name": text, "value": text,
            },
            "required": ["type", "value"], "additionalProperties": false,
        }),
        json!({
            "type": "object", "title": "basic",
            "properties": { "type": kind("basic"), "username": text, "password": { "type": "string" } },
            "required": ["type", "username", "password"], "additionalProperties": false,
        }),
        json!({
            "type": "object", "title": "headers",
            "properties": {
                "type": kind("headers"),
                "headers": { "type": "object", "minProperties": 1, "additionalProperties": { "type": "string" } },
            },
            "required": ["type", "headers"], "additionalProperties": false,
        }),
        json!({
            "type": "object", "title": "oauth2_client_credentials",
            "description": "RFC 6749 section 4.4: the token is fetched from token_url.",
            "properties": {
                "type": kind("oauth2_client_credentials"),
                "token_url": { "type": "string", "format": "uri" },
                "client_id": text, "client_secret": text,
                "scopes": { "type": "array", "items": { "type": "string" } },
                "audience": { "type": "string" },
                "client_auth": { "type": "string", "enum": ["basic", "post"] },
            },
            "required": ["type", "token_url", "client_id", "client_secret"],
            "additionalProperties": false,
        }),
    ]
}

fn to_schema(value: serde_json::Value) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    serde_json::from_value(value).expect("the credential schema is a schema")
}

/// A credential (stored sealed, never shown).
fn credential_schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    to_schema(serde_json::json!({
        "oneOf": credential_variants(),
        "description": "A credential, stored sealed and never shown.",
    }))
}

/// A credential, or null to remove it.
fn credential_or_null_schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    let mut variants = credential_variants();
    variants.push(serde_json::json!({ "type": "null" }));
    to_schema(serde_json::json!({
        "oneOf": variants,
        "description": "A credential (stored sealed, never shown), or null to remove the organization's.",
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_credential_schema_names_each_kind_and_what_it_requires() {
        let schema = serde_json::to_value(credential_schema()).unwrap();
        let kinds: Vec<&str> = schema["oneOf"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["properties"]["type"]["enum"][0].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            [
                "bearer",
                "api_key",
                "basic",
                "headers",
                "oauth2_client_credentials"
            ]
        );
        // Every kind the schema allows is one serde reads, and the reverse.
        for (kind, example) in [
            (
                "bearer",
                serde_json::json!({ "type": "bearer", "token": "t" }),
            ),
            (
                "api_key",
                serde_json::json!({ "type": "api_key", "value": "v" }),
            ),
            (
                "basic",
                serde_json::json!({ "type": "basic", "username": "u", "password": "" }),
            ),
            (
                "headers",
                serde_json::json!({ "type": "headers", "headers": { "X": "y" } }),
            ),
            (
                "oauth2_client_credentials",
                serde_json::json!({ "type": "oauth2_client_credentials", "token_url": "https://t/", "client_id": "c", "client_secret": "s" }),
            ),
        ] {
            let c: Credential = serde_json::from_value(example).unwrap();
            assert_eq!(c.kind(), kind);
        }
        let nullable = serde_json::to_value(credential_or_null_schema()).unwrap();
        assert_eq!(nullable["oneOf"].as_array().unwrap().len(), 6);
    }
}
