//! `/api/v1/tasks`: creating, reading and cancelling tasks, and the agent's side of the
//! lifecycle (accept, progress, complete, fail, reject). Thin handlers over
//! [`crate::agents::tasks`].

use actix_web::http::header::LOCATION;
use actix_web::{HttpResponse, get, post, web};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::agents::Agents;
use crate::agents::model::{
    Completion, Failure, NewTask, Priority, ProgressReport, Reason, Task, TaskEvent, TaskStatus,
};
use crate::agents::tasks::{self, Created};
use crate::agents::transitions;
use crate::context::Context as Node;
use crate::http::errors::{ApiError, ErrorBody};
use crate::http::json::StrictJson;
use crate::service::{Page, PageRequest};
use crate::storage::tasks::TaskFilter;
use crate::tenancy::extract::Authenticated;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TaskQuery {
    pub status: Option<TaskStatus>,
    pub agent_id: Option<uuid::Uuid>,
    /// The task type.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub task_type: Option<String>,
    pub priority: Option<Priority>,
    /// Only tasks created at or after this time (RFC 3339).
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Items per page, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(value_type = Option<uuid::Uuid>)]
    pub cursor: Option<String>,
}

/// Hand a task to the organization's agents. The engine assigns it at once when an agent
/// can take it; otherwise it waits, and `waiting_reason` says why. A repeat with the
/// same `idempotency_key` and body returns the first task (200).
#[utoipa::path(
    tag = "tasks",
    request_body = NewTask,
    responses(
        (status = 201, description = "Created", body = Task),
        (status = 200, description = "A repeat: the task first created with this idempotency key", body = Task),
        (status = 409, description = "The idempotency key was used for another request", body = ErrorBody),
        (status = 413, description = "input is larger than agents.max_input_bytes", body = ErrorBody),
        (status = 422, description = "A field breaks its rules, or names a context, task or agent the organization does not have", body = ErrorBody),
    ),
    security(("bearer" = ["tasks:write"]))
)]
#[post("/api/v1/tasks")]
pub async fn create_task(
    node: web::Data<Node>,
    agents: web::Data<Agents>,
    auth: Authenticated,
    body: StrictJson<NewTask>,
) -> Result<HttpResponse, ApiError> {
    match tasks::create(&node, &agents.into_inner(), &auth.0, body.into_inner()).await? {
        Created::New(task) => Ok(HttpResponse::Created()
            .insert_header((LOCATION, format!("/api/v1/tasks/{}", task.id)))
            .json(task)),
        Created::Existing(task) => Ok(HttpResponse::Ok().json(task)),
    }
}

/// List tasks, newest first. An agent's key sees the tasks given to its agent and those
/// it created.
#[utoipa::path(
    tag = "tasks",
    params(TaskQuery),
    responses((status = 200, description = "A page of tasks", body = Page<Task>)),
    security(("bearer" = ["tasks:read"]))
)]
#[get("/api/v1/tasks")]
pub async fn list_tasks(
    node: web::Data<Node>,
    auth: Authenticated,
    query: web::Query<TaskQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let page = PageRequest::parse(q.limit, q.cursor.as_deref())?;
    let filter = TaskFilter {
        status: q.status.map(|s| s.as_str().to_string()),
        agent_id: q.agent_id.map(|id| id.hyphenated().to_string()),
        task_type: q.task_type,
        priority: q.priority.map(Priority::rank),
        since: q.since.map(|t| t.naive_utc()),
        visible_to: None,
    };
    Ok(HttpResponse::Ok().json(tasks::list(&node, &auth.0, filter, page).await?))
}

/// One task: its state, agent, attempts, progress, result, and how the engine decided.
#[utoipa::path(
    tag = "tasks",
    params(("id" = String, Path, description = "The task's id")),
    responses(
        (status = 200, description = "The task", body = Task),
        (status = 404, description = "No such task in this organization", body = ErrorBody),
    ),
    security(("bearer" = ["tasks:read"]))
)]
#[get("/api/v1/tasks/{id}")]
pub async fn get_task(
    node: web::Data<Node>,
    auth: Authenticated,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(tasks::get(&node, &auth.0, &id).await?))
}

/// Every transition of a task, oldest first: when, from what to what, by whom, why.
#[utoipa::path(
    tag = "tasks",
    params(("id" = String, Path, description = "The task's id")),
    responses(
        (status = 200, description = "The events", body = Vec<TaskEvent>),
        (status = 404, description = "No such task in this organization", body = ErrorBody),
    ),
    security(("bearer" = ["tasks:read"]))
)]
#[get("/api/v1/tasks/{id}/events")]
pub async fn task_events(
    node: web::Data<Node>,
    auth: Authenticated,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(tasks::events(&node, &auth.0, &id).await?))
}

/// An optional `{"reason": ...}` body: none at all, or `null`, is as good as `{}`.
fn reason(body: &web::Bytes) -> Result<Option<String>, ApiError> {
    let text = body.trim_ascii();
    if text.is_empty() || text == b"null" {
        return Ok(None);
    }
    let r: Reason = crate::http::json::parse(body)?;
    Ok(r.reason)
}

