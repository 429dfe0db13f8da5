//! The shapes the agents and tasks API takes and gives (REST bodies, MCP tool arguments
//! and results).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::fields;
use crate::tenancy::names::DisplayName;
use crate::tenancy::scopes::string_enum;

string_enum! {
    /// `pending → active ⇄ suspended → retired`; only an active agent receives work.
    AgentStatus { Pending = "pending", Active = "active", Suspended = "suspended", Retired = "retired" }
}

string_enum! {
    /// `queued → assigned → running → completed | failed | cancelled | timed_out`, with
    /// `assigned → queued` (rejected, not accepted in time, agent offline) and
    /// `running → queued` (timed out with attempts left).
    TaskStatus {
        Queued = "queued", Assigned = "assigned", Running = "running", Completed = "completed",
        Failed = "failed", Cancelled = "cancelled", TimedOut = "timed_out",
    }
}

impl TaskStatus {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            TaskStatus::Completed
                | TaskStatus::Failed
                | TaskStatus::Cancelled
                | TaskStatus::TimedOut
        )
    }
}

string_enum! {
    /// Among queued tasks an agent can take, higher priorities go first; first in, first
    /// out within one.
    Priority { Low = "low", Normal = "normal", High = "high", Critical = "critical" }
}

impl Priority {
    pub fn rank(self) -> i32 {
        match self {
            Priority::Low => 0,
            Priority::Normal => 1,
            Priority::High => 2,
            Priority::Critical => 3,
        }
    }
    pub fn from_rank(rank: i32) -> Self {
        match rank {
            i32::MIN..=0 => Priority::Low,
            1 => Priority::Normal,
            2 => Priority::High,
            _ => Priority::Critical,
        }
    }
}

string_enum! {
    /// How the engine chooses among the eligible agents (see `agents::engine`).
    Strategy {
        Auto = "auto", RoundRobin = "round_robin", LeastLoaded = "least_loaded",
        CapabilityMatch = "capability_match", Performance = "performance", Cost = "cost",
    }
}

/// One thing an agent can do.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Capability {
    #[schema(schema_with = fields::CapabilityName::schema)]
    pub name: String,
    #[schema(schema_with = fields::label_schema)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// How good it is at this, from 0 to 1 (default 0.5).
    #[schema(minimum = 0, maximum = 1)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proficiency: Option<f64>,
}

/// What an agent costs, in US dollars.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Cost {
    #[schema(minimum = 0, maximum = 1000000)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_task_usd: Option<f64>,
    #[schema(minimum = 0, maximum = 1000000)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_1k_tokens_usd: Option<f64>,
}

/// `POST /api/v1/agents`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAgent {
    /// Unique in the organization, whatever the case.
    #[schema(schema_with = DisplayName::schema)]
    pub name: String,
    #[schema(schema_with = description_schema)]
    pub description: Option<String>,
    /// At most 100.
    #[serde(default)]
    #[schema(max_items = 100)]
    pub capabilities: Vec<Capability>,
    #[serde(default)]
    #[schema(max_items = 50, schema_with = tags_schema)]
    pub tags: Vec<String>,
    /// Free text: the model it runs, for people.
    #[schema(schema_with = fields::label_schema)]
    pub model: Option<String>,
    pub cost: Option<Cost>,
    /// Tasks it takes at once, 1 to 1000 (default 1).
    #[schema(minimum = 1, maximum = 1000)]
    pub max_concurrent_tasks: Option<u32>,
    pub metadata: Option<Map<String, Value>>,
}

fn description_schema() -> utoipa::openapi::schema::Object {
    crate::tenancy::names::or_null(fields::text_schema(2000))
}

fn tags_schema() -> utoipa::openapi::schema::Array {
    utoipa::openapi::schema::ArrayBuilder::new()
        .items(fields::Tag::schema())
        .max_items(Some(50))
        .build()
}

fn tags_or_null() -> utoipa::openapi::schema::Array {
    let mut a = tags_schema();
    a.schema_type = utoipa::openapi::schema::SchemaType::from_iter([
        utoipa::openapi::schema::Type::Array,
        utoipa::openapi::schema::Type::Null,
    ]);
    a
}

fn capabilities_schema() -> utoipa::openapi::schema::Array {
    utoipa::openapi::schema::ArrayBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
            utoipa::openapi::schema::Type::Array,
            utoipa::openapi::schema::Type::Null,
        ]))
        .items(utoipa::openapi::Ref::from_schema_name("Capability"))
        .max_items(Some(100))
        .build()
}

