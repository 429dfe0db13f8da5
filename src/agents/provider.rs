//! Agents and tasks over MCP. Tools for everyone who drives agents
//! (`devmesh_agent_list`, `devmesh_task_create|get|list|cancel`) and, listed only to an
//! agent's key, for the agent itself (`devmesh_task_next|progress|complete|fail`).
//! Resources: `devmesh://agents`, the agent's inbox `devmesh://agents/{id}/tasks`
//! (subscribe to hear of new work as `notifications/resources/updated`) and
//! `devmesh://tasks/{id}` (subscribe to hear of every state change). Every call runs
//! the same services as the REST routes, as the caller.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use rmcp::model::{Resource, ResourceContents, ResourceTemplate, Tool};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::model::{Completion, Failure, NewTask, ProgressReport};
use super::{AGENTS_URI, Agents, registry, tasks, transitions};
use crate::mcp::call::Call;
use crate::mcp::catalog::{Provider, Reply, ToolSpec, decode_arguments, not_found, schema};
use crate::mcp::engine::tool_error;
use crate::mcp::protocol::RpcError;
use crate::mcp::providers::{service_failure, storage_failure, structured};
use crate::mcp::tasks::{TaskSupport, escalate};
use crate::service::{PageRequest, ServiceError};
use crate::storage::agents::AgentFilter;
use crate::storage::tasks::TaskFilter;

const TASKS_PREFIX: &str = "devmesh://tasks/";
const AGENTS_PREFIX: &str = "devmesh://agents/";

pub struct AgentsProvider {
    agents: Arc<Agents>,
    everyone: Vec<Arc<ToolSpec>>,
    for_agents: Vec<Arc<ToolSpec>>,
}

fn object(properties: Value, required: &[&str]) -> Arc<Map<String, Value>> {
    schema(json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false
    }))
}

/// Every tool answers with structured content: an object (a task, a page, `{"task"}`).
/// `devmesh_task_create` may run as an MCP task that follows the devmesh task.
fn with_output(tool: Tool) -> Arc<ToolSpec> {
    let follows = tool.name == "devmesh_task_create";
    let tool = tool.with_raw_output_schema(schema(json!({ "type": "object" })));
    if follows {
        ToolSpec::with_tasks(tool, TaskSupport::Optional)
    } else {
        ToolSpec::new(tool)
    }
}

/// How often a followed task is read again even without a notice of its change.
const FOLLOW_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

fn id_only(what: &str) -> Arc<Map<String, Value>> {
    object(
        json!({ "id": { "type": "string", "description": what } }),
        &["id"],
    )
}

