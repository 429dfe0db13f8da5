//! MCP tasks: the extension `io.modelcontextprotocol/tasks` (SEP-2663). A tool call that
//! takes long answers at once with a `CreateTaskResult`; the client follows the task with
//! `tasks/get`, answers what it asks with `tasks/update` and stops it with `tasks/cancel`.
//!
//! - **Negotiation.** A client declares the extension under `capabilities.extensions` (in
//!   `initialize`, or per request in `_meta["io.modelcontextprotocol/clientCapabilities"]`).
//!   Without it, `tasks/*` answer -32021, a tool whose task support is
//!   [`TaskSupport::Required`] answers -32021, and an optional one runs inline.
//! - **Who decides.** The server does (SEP-2663 "server-directed creation"): a provider's
//!   tool returns [`escalate`] when [`Call::can_escalate`] says it may, and the engine
//!   makes the task and runs the tool again in the background with the same arguments
//!   and answers. A tool may first gather input inline (an input-required result) and
//!   escalate on a later round.
//! - **Rounds.** A task runs as rounds, one call of the tool each. A round that returns an
//!   input-required result parks the task in `input_required` with its `inputRequests`;
//!   once `tasks/update` has answered every one, the next round runs with the answers and
//!   the tool's `requestState`, on the node that took the last answer.
//! - **Storage.** Tasks are rows (`storage::mcp_tasks`), so every node reads the same
//!   task; a task is stored before its `CreateTaskResult` is sent, and can be read for
//!   `mcp.tasks.ttl` after it was made. Tasks are their creator's (the same API key or
//!   user): anyone else is told the task does not exist.
//! - **Ends.** A tool's result (also one with `isError`) completes the task; a protocol
//!   error fails it, with the error inlined. A cancelled task stays cancelled whatever its
//!   round still returns; the round itself is stopped on whichever node runs it. A round
//!   whose node stopped fails its task (-32603, `data.reason: "node_stopped"`).

mod runner;
pub mod wire;

use chrono::TimeDelta;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::call::Call;
use super::protocol::{RpcError, code};
use super::providers::storage_failure;
use crate::context::Context;
use crate::events::{self, Change};
use crate::service::ServiceError;
use crate::storage::mcp_tasks::{self, TaskRow};
use crate::storage::now;
use crate::tenancy::principal::Principal;
pub use runner::Running;

/// The extension's identifier, under `capabilities.extensions`.
pub const EXTENSION: &str = "io.modelcontextprotocol/tasks";

/// Whether a tool may run as a task (SEP-2663 "tool-level negotiation").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TaskSupport {
    /// Always inline; the tool never escalates.
    #[default]
    Forbidden,
    /// As a task when the client negotiated the extension, inline otherwise.
    Optional,
    /// Only as a task: a client without the extension gets -32021.
    Required,
}

/// Whether client capabilities (an `initialize`'s, or a request's `_meta` ones) declare
/// the extension.
pub fn declared(capabilities: &Map<String, Value>) -> bool {
    capabilities
        .get("extensions")
        .and_then(Value::as_object)
        .is_some_and(|extensions| extensions.contains_key(EXTENSION))
}

/// What a tool returns to go on as a task: the engine makes the task, answers with its
/// `CreateTaskResult`, and calls the tool again in the background with
/// [`Call::task_id`] set. Only when [`Call::can_escalate`].
pub fn escalate() -> Value {
    json!({ "resultType": "task" })
}

/// Whether a tool's reply is [`escalate`].
pub fn is_escalation(reply: &Value) -> bool {
    reply.get("resultType") == Some(&json!("task")) && reply.get("taskId").is_none()
}

