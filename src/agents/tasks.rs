//! Tasks: creating them (with idempotency keys) and reading them, as the caller may see
//! them, with their events and an agent's inbox. How they move is in [`super::transitions`]
//! (the creator's and the agent's moves) and [`super::lapses`] (the system's).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::fields::{self, CapabilityName, Span, Tag};
use super::model::{NewTask, Priority, Strategy, Task, TaskEvent, TaskStatus};
use super::{Agents, dispatch};
use crate::context::Context as Node;
use crate::service::{Page, PageRequest, ServiceError, ServiceResult, is_unique_violation};
use crate::storage::agents as agent_store;
use crate::storage::tasks::{self as store, TaskEventRow, TaskFilter, TaskRow};
use crate::tenancy::scopes::Scope;
use crate::tenancy::{Principal, new_id, utc};

pub(super) const NOT_FOUND: ServiceError = ServiceError::NotFound("task");

/// What routing reads of a task, and its limits: the `spec` column.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Spec {
    pub required_capabilities: Vec<String>,
    pub preferred_tags: Vec<String>,
    pub strategy: Option<Strategy>,
    pub max_cost_usd: Option<f64>,
    pub timeout_ms: i64,
    pub assign_timeout_ms: i64,
    /// Agents that rejected the task: it is not offered to them again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected_by: Vec<String>,
}

impl Spec {
    pub fn read(row: &TaskRow) -> Self {
        Self::parse(&row.spec)
    }

    /// From the stored JSON; a spec that does not read is the default.
    pub fn parse(stored: &str) -> Self {
        serde_json::from_str(stored).unwrap_or_default()
    }
}

/// A task event for `row`'s transition.
pub fn event_row(
    row: &TaskRow,
    from: Option<&str>,
    to: &str,
    agent_id: Option<&str>,
    actor: &str,
    reason: Option<String>,
) -> TaskEventRow {
    event_of(
        &row.id,
        &row.organization_id,
        from,
        to,
        agent_id,
        actor,
        reason,
    )
}

/// A task event for the transition of task `id` in `org`.
pub fn event_of(
    id: &str,
    org: &str,
    from: Option<&str>,
    to: &str,
    agent_id: Option<&str>,
    actor: &str,
    reason: Option<String>,
) -> TaskEventRow {
    TaskEventRow {
        id: new_id(),
        task_id: id.to_string(),
        organization_id: org.to_string(),
        from_status: from.map(str::to_string),
        to_status: to.to_string(),
        agent_id: agent_id.map(str::to_string),
        actor: actor.to_string(),
        reason,
        at: crate::storage::now(),
    }
}

fn parse_json(text: Option<&str>) -> Option<Value> {
    text.and_then(|t| serde_json::from_str(t).ok())
}

/// A task as the API shows it.
pub fn view(row: TaskRow) -> Task {
    let spec = Spec::read(&row);
    Task {
        input: serde_json::from_str(&row.input).unwrap_or(Value::Null),
        progress: parse_json(row.progress.as_deref()).and_then(|v| serde_json::from_value(v).ok()),
        output: parse_json(row.output.as_deref()),
        error: parse_json(row.error.as_deref()).and_then(|v| serde_json::from_value(v).ok()),
        decision: parse_json(row.decision.as_deref()),
        status: TaskStatus::from_stored(&row.status).unwrap_or(TaskStatus::Queued),
        priority: Priority::from_rank(row.priority),
        required_capabilities: spec.required_capabilities,
        preferred_tags: spec.preferred_tags,
        strategy: spec.strategy.unwrap_or(Strategy::Auto),
        max_cost_usd: spec.max_cost_usd,
        timeout_ms: spec.timeout_ms,
        assign_timeout_ms: spec.assign_timeout_ms,
        id: row.id,
        title: row.title,
        task_type: row.task_type,
        description: row.description,
        max_attempts: row.max_attempts,
        attempts: row.attempts,
        idempotency_key: row.idempotency_key,
        context_id: row.context_id,
        parent_id: row.parent_id,
        pinned_agent_id: row.pinned_agent_id,
        agent_id: row.agent_id,
        deadline_at: row.deadline_at.map(utc),
        waiting_reason: row.waiting_reason,
        created_by: row.created_by,
        created_at: utc(row.created_at),
        assigned_at: row.assigned_at.map(utc),
        started_at: row.started_at.map(utc),
        finished_at: row.finished_at.map(utc),
        updated_at: utc(row.updated_at),
    }
}

