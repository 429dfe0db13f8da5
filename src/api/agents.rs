//! `/api/v1/agents`: the agent registry, lifecycle, keys, heartbeats, the inbox and the
//! long poll for the next task. Thin handlers over [`crate::agents::registry`] and
//! [`crate::agents::tasks`].

use std::time::Duration;

use actix_web::http::header::LOCATION;
use actix_web::{HttpResponse, delete, get, patch, post, web};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::agents::Agents;
use crate::agents::fields::{self, Span};
use crate::agents::model::{Agent, AgentPatch, AgentStatus, NewAgent, Task};
use crate::agents::registry::{self, Heartbeat, Move};
use crate::agents::{tasks, transitions};
use crate::context::Context as Node;
use crate::http::errors::{ApiError, ErrorBody};
use crate::http::json::StrictJson;
use crate::service::{Page, PageRequest, ServiceError};
use crate::storage::agents::AgentFilter;
use crate::tenancy::TenancyState;
use crate::tenancy::api_keys::{CreatedKey, NewKey, RateLimit};
use crate::tenancy::extract::Authenticated;
use crate::tenancy::names::DisplayName;
use crate::tenancy::scopes::{KeyType, Scope};

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AgentQuery {
    /// Only agents with this capability.
    #[param(pattern = "^[a-z][a-z0-9_.-]{0,63}$")]
    pub capability: Option<String>,
    /// Only agents with this tag.
    #[param(pattern = "^[a-z0-9][a-z0-9_.:-]{0,63}$")]
    pub tag: Option<String>,
    pub status: Option<AgentStatus>,
    /// Items per page, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(value_type = Option<uuid::Uuid>)]
    pub cursor: Option<String>,
}

/// Register an agent (status `pending`: activate it to give it work).
#[utoipa::path(
    tag = "agents",
    request_body = NewAgent,
    responses(
        (status = 201, description = "Registered", body = Agent),
        (status = 409, description = "An agent by this name exists", body = ErrorBody),
        (status = 422, description = "A field breaks its rules", body = ErrorBody),
    ),
    security(("bearer" = ["agents:write"]))
)]
#[post("/api/v1/agents")]
pub async fn create_agent(
    node: web::Data<Node>,
    agents: web::Data<Agents>,
    auth: Authenticated,
    body: StrictJson<NewAgent>,
) -> Result<HttpResponse, ApiError> {
    let agent = registry::create(&node, &agents.into_inner(), &auth.0, body.into_inner()).await?;
    Ok(HttpResponse::Created()
        .insert_header((LOCATION, format!("/api/v1/agents/{}", agent.id)))
        .json(agent))
}

/// List agents, newest first, by capability, tag or status.
#[utoipa::path(
    tag = "agents",
    params(AgentQuery),
    responses((status = 200, description = "A page of agents", body = Page<Agent>)),
    security(("bearer" = ["agents:read"]))
)]
#[get("/api/v1/agents")]
pub async fn list_agents(
    node: web::Data<Node>,
    agents: web::Data<Agents>,
    auth: Authenticated,
    query: web::Query<AgentQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let page = PageRequest::parse(q.limit, q.cursor.as_deref())?;
    let filter = AgentFilter {
        capability: q.capability,
        tag: q.tag,
        status: q.status.map(|s| s.as_str().to_string()),
    };
    let list = registry::list(&node, &agents.into_inner(), &auth.0, filter, page).await?;
    Ok(HttpResponse::Ok().json(list))
}

/// One agent: status, presence, load, circuit and statistics (all and per task type).
#[utoipa::path(
    tag = "agents",
    params(("id" = String, Path, description = "The agent's id")),
    responses(
        (status = 200, description = "The agent", body = Agent),
        (status = 404, description = "No such agent in this organization", body = ErrorBody),
    ),
    security(("bearer" = ["agents:read"]))
)]
#[get("/api/v1/agents/{id}")]
pub async fn get_agent(
    node: web::Data<Node>,
    agents: web::Data<Agents>,
    auth: Authenticated,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(registry::get(&node, &agents.into_inner(), &auth.0, &id).await?))
}