/// -32021 for `what` (a method, or a tool that runs only as a task) asked by a client that
/// did not negotiate the extension; `data.requiredCapabilities` names it (SEP-2575
/// "Missing Required Capabilities").
pub fn missing_extension(what: &str) -> RpcError {
    RpcError::new(
        code::MISSING_CLIENT_CAPABILITY,
        format!(
            "{what} needs the client capability extensions[\"{EXTENSION}\"], which this client did not declare"
        ),
    )
    .with_data(json!({ "requiredCapabilities": { "extensions": { EXTENSION: {} } } }))
}

/// The call a task runs, kept with it for its rounds (`mcp_tasks.request`).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct TaskRequest {
    pub arguments: Map<String, Value>,
    pub protocol_version: String,
    pub client_capabilities: Map<String, Value>,
}

/// What a task in `input_required` waits for (`mcp_tasks.pending`): the requests still
/// unanswered by key, the answers given so far, and the state the tool sealed for its
/// next round.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Pending {
    pub requests: Map<String, Value>,
    #[serde(default)]
    pub responses: Map<String, Value>,
    #[serde(default)]
    pub state: Option<String>,
}

impl Pending {
    pub fn of(row: &TaskRow) -> Self {
        row.pending
            .as_deref()
            .and_then(|text| serde_json::from_str(text).ok())
            .unwrap_or_default()
    }
}

/// What a round starts with besides the call's arguments: the client's answers to the
/// previous round's input requests, and the state the tool sealed for this round.
#[derive(Debug, Clone, Default)]
pub struct Round {
    pub input_responses: Option<Map<String, Value>>,
    pub request_state: Option<String>,
}

/// Whose tasks are whose: the API key or user that made them (`api_key:<id>`,
/// `user:<id>`).
pub fn owner(principal: &Principal) -> String {
    principal.actor_label()
}

/// Tells the owner's listen streams that named the task how it is now
/// (`notifications/tasks`, on every node).
pub(crate) async fn announce(node: &Context, row: &TaskRow) {
    let task = wire::detailed(row, &node.config.mcp.tasks);
    let change = Change::TaskChanged {
        owner: row.owner.clone(),
        task,
    };
    events::publish(node, &row.organization_id, change).await;
}

fn new_task_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

fn stored(e: crate::storage::StorageError) -> RpcError {
    storage_failure(&e, "MCP tasks")
}

/// Runs a change of a task and what must follow it (a round started, a round stopped,
/// the change announced) to its end on the node's runtime, whoever stops waiting (a
/// client that hangs up): a task stored as working whose round never started would stay
/// so until its node stopped.
async fn to_the_end<T, Fut>(
    node: &Context,
    steps: impl FnOnce(Context) -> Fut + Send + 'static,
) -> Result<T, RpcError>
where
    Fut: Future<Output = Result<T, crate::storage::StorageError>> + Send + 'static,
    T: Send + 'static,
{
    node.run_to_end(|node| async move { steps(node).await.map_err(ServiceError::from) })
        .await
        .map_err(|e| match e {
            ServiceError::Storage(e) => stored(e),
            e => {
                tracing::error!(error = %e, "an MCP task change stopped");
                RpcError::internal()
            }
        })
}

fn json_text(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).expect("JSON values serialize")
}