impl AgentsProvider {
    pub fn new(agents: Arc<Agents>) -> Self {
        let list_props = json!({
            "limit": { "type": "integer", "minimum": 1, "maximum": 200 },
            "cursor": { "type": "string" }
        });
        let mut agent_list = list_props.clone();
        agent_list["capability"] = json!({ "type": "string" });
        agent_list["tag"] = json!({ "type": "string" });
        agent_list["status"] =
            json!({ "type": "string", "enum": ["pending", "active", "suspended", "retired"] });
        let mut task_list = list_props;
        task_list["status"] = json!({ "type": "string", "enum": ["queued", "assigned", "running", "completed", "failed", "cancelled", "timed_out"] });
        task_list["agent_id"] = json!({ "type": "string" });
        task_list["type"] = json!({ "type": "string" });
        let everyone = vec![
            Tool::new(
                "devmesh_agent_list",
                "List the organization's agents with their capabilities, status, presence and load, optionally by capability, tag or status.",
                object(agent_list, &[]),
            ),
            Tool::new(
                "devmesh_task_create",
                "Hand a task to the organization's agents: devmesh routes it to an agent with every required capability, by strategy (auto, round_robin, least_loaded, capability_match, performance, cost). Subscribe to the task's resource to hear of every state change.",
                object(
                    json!({
                        "title": { "type": "string", "minLength": 1, "maxLength": 200 },
                        "type": { "type": "string" },
                        "description": { "type": "string" },
                        "input": {},
                        "required_capabilities": { "type": "array", "items": { "type": "string" } },
                        "preferred_tags": { "type": "array", "items": { "type": "string" } },
                        "priority": { "type": "string", "enum": ["low", "normal", "high", "critical"] },
                        "strategy": { "type": "string", "enum": ["auto", "round_robin", "least_loaded", "capability_match", "performance", "cost"] },
                        "max_cost_usd": { "type": "number", "minimum": 0 },
                        "timeout": { "type": ["string", "integer"] },
                        "assign_timeout": { "type": ["string", "integer"] },
                        "max_attempts": { "type": "integer", "minimum": 1, "maximum": 20 },
                        "idempotency_key": { "type": "string" },
                        "context_id": { "type": "string" },
                        "parent_id": { "type": "string" },
                        "agent_id": { "type": "string" }
                    }),
                    &["title"],
                ),
            ),
            Tool::new(
                "devmesh_task_get",
                "Read a task: its state, agent, attempts, progress, result and how it was routed.",
                id_only("The task's id"),
            ),
            Tool::new(
                "devmesh_task_list",
                "List tasks, newest first, optionally by status, agent or type.",
                object(task_list, &[]),
            ),
            Tool::new(
                "devmesh_task_cancel",
                "Cancel a task that has not finished; its agent is told.",
                object(
                    json!({ "id": { "type": "string" }, "reason": { "type": "string" } }),
                    &["id"],
                ),
            ),
        ];
        let for_agents = vec![
            Tool::new(
                "devmesh_task_next",
                "As an agent: take (accept) the next task assigned to you, waiting up to wait_seconds for one. Returns null when none came.",
                object(
                    json!({ "wait_seconds": { "type": "integer", "minimum": 0, "maximum": 60 } }),
                    &[],
                ),
            ),
            Tool::new(
                "devmesh_task_progress",
                "As an agent: report progress on a task you are running.",
                object(
                    json!({
                        "id": { "type": "string" },
                        "percent": { "type": "number", "minimum": 0, "maximum": 100 },
                        "message": { "type": "string" }
                    }),
                    &["id"],
                ),
            ),
            Tool::new(
                "devmesh_task_complete",
                "As an agent: finish a task you are running with its output. The first result stands.",
                object(
                    json!({
                        "id": { "type": "string" },
                        "output": {},
                        "cost_usd": { "type": "number", "minimum": 0 },
                        "tokens": { "type": "integer", "minimum": 0 }
                    }),
                    &["id"],
                ),
            ),
            Tool::new(
                "devmesh_task_fail",
                "As an agent: give up on a task you are running, saying why; a retryable failure is queued again while attempts remain.",
                object(
                    json!({
                        "id": { "type": "string" },
                        "error": { "type": "string", "minLength": 1 },
                        "retryable": { "type": "boolean" }
                    }),
                    &["id", "error"],
                ),
            ),
        ];
        Self {
            agents,
            everyone: everyone.into_iter().map(with_output).collect(),
            for_agents: for_agents.into_iter().map(with_output).collect(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentListArgs {
    capability: Option<String>,
    tag: Option<String>,
    status: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskListArgs {
    status: Option<String>,
    agent_id: Option<String>,
    #[serde(rename = "type")]
    task_type: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IdArgs {
    id: String,
    reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NextArgs {
    wait_seconds: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProgressArgs {
    id: String,
    percent: Option<f64>,
    message: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CompleteArgs {
    id: String,
    output: Option<Value>,
    cost_usd: Option<f64>,
    tokens: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FailArgs {
    id: String,
    error: String,
    #[serde(default)]
    retryable: bool,
}

macro_rules! args {
    ($args:expr) => {
        match decode_arguments($args) {
            Ok(v) => v,
            Err(e) => return Ok(tool_error(e)),
        }
    };
}

/// A task's result with a link to its resource, to read or subscribe to.
fn with_task_link(mut result: Value, id: &str) -> Value {
    let link = Resource::new(super::task_uri(id), format!("task {id}"))
        .with_description("This task as a resource; subscribe to hear of its changes")
        .with_mime_type("application/json");
    let link = serde_json::to_value(rmcp::model::ContentBlock::resource_link(link))
        .expect("content serializes");
    if let Some(content) = result["content"].as_array_mut() {
        content.push(link);
    }
    result
}

impl AgentsProvider {
    async fn run(
        &self,
        name: &str,
        args: Map<String, Value>,
        call: &Call,
    ) -> Result<Value, RpcError> {
        let (node, principal, agents) = (&call.node, &call.principal, &self.agents);
        let page = |limit, cursor: Option<String>| PageRequest::parse(limit, cursor.as_deref());
        let outcome: Result<Value, ServiceError> = match name {
            "devmesh_agent_list" => {
                let a: AgentListArgs = args!(args);
                let filter = AgentFilter {
                    capability: a.capability,
                    tag: a.tag,
                    status: a.status,
                };
                match page(a.limit, a.cursor) {
                    Ok(p) => registry::list(node, agents, principal, filter, p)
                        .await
                        .map(|p| structured(&p)),
                    Err(e) => Err(e),
                }
            }
            "devmesh_task_create" => {
                let mut new: NewTask = args!(args);
                // A client that negotiated MCP tasks gets one that follows the devmesh
                // task and ends with its result.
                if call.can_escalate() {
                    return Ok(escalate());
                }
                if let Some(mcp_task) = &call.task_id {
                    // The round may run again (a node taking over): the same task.
                    new.idempotency_key
                        .get_or_insert_with(|| format!("mcp-task:{mcp_task}"));
                    return self.create_and_follow(new, call).await;
                }
                tasks::create(node, agents, principal, new).await.map(|c| {
                    let task = match c {
                        tasks::Created::New(t) | tasks::Created::Existing(t) => t,
                    };
                    with_task_link(structured(&task), &task.id)
                })
            }
            "devmesh_task_get" => {
                let a: IdArgs = args!(args);
                tasks::get(node, principal, &a.id)
                    .await
                    .map(|t| with_task_link(structured(&t), &t.id))
            }
            "devmesh_task_list" => {
                let a: TaskListArgs = args!(args);
                let filter = TaskFilter {
                    status: a.status,
                    agent_id: a.agent_id,
                    task_type: a.task_type,
                    ..TaskFilter::default()
                };
                match page(a.limit, a.cursor) {
                    Ok(p) => tasks::list(node, principal, filter, p)
                        .await
                        .map(|p| structured(&p)),
                    Err(e) => Err(e),
                }
            }
            "devmesh_task_cancel" => {
                let a: IdArgs = args!(args);
                transitions::cancel(node, agents, principal, &a.id, a.reason)
                    .await
                    .map(|t| structured(&t))
            }
            "devmesh_task_next" => {
                let a: NextArgs = args!(args);
                let wait = std::time::Duration::from_secs(a.wait_seconds.unwrap_or(0).min(60));
                let Some(me) = principal.agent_id().map(str::to_string) else {
                    return Ok(tool_error("only an agent's key takes tasks"));
                };
                tokio::select! {
                    next = transitions::next(node, principal, &me, wait, true) => {
                        next.map(|t| structured(&json!({ "task": t })))
                    }
                    _ = call.cancel.cancelled() => return Err(RpcError::internal()),
                }
            }
            "devmesh_task_progress" => {
                let a: ProgressArgs = args!(args);
                let report = ProgressReport {
                    percent: a.percent,
                    message: a.message,
                };
                transitions::progress(node, principal, &a.id, report)
                    .await
                    .map(|t| structured(&t))
            }
            "devmesh_task_complete" => {
                let a: CompleteArgs = args!(args);
                let completion = Completion {
                    output: a.output,
                    cost_usd: a.cost_usd,
                    tokens: a.tokens,
                };
                transitions::complete(node, agents, principal, &a.id, completion)
                    .await
                    .map(|t| structured(&t))
            }
            "devmesh_task_fail" => {
                let a: FailArgs = args!(args);
                let failure = Failure {
                    error: a.error,
                    retryable: a.retryable,
                };
                transitions::fail(node, agents, principal, &a.id, failure)
                    .await
                    .map(|t| structured(&t))
            }
            _ => return Err(RpcError::invalid_params(format!("unknown tool: {name}"))),
        };
        outcome.or_else(service_failure)
    }

    /// An MCP task's round: creates the devmesh task and waits for it to finish; the
    /// result is the task (an error result unless it completed). The round is dropped
    /// when its MCP task is cancelled, even mid-create, so the creation runs to its end
    /// on its own and a watcher outside the round cancels the devmesh task.
    async fn create_and_follow(&self, new: NewTask, call: &Call) -> Result<Value, RpcError> {
        let (node, principal) = (&call.node, &call.principal);
        let mut events = crate::events::TenantEvents::subscribe(node, &principal.organization_id)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "cannot follow a task");
                RpcError::internal()
            })?;
        let (made, made_id) = tokio::sync::oneshot::channel::<String>();
        let followed = tokio_util::sync::CancellationToken::new();
        let _followed = followed.clone().drop_guard();
        node.runtime.spawn({
            let (node, principal, agents) = (node.clone(), principal.clone(), self.agents.clone());
            let cancelled = call.cancel.clone();
            async move {
                tokio::select! {
                    biased;
                    _ = cancelled.cancelled() => {
                        let Ok(id) = made_id.await else { return };
                        let why = Some("its MCP task was cancelled".to_string());
                        if let Err(e) = transitions::cancel(&node, &agents, &principal, &id, why).await {
                            tracing::debug!(error = %e, "cannot cancel a followed task");
                        }
                    }
                    _ = followed.cancelled() => {}
                }
            }
        });
        let (agents, p) = (self.agents.clone(), principal.clone());
        let created = node
            .run_to_end(move |node| async move {
                let created = tasks::create(&node, &agents, &p, new).await?;
                let task = match created {
                    tasks::Created::New(t) | tasks::Created::Existing(t) => t,
                };
                let _ = made.send(task.id.clone());
                Ok(task)
            })
            .await;
        let id = match created {
            Ok(task) => task.id,
            Err(e) => return service_failure(e),
        };
        let uri = super::task_uri(&id);
        let id = id.as_str();
        loop {
            let task = match tasks::get(node, principal, id).await {
                Ok(task) => task,
                Err(e) => return service_failure(e),
            };
            if task.status.is_final() {
                let mut result = with_task_link(structured(&task), &task.id);
                if task.status != super::model::TaskStatus::Completed {
                    result["isError"] = json!(true);
                }
                return Ok(result);
            }
            let deadline = tokio::time::Instant::now() + FOLLOW_EVERY;
            loop {
                tokio::select! {
                    _ = call.cancel.cancelled() => return Err(RpcError::internal()),
                    change = events.recv() => match change {
                        Some(crate::events::Change::ResourceUpdated { uri: changed }) if changed == uri => break,
                        Some(_) => continue,
                        // No bus: read again at the deadline.
                        None => {
                            tokio::time::sleep_until(deadline).await;
                            break;
                        }
                    },
                    _ = tokio::time::sleep_until(deadline) => break,
                }
            }
        }
    }

    async fn read(&self, uri: &str, call: &Call) -> Result<Value, ServiceError> {
        let (node, principal) = (&call.node, &call.principal);
        if uri == AGENTS_URI {
            let page = PageRequest {
                limit: 200,
                after: None,
            };
            let list =
                registry::list(node, &self.agents, principal, AgentFilter::default(), page).await?;
            return Ok(serde_json::to_value(list).expect("agents serialize"));
        }
        if let Some(id) = uri.strip_prefix(TASKS_PREFIX) {
            return Ok(serde_json::to_value(tasks::get(node, principal, id).await?)
                .expect("tasks serialize"));
        }
        if let Some(id) = uri
            .strip_prefix(AGENTS_PREFIX)
            .and_then(|r| r.strip_suffix("/tasks"))
        {
            let inbox = tasks::inbox(node, principal, id).await?;
            return Ok(json!({ "agent_id": id, "tasks": inbox }));
        }
        Err(ServiceError::NotFound("resource"))
    }
}

impl Provider for AgentsProvider {
    fn tools<'a>(&'a self, call: &'a Call) -> BoxFuture<'a, Vec<Arc<ToolSpec>>> {
        Box::pin(async move {
            let mut tools = self.everyone.clone();
            if call.principal.agent_id().is_some() {
                tools.extend(self.for_agents.iter().cloned());
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

    fn resources<'a>(&'a self, call: &'a Call) -> BoxFuture<'a, Result<Vec<Resource>, RpcError>> {
        Box::pin(async move {
            let mut list = vec![
                Resource::new(AGENTS_URI, "agents")
                    .with_description("The organization's agents, their status, presence and load")
                    .with_mime_type("application/json"),
            ];
            if let Some(me) = call.principal.agent_id() {
                list.push(
                    Resource::new(super::inbox_uri(me), "inbox")
                        .with_description(
                            "Your tasks assigned or running; subscribe to hear of new work",
                        )
                        .with_mime_type("application/json"),
                );
            }
            Ok(list)
        })
    }

    fn resource_templates(&self) -> Vec<ResourceTemplate> {
        vec![
            ResourceTemplate::new(format!("{AGENTS_PREFIX}{{id}}/tasks"), "agent inbox")
                .with_description(
                    "An agent's tasks assigned or running; subscribe to hear of new work",
                )
                .with_mime_type("application/json"),
            ResourceTemplate::new(format!("{TASKS_PREFIX}{{id}}"), "task")
                .with_description("A task; subscribe to hear of every state change")
                .with_mime_type("application/json"),
        ]
    }

    fn owns_uri(&self, uri: &str) -> bool {
        uri == AGENTS_URI || uri.starts_with(TASKS_PREFIX) || uri.starts_with(AGENTS_PREFIX)
    }

    fn read_resource<'a>(&'a self, uri: &'a str, call: &'a Call) -> Reply<'a> {
        Box::pin(async move {
            match self.read(uri, call).await {
                Ok(value) => {
                    let text = serde_json::to_string(&value).expect("resources serialize");
                    let contents =
                        ResourceContents::text(text, uri).with_mime_type("application/json");
                    Ok(json!({ "contents": [contents] }))
                }
                Err(ServiceError::Storage(e)) => {
                    Err(storage_failure(&e, "reading an agents resource"))
                }
                Err(ServiceError::MissingScope(scope)) => Err(RpcError::invalid_params(format!(
                    "reading {uri} needs the scope {scope}"
                ))),
                Err(_) => Err(not_found(uri)),
            }
        })
    }
}