/// Change an agent; `null` clears `model` and `cost`.
#[utoipa::path(
    tag = "agents",
    params(("id" = String, Path, description = "The agent's id")),
    request_body = AgentPatch,
    responses(
        (status = 200, description = "The changed agent", body = Agent),
        (status = 404, description = "No such agent in this organization", body = ErrorBody),
        (status = 409, description = "Another agent has this name", body = ErrorBody),
        (status = 422, description = "A field breaks its rules", body = ErrorBody),
    ),
    security(("bearer" = ["agents:write"]))
)]
#[patch("/api/v1/agents/{id}")]
pub async fn update_agent(
    node: web::Data<Node>,
    agents: web::Data<Agents>,
    auth: Authenticated,
    id: web::Path<String>,
    body: StrictJson<AgentPatch>,
) -> Result<HttpResponse, ApiError> {
    let agent =
        registry::update(&node, &agents.into_inner(), &auth.0, &id, body.into_inner()).await?;
    Ok(HttpResponse::Ok().json(agent))
}

/// Remove an agent with no task assigned, running or pinned to it; its keys are revoked.
#[utoipa::path(
    tag = "agents",
    params(("id" = String, Path, description = "The agent's id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "No such agent in this organization", body = ErrorBody),
        (status = 409, description = "It has tasks assigned, running or pinned to it", body = ErrorBody),
    ),
    security(("bearer" = ["agents:write"]))
)]
#[delete("/api/v1/agents/{id}")]
pub async fn delete_agent(
    node: web::Data<Node>,
    tenancy: web::Data<TenancyState>,
    auth: Authenticated,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    registry::delete(&node, &tenancy.into_inner(), &auth.0, &id).await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn lifecycle(
    node: web::Data<Node>,
    agents: web::Data<Agents>,
    auth: Authenticated,
    id: web::Path<String>,
    to: Move,
) -> Result<HttpResponse, ApiError> {
    let agent = registry::transition(&node, &agents.into_inner(), &auth.0, &id, to).await?;
    Ok(HttpResponse::Ok().json(agent))
}

/// `pending` or `suspended` → `active`: the agent receives work.
#[utoipa::path(
    tag = "agents",
    params(("id" = String, Path, description = "The agent's id")),
    responses(
        (status = 200, description = "The agent, active", body = Agent),
        (status = 404, description = "No such agent in this organization", body = ErrorBody),
        (status = 409, description = "Not pending or suspended", body = ErrorBody),
    ),
    security(("bearer" = ["agents:write"]))
)]
#[post("/api/v1/agents/{id}/activate")]
pub async fn activate_agent(
    node: web::Data<Node>,
    agents: web::Data<Agents>,
    auth: Authenticated,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    lifecycle(node, agents, auth, id, Move::Activate).await
}

/// `active` → `suspended`: no new work; its assigned tasks go back to the queue.
#[utoipa::path(
    tag = "agents",
    params(("id" = String, Path, description = "The agent's id")),
    responses(
        (status = 200, description = "The agent, suspended", body = Agent),
        (status = 404, description = "No such agent in this organization", body = ErrorBody),
        (status = 409, description = "Not active", body = ErrorBody),
    ),
    security(("bearer" = ["agents:write"]))
)]
#[post("/api/v1/agents/{id}/suspend")]
pub async fn suspend_agent(
    node: web::Data<Node>,
    agents: web::Data<Agents>,
    auth: Authenticated,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    lifecycle(node, agents, auth, id, Move::Suspend).await
}

/// → `retired`, for good: its assigned tasks go back to the queue.
#[utoipa::path(
    tag = "agents",
    params(("id" = String, Path, description = "The agent's id")),
    responses(
        (status = 200, description = "The agent, retired", body = Agent),
        (status = 404, description = "No such agent in this organization", body = ErrorBody),
        (status = 409, description = "Already retired", body = ErrorBody),
    ),
    security(("bearer" = ["agents:write"]))
)]
#[post("/api/v1/agents/{id}/retire")]
pub async fn retire_agent(
    node: web::Data<Node>,
    agents: web::Data<Agents>,
    auth: Authenticated,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    lifecycle(node, agents, auth, id, Move::Retire).await
}

/// `POST /agents/{id}/keys`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAgentKey {
    #[schema(schema_with = DisplayName::schema)]
    pub name: String,
    /// Default: an agent key's scopes.
    pub scopes: Option<Vec<Scope>>,
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
    pub rate_limit: Option<RateLimit>,
}