/// Makes a task for `tool` called with `arguments` and starts its first round with
/// `round`; the task is stored before this returns its `CreateTaskResult`. Refused with
/// -31029 while the caller has `mcp.tasks.max_active_per_principal` tasks not ended.
pub async fn create(
    call: &Call,
    tool: &str,
    arguments: Map<String, Value>,
    round: Round,
) -> Result<Value, RpcError> {
    let node = &call.node;
    let config = &node.config.mcp.tasks;
    let principal = &call.principal;
    let owner = owner(principal);
    let now = now();
    // Within 1 s and 30 d (checked with the configuration).
    let ttl = TimeDelta::from_std(config.ttl.get()).unwrap_or(TimeDelta::hours(1));
    let row = TaskRow {
        id: new_task_id(),
        organization_id: principal.organization_id.clone(),
        owner,
        tool: tool.to_string(),
        request: json_text(&TaskRequest {
            arguments,
            protocol_version: call.version.as_str().to_string(),
            client_capabilities: (*call.client_capabilities).clone(),
        }),
        status: "working".into(),
        status_message: None,
        pending: None,
        outcome: None,
        runner_node: Some(node.node.id.clone()),
        revision: 1,
        created_at: now,
        updated_at: now,
        expires_at: now + ttl,
    };
    let limit = config.max_active_per_principal as i64;
    let created = wire::created(&row, config);
    let tool_name = row.tool.clone();
    let (mcp, principal) = (call.mcp.clone(), principal.clone());
    let stored_task = to_the_end(node, move |node| async move {
        let outcome = mcp_tasks::insert_within(&node.db, &row, limit).await?;
        if outcome.is_ok() {
            runner::start_round(&node, &mcp, principal, row, round);
        }
        Ok(outcome)
    })
    .await?;
    if let Err(active) = stored_task {
        return Err(RpcError::new(
            code::RATE_LIMITED,
            format!(
                "this caller has {active} tasks working or waiting for input, the most it may \
                 (mcp.tasks.max_active_per_principal); cancel one or wait for one to end"
            ),
        )
        .with_data(json!({ "reason": "too_many_tasks", "active": active, "limit": limit })));
    }
    metrics::counter!("devmesh_mcp_tasks_created_total", "tool" => tool_name).increment(1);
    Ok(created)
}

/// `tasks/get`, `tasks/update` and `tasks/cancel`.
pub async fn handle(
    call: &Call,
    method: &str,
    params: &Map<String, Value>,
) -> Result<Value, RpcError> {
    if !call.tasks_negotiated {
        return Err(missing_extension(method));
    }
    let id = match params.get("taskId") {
        Some(Value::String(id)) => id.as_str(),
        Some(_) => return Err(RpcError::invalid_params("\"taskId\" must be a string")),
        None => return Err(RpcError::invalid_params("\"taskId\" is required")),
    };
    match method {
        "tasks/get" => {
            let row = load(call, id).await?;
            Ok(wire::detailed(&row, &call.node.config.mcp.tasks))
        }
        "tasks/update" => {
            let responses = match params.get("inputResponses") {
                Some(Value::Object(responses)) => responses,
                Some(_) => {
                    return Err(RpcError::invalid_params(
                        "\"inputResponses\" must be an object",
                    ));
                }
                None => return Err(RpcError::invalid_params("\"inputResponses\" is required")),
            };
            update(call, id, responses).await
        }
        "tasks/cancel" => cancel(call, id).await,
        _ => Err(RpcError::method_not_found(method)),
    }
}

/// The caller's task `id`; -32602 when there is none (or it is someone else's, or it
/// expired).
async fn load(call: &Call, id: &str) -> Result<TaskRow, RpcError> {
    let unknown = || {
        RpcError::invalid_params(format!("unknown task: {id}"))
            .with_data(json!({ "taskId": super::protocol::quoted(id) }))
    };
    // No task id has one, and PostgreSQL text cannot hold it.
    if id.contains('\0') {
        return Err(unknown());
    }
    let owner = owner(&call.principal);
    mcp_tasks::get(
        &call.node.db,
        &call.principal.organization_id,
        &owner,
        id,
        now(),
    )
    .await
    .map_err(stored)?
    .ok_or_else(unknown)
}

/// How often a change of a task is tried again when another change came first.
const ATTEMPTS: usize = 8;

fn changed_too_often() -> RpcError {
    RpcError::unavailable().with_data(json!({ "reason": "the task kept changing; try again" }))
}

