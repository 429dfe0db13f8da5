//! How a task moves: `queued → assigned → running → completed | failed | cancelled |
//! timed_out`, with `assigned → queued` when the agent rejects it and `running → queued`
//! for a retryable failure while attempts remain (the system's moves, on deadlines and
//! agents gone, are in [`super::lapses`]). Each move is one conditional write
//! (`storage::tasks::transition`) with its event; what the agent's key may do is checked
//! against the task as it is inside that write, so a task reassigned a moment ago is
//! "no longer yours".

use std::sync::Arc;

use serde_json::Value;

use super::fields;
use super::model::{Completion, Failure, Progress, ProgressReport, Task, TaskError, TaskStatus};
use super::tasks::{NOT_FOUND, Spec, event_row, find, json_within, view};
use super::{Agents, announce, dispatch, inbox_uri, task_uri};
use crate::context::Context as Node;
use crate::events::Change;
use crate::service::{ServiceError, ServiceResult};
use crate::storage::agents::{self as agent_store, AgentRow, Circuit, Outcome};
use crate::storage::tasks::{self as store, Decide, Moved, Plan, TaskChanges, TaskRow};
use crate::tenancy::Principal;
use crate::tenancy::scopes::Scope;

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
pub(super) async fn apply(
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
pub(super) fn requeue(changes: TaskChanges) -> TaskChanges {
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
pub(super) async fn count(
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
    let circuit = circuit(agents, outcome == Outcome::Completed);
    if let Err(e) = agent_store::record_outcome(
        &node.db, org, agent, task_type, outcome, latency, cost, circuit,
    )
    .await
    {
        tracing::warn!(error = %e, "cannot count a finished task in its agent's statistics");
    }
}

/// What an outcome does to the agent's circuit: a success closes it, anything else
/// counts toward opening it.
fn circuit(agents: &Agents, success: bool) -> Circuit {
    let cooldown = chrono::Duration::from_std(agents.config.breaker_cooldown.get())
        .unwrap_or(chrono::Duration::MAX);
    Circuit {
        success,
        threshold: agents.config.breaker_failures as i32,
        open_until: crate::storage::now() + cooldown,
    }
}

/// The agent's circuit after a task it never took (no statistics to count).
pub(super) async fn trip(node: &Node, agents: &Agents, before: &TaskRow, success: bool) {
    let Some(agent) = before.agent_id.as_deref() else {
        return;
    };
    if let Err(e) = agent_store::record_circuit(&node.db, agent, circuit(agents, success)).await {
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
    finish(
        node,
        agents,
        principal,
        id,
        decide,
        Outcome::Completed,
        cost,
    )
    .await
}

/// The agent's end of a running task: the transition, then the outcome counted in its
/// statistics and circuit, and a round for the slot it frees.
async fn finish(
    node: &Node,
    agents: &Arc<Agents>,
    principal: &Principal,
    id: &str,
    decide: Decide,
    outcome: Outcome,
    cost: f64,
) -> ServiceResult<Task> {
    let (before, after) = apply(node, &principal.organization_id, id, decide).await?;
    let status = match outcome {
        Outcome::Completed => "completed",
        _ => "failed",
    };
    metrics::counter!("devmesh_tasks_finished_total", "status" => status).increment(1);
    count(node, agents, &before, &after, outcome, cost).await;
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
    finish(node, agents, principal, id, decide, Outcome::Failed, 0.0).await
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
    let inbox = inbox_uri(agent_id);
    let wanted = inbox.clone();
    let wants = Arc::new(
        move |change: &Change| matches!(change, Change::ResourceUpdated { uri } if *uri == wanted),
    );
    let mut events = crate::events::TenantEvents::subscribe_to(node, &org, wants)
        .await
        .map_err(|e| ServiceError::Internal(format!("cannot follow the agent's inbox: {e}")))?;
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
