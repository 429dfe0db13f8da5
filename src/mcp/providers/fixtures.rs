//! The fixtures the official MCP conformance suite expects of a server
//! (`mcp.conformance_fixtures = true`): its tools, resources and prompts, by their names.
//! Off by default; it exists so that the suite can check the protocol machinery that the
//! real providers share.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::future::BoxFuture;
use rmcp::model::{
    CallToolResult, ContentBlock, Prompt, PromptArgument, Resource, ResourceContents,
    ResourceTemplate, SealOptions, Tool,
};
use serde_json::{Map, Value, json};

use crate::events::{self, Change};
use crate::mcp::call::{Call, LogLevel};
use crate::mcp::catalog::{Provider, Reply, ToolSpec, not_found, schema};
use crate::mcp::protocol::{RpcError, code};

/// A 1×1 red PNG.
const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";
/// A minimal WAV file.
const WAV: &str = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA=";
const DYNAMIC_TOOL: &str = "test_dynamic_tool";
const DYNAMIC_PROMPT: &str = "test_dynamic_prompt";

pub struct FixturesProvider {
    tools: Vec<Arc<ToolSpec>>,
    dynamic_tool: Arc<ToolSpec>,
    dynamic_prompt_on: AtomicBool,
}

impl Default for FixturesProvider {
    fn default() -> Self {
        Self::new()
    }
}

fn no_args() -> Arc<Map<String, Value>> {
    schema(json!({ "type": "object", "properties": {} }))
}

fn string_arg(name: &str, description: &str) -> Arc<Map<String, Value>> {
    schema(json!({
        "type": "object",
        "properties": { name: { "type": "string", "description": description } },
        "required": [name]
    }))
}

fn text(s: impl Into<String>) -> Value {
    serde_json::to_value(CallToolResult::success(vec![ContentBlock::text(s.into())]))
        .expect("results serialize")
}

fn content(blocks: Vec<ContentBlock>) -> Value {
    serde_json::to_value(CallToolResult::success(blocks)).expect("results serialize")
}

fn elicitation(message: &str, properties: Value, required: &[&str]) -> Value {
    json!({
        "method": "elicitation/create",
        "params": {
            "mode": "form",
            "message": message,
            "requestedSchema": { "type": "object", "properties": properties, "required": required }
        }
    })
}

fn sampling(prompt: &str, max_tokens: u32) -> Value {
    json!({
        "method": "sampling/createMessage",
        "params": {
            "messages": [{ "role": "user", "content": { "type": "text", "text": prompt } }],
            "maxTokens": max_tokens
        }
    })
}

fn roots() -> Value {
    json!({ "method": "roots/list", "params": {} })
}

fn input_required(requests: Value, state: Option<String>) -> Value {
    let mut result = json!({ "resultType": "input_required", "inputRequests": requests });
    if let Some(state) = state {
        result["requestState"] = json!(state);
    }
    result
}

fn missing_capability(capability: &str) -> RpcError {
    RpcError::new(
        code::MISSING_CLIENT_CAPABILITY,
        format!("this tool needs the client capability {capability}"),
    )
    .with_data(json!({ "requiredCapabilities": { capability: {} } }))
}

/// An accepted elicitation answer's content.
fn accepted<'a>(call: &'a Call, key: &str) -> Option<&'a Map<String, Value>> {
    let answer = call.input_responses.as_ref()?.get(key)?.as_object()?;
    if answer.get("action").and_then(Value::as_str) != Some("accept") {
        return None;
    }
    answer.get("content").and_then(Value::as_object)
}

/// A sampling answer's text.
fn sampled(call: &Call, key: &str) -> Option<String> {
    let answer = call.input_responses.as_ref()?.get(key)?.as_object()?;
    let content = answer.get("content")?;
    content
        .get("text")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| {
            content
                .as_array()?
                .first()?
                .get("text")?
                .as_str()
                .map(str::to_string)
        })
}

