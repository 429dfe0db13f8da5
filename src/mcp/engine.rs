//! The methods: one request in, one result (or error) out, whatever the transport.
//! The endpoint decides the protocol era and the session; this module answers.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rmcp::model::CallToolResult;
use serde_json::{Map, Value, json};

use super::Mcp;
use super::call::{Call, LogLevel};
use super::catalog::not_found;
use super::protocol::{RpcError, Version, code, meta};
use super::sessions::Session;
use super::tasks::{self, TaskSupport};

pub const SERVER_NAME: &str = "devmesh";

pub fn server_info() -> Value {
    json!({ "name": SERVER_NAME, "title": "devmesh", "version": env!("CARGO_PKG_VERSION") })
}

pub fn capabilities() -> Value {
    json!({
        "extensions": { tasks::EXTENSION: {} },
        "tools": { "listChanged": true },
        "resources": { "subscribe": true, "listChanged": true },
        "prompts": { "listChanged": true },
        "logging": {},
        "completions": {},
    })
}

const INSTRUCTIONS: &str = "devmesh connects agents to a team's shared contexts and DevOps tools. \
Use devmesh_context_* to keep and read conversation history that other agents can see.";

/// Methods that only sessions (protocols up to 2025-11-25) have.
const SESSION_ONLY: [&str; 5] = [
    "initialize",
    "ping",
    "logging/setLevel",
    "resources/subscribe",
    "resources/unsubscribe",
];

/// Answers one request. `session` is the caller's session under the older protocols.
pub async fn handle(
    mcp: &Mcp,
    call: &Call,
    session: Option<&Arc<Session>>,
    method: &str,
    params: &Map<String, Value>,
) -> Result<Value, RpcError> {
    let stateless = call.version.is_stateless();
    if stateless && SESSION_ONLY.contains(&method) {
        return Err(RpcError::method_not_found(method));
    }
    let result = match method {
        "server/discover" if stateless => discover(),
        "ping" => Ok(json!({})),
        "tools/list" => list_tools(mcp, call, params).await,
        "tools/call" => call_tool(mcp, call, params).await,
        "resources/list" => list_resources(mcp, call, params).await,
        "resources/templates/list" => {
            let templates = mcp.catalog.resource_templates();
            paginate(mcp, params, "resourceTemplates", to_values(&templates))
        }
        "resources/read" => read_resource(mcp, call, params).await,
        "resources/subscribe" | "resources/unsubscribe" => {
            let uri = required_str(params, "uri")?;
            let session = session.ok_or_else(|| RpcError::method_not_found(method))?;
            if method == "resources/subscribe" {
                // Only what the caller may read: a resource it cannot read (another
                // agent's inbox, a task it was not given) or that does not exist is the
                // same error as reading it, and nothing about it is ever sent.
                read_resource(mcp, call, params).await?;
                session.subscribe(uri);
            } else {
                session.unsubscribe(uri);
            }
            Ok(json!({}))
        }
        "prompts/list" => {
            let prompts = mcp.catalog.prompts();
            paginate(mcp, params, "prompts", to_values(&prompts))
        }
        "prompts/get" => get_prompt(mcp, call, params).await,
        "completion/complete" => complete(mcp, call, params).await,
        "tasks/get" | "tasks/update" | "tasks/cancel" => tasks::handle(call, method, params).await,
        "logging/setLevel" => {
            let level = required_str(params, "level")?;
            let level = LogLevel::parse(level).ok_or_else(|| {
                RpcError::invalid_params(format!(
                    "unknown log level {level:?}: use debug, info, notice, warning, error, critical, alert or emergency"
                ))
            })?;
            session
                .ok_or_else(|| RpcError::method_not_found(method))?
                .set_log_level(level);
            Ok(json!({}))
        }
        _ => Err(RpcError::method_not_found(method)),
    }
    .map_err(|e| e.in_era(call.version))?;
    Ok(finish(mcp, call.version, method, result))
}

/// Adds what the protocol version asks of every result: `resultType` and caching hints
/// from 2026-07-28 on, neither before.
fn finish(mcp: &Mcp, version: Version, method: &str, mut result: Value) -> Value {
    let Some(obj) = result.as_object_mut() else {
        return result;
    };
    if version.is_stateless() {
        obj.entry("resultType").or_insert_with(|| json!("complete"));
        if matches!(
            method,
            "tools/list"
                | "prompts/list"
                | "resources/list"
                | "resources/templates/list"
                | "resources/read"
        ) && obj.get("resultType") == Some(&json!("complete"))
        {
            obj.insert("ttlMs".into(), json!(mcp.list_ttl_ms));
            // What a tenant sees is its own: never share a cached answer across callers.
            obj.insert("cacheScope".into(), json!("private"));
        }
    } else if obj.get("resultType") != Some(&json!("task")) {
        // A CreateTaskResult keeps its discriminator: without it a client could not tell
        // it from a tool's result.
        obj.remove("resultType");
    }
    result
}