/// Takes the answers to pending input requests (others are ignored, SEP-2322); when none
/// is left pending, the next round starts. Acknowledged with an empty result whatever the
/// task's state: the client sees the outcome in `tasks/get`.
async fn update(call: &Call, id: &str, responses: &Map<String, Value>) -> Result<Value, RpcError> {
    for _ in 0..ATTEMPTS {
        let row = load(call, id).await?;
        if row.status != "input_required" {
            return Ok(json!({}));
        }
        let mut pending = Pending::of(&row);
        let mut taken = 0;
        for (key, answer) in responses {
            if !pending.requests.contains_key(key) {
                continue;
            }
            if !answer.is_object() {
                return Err(RpcError::invalid_params(format!(
                    "inputResponses[{key:?}] must be an object (the answer to that request)"
                )));
            }
            pending.requests.remove(key);
            pending.responses.insert(key.clone(), answer.clone());
            taken += 1;
        }
        if taken == 0 {
            return Ok(json!({}));
        }
        let mut next = row.clone();
        next.revision += 1;
        next.updated_at = now();
        let all_answered = pending.requests.is_empty();
        if all_answered {
            next.status = "working".into();
            next.pending = None;
            next.runner_node = Some(call.node.node.id.clone());
        } else {
            next.pending = Some(json_text(&pending));
        }
        let (mcp, principal) = (call.mcp.clone(), call.principal.clone());
        let written = to_the_end(&call.node, move |node| async move {
            if !mcp_tasks::replace(&node.db, &next).await? {
                return Ok(false);
            }
            announce(&node, &next).await;
            if all_answered {
                let round = Round {
                    input_responses: Some(pending.responses),
                    request_state: pending.state,
                };
                runner::start_round(&node, &mcp, principal, next, round);
            }
            Ok(true)
        })
        .await?;
        if written {
            return Ok(json!({}));
        }
    }
    Err(changed_too_often())
}

/// Cancels a task that has not ended (a task that has is left as it is: the same empty
/// acknowledgement, SEP-2663), and stops its round wherever it runs.
async fn cancel(call: &Call, id: &str) -> Result<Value, RpcError> {
    for _ in 0..ATTEMPTS {
        let row = load(call, id).await?;
        if !mcp_tasks::ACTIVE.contains(&row.status.as_str()) {
            return Ok(json!({}));
        }
        let mut next = row.clone();
        next.status = "cancelled".into();
        next.status_message = Some("cancelled by the client".into());
        next.pending = None;
        next.runner_node = None;
        next.revision += 1;
        next.updated_at = now();
        let (mcp, runner) = (call.mcp.clone(), row.runner_node.clone());
        let written = to_the_end(&call.node, move |node| async move {
            if !mcp_tasks::replace(&node.db, &next).await? {
                return Ok(false);
            }
            if let Some(runner) = &runner {
                runner::stop_round(&node, &mcp, runner, &next.id).await;
            }
            announce(&node, &next).await;
            metrics::counter!("devmesh_mcp_tasks_ended_total", "status" => "cancelled")
                .increment(1);
            Ok(true)
        })
        .await?;
        if written {
            return Ok(json!({}));
        }
    }
    Err(changed_too_often())
}

/// Fails the working tasks whose round ran on one of `nodes` and that were last changed
/// before `before`: those rounds are lost (the node stopped or restarted). Their owners'
/// listen streams hear of it.
pub async fn fail_orphans(node: &Context, nodes: &[String], before: chrono::NaiveDateTime) {
    let error = RpcError::new(
        code::INTERNAL_ERROR,
        "the node running this task stopped before the task ended",
    )
    .with_data(json!({ "reason": "node_stopped" }))
    .object();
    match mcp_tasks::fail_orphans(&node.db, nodes, &json_text(&error), before).await {
        Ok(failed) if !failed.is_empty() => {
            tracing::warn!(
                tasks = failed.len(),
                "tasks whose node stopped marked failed"
            );
            metrics::counter!("devmesh_mcp_tasks_ended_total", "status" => "failed")
                .increment(failed.len() as u64);
            for task in &failed {
                announce(node, task).await;
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot mark the tasks of stopped nodes failed"),
    }
}