pub fn event_view(row: TaskEventRow) -> TaskEvent {
    TaskEvent {
        from: row.from_status.as_deref().and_then(TaskStatus::from_stored),
        to: TaskStatus::from_stored(&row.to_status).unwrap_or(TaskStatus::Queued),
        id: row.id,
        agent_id: row.agent_id,
        actor: row.actor,
        reason: row.reason,
        at: utc(row.at),
    }
}

pub(super) fn json_within(
    agents: &Agents,
    field: &'static str,
    value: &Value,
) -> ServiceResult<String> {
    let text = value.to_string();
    let max = agents.config.max_input_bytes;
    if text.len() > max {
        return Err(ServiceError::TooLarge(format!(
            "{field} is {} bytes of JSON; the limit is {max} bytes (agents.max_input_bytes)",
            text.len()
        )));
    }
    Ok(text)
}

fn span(
    field: &'static str,
    value: Option<&Value>,
    default: std::time::Duration,
    max: std::time::Duration,
) -> ServiceResult<i64> {
    let chosen = match value {
        None | Some(Value::Null) => default,
        Some(v) => {
            let span: Span = serde_json::from_value(v.clone())
                .map_err(|e| ServiceError::invalid(field, e.to_string()))?;
            fields::span_within(field, span, std::time::Duration::from_millis(100), max)?
        }
    };
    Ok(chosen.as_millis() as i64)
}

/// Whether a task is created or was already, by its idempotency key.
pub enum Created {
    New(Task),
    Existing(Task),
}