/// Cancel a task that has not finished; its agent hears of it on its inbox.
#[utoipa::path(
    tag = "tasks",
    params(("id" = String, Path, description = "The task's id")),
    request_body(content = Option<Reason>, description = "Optional: why"),
    responses(
        (status = 200, description = "The task, cancelled", body = Task),
        (status = 404, description = "No such task in this organization", body = ErrorBody),
        (status = 409, description = "The task has already finished", body = ErrorBody),
    ),
    security(("bearer" = ["tasks:write"]))
)]
#[post("/api/v1/tasks/{id}/cancel")]
pub async fn cancel_task(
    node: web::Data<Node>,
    agents: web::Data<Agents>,
    auth: Authenticated,
    id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let why = reason(&body)?;
    Ok(HttpResponse::Ok()
        .json(transitions::cancel(&node, &agents.into_inner(), &auth.0, &id, why).await?))
}

/// As the assigned agent: take the task (`assigned → running`); its timeout starts.
#[utoipa::path(
    tag = "tasks",
    params(("id" = String, Path, description = "The task's id")),
    responses(
        (status = 200, description = "The task, running", body = Task),
        (status = 403, description = "Not an agent's key", body = ErrorBody),
        (status = 404, description = "No such task in this organization", body = ErrorBody),
        (status = 409, description = "Not assigned to this agent, or not assigned any more", body = ErrorBody),
    ),
    security(("bearer" = ["tasks:work"]))
)]
#[post("/api/v1/tasks/{id}/accept")]
pub async fn accept_task(
    node: web::Data<Node>,
    auth: Authenticated,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(transitions::accept(&node, &auth.0, &id).await?))
}

/// As the assigned agent: give the task back (`assigned → queued`); the engine looks
/// again.
#[utoipa::path(
    tag = "tasks",
    params(("id" = String, Path, description = "The task's id")),
    request_body(content = Option<Reason>, description = "Optional: why"),
    responses(
        (status = 200, description = "The task, queued again (or already reassigned)", body = Task),
        (status = 403, description = "Not an agent's key", body = ErrorBody),
        (status = 404, description = "No such task in this organization", body = ErrorBody),
        (status = 409, description = "Not assigned to this agent", body = ErrorBody),
    ),
    security(("bearer" = ["tasks:work"]))
)]
#[post("/api/v1/tasks/{id}/reject")]
pub async fn reject_task(
    node: web::Data<Node>,
    agents: web::Data<Agents>,
    auth: Authenticated,
    id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let why = reason(&body)?;
    Ok(HttpResponse::Ok()
        .json(transitions::reject(&node, &agents.into_inner(), &auth.0, &id, why).await?))
}

/// As the agent running it: report progress.
#[utoipa::path(
    tag = "tasks",
    params(("id" = String, Path, description = "The task's id")),
    request_body = ProgressReport,
    responses(
        (status = 200, description = "The task", body = Task),
        (status = 403, description = "Not an agent's key", body = ErrorBody),
        (status = 404, description = "No such task in this organization", body = ErrorBody),
        (status = 409, description = "Not running on this agent", body = ErrorBody),
    ),
    security(("bearer" = ["tasks:work"]))
)]
#[post("/api/v1/tasks/{id}/progress")]
pub async fn task_progress(
    node: web::Data<Node>,
    auth: Authenticated,
    id: web::Path<String>,
    body: StrictJson<ProgressReport>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok()
        .json(transitions::progress(&node, &auth.0, &id, body.into_inner()).await?))
}

/// As the agent running it: finish the task with its output. The first result stands:
/// a second completion, or one by an agent the task was taken from, is 409.
#[utoipa::path(
    tag = "tasks",
    params(("id" = String, Path, description = "The task's id")),
    request_body = Completion,
    responses(
        (status = 200, description = "The task, completed", body = Task),
        (status = 403, description = "Not an agent's key", body = ErrorBody),
        (status = 404, description = "No such task in this organization", body = ErrorBody),
        (status = 409, description = "Already finished, or no longer this agent's", body = ErrorBody),
        (status = 413, description = "output is larger than agents.max_input_bytes", body = ErrorBody),
    ),
    security(("bearer" = ["tasks:work"]))
)]
#[post("/api/v1/tasks/{id}/complete")]
pub async fn complete_task(
    node: web::Data<Node>,
    agents: web::Data<Agents>,
    auth: Authenticated,
    id: web::Path<String>,
    body: StrictJson<Completion>,
) -> Result<HttpResponse, ApiError> {
    let task =
        transitions::complete(&node, &agents.into_inner(), &auth.0, &id, body.into_inner()).await?;
    Ok(HttpResponse::Ok().json(task))
}

/// As the agent running it: give up, saying why. A retryable failure goes back to the
/// queue while attempts remain.
#[utoipa::path(
    tag = "tasks",
    params(("id" = String, Path, description = "The task's id")),
    request_body = Failure,
    responses(
        (status = 200, description = "The task, failed or queued again", body = Task),
        (status = 403, description = "Not an agent's key", body = ErrorBody),
        (status = 404, description = "No such task in this organization", body = ErrorBody),
        (status = 409, description = "Already finished, or no longer this agent's", body = ErrorBody),
    ),
    security(("bearer" = ["tasks:work"]))
)]
#[post("/api/v1/tasks/{id}/fail")]
pub async fn fail_task(
    node: web::Data<Node>,
    agents: web::Data<Agents>,
    auth: Authenticated,
    id: web::Path<String>,
    body: StrictJson<Failure>,
) -> Result<HttpResponse, ApiError> {
    let task =
        transitions::fail(&node, &agents.into_inner(), &auth.0, &id, body.into_inner()).await?;
    Ok(HttpResponse::Ok().json(task))
}