fn listed_roots(call: &Call, key: &str) -> Option<Vec<String>> {
    let roots = call
        .input_responses
        .as_ref()?
        .get(key)?
        .get("roots")?
        .as_array()?;
    Some(
        roots
            .iter()
            .filter_map(|r| r.get("uri").and_then(Value::as_str).map(str::to_string))
            .collect(),
    )
}

/// Where the organizations that switched the dynamic tool on are kept: on the bus, so
/// that every node lists the same tools.
fn dynamic_tool_key(organization_id: &str) -> String {
    format!("mcp-fixtures:dynamic-tool:{organization_id}")
}

impl FixturesProvider {
    pub fn new() -> Self {
        let t = |name: &str, description: &str| {
            Tool::new(name.to_string(), description.to_string(), no_args())
        };
        let tools = vec![
            t("test_simple_text", "Tests simple text content response"),
            t("test_image_content", "Tests image content response"),
            t("test_audio_content", "Tests audio content response"),
            t(
                "test_embedded_resource",
                "Tests embedded resource content response",
            ),
            t(
                "test_multiple_content_types",
                "Tests response with multiple content types (text, image, resource)",
            ),
            t(
                "test_tool_with_logging",
                "Tests tool that emits log messages during execution",
            ),
            t(
                "test_tool_with_progress",
                "Tests tool that reports progress notifications",
            ),
            t("test_error_handling", "Tests error response handling"),
            Tool::new(
                "test_sampling",
                "Tests server-initiated sampling (LLM completion request)",
                string_arg("prompt", "The prompt to send to the LLM"),
            ),
            Tool::new(
                "test_elicitation",
                "Tests server-initiated elicitation (user input request)",
                string_arg("message", "The message to show the user"),
            ),
            t(
                "test_elicitation_sep1034_defaults",
                "Tests elicitation with default values per SEP-1034",
            ),
            t(
                "test_elicitation_sep1330_enums",
                "Tests elicitation with enum schema improvements per SEP-1330",
            ),
            Tool::new(
                "json_schema_2020_12_tool",
                "Tool with JSON Schema 2020-12 features",
                schema(json!({
                    "$schema": "https://json-schema.org/draft/2020-12/schema",
                    "type": "object",
                    "$defs": {
                        "address": {
                            "$anchor": "addressDef",
                            "type": "object",
                            "properties": { "street": { "type": "string" }, "city": { "type": "string" } }
                        }
                    },
                    "properties": {
                        "name": { "type": "string" },
                        "address": { "$ref": "#/$defs/address" },
                        "contactMethod": { "type": "string", "enum": ["phone", "email"] },
                        "phone": { "type": "string" },
                        "email": { "type": "string" }
                    },
                    "allOf": [{ "anyOf": [{ "required": ["phone"] }, { "required": ["email"] }] }],
                    "if": { "properties": { "contactMethod": { "const": "phone" } }, "required": ["contactMethod"] },
                    "then": { "required": ["phone"] },
                    "else": { "required": ["email"] },
                    "additionalProperties": false
                })),
            ),
            t(
                "test_missing_capability",
                "Needs the client's sampling capability",
            ),
            t(
                "test_streaming_elicitation",
                "Asks the client for input during the call",
            ),
            t(
                "test_logging_tool",
                "Sends log messages when the request asks for them",
            ),
            t(
                "test_trigger_tool_change",
                "Adds or removes a tool, so that clients hear of the change",
            ),
            t(
                "test_trigger_prompt_change",
                "Adds or removes a prompt, so that clients hear of the change",
            ),
            t(
                "test_input_required_result_elicitation",
                "Asks for the user's name (input required)",
            ),
            t(
                "test_input_required_result_sampling",
                "Asks the client's model a question (input required)",
            ),
            t(
                "test_input_required_result_list_roots",
                "Asks for the client's roots (input required)",
            ),
            t(
                "test_input_required_result_request_state",
                "Round-trips a protected requestState",
            ),
            t(
                "test_input_required_result_multiple_inputs",
                "Asks for several inputs at once",
            ),
            t(
                "test_input_required_result_multi_round",
                "Asks for input over two rounds",
            ),
            t(
                "test_input_required_result_tampered_state",
                "Refuses a tampered requestState",
            ),
            t(
                "test_input_required_result_capabilities",
                "Asks only for what the client can give",
            ),
            Tool::new(
                "test_countdown",
                "Counts down, reporting progress at each step: a long call to cancel",
                schema(json!({
                    "type": "object",
                    "properties": {
                        "steps": { "type": "integer", "minimum": 1, "maximum": 600 },
                        "interval_ms": { "type": "integer", "minimum": 1, "maximum": 10000 }
                    },
                    "required": ["steps", "interval_ms"],
                    "additionalProperties": false
                })),
            ),
        ];
        Self {
            tools: tools.into_iter().map(ToolSpec::new).collect(),
            dynamic_tool: ToolSpec::new(t(
                DYNAMIC_TOOL,
                "A tool that test_trigger_tool_change adds and removes",
            )),
            dynamic_prompt_on: AtomicBool::new(false),
        }
    }

