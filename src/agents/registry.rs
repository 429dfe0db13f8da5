//! Registering agents, changing them, moving them through their lifecycle
//! (`pending → active ⇄ suspended → retired`), their keys and their heartbeats. Every
//! function takes the caller's principal and touches only its organization; an agent's
//! own key manages no agent.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::fields::{self, CapabilityName, Tag};
use super::model::{Agent, AgentPatch, AgentStatus, Capability, Cost, NewAgent};
use super::view::view;
use super::{AGENTS_URI, Agents, announce, dispatch, lapses};
use crate::context::Context as Node;
use crate::service::{Page, PageRequest, ServiceError, ServiceResult, is_unique_violation};
use crate::storage::agents::{
    self as store, AgentChanges, AgentFilter, AgentRow, Deleted, Seen, StatsRow,
};
use crate::tenancy::api_keys::{self, CreatedKey, NewKey};
use crate::tenancy::audit::{self, Event};
use crate::tenancy::names::DisplayName;
use crate::tenancy::scopes::{KeyType, Scope};
use crate::tenancy::{Principal, TenancyState, new_id};

const NOT_FOUND: ServiceError = ServiceError::NotFound("agent");
const MAX_METADATA_BYTES: usize = 16 * 1024;

/// Refuses an agent's own key: agents do not manage agents.
fn manager(principal: &Principal, scope: Scope) -> ServiceResult<()> {
    principal.require(scope)?;
    if principal.agent_id().is_some() {
        return Err(ServiceError::Forbidden(
            "an agent's key cannot manage agents".into(),
        ));
    }
    Ok(())
}

fn capabilities(list: &[Capability]) -> ServiceResult<(String, String)> {
    if list.len() > 100 {
        return Err(ServiceError::invalid(
            "capabilities",
            format!("at most 100 capabilities (there are {})", list.len()),
        ));
    }
    let mut names = Vec::new();
    let mut stored = Vec::new();
    for c in list {
        let name = CapabilityName::parse("capabilities[].name", &c.name)?;
        if names.contains(&name.as_str().to_string()) {
            return Err(ServiceError::invalid(
                "capabilities",
                format!("{:?} is listed twice", c.name),
            ));
        }
        let version = c
            .version
            .as_deref()
            .map(|v| fields::label("capabilities[].version", v))
            .transpose()?;
        let proficiency = c.proficiency.unwrap_or(0.5);
        if !(0.0..=1.0).contains(&proficiency) {
            return Err(ServiceError::invalid(
                "capabilities[].proficiency",
                format!("must be from 0 to 1 (it is {proficiency})"),
            ));
        }
        names.push(name.as_str().to_string());
        stored.push(Capability {
            name: name.as_str().to_string(),
            version,
            proficiency: Some(proficiency),
        });
    }
    Ok((
        serde_json::to_string(&stored).expect("capabilities serialize"),
        words(&names),
    ))
}

/// ` a b ` : the stored form of names that filters look for.
fn words(names: &[String]) -> String {
    if names.is_empty() {
        return " ".into();
    }
    format!(" {} ", names.join(" "))
}

fn tags(list: &[String]) -> ServiceResult<String> {
    if list.len() > 50 {
        return Err(ServiceError::invalid(
            "tags",
            format!("at most 50 tags (there are {})", list.len()),
        ));
    }
    let mut parsed: Vec<String> = Vec::new();
    for t in list {
        let tag = Tag::parse("tags[]", t)?.as_str().to_string();
        if !parsed.contains(&tag) {
            parsed.push(tag);
        }
    }
    Ok(words(&parsed))
}

fn cost(c: Option<Cost>) -> ServiceResult<(Option<f64>, Option<f64>)> {
    let c = c.unwrap_or_default();
    Ok((
        c.per_task_usd
            .map(|v| fields::usd("cost.per_task_usd", v))
            .transpose()?,
        c.per_1k_tokens_usd
            .map(|v| fields::usd("cost.per_1k_tokens_usd", v))
            .transpose()?,
    ))
}

fn capacity(n: u32) -> ServiceResult<i32> {
    if !(1..=1000).contains(&n) {
        return Err(ServiceError::invalid(
            "max_concurrent_tasks",
            format!("must be from 1 to 1000 (it is {n})"),
        ));
    }
    Ok(n as i32)
}

