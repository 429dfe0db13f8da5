//! The task lifecycle: `queued → assigned → running → completed | failed | cancelled |
//! timed_out`, with `assigned → queued` (rejected, not accepted within
//! `assign_timeout`, agent offline or stopped) and `running → queued` (timed out, or a
//! retryable failure, while attempts remain). Each transition is one conditional write
//! (`storage::tasks::transition`) with its event; what the agent's key may do is checked
//! against the task as it is inside that write, so a task reassigned a moment ago is
//! "no longer yours".

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::fields::{self, CapabilityName, Span, Tag};
use super::model::{
    Completion, Failure, NewTask, Priority, Progress, ProgressReport, Strategy, Task, TaskError,
    TaskEvent, TaskStatus,
};
use super::{Agents, announce, dispatch, inbox_uri, task_uri};
use crate::context::Context as Node;
use crate::service::{Page, PageRequest, ServiceError, ServiceResult, is_unique_violation};
use crate::storage::agents::{self as agent_store, AgentRow, Outcome};
use crate::storage::tasks::{
    self as store, Decide, Moved, Plan, TaskChanges, TaskEventRow, TaskFilter, TaskRow,
};
use crate::tenancy::scopes::Scope;
use crate::tenancy::{Principal, new_id, utc};

const NOT_FOUND: ServiceError = ServiceError::NotFound("task");
const SYSTEM: &str = "system";

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
        serde_json::from_str(&row.spec).unwrap_or_default()
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
    TaskEventRow {
        id: new_id(),
        task_id: row.id.clone(),
        organization_id: row.organization_id.clone(),
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

fn json_within(agents: &Agents, field: &'static str, value: &Value) -> ServiceResult<String> {
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
async fn find(node: &Node, principal: &Principal, id: &str) -> ServiceResult<TaskRow> {
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

/// The agent a principal works as on task `id`, for the agent's side of the lifecycle:
/// 404 for a task that is not the principal's to see (an agent sees the tasks it was
/// ever given, so that one taken from it is "no longer yours"), 403 for a key that is
/// no agent's.
async fn working_agent(node: &Node, principal: &Principal, id: &str) -> ServiceResult<String> {
    principal.require(Scope::TasksWork)?;
    match find(node, principal, id).await {
        Err(ServiceError::NotFound(_)) if principal.agent_id().is_some() => {
            let me = principal.agent_id().unwrap_or_default();
            let exists = store::get(&node.db, &principal.organization_id, id)
                .await?
                .is_some();
            if !exists || !store::was_assigned(&node.db, id, me).await? {
                return Err(NOT_FOUND);
            }
        }
        found => {
            found?;
        }
    }
    principal.agent_id().map(str::to_string).ok_or_else(|| {
        ServiceError::Forbidden(
            "only an agent's key (an API key of type agent bound to an agent) works on tasks"
                .into(),
        )
    })
}

/// Why the agent `me` cannot act on `row` expecting one of `from`, if it cannot.
fn refuse(row: &TaskRow, me: &str, from: &[&str], action: &str) -> Option<String> {
    if row.agent_id.as_deref() != Some(me) {
        return Some(match row.agent_id.as_deref() {
            Some(_) => {
                format!("the task is no longer yours: it was reassigned, so you cannot {action} it")
            }
            None => format!(
                "the task is not assigned to you (it is {}), so you cannot {action} it",
                row.status
            ),
        });
    }
    if !from.contains(&row.status.as_str()) {
        return Some(match TaskStatus::from_stored(&row.status) {
            Some(s) if s.is_final() => format!(
                "the task is already {}; the first result stands, so you cannot {action} it",
                row.status
            ),
            _ => format!(
                "the task is {}; you can {action} it only when it is {}",
                row.status,
                from.join(" or ")
            ),
        });
    }
    None
}

/// Runs a transition and tells whoever follows the task. `Missing` is 404; a refusal
/// is 409 with the decision's reason.
async fn apply(
    node: &Node,
    org: &str,
    id: &str,
    decide: Decide,
) -> ServiceResult<(TaskRow, TaskRow)> {
    let (org_, id_) = (org.to_string(), id.to_string());
    let moved = node
        .run_to_end(move |node| async move {
            let moved = store::transition(&node.db, &org_, &id_, &decide).await?;
            if let Moved::Done { after, before } = &moved {
                let mut uris = vec![task_uri(&after.id)];
                uris.extend(before.agent_id.as_deref().map(inbox_uri));
                announce(&node, &org_, uris).await;
            }
            Ok(moved)
        })
        .await?;
    match moved {
        Moved::Done { before, after } => Ok((*before, *after)),
        Moved::Refused(why) => Err(ServiceError::Conflict(why)),
        Moved::Missing => Err(NOT_FOUND),
    }
}

fn deadline_in(ms: i64) -> Option<chrono::NaiveDateTime> {
    Some(crate::storage::now() + chrono::Duration::milliseconds(ms))
}

/// Back to the queue, without an agent.
fn requeue(changes: TaskChanges) -> TaskChanges {
    TaskChanges {
        status: Some("queued".into()),
        agent_id: Some(None),
        deadline_at: Some(None),
        progress: Some(None),
        updated_at: Some(crate::storage::now()),
        ..changes
    }
}

/// `assigned → running`: the agent takes the task; its `timeout` starts.
pub async fn accept(node: &Node, principal: &Principal, id: &str) -> ServiceResult<Task> {
    let me = working_agent(node, principal, id).await?;
    let actor = principal.actor_label();
    let decide: Decide = Arc::new(move |row| {
        if let Some(why) = refuse(row, &me, &["assigned"], "accept") {
            return Err(why);
        }
        let spec = Spec::read(row);
        Ok(Plan {
            changes: TaskChanges {
                status: Some("running".into()),
                attempts: Some(row.attempts + 1),
                deadline_at: Some(deadline_in(spec.timeout_ms)),
                started_at: Some(Some(crate::storage::now())),
                updated_at: Some(crate::storage::now()),
                ..TaskChanges::default()
            },
            release: false,
            event: Some(event_row(
                row,
                Some("assigned"),
                "running",
                Some(&me),
                &actor,
                None,
            )),
        })
    });
    let (_, after) = apply(node, &principal.organization_id, id, decide).await?;
    Ok(view(after))
}

/// `assigned → queued`: the agent gives the task back; the engine looks again.
pub async fn reject(
    node: &Node,
    agents: &Arc<Agents>,
    principal: &Principal,
    id: &str,
    reason: Option<String>,
) -> ServiceResult<Task> {
    let me = working_agent(node, principal, id).await?;
    let reason = reason
        .map(|r| fields::text("reason", &r, 2000))
        .transpose()?;
    let actor = principal.actor_label();
    let decide: Decide = Arc::new(move |row| {
        if let Some(why) = refuse(row, &me, &["assigned"], "reject") {
            return Err(why);
        }
        let mut spec = Spec::read(row);
        if !spec.rejected_by.contains(&me) {
            spec.rejected_by.push(me.clone());
        }
        Ok(Plan {
            changes: requeue(TaskChanges {
                spec: Some(serde_json::to_string(&spec).expect("a spec serializes")),
                ..TaskChanges::default()
            }),
            release: true,
            event: Some(event_row(
                row,
                Some("assigned"),
                "queued",
                Some(&me),
                &actor,
                Some(format!(
                    "rejected: {}",
                    reason.as_deref().unwrap_or("no reason given")
                )),
            )),
        })
    });
    let (_, after) = apply(node, &principal.organization_id, id, decide).await?;
    dispatch::run(node, agents, &principal.organization_id).await;
    let row = store::get(&node.db, &principal.organization_id, id)
        .await?
        .unwrap_or(after);
    Ok(view(row))
}

/// A running task's progress: not a transition, the state stays.
pub async fn progress(
    node: &Node,
    principal: &Principal,
    id: &str,
    report: ProgressReport,
) -> ServiceResult<Task> {
    let me = working_agent(node, principal, id).await?;
    if let Some(p) = report.percent
        && !(0.0..=100.0).contains(&p)
    {
        return Err(ServiceError::invalid(
            "percent",
            format!("must be from 0 to 100 (it is {p})"),
        ));
    }
    let message = report
        .message
        .map(|m| fields::text("message", &m, 2000))
        .transpose()?;
    let progress = Progress {
        percent: report.percent,
        message,
        at: chrono::Utc::now(),
    };
    let text = serde_json::to_string(&progress).expect("progress serializes");
    let decide: Decide = Arc::new(move |row| {
        if let Some(why) = refuse(row, &me, &["running"], "report progress on") {
            return Err(why);
        }
        Ok(Plan {
            changes: TaskChanges {
                progress: Some(Some(text.clone())),
                updated_at: Some(crate::storage::now()),
                ..TaskChanges::default()
            },
            release: false,
            event: None,
        })
    });
    let (_, after) = apply(node, &principal.organization_id, id, decide).await?;
    Ok(view(after))
}

/// What finishing a task counts in its agent's statistics and circuit.
async fn count(
    node: &Node,
    agents: &Agents,
    before: &TaskRow,
    after: &TaskRow,
    outcome: Outcome,
    cost: f64,
) {
    let Some(agent) = before.agent_id.as_deref() else {
        return;
    };
    let started = before.started_at.or(before.assigned_at);
    let latency = started.map(|s| (crate::storage::now() - s).num_milliseconds().max(0) as f64);
    let (org, task_type) = (&after.organization_id, &after.task_type);
    if let Err(e) =
        agent_store::record_outcome(&node.db, org, agent, task_type, outcome, latency, cost).await
    {
        tracing::warn!(error = %e, "cannot count a finished task in its agent's statistics");
    }
    trip(node, agents, before, outcome == Outcome::Completed).await;
}

/// The agent's circuit after an outcome: a success closes it, anything else counts
/// toward opening it.
async fn trip(node: &Node, agents: &Agents, before: &TaskRow, success: bool) {
    let Some(agent) = before.agent_id.as_deref() else {
        return;
    };
    let cooldown = chrono::Duration::from_std(agents.config.breaker_cooldown.get())
        .unwrap_or(chrono::Duration::MAX);
    if let Err(e) = agent_store::record_circuit(
        &node.db,
        agent,
        success,
        agents.config.breaker_failures as i32,
        crate::storage::now() + cooldown,
    )
    .await
    {
        tracing::warn!(error = %e, "cannot update an agent's circuit");
    }
}

fn cost_of(agent: Option<&AgentRow>, completion: &Completion) -> ServiceResult<f64> {
    if let Some(c) = completion.cost_usd {
        return Ok(fields::usd("cost_usd", c)?);
    }
    let Some(agent) = agent else { return Ok(0.0) };
    let tokens = completion.tokens.unwrap_or(0) as f64;
    Ok(agent.cost_per_task_usd.unwrap_or(0.0)
        + agent.cost_per_1k_tokens_usd.unwrap_or(0.0) * tokens / 1000.0)
}

/// `running → completed` (or straight from `assigned`): the first result stands.
pub async fn complete(
    node: &Node,
    agents: &Arc<Agents>,
    principal: &Principal,
    id: &str,
    completion: Completion,
) -> ServiceResult<Task> {
    let me = working_agent(node, principal, id).await?;
    let output = json_within(
        agents,
        "output",
        completion.output.as_ref().unwrap_or(&Value::Null),
    )?;
    let agent = agent_store::get(&node.db, &principal.organization_id, &me).await?;
    let cost = cost_of(agent.as_ref(), &completion)?;
    let actor = principal.actor_label();
    let decide: Decide = Arc::new(move |row| {
        if let Some(why) = refuse(row, &me, &["running"], "complete") {
            return Err(why);
        }
        let now = crate::storage::now();
        Ok(Plan {
            changes: TaskChanges {
                status: Some("completed".into()),
                output: Some(Some(output.clone())),
                deadline_at: Some(None),
                finished_at: Some(Some(now)),
                updated_at: Some(now),
                ..TaskChanges::default()
            },
            release: true,
            event: Some(event_row(
                row,
                Some(&row.status),
                "completed",
                Some(&me),
                &actor,
                None,
            )),
        })
    });
    let (before, after) = apply(node, &principal.organization_id, id, decide).await?;
    metrics::counter!("devmesh_tasks_finished_total", "status" => "completed").increment(1);
    count(node, agents, &before, &after, Outcome::Completed, cost).await;
    dispatch::run(node, agents, &principal.organization_id).await;
    Ok(view(after))
}

/// `running → failed`, or back to the queue when the failure is retryable and attempts
/// remain.
pub async fn fail(
    node: &Node,
    agents: &Arc<Agents>,
    principal: &Principal,
    id: &str,
    failure: Failure,
) -> ServiceResult<Task> {
    let me = working_agent(node, principal, id).await?;
    let message = fields::text("error", &failure.error, 2000)?;
    if message.trim().is_empty() {
        return Err(ServiceError::invalid("error", "must say what went wrong"));
    }
    let error = TaskError {
        message,
        retryable: failure.retryable,
    };
    let text = serde_json::to_string(&error).expect("errors serialize");
    let actor = principal.actor_label();
    let decide: Decide = Arc::new(move |row| {
        if let Some(why) = refuse(row, &me, &["running"], "fail") {
            return Err(why);
        }
        let attempts = row.attempts;
        let again = error.retryable && attempts < row.max_attempts;
        let now = crate::storage::now();
        let base = TaskChanges {
            error: Some(Some(text.clone())),
            updated_at: Some(now),
            ..TaskChanges::default()
        };
        let (changes, to, reason) = if again {
            (
                requeue(base),
                "queued",
                format!(
                    "failed (retryable), attempt {attempts} of {}",
                    row.max_attempts
                ),
            )
        } else {
            (
                TaskChanges {
                    status: Some("failed".into()),
                    deadline_at: Some(None),
                    finished_at: Some(Some(now)),
                    ..base
                },
                "failed",
                "failed".to_string(),
            )
        };
        Ok(Plan {
            changes,
            release: true,
            event: Some(event_row(
                row,
                Some(&row.status),
                to,
                Some(&me),
                &actor,
                Some(reason),
            )),
        })
    });
    let (before, after) = apply(node, &principal.organization_id, id, decide).await?;
    metrics::counter!("devmesh_tasks_finished_total", "status" => "failed").increment(1);
    count(node, agents, &before, &after, Outcome::Failed, 0.0).await;
    dispatch::run(node, agents, &principal.organization_id).await;
    Ok(view(after))
}

/// Any state but a final one `→ cancelled`; the agent hears of it on its inbox.
pub async fn cancel(
    node: &Node,
    agents: &Arc<Agents>,
    principal: &Principal,
    id: &str,
    reason: Option<String>,
) -> ServiceResult<Task> {
    principal.require(Scope::TasksWrite)?;
    let reason = reason
        .map(|r| fields::text("reason", &r, 2000))
        .transpose()?;
    // An agent's key cancels only what it created.
    let row = find(node, principal, id).await?;
    if principal.agent_id().is_some() && row.created_by != principal.actor_label() {
        return Err(ServiceError::Forbidden(
            "an agent's key cancels only the tasks it created".into(),
        ));
    }
    let actor = principal.actor_label();
    let decide: Decide = Arc::new(move |row| {
        if TaskStatus::from_stored(&row.status).is_some_and(TaskStatus::is_final) {
            return Err(format!(
                "the task is already {}; it cannot be cancelled",
                row.status
            ));
        }
        let now = crate::storage::now();
        Ok(Plan {
            changes: TaskChanges {
                status: Some("cancelled".into()),
                deadline_at: Some(None),
                finished_at: Some(Some(now)),
                updated_at: Some(now),
                ..TaskChanges::default()
            },
            release: row.status == "assigned" || row.status == "running",
            event: Some(event_row(
                row,
                Some(&row.status),
                "cancelled",
                row.agent_id.as_deref(),
                &actor,
                reason.clone(),
            )),
        })
    });
    let (_, after) = apply(node, &principal.organization_id, id, decide).await?;
    dispatch::run(node, agents, &principal.organization_id).await;
    Ok(view(after))
}

/// The system's transitions (the sweep, an agent stopping): why, and what comes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lapse {
    /// Not accepted within `assign_timeout`.
    NotAccepted,
    /// Its agent went offline before accepting.
    AgentOffline,
    /// Its agent was suspended or retired before accepting.
    AgentStopped,
    /// Not finished within `timeout`.
    RunTimeout,
}

/// Applies a lapse to a task, if it is still in the state the lapse is about; `true`
/// when it moved.
pub async fn lapse(
    node: &Node,
    agents: &Arc<Agents>,
    row: &TaskRow,
    lapse: Lapse,
) -> ServiceResult<bool> {
    let expected_agent = row.agent_id.clone();
    let decide: Decide = Arc::new(move |row| {
        let now = crate::storage::now();
        let from = if lapse == Lapse::RunTimeout {
            "running"
        } else {
            "assigned"
        };
        if row.status != from || row.agent_id != expected_agent {
            return Err("moved on".into());
        }
        if matches!(lapse, Lapse::NotAccepted | Lapse::RunTimeout)
            && row.deadline_at.is_none_or(|d| d > now)
        {
            return Err("not due".into());
        }
        let (changes, to, reason) = match lapse {
            Lapse::NotAccepted => (
                requeue(TaskChanges::default()),
                "queued",
                "not accepted within assign_timeout".to_string(),
            ),
            Lapse::AgentOffline => (
                requeue(TaskChanges::default()),
                "queued",
                "the agent went offline".to_string(),
            ),
            Lapse::AgentStopped => (
                requeue(TaskChanges::default()),
                "queued",
                "the agent was suspended or retired".to_string(),
            ),
            Lapse::RunTimeout if row.attempts < row.max_attempts => (
                requeue(TaskChanges::default()),
                "queued",
                format!(
                    "not finished within timeout, attempt {} of {}",
                    row.attempts, row.max_attempts
                ),
            ),
            Lapse::RunTimeout => (
                TaskChanges {
                    status: Some("timed_out".into()),
                    deadline_at: Some(None),
                    finished_at: Some(Some(now)),
                    error: Some(Some(
                        json!({ "message": "not finished within timeout", "retryable": false })
                            .to_string(),
                    )),
                    updated_at: Some(now),
                    ..TaskChanges::default()
                },
                "timed_out",
                format!(
                    "not finished within timeout after {} attempt(s)",
                    row.attempts
                ),
            ),
        };
        Ok(Plan {
            changes,
            release: true,
            event: Some(event_row(
                row,
                Some(from),
                to,
                row.agent_id.as_deref(),
                SYSTEM,
                Some(reason),
            )),
        })
    });
    let moved = match apply(node, &row.organization_id, &row.id, decide).await {
        Ok(moved) => moved,
        Err(ServiceError::Conflict(_)) | Err(ServiceError::NotFound(_)) => return Ok(false),
        Err(e) => return Err(e),
    };
    let (before, after) = moved;
    match lapse {
        // An attempt the agent started and did not finish in time.
        Lapse::RunTimeout => count(node, agents, &before, &after, Outcome::TimedOut, 0.0).await,
        // Not an attempt (statistics count attempts), but the agent's circuit hears of it.
        Lapse::NotAccepted => trip(node, agents, &before, false).await,
        Lapse::AgentOffline | Lapse::AgentStopped => {}
    }
    Ok(true)
}

/// Gives an agent's assigned (not accepted) tasks back to the queue.
pub async fn requeue_assigned(
    node: &Node,
    agents: &Arc<Agents>,
    agent: &AgentRow,
    _why: &str,
) -> ServiceResult<()> {
    let assigned =
        store::of_agent(&node.db, &agent.organization_id, &agent.id, &["assigned"]).await?;
    for task in &assigned {
        lapse(node, agents, task, Lapse::AgentStopped).await?;
    }
    dispatch::run(node, agents, &agent.organization_id).await;
    Ok(())
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

/// The next task assigned to the agent (not yet accepted), waiting up to `wait` for one
/// to arrive; with `claim`, it is accepted too.
pub async fn next(
    node: &Node,
    principal: &Principal,
    agent_id: &str,
    wait: std::time::Duration,
    claim: bool,
) -> ServiceResult<Option<Task>> {
    principal.require(Scope::TasksWork)?;
    if principal.agent_id() != Some(agent_id) {
        agent_store::get(&node.db, &principal.organization_id, agent_id)
            .await?
            .ok_or(ServiceError::NotFound("agent"))?;
        return Err(ServiceError::Forbidden(
            "only the agent's own key takes its tasks".into(),
        ));
    }
    let org = principal.organization_id.clone();
    // Listen first, then look: a task assigned in between is not missed.
    let mut events = crate::events::TenantEvents::subscribe(node, &org)
        .await
        .map_err(|e| ServiceError::Internal(format!("cannot follow the agent's inbox: {e}")))?;
    let inbox = inbox_uri(agent_id);
    let until = tokio::time::Instant::now() + wait;
    loop {
        let assigned = store::of_agent(&node.db, &org, agent_id, &["assigned"]).await?;
        for task in assigned {
            if !claim {
                return Ok(Some(view(task)));
            }
            match accept(node, principal, &task.id).await {
                Ok(task) => return Ok(Some(task)),
                // Taken back a moment ago: the next one.
                Err(ServiceError::Conflict(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        loop {
            let change = tokio::select! {
                change = events.recv() => change,
                _ = tokio::time::sleep_until(until) => return Ok(None),
            };
            match change {
                Some(crate::events::Change::ResourceUpdated { uri }) if uri == inbox => break,
                Some(_) => continue,
                None => return Ok(None),
            }
        }
    }
}