/// Creates a task and offers it to the engine at once.
pub async fn create(
    node: &Node,
    agents: &Arc<Agents>,
    principal: &Principal,
    new: NewTask,
) -> ServiceResult<Created> {
    principal.require(Scope::TasksWrite)?;
    let org = principal.organization_id.clone();
    let creator = principal.actor_label();
    let title = crate::tenancy::names::DisplayName::parse("title", &new.title)?;
    let task_type = match &new.task_type {
        Some(t) => CapabilityName::parse("type", t)?.as_str().to_string(),
        None => "general".to_string(),
    };
    let description = fields::text(
        "description",
        new.description.as_deref().unwrap_or(""),
        2000,
    )?;
    let input = json_within(agents, "input", new.input.as_ref().unwrap_or(&Value::Null))?;
    let mut required = Vec::new();
    for c in &new.required_capabilities {
        let c = CapabilityName::parse("required_capabilities[]", c)?
            .as_str()
            .to_string();
        if !required.contains(&c) {
            required.push(c);
        }
    }
    let mut preferred = Vec::new();
    for t in &new.preferred_tags {
        let t = Tag::parse("preferred_tags[]", t)?.as_str().to_string();
        if !preferred.contains(&t) {
            preferred.push(t);
        }
    }
    if required.len() > 50 || preferred.len() > 50 {
        return Err(ServiceError::invalid(
            "required_capabilities",
            "at most 50 required capabilities and 50 preferred tags",
        ));
    }
    let max_cost_usd = new
        .max_cost_usd
        .map(|v| fields::usd("max_cost_usd", v))
        .transpose()?;
    let day = std::time::Duration::from_secs(86_400);
    let timeout_ms = span(
        "timeout",
        new.timeout.as_ref(),
        agents.config.default_timeout.get(),
        day * 7,
    )?;
    let assign_timeout_ms = span(
        "assign_timeout",
        new.assign_timeout.as_ref(),
        agents.config.default_assign_timeout.get(),
        day,
    )?;
    let max_attempts = new
        .max_attempts
        .unwrap_or(agents.config.default_max_attempts);
    if !(1..=20).contains(&max_attempts) {
        return Err(ServiceError::invalid(
            "max_attempts",
            format!("must be from 1 to 20 (it is {max_attempts})"),
        ));
    }
    let idempotency_key = new
        .idempotency_key
        .as_deref()
        .map(|k| fields::label("idempotency_key", k))
        .transpose()?;
    // What the caller names must be the caller's to see.
    let context_reachable = |id: String| {
        let org = &org;
        async move {
            let exists = crate::storage::contexts::get(&node.db, org, &id)
                .await?
                .is_some();
            Ok::<bool, ServiceError>(match principal.agent_id() {
                Some(agent) if exists => {
                    crate::storage::contexts::given_to_agent(&node.db, org, &id, agent).await?
                }
                _ => exists,
            })
        }
    };
    if let Some(id) = &new.context_id
        && !context_reachable(id.clone()).await?
    {
        return Err(ServiceError::invalid(
            "context_id",
            "no context by this id in the organization",
        ));
    }
    if let Some(id) = &new.parent_id
        && find(node, principal, id).await.is_err()
    {
        return Err(ServiceError::invalid(
            "parent_id",
            "no task by this id in the organization",
        ));
    }
    if let Some(id) = &new.agent_id {
        let Some(agent) = agent_store::get(&node.db, &org, id).await? else {
            return Err(ServiceError::invalid(
                "agent_id",
                "no agent by this id in the organization",
            ));
        };
        if agent.status == "retired" {
            return Err(ServiceError::invalid(
                "agent_id",
                "the agent is retired: it takes no more work",
            ));
        }
    }
    let spec = Spec {
        required_capabilities: required,
        preferred_tags: preferred,
        strategy: Some(new.strategy.unwrap_or(Strategy::Auto)),
        max_cost_usd,
        timeout_ms,
        assign_timeout_ms,
        rejected_by: Vec::new(),
    };
    // A repeat is recognized by what the request means (defaults filled in, durations
    // read), not by how it was written.
    let hash = crate::tenancy::secrets::hash_token(
        &json!([
            title.as_str(),
            task_type,
            description,
            input,
            spec,
            new.priority.unwrap_or(Priority::Normal).rank(),
            max_attempts,
            new.context_id,
            new.parent_id,
            new.agent_id,
        ])
        .to_string(),
    );
    if let Some(key) = &idempotency_key
        && let Some(existing) = store::by_idempotency_key(&node.db, &org, &creator, key).await?
    {
        return repeat(existing, &hash);
    }
    let now = crate::storage::now();
    let row = TaskRow {
        id: new_id(),
        organization_id: org.clone(),
        title: title.as_str().to_string(),
        task_type,
        description,
        input,
        spec: serde_json::to_string(&spec).expect("a spec serializes"),
        priority: new.priority.unwrap_or(Priority::Normal).rank(),
        max_attempts: max_attempts as i32,
        attempts: 0,
        idempotency_key,
        request_hash: hash.clone(),
        context_id: new.context_id.clone(),
        parent_id: new.parent_id.clone(),
        pinned_agent_id: new.agent_id.clone(),
        status: TaskStatus::Queued.as_str().into(),
        agent_id: None,
        deadline_at: None,
        progress: None,
        output: None,
        error: None,
        decision: None,
        waiting_reason: None,
        created_by: creator.clone(),
        version: 1,
        created_at: now,
        assigned_at: None,
        started_at: None,
        finished_at: None,
        updated_at: now,
    };
    let event = event_row(&row, None, "queued", None, &row.created_by, None);
    let inserted = {
        let (row, event) = (row.clone(), event);
        node.run_to_end(move |node| async move { Ok(store::insert(&node.db, &row, &event).await?) })
            .await
    };
    match inserted {
        Ok(()) => {}
        Err(e) if is_unique_violation(&e) => {
            let key = row.idempotency_key.as_deref().unwrap_or_default();
            let existing = store::by_idempotency_key(&node.db, &org, &creator, key)
                .await?
                .ok_or(e)?;
            return repeat(existing, &hash);
        }
        Err(e) => return Err(e),
    }
    metrics::counter!("devmesh_tasks_created_total").increment(1);
    dispatch::run(node, agents, &org).await;
    let row = store::get(&node.db, &org, &row.id).await?.unwrap_or(row);
    Ok(Created::New(view(row)))
}