fn discover() -> Result<Value, RpcError> {
    Ok(json!({
        "supportedVersions": Version::supported(),
        "capabilities": capabilities(),
        "instructions": INSTRUCTIONS,
        "ttlMs": 300_000,
        "cacheScope": "public",
        "_meta": { meta::SERVER_INFO: server_info() },
    }))
}

/// What an `initialize` request asks for: the client's protocol when it is one with
/// sessions (else the newest such), and the client's capabilities.
pub fn negotiate(params: &Map<String, Value>) -> Result<(Version, Map<String, Value>), RpcError> {
    let requested = params
        .get("protocolVersion")
        .and_then(Value::as_str)
        .ok_or_else(|| RpcError::invalid_params("initialize needs \"protocolVersion\""))?;
    let version = Version::parse(requested)
        .filter(|v| !v.is_stateless())
        .unwrap_or(Version::LATEST_SESSION);
    let capabilities = params
        .get("capabilities")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    Ok((version, capabilities))
}

/// The `initialize` result of a new session.
pub fn initialize_result(version: Version) -> Value {
    json!({
        "protocolVersion": version.as_str(),
        "capabilities": capabilities(),
        "serverInfo": server_info(),
        "instructions": INSTRUCTIONS,
    })
}

fn required_str<'a>(params: &'a Map<String, Value>, key: &str) -> Result<&'a str, RpcError> {
    match params.get(key) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(RpcError::invalid_params(format!(
            "\"{key}\" must be a string"
        ))),
        None => Err(RpcError::invalid_params(format!("\"{key}\" is required"))),
    }
}

fn arguments(params: &Map<String, Value>) -> Result<Map<String, Value>, RpcError> {
    match params.get("arguments") {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(args)) => Ok(args.clone()),
        Some(_) => Err(RpcError::invalid_params("\"arguments\" must be an object")),
    }
}

fn to_values<T: serde::Serialize>(items: &[T]) -> Vec<Value> {
    items
        .iter()
        .map(|i| serde_json::to_value(i).expect("catalog entries serialize"))
        .collect()
}

/// One page of a list; the cursor is the opaque position of the next page.
fn paginate(
    mcp: &Mcp,
    params: &Map<String, Value>,
    key: &str,
    items: Vec<Value>,
) -> Result<Value, RpcError> {
    paginate_with(mcp, params, key, &items, Value::clone)
}

/// A page of `items` as `show` gives each: only the page's items are made into JSON
/// (an organization's 2,000 HTTP tools are not serialized for every page).
fn paginate_with<T>(
    mcp: &Mcp,
    params: &Map<String, Value>,
    key: &str,
    items: &[T],
    show: impl Fn(&T) -> Value,
) -> Result<Value, RpcError> {
    let start = match params.get("cursor") {
        None | Some(Value::Null) => 0,
        Some(Value::String(c)) => decode_cursor(c)
            .filter(|&n| n <= items.len())
            .ok_or_else(|| RpcError::invalid_params(format!("invalid cursor {c:?}")))?,
        Some(_) => return Err(RpcError::invalid_params("\"cursor\" must be a string")),
    };
    let end = (start + mcp.page_size).min(items.len());
    let mut page = Map::new();
    page.insert(
        key.into(),
        Value::Array(items[start..end].iter().map(show).collect()),
    );
    if end < items.len() {
        page.insert(
            "nextCursor".into(),
            json!(URL_SAFE_NO_PAD.encode(format!("o:{end}"))),
        );
    }
    Ok(Value::Object(page))
}

fn decode_cursor(cursor: &str) -> Option<usize> {
    let raw = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    std::str::from_utf8(&raw)
        .ok()?
        .strip_prefix("o:")?
        .parse()
        .ok()
}

async fn list_tools(
    mcp: &Mcp,
    call: &Call,
    params: &Map<String, Value>,
) -> Result<Value, RpcError> {
    let tools = mcp.catalog.tools(call).await;
    paginate_with(mcp, params, "tools", &tools, |spec| {
        serde_json::to_value(&spec.tool).expect("tools serialize")
    })
}