fn metadata(m: Option<Map<String, Value>>) -> ServiceResult<String> {
    let text = Value::Object(m.unwrap_or_default()).to_string();
    if text.len() > MAX_METADATA_BYTES {
        return Err(ServiceError::TooLarge(format!(
            "metadata is {} bytes of JSON; the limit is {MAX_METADATA_BYTES} bytes",
            text.len()
        )));
    }
    Ok(text)
}

fn taken(name: &str) -> ServiceError {
    ServiceError::Conflict(format!(
        "an agent named {name:?} already exists in this organization"
    ))
}

pub async fn create(
    node: &Node,
    agents: &Arc<Agents>,
    principal: &Principal,
    new: NewAgent,
) -> ServiceResult<Agent> {
    manager(principal, Scope::AgentsWrite)?;
    let name = DisplayName::parse("name", &new.name)?;
    let description = fields::text(
        "description",
        new.description.as_deref().unwrap_or(""),
        2000,
    )?;
    let (capabilities, capability_names) = capabilities(&new.capabilities)?;
    let tags = tags(&new.tags)?;
    let model = new
        .model
        .as_deref()
        .map(|m| fields::label("model", m))
        .transpose()?;
    let (per_task, per_1k) = cost(new.cost)?;
    let now = crate::storage::now();
    let row = AgentRow {
        id: new_id(),
        organization_id: principal.organization_id.clone(),
        name: name.as_str().to_string(),
        description,
        capabilities,
        capability_names,
        tags,
        model,
        cost_per_task_usd: per_task,
        cost_per_1k_tokens_usd: per_1k,
        max_concurrent_tasks: capacity(new.max_concurrent_tasks.unwrap_or(1))?,
        metadata: metadata(new.metadata)?,
        status: AgentStatus::Pending.as_str().into(),
        load: 0,
        last_seen_at: None,
        last_assigned_at: None,
        consecutive_failures: 0,
        circuit_open_until: None,
        created_at: now,
        updated_at: now,
    };
    let principal = principal.clone();
    let row = node
        .run_to_end(move |node| async move {
            store::insert(&node.db, &row).await.map_err(|e| {
                let e = ServiceError::from(e);
                if is_unique_violation(&e) {
                    taken(&row.name)
                } else {
                    e
                }
            })?;
            audit::record(
                &node,
                Event::by(&principal, "agent.created")
                    .target("agent", &row.id)
                    .details(json!({ "name": row.name })),
            )
            .await;
            announce(&node, &row.organization_id, [AGENTS_URI.to_string()]).await;
            Ok(row)
        })
        .await?;
    Ok(view(agents, row, None))
}

/// The agent's row, if the principal may see it.
pub async fn row(node: &Node, principal: &Principal, id: &str) -> ServiceResult<AgentRow> {
    principal.require(Scope::AgentsRead)?;
    find(node, principal, id).await
}

/// The agent's row in the principal's organization, whatever its scopes.
async fn find(node: &Node, principal: &Principal, id: &str) -> ServiceResult<AgentRow> {
    store::get(&node.db, &principal.organization_id, id)
        .await?
        .ok_or(NOT_FOUND)
}

pub async fn get(
    node: &Node,
    agents: &Arc<Agents>,
    principal: &Principal,
    id: &str,
) -> ServiceResult<Agent> {
    let row = row(node, principal, id).await?;
    let stats = stats_of(node, &principal.organization_id, &row.id).await?;
    Ok(view(agents, row, Some(&stats)))
}

async fn stats_of(node: &Node, org: &str, agent: &str) -> ServiceResult<Vec<StatsRow>> {
    Ok(store::stats(&node.db, org, &[agent.to_string()], None).await?)
}

pub async fn list(
    node: &Node,
    agents: &Arc<Agents>,
    principal: &Principal,
    filter: AgentFilter,
    page: PageRequest,
) -> ServiceResult<Page<Agent>> {
    principal.require(Scope::AgentsRead)?;
    if let Some(c) = &filter.capability {
        CapabilityName::parse("capability", c)?;
    }
    if let Some(t) = &filter.tag {
        Tag::parse("tag", t)?;
    }
    let rows = store::list(
        &node.db,
        &principal.organization_id,
        &filter,
        page.after.as_deref(),
        page.fetch(),
    )
    .await?;
    Ok(page.page(rows, |r| &r.id, |r| view(agents, r, None)))
}