/// Make an API key of type `agent` that acts as this agent. Its secret is in this
/// answer only.
#[utoipa::path(
    tag = "agents",
    params(("id" = String, Path, description = "The agent's id")),
    request_body = CreateAgentKey,
    responses(
        (status = 201, description = "Created", body = CreatedKey),
        (status = 404, description = "No such agent in this organization", body = ErrorBody),
        (status = 422, description = "A scope an agent key cannot hold, or a past expiry", body = ErrorBody),
    ),
    security(("bearer" = ["api_keys:write"]))
)]
#[post("/api/v1/agents/{id}/keys")]
pub async fn create_agent_key(
    node: web::Data<Node>,
    auth: Authenticated,
    id: web::Path<String>,
    body: StrictJson<CreateAgentKey>,
) -> Result<HttpResponse, ApiError> {
    let b = body.into_inner();
    let new = NewKey {
        name: b.name,
        key_type: KeyType::Agent,
        scopes: b.scopes,
        expires_at: b.expires_at,
        rate_limit: b.rate_limit,
        agent_id: None,
    };
    let created = registry::create_key(&node, &auth.0, &id, new).await?;
    Ok(HttpResponse::Created().json(created))
}

/// A sign of life from the agent's own key, for agents that poll; it stays online for
/// two heartbeat intervals (`agents.heartbeat_interval`).
#[utoipa::path(
    tag = "agents",
    params(("id" = String, Path, description = "The agent's id")),
    responses(
        (status = 200, description = "Online", body = Heartbeat),
        (status = 403, description = "Not this agent's key", body = ErrorBody),
        (status = 404, description = "No such agent in this organization", body = ErrorBody),
    ),
    security(("bearer" = ["tasks:work"]))
)]
#[post("/api/v1/agents/{id}/heartbeat")]
pub async fn agent_heartbeat(
    node: web::Data<Node>,
    agents: web::Data<Agents>,
    auth: Authenticated,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok()
        .json(registry::heartbeat(&node, &agents.into_inner(), &auth.0, &id).await?))
}

/// The agent's inbox: its tasks assigned or running, assigned first.
#[utoipa::path(
    tag = "agents",
    params(("id" = String, Path, description = "The agent's id")),
    responses(
        (status = 200, description = "The tasks", body = Vec<Task>),
        (status = 404, description = "No such agent in this organization", body = ErrorBody),
    ),
    security(("bearer" = ["tasks:read"]))
)]
#[get("/api/v1/agents/{id}/tasks")]
pub async fn agent_inbox(
    node: web::Data<Node>,
    auth: Authenticated,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(tasks::inbox(&node, &auth.0, &id).await?))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct NextQuery {
    /// How long to wait for a task (`"30s"`, or seconds), up to `agents.max_wait`;
    /// default 0 (answer at once).
    #[param(value_type = Option<String>, pattern = "^[0-9]+ *(ms|s|m)?$")]
    pub wait: Option<String>,
}

/// The next task assigned to the agent and not yet accepted (accept it with
/// `POST /tasks/{id}/accept`): answers as soon as one is there, or 204 after `wait`.
/// Counts as a heartbeat.
#[utoipa::path(
    tag = "agents",
    params(("id" = String, Path, description = "The agent's id"), NextQuery),
    responses(
        (status = 200, description = "The next task", body = Task),
        (status = 204, description = "No task came within wait"),
        (status = 403, description = "Not this agent's key", body = ErrorBody),
        (status = 404, description = "No such agent in this organization", body = ErrorBody),
        (status = 422, description = "wait is not a duration within agents.max_wait", body = ErrorBody),
    ),
    security(("bearer" = ["tasks:work"]))
)]
#[get("/api/v1/agents/{id}/tasks/next")]
pub async fn next_task(
    node: web::Data<Node>,
    agents: web::Data<Agents>,
    auth: Authenticated,
    id: web::Path<String>,
    query: web::Query<NextQuery>,
) -> Result<HttpResponse, ApiError> {
    let agents = agents.into_inner();
    let wait = match &query.wait {
        None => Duration::ZERO,
        Some(w) => {
            let span: Span = serde_json::from_value(serde_json::Value::String(w.clone()))
                .map_err(|e| ServiceError::invalid("wait", e.to_string()))?;
            fields::span_within("wait", span, Duration::ZERO, agents.config.max_wait.get())
                .map_err(ServiceError::from)?
        }
    };
    registry::heartbeat(&node, &agents, &auth.0, &id).await?;
    match transitions::next(&node, &auth.0, &id, wait, false).await? {
        Some(task) => Ok(HttpResponse::Ok().json(task)),
        None => Ok(HttpResponse::NoContent().finish()),
    }
}
