//! The catalog: the tools, resources and prompts a tenant sees, assembled from providers.
//! A capability (contexts today; agents, the tools gateway and search later) plugs in a
//! [`Provider`] and nothing else.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use rmcp::model::{Prompt, Resource, ResourceTemplate, Tool};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use super::call::Call;
use super::protocol::RpcError;
use super::tasks::TaskSupport;

/// A tool with its compiled input schema.
pub struct ToolSpec {
    pub tool: Tool,
    validator: jsonschema::Validator,
    /// Arguments a 2026-07-28 client over Streamable HTTP repeats in a header: the input
    /// schema's top-level properties marked `"x-mcp-header": "{Name}"`, as
    /// (property, lowercase header name `mcp-param-{name}`).
    pub header_params: Vec<(String, String)>,
    /// Whether the tool may run as a task (SEP-2663); forbidden unless set with
    /// [`ToolSpec::with_tasks`].
    pub task_support: TaskSupport,
}

impl ToolSpec {
    /// Panics on a name that is not portable (`^[a-zA-Z0-9_-]{1,64}$`) or a schema that
    /// does not compile: both are programming errors in a built-in provider.
    pub fn new(tool: Tool) -> Arc<Self> {
        Self::try_new(tool).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A spec for a tool made from data (a converted API description): a name that is
    /// not portable or a schema that does not compile is an error that says which.
    pub fn try_new(tool: Tool) -> Result<Arc<Self>, String> {
        let schema = Value::Object((*tool.input_schema).clone());
        Self::try_validating(tool, &schema)
    }

    /// A spec whose arguments are checked against `schema` rather than the input schema
    /// it lists: a looser one, when the provider checks the rest itself with messages
    /// that name the problem better (a `oneOf` of operations says only that none matched).
    pub fn try_validating(tool: Tool, schema: &Value) -> Result<Arc<Self>, String> {
        if !is_portable_name(&tool.name) {
            return Err(format!("tool name {:?} is not portable", tool.name));
        }
        let validator = jsonschema::draft202012::new(schema)
            .map_err(|e| format!("the input schema of {} does not compile: {e}", tool.name))?;
        let header_params = super::header_value::header_params(&tool.input_schema);
        Ok(Arc::new(Self {
            tool,
            validator,
            header_params,
            task_support: TaskSupport::Forbidden,
        }))
    }

    /// A tool that may run as a task: it answers [`super::tasks::escalate`] when
    /// [`Call::can_escalate`], and is called again as the task's round.
    pub fn with_tasks(tool: Tool, support: TaskSupport) -> Arc<Self> {
        let mut spec = Arc::into_inner(Self::new(tool)).expect("a new spec is not shared");
        spec.task_support = support;
        Arc::new(spec)
    }

    /// What is wrong with these arguments, if anything, one line per problem.
    pub fn check_arguments(&self, arguments: &Map<String, Value>) -> Result<(), String> {
        let instance = Value::Object(arguments.clone());
        let problems: Vec<String> = self
            .validator
            .iter_errors(&instance)
            .take(5)
            .map(|e| {
                let path = e.instance_path().to_string();
                // The validator's message quotes the value, which may be megabytes.
                let problem = super::protocol::capped(e.to_string(), 200);
                if path.is_empty() {
                    problem
                } else {
                    format!("{}: {problem}", super::protocol::quoted(&path))
                }
            })
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

/// Tool (or prompt) arguments into a typed value: the one place where arguments are
/// decoded, so what a tool's input schema accepts the tool accepts. An integral number
/// (`5.0`, `1e1`) is an integer, as in JSON Schema (draft 2020-12, Validation 6.1.1); see
/// [`crate::decode`]. The error names the field by its path
/// (`invalid arguments: field `items[0].token_count`: …`).
pub fn decode_arguments<T: DeserializeOwned>(arguments: Map<String, Value>) -> Result<T, String> {
    crate::decode::from_value(Value::Object(arguments))
        .map_err(|e| format!("invalid arguments: {e}"))
}

/// `^[a-zA-Z0-9_-]{1,64}$`: a tool name every client and model API accepts.
pub fn is_portable_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A JSON object schema from a `json!` literal.
pub fn schema(value: Value) -> Arc<Map<String, Value>> {
    match value {
        Value::Object(map) => Arc::new(map),
        _ => panic!("a schema is a JSON object"),
    }
}

pub type Reply<'a> = BoxFuture<'a, Result<Value, RpcError>>;

/// A source of tools, resources and prompts. Every method sees the call, so what it
/// offers may depend on the tenant and the principal; the defaults offer nothing.
pub trait Provider: Send + Sync + 'static {
    fn tools<'a>(&'a self, _call: &'a Call) -> BoxFuture<'a, Vec<Arc<ToolSpec>>> {
        Box::pin(async { Vec::new() })
    }

    /// Runs one of this provider's tools; the arguments have passed its input schema.
    /// The reply is a `CallToolResult`, an input-required result, or (for a tool made with
    /// [`ToolSpec::with_tasks`], when [`Call::can_escalate`]) [`super::tasks::escalate`].
    fn call_tool<'a>(
        &'a self,
        name: &'a str,
        _args: Map<String, Value>,
        _call: &'a Call,
    ) -> Reply<'a> {
        Box::pin(async move { Err(RpcError::invalid_params(format!("unknown tool: {name}"))) })
    }