pub async fn update(
    node: &Node,
    agents: &Arc<Agents>,
    principal: &Principal,
    id: &str,
    patch: AgentPatch,
) -> ServiceResult<Agent> {
    manager(principal, Scope::AgentsWrite)?;
    let mut changes = AgentChanges {
        updated_at: Some(crate::storage::now()),
        ..AgentChanges::default()
    };
    if let Some(n) = &patch.name {
        changes.name = Some(DisplayName::parse("name", n)?.as_str().to_string());
    }
    if let Some(d) = &patch.description {
        changes.description = Some(fields::text("description", d, 2000)?);
    }
    if let Some(c) = &patch.capabilities {
        let (stored, names) = capabilities(c)?;
        changes.capabilities = Some(stored);
        changes.capability_names = Some(names);
    }
    if let Some(t) = &patch.tags {
        changes.tags = Some(tags(t)?);
    }
    if let Some(m) = &patch.model {
        changes.model = Some(
            m.as_deref()
                .map(|m| fields::label("model", m))
                .transpose()?,
        );
    }
    if let Some(c) = patch.cost {
        let (per_task, per_1k) = cost(c)?;
        changes.cost_per_task_usd = Some(per_task);
        changes.cost_per_1k_tokens_usd = Some(per_1k);
    }
    if let Some(n) = patch.max_concurrent_tasks {
        changes.max_concurrent_tasks = Some(capacity(n)?);
    }
    if patch.metadata.is_some() {
        changes.metadata = Some(metadata(patch.metadata)?);
    }
    let org = principal.organization_id.clone();
    let principal = principal.clone();
    let (id, name) = (id.to_string(), changes.name.clone());
    let row = node
        .run_to_end(move |node| async move {
            let row = store::update(&node.db, &org, &id, &changes)
                .await
                .map_err(|e| {
                    let e = ServiceError::from(e);
                    match &name {
                        Some(n) if is_unique_violation(&e) => taken(n),
                        _ => e,
                    }
                })?
                .ok_or(NOT_FOUND)?;
            audit::record(
                &node,
                Event::by(&principal, "agent.updated").target("agent", &row.id),
            )
            .await;
            announce(&node, &org, [AGENTS_URI.to_string()]).await;
            Ok(row)
        })
        .await?;
    // More slots, new capabilities: queued work may fit now.
    dispatch::run(node, agents, &row.organization_id).await;
    Ok(view(agents, row, None))
}

/// Removes an agent with nothing assigned, running or pinned to it; its keys are
/// revoked with it.
pub async fn delete(
    node: &Node,
    tenancy: &Arc<TenancyState>,
    principal: &Principal,
    id: &str,
) -> ServiceResult<()> {
    manager(principal, Scope::AgentsWrite)?;
    let (principal, id, tenancy) = (principal.clone(), id.to_string(), tenancy.clone());
    node.run_to_end(move |node| async move {
        let pinned = crate::storage::tasks::pinned_waiting(&node.db, &principal.organization_id, &id).await?;
        if pinned > 0 && store::get(&node.db, &principal.organization_id, &id).await?.is_some() {
            return Err(ServiceError::Conflict(format!(
                "{pinned} queued task(s) are pinned to the agent; cancel them first"
            )));
        }
        match store::delete(&node.db, &principal.organization_id, &id).await? {
            Deleted::Done => {}
            Deleted::Missing => return Err(NOT_FOUND),
            Deleted::Busy(n) => {
                return Err(ServiceError::Conflict(format!(
                    "the agent has {n} task(s) assigned or running; suspend or retire it and let them finish, or cancel them, first"
                )));
            }
        }
        let revoked = api_keys::revoke_bound_to(&node, &tenancy, &principal.organization_id, &id).await?;
        audit::record(
            &node,
            Event::by(&principal, "agent.deleted")
                .target("agent", &id)
                .details(json!({ "keys_revoked": revoked })),
        )
        .await;
        announce(&node, &principal.organization_id, [AGENTS_URI.to_string()]).await;
        Ok(())
    })
    .await
}

/// A lifecycle move an agent can make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Move {
    Activate,
    Suspend,
    Retire,
}