    /// Seals state for a round of `tool`, bound to the caller's organization and the tool.
    async fn seal(&self, call: &Call, tool: &str, state: Value) -> Result<String, RpcError> {
        let codec = call
            .node
            .mcp
            .state_codec(&call.node.db)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "cannot load the request-state key");
                RpcError::internal()
            })?;
        let bound = format!("{}|{tool}", call.principal.organization_id);
        let payload = serde_json::to_vec(&state).expect("state serializes");
        Ok(codec.seal_with(
            &payload,
            &SealOptions::new()
                .associated_data(bound.as_bytes())
                .ttl(Duration::from_secs(600)),
        ))
    }

    /// Opens the state the client echoed; `None` when there is none; an error when it was
    /// forged, tampered with, expired or made for another tool or tenant.
    async fn open(&self, call: &Call, tool: &str) -> Result<Option<Value>, RpcError> {
        let Some(sealed) = &call.request_state else {
            return Ok(None);
        };
        let codec = call
            .node
            .mcp
            .state_codec(&call.node.db)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "cannot load the request-state key");
                RpcError::internal()
            })?;
        let bound = format!("{}|{tool}", call.principal.organization_id);
        let payload = codec.open_with(sealed, bound.as_bytes()).map_err(|e| {
            RpcError::invalid_params(format!("requestState failed its integrity check: {e}"))
        })?;
        serde_json::from_slice(&payload)
            .map(Some)
            .map_err(|_| RpcError::invalid_params("requestState failed its integrity check"))
    }

    async fn run(
        &self,
        name: &str,
        args: Map<String, Value>,
        call: &Call,
    ) -> Result<Value, RpcError> {
        let out = &call.out;
        let sleep = || tokio::time::sleep(Duration::from_millis(50));
        Ok(match name {
            "test_simple_text" => text("This is a simple text response for testing."),
            "test_image_content" => content(vec![ContentBlock::image(PNG, "image/png")]),
            "test_audio_content" => content(vec![ContentBlock::audio(WAV, "audio/wav")]),
            "test_embedded_resource" => content(vec![ContentBlock::resource(
                ResourceContents::text(
                    "This is an embedded resource content.",
                    "test://embedded-resource",
                )
                .with_mime_type("text/plain"),
            )]),
            "test_multiple_content_types" => content(vec![
                ContentBlock::text("Multiple content types test:"),
                ContentBlock::image(PNG, "image/png"),
                ContentBlock::resource(
                    ResourceContents::text(
                        json!({ "test": "data", "value": 123 }).to_string(),
                        "test://mixed-content-resource",
                    )
                    .with_mime_type("application/json"),
                ),
            ]),
            "test_tool_with_logging" => {
                for (i, message) in [
                    "Tool execution started",
                    "Tool processing data",
                    "Tool execution completed",
                ]
                .into_iter()
                .enumerate()
                {
                    if i > 0 {
                        sleep().await;
                    }
                    out.log(LogLevel::Info, "conformance", json!(message));
                }
                text("Tool with logging executed successfully")
            }
            "test_logging_tool" => {
                out.log(
                    LogLevel::Info,
                    "conformance",
                    json!("test_logging_tool ran"),
                );
                text("Logged (when the request asked for log messages)")
            }
            "test_tool_with_progress" => {
                for (i, step) in [0.0, 50.0, 100.0].into_iter().enumerate() {
                    if i > 0 {
                        sleep().await;
                    }
                    out.progress(
                        step,
                        Some(100.0),
                        Some(format!("Completed step {step} of 100")),
                    );
                }
                text("Progress reported: 0, 50 and 100 of 100")
            }
            "test_error_handling" => {
                let mut result = CallToolResult::error(vec![ContentBlock::text(
                    "This tool intentionally returns an error for testing",
                )]);
                result.result_type = None;
                serde_json::to_value(result).expect("results serialize")
            }
            "test_sampling" => {
                let prompt = args
                    .get("prompt")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                match call
                    .ask_client(
                        "sampling/createMessage",
                        sampling(prompt, 100)["params"].clone(),
                    )
                    .await
                {
                    Ok(answer) => {
                        let said = answer
                            .pointer("/content/text")
                            .and_then(Value::as_str)
                            .unwrap_or("No response");
                        text(format!("LLM response: {said}"))
                    }
                    Err(e) => text(format!("Sampling not supported or error: {}", e.message)),
                }
            }
            "test_elicitation" => {
                let message = args
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let request = elicitation(
                    message,
                    json!({
                        "username": { "type": "string", "description": "User's response" },
                        "email": { "type": "string", "description": "User's email address" }
                    }),
                    &["username", "email"],
                );
                match call
                    .ask_client("elicitation/create", request["params"].clone())
                    .await
                {
                    Ok(answer) => text(format!(
                        "User response: action={}, content={}",
                        answer
                            .get("action")
                            .and_then(Value::as_str)
                            .unwrap_or("unknown"),
                        answer.get("content").cloned().unwrap_or(json!({}))
                    )),
                    Err(e) => text(format!("Elicitation not supported or error: {}", e.message)),
                }
            }
            "test_elicitation_sep1034_defaults" => {
                let request = elicitation(
                    "Please review and update the form fields with defaults",
                    json!({
                        "name": { "type": "string", "description": "User name", "default": "John Doe" },
                        "age": { "type": "integer", "description": "User age", "default": 30 },
                        "score": { "type": "number", "description": "User score", "default": 95.5 },
                        "status": { "type": "string", "description": "User status", "enum": ["active", "inactive", "pending"], "default": "active" },
                        "verified": { "type": "boolean", "description": "Verification status", "default": true }
                    }),
                    &[],
                );
                elicitation_outcome(
                    call.ask_client("elicitation/create", request["params"].clone())
                        .await,
                )
            }
            "test_elicitation_sep1330_enums" => {
                let request = elicitation(
                    "Please select options from the enum fields",
                    json!({
                        "untitledSingle": { "type": "string", "description": "Select one option", "enum": ["option1", "option2", "option3"] },
                        "titledSingle": { "type": "string", "description": "Select one option with titles", "oneOf": [
                            { "const": "value1", "title": "First Option" },
                            { "const": "value2", "title": "Second Option" },
                            { "const": "value3", "title": "Third Option" }
                        ] },
                        "legacyEnum": { "type": "string", "description": "Select one option (legacy)", "enum": ["opt1", "opt2", "opt3"], "enumNames": ["Option One", "Option Two", "Option Three"] },
                        "untitledMulti": { "type": "array", "description": "Select multiple options", "minItems": 1, "maxItems": 3,
                            "items": { "type": "string", "enum": ["option1", "option2", "option3"] } },
                        "titledMulti": { "type": "array", "description": "Select multiple options with titles", "minItems": 1, "maxItems": 3,
                            "items": { "anyOf": [
                                { "const": "value1", "title": "First Choice" },
                                { "const": "value2", "title": "Second Choice" },
                                { "const": "value3", "title": "Third Choice" }
                            ] } }
                    }),
                    &[],
                );
                elicitation_outcome(
                    call.ask_client("elicitation/create", request["params"].clone())
                        .await,
                )
            }
            "json_schema_2020_12_tool" => text(format!("Received: {}", Value::Object(args))),
            "test_missing_capability" => {
                if !call.client_can("sampling") {
                    return Err(missing_capability("sampling"));
                }
                match sampled(call, "answer") {
                    Some(said) => text(format!("The client's model said: {said}")),
                    None => input_required(json!({ "answer": sampling("Say hello", 20) }), None),
                }
            }
            "test_streaming_elicitation" => {
                if !call.client_can("elicitation") {
                    return Err(missing_capability("elicitation"));
                }
                match accepted(call, "confirm") {
                    Some(_) => text("Confirmed"),
                    None => input_required(
                        json!({ "confirm": elicitation("Continue?", json!({ "ok": { "type": "boolean" } }), &["ok"]) }),
                        None,
                    ),
                }
            }
            "test_trigger_tool_change" => {
                let org = call.principal.organization_id.clone();
                let key = dynamic_tool_key(&org);
                let cache = &call.node.bus.cache;
                let added = match cache.delete(&key).await {
                    Ok(true) => false,
                    Ok(false) => {
                        let kept = cache.set(&key, "on", Duration::from_secs(24 * 3600)).await;
                        kept.map(|_| true).map_err(|_| RpcError::internal())?
                    }
                    Err(_) => return Err(RpcError::internal()),
                };
                events::publish(&call.node, &org, Change::ToolsChanged).await;
                text(format!(
                    "{DYNAMIC_TOOL} {}",
                    if added { "added" } else { "removed" }
                ))
            }
            "test_trigger_prompt_change" => {
                let was = self.dynamic_prompt_on.fetch_xor(true, Ordering::Relaxed);
                events::publish(
                    &call.node,
                    &call.principal.organization_id,
                    Change::PromptsChanged,
                )
                .await;
                text(format!(
                    "{DYNAMIC_PROMPT} {}",
                    if was { "removed" } else { "added" }
                ))
            }
            DYNAMIC_TOOL => text("The dynamic tool ran"),
            "test_countdown" => {
                let steps = args["steps"].as_u64().unwrap_or(1);
                let every = Duration::from_millis(args["interval_ms"].as_u64().unwrap_or(1));
                for step in 1..=steps {
                    tokio::time::sleep(every).await;
                    out.progress(step as f64, Some(steps as f64), None);
                }
                text(format!("Counted {steps} steps"))
            }
            "test_input_required_result_elicitation" => match accepted(call, "user_name")
                .and_then(|c| c.get("name")?.as_str().map(str::to_string))
            {
                Some(name) => text(format!("Hello, {name}!")),
                None => input_required(
                    json!({ "user_name": elicitation("What is your name?", json!({ "name": { "type": "string" } }), &["name"]) }),
                    None,
                ),
            },
            "test_input_required_result_sampling" => match sampled(call, "capital_question") {
                Some(said) => text(format!("The model answered: {said}")),
                None => input_required(
                    json!({ "capital_question": sampling("What is the capital of France?", 100) }),
                    None,
                ),
            },
            "test_input_required_result_list_roots" => match listed_roots(call, "client_roots") {
                Some(roots) => text(format!(
                    "The client has {} root(s): {}",
                    roots.len(),
                    roots.join(", ")
                )),
                None => input_required(json!({ "client_roots": roots() }), None),
            },
            "test_input_required_result_request_state"
            | "test_input_required_result_tampered_state" => {
                let state = self.open(call, name).await?;
                match (state, accepted(call, "confirm")) {
                    (Some(state), Some(_)) if state["step"] == json!("confirm") => {
                        text("Confirmed: state-ok")
                    }
                    _ => {
                        let sealed = self.seal(call, name, json!({ "step": "confirm" })).await?;
                        input_required(
                            json!({ "confirm": elicitation("Please confirm", json!({ "ok": { "type": "boolean" } }), &["ok"]) }),
                            Some(sealed),
                        )
                    }
                }
            }
            "test_input_required_result_multiple_inputs" => {
                let state = self.open(call, name).await?;
                let name_given = accepted(call, "user_name")
                    .and_then(|c| c.get("name")?.as_str().map(str::to_string));
                match (
                    state,
                    name_given,
                    sampled(call, "greeting"),
                    listed_roots(call, "client_roots"),
                ) {
                    (Some(_), Some(user), Some(greeting), Some(roots)) => {
                        text(format!("{greeting} {user}; roots: {}", roots.join(", ")))
                    }
                    _ => {
                        let sealed = self.seal(call, name, json!({ "step": "all" })).await?;
                        input_required(
                            json!({
                                "user_name": elicitation("What is your name?", json!({ "name": { "type": "string" } }), &["name"]),
                                "greeting": sampling("Generate a greeting", 50),
                                "client_roots": roots()
                            }),
                            Some(sealed),
                        )
                    }
                }
            }
            "test_input_required_result_multi_round" => {
                let state = self.open(call, name).await?;
                let step = state.as_ref().and_then(|s| s["step"].as_u64());
                let given = |key: &str, field: &str| {
                    accepted(call, key).and_then(|c| c.get(field)?.as_str().map(str::to_string))
                };
                match (step, given("step1", "name"), given("step2", "color")) {
                    (Some(2), _, Some(color)) => {
                        let who = state
                            .as_ref()
                            .and_then(|s| s["name"].as_str())
                            .unwrap_or("you")
                            .to_string();
                        text(format!("{who} likes {color}"))
                    }
                    (Some(1), Some(who), _) => {
                        let sealed = self
                            .seal(call, name, json!({ "step": 2, "name": who }))
                            .await?;
                        input_required(
                            json!({ "step2": elicitation("Step 2: What is your favorite color?", json!({ "color": { "type": "string" } }), &["color"]) }),
                            Some(sealed),
                        )
                    }
                    _ => {
                        let sealed = self.seal(call, name, json!({ "step": 1 })).await?;
                        input_required(
                            json!({ "step1": elicitation("Step 1: What is your name?", json!({ "name": { "type": "string" } }), &["name"]) }),
                            Some(sealed),
                        )
                    }
                }
            }
            "test_input_required_result_capabilities" => {
                let mut requests = Map::new();
                if call.client_can("sampling") {
                    requests.insert("question".into(), sampling("What is 2 + 2?", 10));
                }
                if call.client_can("elicitation") {
                    requests.insert(
                        "user_name".into(),
                        elicitation(
                            "What is your name?",
                            json!({ "name": { "type": "string" } }),
                            &["name"],
                        ),
                    );
                }
                if call.client_can("roots") {
                    requests.insert("client_roots".into(), roots());
                }
                let answered = call
                    .input_responses
                    .as_ref()
                    .is_some_and(|r| requests.keys().all(|k| r.contains_key(k)));
                if requests.is_empty() || answered {
                    text("Done with what the client can give")
                } else {
                    input_required(Value::Object(requests), None)
                }
            }
            _ => return Err(RpcError::invalid_params(format!("unknown tool: {name}"))),
        })
    }
}