/// `PATCH /api/v1/agents/{id}`: what is given changes; `null` clears `model` and `cost`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentPatch {
    #[schema(schema_with = name_or_null)]
    pub name: Option<String>,
    #[schema(schema_with = description_schema)]
    pub description: Option<String>,
    #[schema(schema_with = capabilities_schema)]
    pub capabilities: Option<Vec<Capability>>,
    #[schema(schema_with = tags_or_null)]
    pub tags: Option<Vec<String>>,
    #[serde(default, deserialize_with = "crate::decode::present")]
    #[schema(schema_with = model_or_null)]
    pub model: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::decode::present")]
    pub cost: Option<Option<Cost>>,
    #[schema(minimum = 1, maximum = 1000)]
    pub max_concurrent_tasks: Option<u32>,
    pub metadata: Option<Map<String, Value>>,
}

fn name_or_null() -> utoipa::openapi::schema::Object {
    crate::tenancy::names::or_null(DisplayName::schema())
}

fn model_or_null() -> utoipa::openapi::schema::Object {
    crate::tenancy::names::or_null(fields::label_schema())
}

/// Whether an agent is reachable, and since when it was last heard of.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Presence {
    /// A connection open, or a heartbeat within two heartbeat intervals.
    pub online: bool,
    pub last_seen_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// The agent's circuit breaker.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Circuit {
    /// `closed` (takes work), `open` (takes none until `open_until`), `half_open` (takes
    /// one trial task; its outcome closes or reopens the circuit).
    pub state: String,
    pub consecutive_failures: i32,
    pub open_until: Option<chrono::DateTime<chrono::Utc>>,
}

/// Finished tasks of one agent (of one task type, or all).
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct Statistics {
    pub completed: i64,
    pub failed: i64,
    pub timed_out: i64,
    /// Completed over all finished, when any finished.
    pub success_rate: Option<f64>,
    /// Start to finish, in milliseconds: the median of the last 50, and the
    /// exponentially weighted mean (α = 0.2).
    pub latency_p50_ms: Option<f64>,
    pub latency_ewma_ms: Option<f64>,
    /// What its finished tasks cost, in US dollars.
    pub cost_usd: f64,
}

/// An agent as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Agent {
    pub id: String,
    pub name: String,
    pub description: String,
    pub capabilities: Vec<Capability>,
    pub tags: Vec<String>,
    pub model: Option<String>,
    pub cost: Cost,
    pub max_concurrent_tasks: i32,
    pub metadata: Value,
    pub status: AgentStatus,
    pub presence: Presence,
    /// Its tasks assigned or running.
    pub load: i32,
    pub circuit: Circuit,
    /// For all task types (`GET /agents/{id}` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statistics: Option<Statistics>,
    /// Per task type (`GET /agents/{id}` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statistics_by_type: Option<BTreeMap<String, Statistics>>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// `POST /api/v1/tasks`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTask {
    #[schema(schema_with = DisplayName::schema)]
    pub title: String,
    /// What kind of work (statistics are kept per type): a capability-style name,
    /// default `general`.
    #[schema(schema_with = type_or_null)]
    #[serde(rename = "type")]
    pub task_type: Option<String>,
    #[schema(schema_with = description_schema)]
    pub description: Option<String>,
    /// Any JSON, up to `agents.max_input_bytes`.
    pub input: Option<Value>,
    /// The agent must have every one.
    #[serde(default)]
    #[schema(schema_with = required_schema)]
    pub required_capabilities: Vec<String>,
    /// Preferred, not required: a tie-breaker.
    #[serde(default)]
    #[schema(schema_with = tags_schema)]
    pub preferred_tags: Vec<String>,
    pub priority: Option<Priority>,
    pub strategy: Option<Strategy>,
    /// Only agents whose expected cost is at most this, in US dollars.
    #[schema(minimum = 0, maximum = 1000000)]
    pub max_cost_usd: Option<f64>,
    /// Time to finish once started (`"30m"`, or seconds); default `agents.default_timeout`.
    #[schema(schema_with = fields::span_schema)]
    pub timeout: Option<Value>,
    /// Time to be accepted once assigned; default `agents.default_assign_timeout`.
    #[schema(schema_with = fields::span_schema)]
    pub assign_timeout: Option<Value>,
    /// 1 to 20; default `agents.default_max_attempts`.
    #[schema(minimum = 1, maximum = 20)]
    pub max_attempts: Option<u32>,
    /// A repeat with the same key and body returns the first task (200); the same key
    /// with another body is 409.
    #[schema(schema_with = key_or_null)]
    pub idempotency_key: Option<String>,
    /// A context of the organization the agent may read and append to.
    #[schema(value_type = Option<uuid::Uuid>)]
    pub context_id: Option<String>,
    /// The task this one is part of.
    #[schema(value_type = Option<uuid::Uuid>)]
    pub parent_id: Option<String>,
    /// Only this agent may take it.
    #[schema(value_type = Option<uuid::Uuid>)]
    pub agent_id: Option<String>,
}