impl Move {
    fn rule(self) -> (&'static [&'static str], AgentStatus, &'static str) {
        match self {
            Move::Activate => (
                &["pending", "suspended"],
                AgentStatus::Active,
                "agent.activated",
            ),
            Move::Suspend => (&["active"], AgentStatus::Suspended, "agent.suspended"),
            Move::Retire => (
                &["pending", "active", "suspended"],
                AgentStatus::Retired,
                "agent.retired",
            ),
        }
    }
}

/// Moves an agent through its lifecycle. An agent that stops taking work gives its
/// assigned (not yet accepted) tasks back to the queue; its running tasks may finish.
pub async fn transition(
    node: &Node,
    agents: &Arc<Agents>,
    principal: &Principal,
    id: &str,
    to: Move,
) -> ServiceResult<Agent> {
    manager(principal, Scope::AgentsWrite)?;
    let (from, status, action) = to.rule();
    let org = principal.organization_id.clone();
    let (p, id_owned) = (principal.clone(), id.to_string());
    let moved = node
        .run_to_end(move |node| async move {
            let Some(row) =
                store::set_status(&node.db, &org, &id_owned, from, status.as_str()).await?
            else {
                let current = store::get(&node.db, &org, &id_owned)
                    .await?
                    .ok_or(NOT_FOUND)?;
                return Err(ServiceError::Conflict(format!(
                    "the agent is {}; it can become {} only from {}",
                    current.status,
                    status.as_str(),
                    from.join(" or ")
                )));
            };
            audit::record(
                &node,
                Event::by(&p, action)
                    .target("agent", &row.id)
                    .details(json!({ "status": row.status })),
            )
            .await;
            announce(&node, &org, [AGENTS_URI.to_string()]).await;
            Ok(row)
        })
        .await?;
    match to {
        Move::Activate => dispatch::run(node, agents, &moved.organization_id).await,
        Move::Suspend | Move::Retire => {
            lapses::requeue_assigned(node, agents, &moved).await?;
        }
    }
    Ok(view(agents, moved, None))
}

/// An API key of type `agent` that acts as this agent; shown once.
pub async fn create_key(
    node: &Node,
    principal: &Principal,
    agent_id: &str,
    mut new: NewKey,
) -> ServiceResult<CreatedKey> {
    manager(principal, Scope::ApiKeysWrite)?;
    if new.key_type != KeyType::Agent {
        return Err(ServiceError::invalid(
            "key_type",
            format!("an agent's key is of type agent (not {})", new.key_type),
        ));
    }
    if new
        .scopes
        .as_ref()
        .is_some_and(|s| s.contains(&Scope::AgentsWrite))
    {
        return Err(ServiceError::invalid(
            "scopes",
            "an agent's key cannot hold agents:write: agents do not manage agents",
        ));
    }
    find(node, principal, agent_id).await?;
    new.agent_id = Some(agent_id.to_string());
    api_keys::create(node, principal, new).await
}

/// What a heartbeat answers.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Heartbeat {
    pub online: bool,
    /// Heartbeat again within this many milliseconds to stay online (one interval).
    pub next_heartbeat_ms: u64,
    pub status: AgentStatus,
}

/// A sign of life from the agent itself (its key): it is online for two heartbeat
/// intervals; coming online lets queued work reach it.
pub async fn heartbeat(
    node: &Node,
    agents: &Arc<Agents>,
    principal: &Principal,
    id: &str,
) -> ServiceResult<Heartbeat> {
    principal.require(Scope::TasksWork)?;
    if principal.agent_id() != Some(id) {
        find(node, principal, id).await?;
        return Err(ServiceError::Forbidden(
            "only the agent's own key (an API key of type agent bound to it) heartbeats for it"
                .into(),
        ));
    }
    let seen = super::presence::seen(node, agents, &principal.organization_id, id).await?;
    if seen == Seen::Missing {
        return Err(NOT_FOUND);
    }
    let row = find(node, principal, id).await?;
    Ok(Heartbeat {
        online: true,
        next_heartbeat_ms: agents.config.heartbeat_interval.get().as_millis() as u64,
        status: AgentStatus::from_stored(&row.status).unwrap_or(AgentStatus::Pending),
    })
}