fn elicitation_outcome(answer: Result<Value, RpcError>) -> Value {
    match answer {
        Ok(answer) => text(format!(
            "Elicitation completed: action={}, content={}",
            answer
                .get("action")
                .and_then(Value::as_str)
                .unwrap_or("unknown"),
            answer.get("content").cloned().unwrap_or(json!({}))
        )),
        Err(e) => text(format!("Elicitation not supported or error: {}", e.message)),
    }
}

fn resource(uri: &str, name: &str, description: &str, mime: &str) -> Resource {
    Resource::new(uri, name)
        .with_description(description)
        .with_mime_type(mime)
}

fn prompt(name: &str, description: &str, args: &[(&str, &str)]) -> Prompt {
    let arguments = (!args.is_empty()).then(|| {
        args.iter()
            .map(|(n, d)| {
                let mut a = PromptArgument::new(*n);
                a.description = Some((*d).into());
                a.required = Some(true);
                a
            })
            .collect()
    });
    Prompt::new(name, Some(description), arguments)
}

fn user(content: Value) -> Value {
    json!({ "role": "user", "content": content })
}

impl Provider for FixturesProvider {
    fn tools<'a>(&'a self, call: &'a Call) -> BoxFuture<'a, Vec<Arc<ToolSpec>>> {
        Box::pin(async move {
            let mut tools = self.tools.clone();
            let key = dynamic_tool_key(&call.principal.organization_id);
            if let Ok(Some(_)) = call.node.bus.cache.get(&key).await {
                tools.push(self.dynamic_tool.clone());
            }
            tools
        })
    }