async fn call_tool(mcp: &Mcp, call: &Call, params: &Map<String, Value>) -> Result<Value, RpcError> {
    let name = required_str(params, "name")?;
    let args = arguments(params)?;
    let Some((provider, spec)) = mcp.catalog.find_tool(call, name).await else {
        return Err(RpcError::invalid_params(format!("unknown tool: {name}"))
            .with_data(json!({ "name": super::protocol::quoted(name) })));
    };
    if let Some(sent) = &call.param_headers {
        super::stateless::check_param_headers(sent, &spec, &args)?;
    }
    if spec.task_support == TaskSupport::Required && !call.tasks_negotiated {
        return Err(tasks::missing_extension(&format!("the tool {name}")));
    }
    let started = std::time::Instant::now();
    let outcome = match spec.check_arguments(&args) {
        Err(problems) => Ok(tool_error(format!(
            "invalid arguments for {name}: {problems}"
        ))),
        Ok(()) => run_tool(provider, &spec, args, call).await,
    };
    let label = match &outcome {
        Ok(v) if v.get("isError") == Some(&json!(true)) => "tool_error",
        Ok(v) if v.get("resultType") == Some(&json!("input_required")) => "input_required",
        Ok(v) if v.get("resultType") == Some(&json!("task")) => "task",
        Ok(_) => "ok",
        Err(_) => "error",
    };
    metrics::counter!("devmesh_mcp_tool_calls_total", "tool" => spec.tool.name.to_string(), "outcome" => label)
        .increment(1);
    metrics::histogram!("devmesh_mcp_tool_call_duration_seconds", "tool" => spec.tool.name.to_string())
        .record(started.elapsed().as_secs_f64());
    outcome
}

/// Rounds of one tool call in a session, at most (see [`run_tool`]).
const SESSION_ROUNDS: usize = 16;

/// Calls the tool, and then:
/// - when it asks to go on as a task and may, makes the task (its `CreateTaskResult` is
///   the answer);
/// - when it asks for input the client cannot give, refuses with -32021;
/// - in a session (2025-11-25, 2025-06-18), which has no input-required results, asks the
///   client each of its input requests over the session's stream and calls the tool again
///   with the answers, so that a tool written once for 2026-07-28 serves both eras.
async fn run_tool(
    provider: &dyn super::catalog::Provider,
    spec: &super::catalog::ToolSpec,
    args: Map<String, Value>,
    call: &Call,
) -> Result<Value, RpcError> {
    let name = spec.tool.name.as_ref();
    let what = format!("the tool {name}");
    // Another round may follow: as a task, or in a session.
    let again = spec.task_support != TaskSupport::Forbidden || !call.version.is_stateless();
    let mut args = Some(args);
    let mut later: Option<Call> = None;
    for _ in 0..SESSION_ROUNDS {
        let this = later.as_ref().unwrap_or(call);
        let round_args = match &args {
            Some(kept) if again => kept.clone(),
            _ => args.take().unwrap_or_default(),
        };
        let reply = provider.call_tool(name, round_args, this).await?;
        if tasks::is_escalation(&reply) {
            return match args {
                Some(args)
                    if spec.task_support != TaskSupport::Forbidden && this.can_escalate() =>
                {
                    let round = tasks::Round {
                        input_responses: this.input_responses.clone(),
                        request_state: this.request_state.clone(),
                    };
                    tasks::create(this, name, args, round).await
                }
                _ => {
                    tracing::error!(tool = %name, "a tool asked to go on as a task where it may not");
                    Err(RpcError::internal())
                }
            };
        }
        let Some(requests) = input_requests(&reply) else {
            return Ok(reply);
        };
        this.check_answerable(&what, requests)?;
        if this.version.is_stateless() {
            return Ok(reply);
        }
        let mut answers = Map::new();
        for (key, request) in requests {
            let method = request.get("method").and_then(Value::as_str).unwrap_or("");
            let params = request.get("params").cloned().unwrap_or_else(|| json!({}));
            match this.ask_client(method, params).await {
                Ok(answer) => answers.insert(key.clone(), answer),
                // The client said no, or nothing in time: the tool cannot go on, which
                // is the tool's failure to report, not the protocol's.
                Err(e) if is_unanswered(&e) => {
                    return Ok(tool_error(format!("{what} could not go on: {}", e.message)));
                }
                Err(e) => return Err(e),
            };
        }
        let state = reply
            .get("requestState")
            .and_then(Value::as_str)
            .map(str::to_string);
        later = Some(call.next_round(answers, state));
    }
    Err(RpcError::new(
        code::INTERNAL_ERROR,
        format!("{what} asked for input more than {SESSION_ROUNDS} times"),
    ))
}

/// Whether a request to the client failed because of the client's answer (an error, or
/// none in time) rather than because it could not be asked.
fn is_unanswered(error: &RpcError) -> bool {
    let reason = error.data.as_ref().and_then(|d| d.get("reason"));
    reason
        .and_then(Value::as_str)
        .is_some_and(|r| r == super::call::CLIENT_ERROR || r == "client_timeout")
}