fn repeat(existing: TaskRow, hash: &str) -> ServiceResult<Created> {
    if existing.request_hash != hash {
        return Err(ServiceError::Conflict(format!(
            "the idempotency key {:?} was used for another request (task {}); use a new key for a new task",
            existing.idempotency_key.as_deref().unwrap_or_default(),
            existing.id
        )));
    }
    Ok(Created::Existing(view(existing)))
}

/// Whether the principal is a key of type `agent` (bound to an agent or not): it sees
/// only the tasks given to its agent and those it created.
fn is_agent_key(principal: &Principal) -> bool {
    matches!(
        principal.actor,
        crate::tenancy::principal::Actor::ApiKey {
            key_type: crate::tenancy::scopes::KeyType::Agent,
            ..
        }
    )
}

/// The task, if the principal may read it.
async fn visible(node: &Node, principal: &Principal, id: &str) -> ServiceResult<TaskRow> {
    principal.require(Scope::TasksRead)?;
    find(node, principal, id).await
}

/// The task, if it is the principal's to see, whatever its scopes: an agent's key sees
/// the tasks given to its agent and those it created.
pub(super) async fn find(node: &Node, principal: &Principal, id: &str) -> ServiceResult<TaskRow> {
    let row = store::get(&node.db, &principal.organization_id, id)
        .await?
        .ok_or(NOT_FOUND)?;
    if is_agent_key(principal)
        && (principal.agent_id().is_none() || row.agent_id.as_deref() != principal.agent_id())
        && row.created_by != principal.actor_label()
    {
        return Err(NOT_FOUND);
    }
    Ok(row)
}

pub async fn get(node: &Node, principal: &Principal, id: &str) -> ServiceResult<Task> {
    visible(node, principal, id).await.map(view)
}

pub async fn events(node: &Node, principal: &Principal, id: &str) -> ServiceResult<Vec<TaskEvent>> {
    let row = visible(node, principal, id).await?;
    let events = store::events(&node.db, &principal.organization_id, &row.id).await?;
    Ok(events.into_iter().map(event_view).collect())
}

pub async fn list(
    node: &Node,
    principal: &Principal,
    mut filter: TaskFilter,
    page: PageRequest,
) -> ServiceResult<Page<Task>> {
    principal.require(Scope::TasksRead)?;
    if is_agent_key(principal) {
        // An agent key bound to no agent sees only what it created.
        let agent = principal.agent_id().unwrap_or("");
        filter.visible_to = Some((agent.to_string(), principal.actor_label()));
    }
    let rows = store::list(
        &node.db,
        &principal.organization_id,
        &filter,
        page.after.as_deref(),
        page.fetch(),
    )
    .await?;
    Ok(page.page(rows, |r| &r.id, view))
}

/// The tasks given to an agent and not finished (its inbox), assigned first.
pub async fn inbox(node: &Node, principal: &Principal, agent_id: &str) -> ServiceResult<Vec<Task>> {
    principal.require(Scope::TasksRead)?;
    if let Some(me) = principal.agent_id()
        && me != agent_id
    {
        return Err(ServiceError::NotFound("agent"));
    }
    agent_store::get(&node.db, &principal.organization_id, agent_id)
        .await?
        .ok_or(ServiceError::NotFound("agent"))?;
    let mut rows = store::of_agent(
        &node.db,
        &principal.organization_id,
        agent_id,
        &["assigned", "running"],
    )
    .await?;
    rows.sort_by_key(|r| (r.status != "assigned", -r.priority, r.id.clone()));
    Ok(rows.into_iter().map(view).collect())
}
