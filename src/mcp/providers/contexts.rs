//! Contexts over MCP: four tools, a resource per context, and a prompt that asks for a
//! summary. Every call runs the same services as the REST API, as the caller.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use rmcp::model::{Prompt, PromptArgument, Resource, ResourceContents, ResourceTemplate, Tool};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use super::{service_failure, structured};
use crate::contexts::{self, model};
use crate::mcp::call::Call;
use crate::mcp::catalog::{Provider, Reply, ToolSpec, decode_arguments, not_found, schema};
use crate::mcp::engine::tool_error;
use crate::mcp::protocol::RpcError;
use crate::service::PageRequest;
use crate::storage::contexts::ContextFilter;

const PREFIX: &str = "devmesh://contexts/";
const PROMPT: &str = "devmesh_summarize_context";

/// The resource URI of a context.
pub fn uri(id: &str) -> String {
    format!("{PREFIX}{id}")
}

pub struct ContextsProvider {
    tools: Vec<Arc<ToolSpec>>,
}

impl Default for ContextsProvider {
    fn default() -> Self {
        Self::new()
    }
}

fn item_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "role": { "type": "string", "enum": ["system", "user", "assistant", "tool"] },
            "content": { "type": "string" },
            "token_count": { "type": "integer", "minimum": 0 },
            "metadata": { "type": "object" }
        },
        "required": ["role", "content"],
        "additionalProperties": false
    })
}

fn context_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "id": { "type": "string" },
            "name": { "type": "string" },
            "type": { "type": "string" },
            "agent_id": { "type": ["string", "null"] },
            "session_id": { "type": ["string", "null"] },
            "item_count": { "type": "integer" },
            "token_total": { "type": "integer" },
            "version": { "type": "integer" },
            "items": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "seq": { "type": "integer" },
                        "role": { "type": "string" },
                        "content": { "type": "string" }
                    },
                    "required": ["seq", "role", "content"]
                }
            }
        },
        "required": ["id", "name", "type", "item_count", "token_total", "version"]
    })
}

impl ContextsProvider {
    pub fn new() -> Self {
        let tools = vec![
            Tool::new(
                "devmesh_context_create",
                "Create a shared context (a conversation or session history other agents can read), optionally with its first items.",
                schema(json!({
                    "type": "object",
                    "properties": {
                        "name": { "type": "string", "minLength": 1, "maxLength": 200 },
                        "type": { "type": "string", "description": "conversation (default), session, task, ..." },
                        "agent_id": { "type": "string" },
                        "model_id": { "type": "string" },
                        "session_id": { "type": "string" },
                        "metadata": { "type": "object" },
                        "token_budget": { "type": "integer", "minimum": 1 },
                        "items": { "type": "array", "items": item_schema() }
                    },
                    "required": ["name"],
                    "additionalProperties": false
                })),
            )
            .with_raw_output_schema(schema(context_schema())),
            Tool::new(
                "devmesh_context_get",
                "Read a context and its items, or only its newest `last` items.",
                schema(json!({
                    "type": "object",
                    "properties": {
                        "id": { "type": "string" },
                        "last": { "type": "integer", "minimum": 1, "maximum": 10000 }
                    },
                    "required": ["id"],
                    "additionalProperties": false
                })),
            )
            .with_raw_output_schema(schema(context_schema())),
            Tool::new(
                "devmesh_context_append",
                "Append items to a context, in order. With truncation drop_oldest, the oldest items make room when the token budget is reached.",
                schema(json!({
                    "type": "object",
                    "properties": {
                        "id": { "type": "string" },
                        "items": { "type": "array", "items": item_schema(), "minItems": 1 },
                        "truncation": { "type": "string", "enum": ["refuse", "drop_oldest"] }
                    },
                    "required": ["id", "items"],
                    "additionalProperties": false
                })),
            )
            .with_raw_output_schema(schema(json!({
                "type": "object",
                "properties": {
                    "context": context_schema(),
                    "items": { "type": "array" },
                    "dropped_items": { "type": "integer" },
                    "dropped_tokens": { "type": "integer" }
                },
                "required": ["context", "items", "dropped_items", "dropped_tokens"]
            }))),
            Tool::new(
                "devmesh_context_list",
                "List the organization's contexts, newest first, optionally by agent, session or type.",
                schema(json!({
                    "type": "object",
                    "properties": {
                        "agent_id": { "type": "string" },
                        "session_id": { "type": "string" },
                        "type": { "type": "string" },
                        "limit": { "type": "integer", "minimum": 1, "maximum": 200 },
                        "cursor": { "type": "string" }
                    },
                    "additionalProperties": false
                })),
            )
            .with_raw_output_schema(schema(json!({
                "type": "object",
                "properties": {
                    "items": { "type": "array", "items": context_schema() },
                    "next_cursor": { "type": ["string", "null"] }
                },
                "required": ["items"]
            }))),
        ];
        Self {
            tools: tools.into_iter().map(ToolSpec::new).collect(),
        }
    }
}