/// The `inputRequests` of an input-required result.
pub fn input_requests(reply: &Value) -> Option<&Map<String, Value>> {
    if reply.get("resultType") != Some(&json!("input_required")) {
        return None;
    }
    reply.get("inputRequests").and_then(Value::as_object)
}

/// A tool result that reports a failure to the model rather than to the protocol.
/// Its text quotes what the client sent at most in part (see [`super::protocol::capped`]).
pub fn tool_error(message: impl Into<String>) -> Value {
    let text = super::protocol::capped(message.into(), super::protocol::MAX_MESSAGE_CHARS);
    let mut result = CallToolResult::error(vec![rmcp::model::ContentBlock::text(text)]);
    result.result_type = None;
    serde_json::to_value(result).expect("results serialize")
}

async fn list_resources(
    mcp: &Mcp,
    call: &Call,
    params: &Map<String, Value>,
) -> Result<Value, RpcError> {
    let resources = mcp.catalog.resources(call).await?;
    paginate(mcp, params, "resources", to_values(&resources))
}

async fn read_resource(
    mcp: &Mcp,
    call: &Call,
    params: &Map<String, Value>,
) -> Result<Value, RpcError> {
    read_uri(mcp, call, required_str(params, "uri")?).await
}

async fn read_uri(mcp: &Mcp, call: &Call, uri: &str) -> Result<Value, RpcError> {
    match mcp.catalog.resource_owner(uri) {
        Some(provider) => provider.read_resource(uri, call).await,
        None => Err(not_found(uri)),
    }
}

/// Refuses resources the caller may not read (another agent's inbox, a task it was not
/// given, one that does not exist) with the error reading it gives, as
/// `resources/subscribe` does: what a `subscriptions/listen` stream names in
/// `notifications.resourceSubscriptions` must be the caller's to see.
pub async fn refuse_unreadable(mcp: &Mcp, call: &Call, uris: &[String]) -> Result<(), RpcError> {
    for uri in uris {
        read_uri(mcp, call, uri).await?;
    }
    Ok(())
}

async fn get_prompt(
    mcp: &Mcp,
    call: &Call,
    params: &Map<String, Value>,
) -> Result<Value, RpcError> {
    let name = required_str(params, "name")?;
    let args = arguments(params)?;
    let (provider, prompt) = mcp
        .catalog
        .find_prompt(name)
        .ok_or_else(|| RpcError::invalid_params(format!("unknown prompt: {name}")))?;
    let missing: Vec<&str> = prompt
        .arguments
        .iter()
        .flatten()
        .filter(|a| a.required == Some(true) && !args.contains_key(&a.name))
        .map(|a| a.name.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(RpcError::invalid_params(format!(
            "prompt {name} needs the argument(s): {}",
            missing.join(", ")
        )));
    }
    if let Some((key, _)) = args.iter().find(|(_, v)| !v.is_string()) {
        return Err(RpcError::invalid_params(format!(
            "prompt argument {key:?} must be a string"
        )));
    }
    provider.get_prompt(name, args, call).await
}

async fn complete(mcp: &Mcp, call: &Call, params: &Map<String, Value>) -> Result<Value, RpcError> {
    let reference = params
        .get("ref")
        .filter(|r| r.is_object())
        .ok_or_else(|| RpcError::invalid_params("\"ref\" must be an object"))?;
    let argument = params
        .get("argument")
        .and_then(Value::as_object)
        .ok_or_else(|| {
            RpcError::invalid_params("\"argument\" must be an object with name and value")
        })?;
    let name = required_str(argument, "name")?;
    let value = required_str(argument, "value")?;
    let mut values = mcp.catalog.complete(reference, name, value, call).await;
    let total = values.len();
    values.truncate(100);
    Ok(json!({
        "completion": { "values": values, "total": total, "hasMore": total > 100 }
    }))
}

/// A bounded label of an error's code, for metrics.
pub fn error_label(error: &RpcError) -> &'static str {
    match error.code {
        code::PARSE_ERROR => "parse_error",
        code::INVALID_REQUEST => "invalid_request",
        code::METHOD_NOT_FOUND => "method_not_found",
        code::INVALID_PARAMS => "invalid_params",
        code::HEADER_MISMATCH => "header_mismatch",
        code::MISSING_CLIENT_CAPABILITY => "missing_capability",
        code::UNSUPPORTED_PROTOCOL_VERSION => "unsupported_version",
        code::RATE_LIMITED => "rate_limited",
        _ => "internal_error",
    }
}