    fn call_tool<'a>(
        &'a self,
        name: &'a str,
        args: Map<String, Value>,
        call: &'a Call,
    ) -> Reply<'a> {
        Box::pin(self.run(name, args, call))
    }

    fn resources<'a>(&'a self, _call: &'a Call) -> BoxFuture<'a, Result<Vec<Resource>, RpcError>> {
        Box::pin(async {
            Ok(vec![
                resource(
                    "test://static-text",
                    "static-text",
                    "A static text resource for testing",
                    "text/plain",
                ),
                resource(
                    "test://static-binary",
                    "static-binary",
                    "A static binary resource (image) for testing",
                    "image/png",
                ),
                resource(
                    "test://watched-resource",
                    "watched-resource",
                    "A resource that can be subscribed to",
                    "text/plain",
                ),
            ])
        })
    }

    fn resource_templates(&self) -> Vec<ResourceTemplate> {
        vec![
            ResourceTemplate::new("test://template/{id}/data", "template")
                .with_description("A resource template with parameter substitution")
                .with_mime_type("application/json"),
        ]
    }

    fn owns_uri(&self, uri: &str) -> bool {
        uri.starts_with("test://")
    }

    fn read_resource<'a>(&'a self, uri: &'a str, _call: &'a Call) -> Reply<'a> {
        Box::pin(async move {
            let contents = match uri {
                "test://static-text" => {
                    ResourceContents::text("This is the content of the static text resource.", uri)
                        .with_mime_type("text/plain")
                }
                "test://static-binary" => {
                    ResourceContents::blob(PNG, uri).with_mime_type("image/png")
                }
                "test://watched-resource" => {
                    ResourceContents::text("Watched resource content", uri)
                        .with_mime_type("text/plain")
                }
                _ => {
                    let id = uri
                        .strip_prefix("test://template/")
                        .and_then(|rest| rest.strip_suffix("/data"))
                        .filter(|id| !id.is_empty() && !id.contains('/'))
                        .ok_or_else(|| not_found(uri))?;
                    let body = json!({ "id": id, "templateTest": true, "data": format!("Data for ID: {id}") });
                    ResourceContents::text(body.to_string(), uri).with_mime_type("application/json")
                }
            };
            Ok(json!({ "contents": [contents] }))
        })
    }

    fn prompts(&self) -> Vec<Prompt> {
        let mut prompts = vec![
            prompt(
                "test_simple_prompt",
                "A simple prompt without arguments",
                &[],
            ),
            prompt(
                "test_prompt_with_arguments",
                "A prompt with required arguments",
                &[
                    ("arg1", "First test argument"),
                    ("arg2", "Second test argument"),
                ],
            ),
            prompt(
                "test_prompt_with_embedded_resource",
                "A prompt that includes an embedded resource",
                &[("resourceUri", "URI of the resource to embed")],
            ),
            prompt(
                "test_prompt_with_image",
                "A prompt that includes image content",
                &[],
            ),
            prompt(
                "test_input_required_result_prompt",
                "A prompt that asks the client for input first",
                &[],
            ),
        ];
        if self.dynamic_prompt_on.load(Ordering::Relaxed) {
            prompts.push(prompt(
                DYNAMIC_PROMPT,
                "A prompt that test_trigger_prompt_change adds and removes",
                &[],
            ));
        }
        prompts
    }

    fn get_prompt<'a>(
        &'a self,
        name: &'a str,
        args: Map<String, Value>,
        call: &'a Call,
    ) -> Reply<'a> {
        Box::pin(async move {
            let arg = |k: &str| {
                args.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            let messages = match name {
                "test_simple_prompt" => json!([user(
                    json!({ "type": "text", "text": "This is a simple prompt for testing." })
                )]),
                "test_prompt_with_arguments" => json!([user(json!({
                    "type": "text",
                    "text": format!("Prompt with arguments: arg1='{}', arg2='{}'", arg("arg1"), arg("arg2"))
                }))]),
                "test_prompt_with_embedded_resource" => json!([
                    user(json!({ "type": "resource", "resource": {
                        "uri": arg("resourceUri"), "mimeType": "text/plain", "text": "Embedded resource content for testing."
                    } })),
                    user(
                        json!({ "type": "text", "text": "Please process the embedded resource above." })
                    )
                ]),
                "test_prompt_with_image" => json!([
                    user(json!({ "type": "image", "data": PNG, "mimeType": "image/png" })),
                    user(json!({ "type": "text", "text": "Please analyze the image above." }))
                ]),
                "test_input_required_result_prompt" => match accepted(call, "user_context")
                    .and_then(|c| c.get("context")?.as_str().map(str::to_string))
                {
                    Some(context) => json!([user(
                        json!({ "type": "text", "text": format!("Use this context: {context}") })
                    )]),
                    None => {
                        return Ok(input_required(
                            json!({ "user_context": elicitation(
                                "What context should the prompt use?",
                                json!({ "context": { "type": "string" } }),
                                &["context"]
                            ) }),
                            None,
                        ));
                    }
                },
                DYNAMIC_PROMPT => json!([user(
                    json!({ "type": "text", "text": "The dynamic prompt" })
                )]),
                _ => return Err(RpcError::invalid_params(format!("unknown prompt: {name}"))),
            };
            Ok(json!({ "messages": messages }))
        })
    }

    fn complete<'a>(
        &'a self,
        reference: &'a Value,
        _argument: &'a str,
        value: &'a str,
        _call: &'a Call,
    ) -> BoxFuture<'a, Option<Vec<String>>> {
        Box::pin(async move {
            let name = reference.get("name").and_then(Value::as_str);
            let uri = reference.get("uri").and_then(Value::as_str);
            if !name.is_some_and(|n| n.starts_with("test_"))
                && !uri.is_some_and(|u| u.starts_with("test://"))
            {
                return None;
            }
            Some(
                ["paris", "park", "party", "test", "template"]
                    .into_iter()
                    .filter(|v| v.starts_with(value))
                    .map(str::to_string)
                    .collect(),
            )
        })
    }
}