/// Arguments into a request type; what does not fit is a tool error naming it.
fn parse<T: DeserializeOwned>(args: Map<String, Value>) -> Result<T, Value> {
    decode_arguments(args).map_err(tool_error)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GetArgs {
    id: String,
    last: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AppendArgs {
    id: String,
    // Spelled out rather than `#[serde(flatten)]`: a flattened field hides its path from
    // the decoder, so an error could not name the field and `3.0` would not be an integer.
    items: Vec<model::NewItem>,
    #[serde(default)]
    truncation: model::Truncation,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListArgs {
    agent_id: Option<String>,
    session_id: Option<String>,
    #[serde(rename = "type")]
    context_type: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

/// Adds a link to the context's resource, which a client can read or subscribe to.
fn with_link(mut result: Value, context: &model::Context) -> Value {
    let link = Resource::new(uri(&context.id), context.name.clone())
        .with_description("This context as a resource")
        .with_mime_type("application/json");
    let link = serde_json::to_value(rmcp::model::ContentBlock::resource_link(link))
        .expect("content serializes");
    result["content"]
        .as_array_mut()
        .expect("a tool result has content")
        .push(link);
    result
}

macro_rules! args_or_error {
    ($args:expr) => {
        match parse($args) {
            Ok(v) => v,
            Err(error) => return Ok(error),
        }
    };
}

impl ContextsProvider {
    async fn run(
        &self,
        name: &str,
        args: Map<String, Value>,
        call: &Call,
    ) -> Result<Value, RpcError> {
        let (node, principal) = (&call.node, &call.principal);
        let outcome = match name {
            "devmesh_context_create" => {
                let new: model::NewContext = args_or_error!(args);
                contexts::create(node, principal, new)
                    .await
                    .map(|c| with_link(structured(&c), &c))
            }
            "devmesh_context_get" => {
                let a: GetArgs = args_or_error!(args);
                contexts::get(node, principal, &a.id, a.last)
                    .await
                    .map(|c| with_link(structured(&c), &c))
            }
            "devmesh_context_append" => {
                let a: AppendArgs = args_or_error!(args);
                let append = model::AppendItems {
                    items: a.items,
                    truncation: a.truncation,
                };
                contexts::append(node, principal, &a.id, append)
                    .await
                    .map(|c| structured(&c))
            }
            "devmesh_context_list" => {
                let a: ListArgs = args_or_error!(args);
                let page = match PageRequest::parse(a.limit, a.cursor.as_deref()) {
                    Ok(p) => p,
                    Err(e) => return service_failure(e),
                };
                let filter = ContextFilter {
                    agent_id: a.agent_id,
                    session_id: a.session_id,
                    context_type: a.context_type,
                    ..Default::default()
                };
                contexts::list(node, principal, filter, page)
                    .await
                    .map(|p| structured(&p))
            }
            _ => return Err(RpcError::invalid_params(format!("unknown tool: {name}"))),
        };
        outcome.or_else(service_failure)
    }
}

impl Provider for ContextsProvider {
    fn tools<'a>(&'a self, _call: &'a Call) -> BoxFuture<'a, Vec<Arc<ToolSpec>>> {
        Box::pin(async move { self.tools.clone() })
    }

    fn call_tool<'a>(
        &'a self,
        name: &'a str,
        args: Map<String, Value>,
        call: &'a Call,
    ) -> Reply<'a> {
        Box::pin(self.run(name, args, call))
    }

    fn resources<'a>(&'a self, call: &'a Call) -> BoxFuture<'a, Result<Vec<Resource>, RpcError>> {
        Box::pin(async move {
            // The newest contexts; the template reaches any of them.
            let page = PageRequest {
                limit: 50,
                after: None,
            };
            let contexts =
                match contexts::list(&call.node, &call.principal, ContextFilter::default(), page)
                    .await
                {
                    Ok(page) => page.items,
                    Err(crate::service::ServiceError::MissingScope(_)) => Vec::new(),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot list contexts as resources");
                        return Err(RpcError::internal());
                    }
                };
            Ok(contexts
                .into_iter()
                .map(|c| {
                    Resource::new(uri(&c.id), c.name.clone())
                        .with_description(format!(
                            "{} context with {} items",
                            c.context_type, c.item_count
                        ))
                        .with_mime_type("application/json")
                })
                .collect())
        })
    }

    fn resource_templates(&self) -> Vec<ResourceTemplate> {
        vec![
            ResourceTemplate::new(format!("{PREFIX}{{id}}"), "context")
                .with_title("A shared context")
                .with_description("A context and its items, as JSON; subscribe to hear of appends.")
                .with_mime_type("application/json"),
        ]
    }

    fn owns_uri(&self, uri: &str) -> bool {
        uri.starts_with(PREFIX)
    }

    fn read_resource<'a>(&'a self, uri: &'a str, call: &'a Call) -> Reply<'a> {
        Box::pin(async move {
            let id = uri.strip_prefix(PREFIX).unwrap_or("");
            match contexts::get(&call.node, &call.principal, id, None).await {
                Ok(context) => {
                    let text = serde_json::to_string(&context).expect("contexts serialize");
                    let contents =
                        ResourceContents::text(text, uri).with_mime_type("application/json");
                    Ok(json!({ "contents": [contents] }))
                }
                Err(crate::service::ServiceError::Storage(e)) => {
                    Err(super::storage_failure(&e, "reading a context resource"))
                }
                Err(crate::service::ServiceError::MissingScope(scope)) => Err(
                    RpcError::invalid_params(format!("reading {uri} needs the scope {scope}")),
                ),
                Err(_) => Err(not_found(uri)),
            }
        })
    }

    fn prompts(&self) -> Vec<Prompt> {
        vec![Prompt::new(
            PROMPT,
            Some(
                "Ask for a summary of a shared context: decisions, open questions and next steps.",
            ),
            Some(vec![
                {
                    let mut a = PromptArgument::new("context_id");
                    a.description = Some("The context to summarize".into());
                    a.required = Some(true);
                    a
                },
                {
                    let mut a = PromptArgument::new("focus");
                    a.description = Some("What the summary should concentrate on".into());
                    a.required = Some(false);
                    a
                },
            ]),
        )]
    }

    fn get_prompt<'a>(
        &'a self,
        _name: &'a str,
        args: Map<String, Value>,
        call: &'a Call,
    ) -> Reply<'a> {
        Box::pin(async move {
            let id = args.get("context_id").and_then(Value::as_str).unwrap_or("");
            let context = match contexts::get(&call.node, &call.principal, id, None).await {
                Ok(c) => c,
                Err(crate::service::ServiceError::Storage(e)) => {
                    return Err(super::storage_failure(&e, "a context prompt"));
                }
                Err(e) => return Err(RpcError::invalid_params(format!("context_id: {e}"))),
            };
            let focus = args
                .get("focus")
                .and_then(Value::as_str)
                .map(|f| format!(" Concentrate on: {f}."))
                .unwrap_or_default();
            let text = serde_json::to_string(&context).expect("contexts serialize");
            Ok(json!({
                "description": format!("Summarize the context {}", context.name),
                "messages": [
                    {
                        "role": "user",
                        "content": {
                            "type": "resource",
                            "resource": { "uri": uri(&context.id), "mimeType": "application/json", "text": text }
                        }
                    },
                    {
                        "role": "user",
                        "content": {
                            "type": "text",
                            "text": format!(
                                "Summarize the conversation above for a teammate who missed it: the decisions made, the open questions and the next steps, in at most ten bullet points.{focus}"
                            )
                        }
                    }
                ]
            }))
        })
    }

    fn complete<'a>(
        &'a self,
        reference: &'a Value,
        argument: &'a str,
        value: &'a str,
        call: &'a Call,
    ) -> BoxFuture<'a, Option<Vec<String>>> {
        Box::pin(async move {
            let ours = reference.get("name").and_then(Value::as_str) == Some(PROMPT)
                || reference
                    .get("uri")
                    .and_then(Value::as_str)
                    .is_some_and(|u| u.starts_with(PREFIX));
            if !ours {
                return None;
            }
            if argument != "context_id" && argument != "id" {
                return Some(Vec::new());
            }
            let page = PageRequest {
                limit: 200,
                after: None,
            };
            let list = contexts::list(&call.node, &call.principal, ContextFilter::default(), page)
                .await
                .map(|p| p.items)
                .unwrap_or_default();
            Some(
                list.into_iter()
                    .map(|c| c.id)
                    .filter(|id| id.starts_with(value))
                    .collect(),
            )
        })
    }
}