fn type_or_null() -> utoipa::openapi::schema::Object {
    crate::tenancy::names::or_null(fields::CapabilityName::schema())
}

fn key_or_null() -> utoipa::openapi::schema::Object {
    crate::tenancy::names::or_null(fields::label_schema())
}

fn required_schema() -> utoipa::openapi::schema::Array {
    utoipa::openapi::schema::ArrayBuilder::new()
        .items(fields::CapabilityName::schema())
        .max_items(Some(50))
        .build()
}

/// The agent's last report on a running task.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Progress {
    pub percent: Option<f64>,
    pub message: Option<String>,
    pub at: chrono::DateTime<chrono::Utc>,
}

/// Why a task failed.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TaskError {
    pub message: String,
    /// Whether another attempt may succeed (it is queued again while attempts remain).
    pub retryable: bool,
}

/// A task as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Task {
    pub id: String,
    pub title: String,
    #[serde(rename = "type")]
    pub task_type: String,
    pub description: String,
    pub input: Value,
    pub required_capabilities: Vec<String>,
    pub preferred_tags: Vec<String>,
    pub priority: Priority,
    pub strategy: Strategy,
    pub max_cost_usd: Option<f64>,
    /// In milliseconds.
    pub timeout_ms: i64,
    pub assign_timeout_ms: i64,
    pub max_attempts: i32,
    /// Attempts started so far.
    pub attempts: i32,
    pub idempotency_key: Option<String>,
    pub context_id: Option<String>,
    pub parent_id: Option<String>,
    /// The one agent that may take it, when pinned.
    pub pinned_agent_id: Option<String>,
    pub status: TaskStatus,
    /// The agent it is assigned to or running on (or last was, once finished).
    pub agent_id: Option<String>,
    /// When the current state runs out: accepting, once assigned; finishing, once running.
    pub deadline_at: Option<chrono::DateTime<chrono::Utc>>,
    pub progress: Option<Progress>,
    pub output: Option<Value>,
    pub error: Option<TaskError>,
    /// How the engine chose the agent: the strategy that decided and the top
    /// candidates' scores.
    pub decision: Option<Value>,
    /// Why a queued task waits, when it does.
    pub waiting_reason: Option<String>,
    /// `user:<id>` or `api_key:<id>`.
    pub created_by: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub assigned_at: Option<chrono::DateTime<chrono::Utc>>,
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// One transition of a task.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TaskEvent {
    pub id: String,
    pub from: Option<TaskStatus>,
    pub to: TaskStatus,
    pub agent_id: Option<String>,
    /// `user:<id>`, `api_key:<id>` or `system`.
    pub actor: String,
    pub reason: Option<String>,
    pub at: chrono::DateTime<chrono::Utc>,
}

/// `POST /tasks/{id}/progress`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProgressReport {
    /// 0 to 100.
    #[schema(minimum = 0, maximum = 100)]
    pub percent: Option<f64>,
    #[schema(schema_with = message_or_null)]
    pub message: Option<String>,
}

fn message_or_null() -> utoipa::openapi::schema::Object {
    crate::tenancy::names::or_null(fields::text_schema(2000))
}

/// `POST /tasks/{id}/complete`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Completion {
    /// Any JSON, up to `agents.max_input_bytes`.
    pub output: Option<Value>,
    /// What the work cost, in US dollars; if absent, the agent's `per_task_usd` plus
    /// `per_1k_tokens_usd` times `tokens` / 1000.
    #[schema(minimum = 0, maximum = 1000000)]
    pub cost_usd: Option<f64>,
    /// Tokens the work used.
    #[schema(minimum = 0)]
    pub tokens: Option<u64>,
}

/// `POST /tasks/{id}/fail`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Failure {
    #[schema(schema_with = error_schema)]
    pub error: String,
    /// Whether another attempt may succeed (default false): a retryable failure is
    /// queued again while attempts remain.
    #[serde(default)]
    pub retryable: bool,
}

fn error_schema() -> utoipa::openapi::schema::Object {
    fields::text_schema(2000)
}

/// `POST /tasks/{id}/reject` and `/cancel`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reason {
    #[schema(schema_with = message_or_null)]
    pub reason: Option<String>,
}