    fn resources<'a>(&'a self, _call: &'a Call) -> BoxFuture<'a, Result<Vec<Resource>, RpcError>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn resource_templates(&self) -> Vec<ResourceTemplate> {
        Vec::new()
    }

    /// Whether `uri` is one of this provider's resources (or matches its templates).
    fn owns_uri(&self, _uri: &str) -> bool {
        false
    }

    /// Reads a resource this provider owns: a `ReadResourceResult`.
    fn read_resource<'a>(&'a self, uri: &'a str, _call: &'a Call) -> Reply<'a> {
        Box::pin(async move { Err(not_found(uri)) })
    }

    fn prompts(&self) -> Vec<Prompt> {
        Vec::new()
    }

    /// A `GetPromptResult` (or an input-required result) for one of this provider's prompts.
    fn get_prompt<'a>(
        &'a self,
        name: &'a str,
        _args: Map<String, Value>,
        _call: &'a Call,
    ) -> Reply<'a> {
        Box::pin(async move { Err(RpcError::invalid_params(format!("unknown prompt: {name}"))) })
    }

    /// Suggestions for an argument of a prompt or resource template this provider owns;
    /// `None` when the reference is not this provider's.
    fn complete<'a>(
        &'a self,
        _reference: &'a Value,
        _argument: &'a str,
        _value: &'a str,
        _call: &'a Call,
    ) -> BoxFuture<'a, Option<Vec<String>>> {
        Box::pin(async { None })
    }
}

/// The error for a resource that does not exist (or is another tenant's): -32602 from
/// 2026-07-28 on, -32002 in the sessions era (2025-06-18 and 2025-11-25, "Resources",
/// Error Handling).
pub fn not_found(uri: &str) -> RpcError {
    let mut error = RpcError::invalid_params(format!("resource not found: {uri}"))
        .with_data(json!({ "uri": super::protocol::quoted(uri) }));
    error.legacy_code = Some(super::protocol::code::RESOURCE_NOT_FOUND_LEGACY);
    error
}

/// All providers of a node.
pub struct Catalog {
    providers: Vec<Box<dyn Provider>>,
}

impl Catalog {
    pub fn new(providers: Vec<Box<dyn Provider>>) -> Self {
        Self { providers }
    }

    pub async fn tools(&self, call: &Call) -> Vec<Arc<ToolSpec>> {
        let mut all = Vec::new();
        for p in &self.providers {
            all.extend(p.tools(call).await);
        }
        all
    }

    /// The provider and spec of a tool the caller can see.
    pub async fn find_tool(
        &self,
        call: &Call,
        name: &str,
    ) -> Option<(&dyn Provider, Arc<ToolSpec>)> {
        for p in &self.providers {
            if let Some(spec) = p
                .tools(call)
                .await
                .into_iter()
                .find(|t| t.tool.name == name)
            {
                return Some((p.as_ref(), spec));
            }
        }
        None
    }

    pub async fn resources(&self, call: &Call) -> Result<Vec<Resource>, RpcError> {
        let mut all = Vec::new();
        for p in &self.providers {
            all.extend(p.resources(call).await?);
        }
        Ok(all)
    }

    pub fn resource_templates(&self) -> Vec<ResourceTemplate> {
        self.providers
            .iter()
            .flat_map(|p| p.resource_templates())
            .collect()
    }

    pub fn resource_owner(&self, uri: &str) -> Option<&dyn Provider> {
        self.providers
            .iter()
            .find(|p| p.owns_uri(uri))
            .map(|p| p.as_ref())
    }

    pub fn prompts(&self) -> Vec<Prompt> {
        self.providers.iter().flat_map(|p| p.prompts()).collect()
    }

    /// The provider and definition of a prompt.
    pub fn find_prompt(&self, name: &str) -> Option<(&dyn Provider, Prompt)> {
        self.providers.iter().find_map(|p| {
            let prompt = p.prompts().into_iter().find(|pr| pr.name == name)?;
            Some((p.as_ref(), prompt))
        })
    }

    pub async fn complete(
        &self,
        reference: &Value,
        argument: &str,
        value: &str,
        call: &Call,
    ) -> Vec<String> {
        for p in &self.providers {
            if let Some(values) = p.complete(reference, argument, value, call).await {
                return values;
            }
        }
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portable_names() {
        assert!(is_portable_name("devmesh_context_get"));
        assert!(is_portable_name("a-b_C9"));
        assert!(!is_portable_name(""));
        assert!(!is_portable_name("has space"));
        assert!(!is_portable_name("dotted.name"));
        assert!(!is_portable_name(&"x".repeat(65)));
    }

    #[test]
    fn arguments_are_checked_against_the_schema() {
        let spec = ToolSpec::new(Tool::new(
            "t",
            "test",
            schema(json!({
                "type": "object",
                "properties": { "n": { "type": "integer", "minimum": 1 } },
                "required": ["n"],
                "additionalProperties": false
            })),
        ));
        assert!(
            spec.check_arguments(json!({"n": 2}).as_object().unwrap())
                .is_ok()
        );
        let err = spec
            .check_arguments(json!({"n": 0}).as_object().unwrap())
            .unwrap_err();
        assert!(err.contains("/n"), "{err}");
        assert!(
            spec.check_arguments(&Map::new())
                .unwrap_err()
                .contains("\"n\"")
        );
    }
}
