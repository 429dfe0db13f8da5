//! How a stored task looks on the wire (SEP-2663): the flat `CreateTaskResult` a
//! `tools/call` answers with, and the `DetailedTask` of `tasks/get`.
//!
//! - Both carry the `Task` fields at the top level: `taskId`, `status`, `statusMessage`
//!   (when there is one), `createdAt` and `lastUpdatedAt` (ISO 8601, UTC, milliseconds),
//!   `ttlMs` and `pollIntervalMs` (integer milliseconds). There is no `task` wrapper and
//!   no `requestState`: a task's state between rounds stays on the server.
//! - A `DetailedTask` adds by status: `inputRequests` (input_required), `result` (the
//!   tool's `CallToolResult`, completed), `error` (a JSON-RPC error object, failed).

use chrono::{NaiveDateTime, SecondsFormat};
use serde_json::{Map, Value, json};

use crate::config::TasksConfig;
use crate::storage::mcp_tasks::TaskRow;

/// ISO 8601 in UTC with milliseconds (`2026-12-02T15:04:05.123Z`).
pub fn timestamp(t: NaiveDateTime) -> String {
    t.and_utc().to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn task_fields(row: &TaskRow, config: &TasksConfig) -> Map<String, Value> {
    let ttl_ms = (row.expires_at - row.created_at).num_milliseconds().max(1);
    let poll_ms = (config.poll_interval.get().as_millis() as u64).max(1);
    let mut task = Map::new();
    task.insert("taskId".into(), json!(row.id));
    task.insert("status".into(), json!(row.status));
    if let Some(message) = &row.status_message {
        task.insert("statusMessage".into(), json!(message));
    }
    task.insert("createdAt".into(), json!(timestamp(row.created_at)));
    task.insert("lastUpdatedAt".into(), json!(timestamp(row.updated_at)));
    task.insert("ttlMs".into(), json!(ttl_ms));
    task.insert("pollIntervalMs".into(), json!(poll_ms));
    task
}

/// The `CreateTaskResult` of a task just made: `resultType: "task"` and the task.
pub fn created(row: &TaskRow, config: &TasksConfig) -> Value {
    let mut result = task_fields(row, config);
    result.insert("resultType".into(), json!("task"));
    Value::Object(result)
}

/// The `DetailedTask` that `tasks/get` answers with.
pub fn detailed(row: &TaskRow, config: &TasksConfig) -> Value {
    let mut task = task_fields(row, config);
    let stored = |text: &Option<String>| {
        text.as_deref()
            .and_then(|t| serde_json::from_str::<Value>(t).ok())
    };
    match row.status.as_str() {
        "input_required" => {
            let requests = super::Pending::of(row).requests;
            task.insert("inputRequests".into(), Value::Object(requests));
        }
        "completed" => {
            let result = stored(&row.outcome).unwrap_or_else(|| json!({ "content": [] }));
            task.insert("result".into(), result);
        }
        "failed" => {
            let error = stored(&row.outcome)
                .unwrap_or_else(|| json!({ "code": -32603, "message": "internal error" }));
            task.insert("error".into(), error);
        }
        _ => {}
    }
    Value::Object(task)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(status: &str) -> TaskRow {
        let outcome = match status {
            "completed" => Some(r#"{"content":[{"type":"text","text":"done"}],"isError":false}"#),
            "failed" => Some(r#"{"code":-32603,"message":"boom"}"#),
            _ => None,
        };
        let created = chrono::DateTime::parse_from_rfc3339("2026-12-02T10:00:00.250Z")
            .unwrap()
            .naive_utc();
        TaskRow {
            id: "t1".into(),
            organization_id: "o".into(),
            owner: "api_key:k".into(),
            tool: "slow_compute".into(),
            request: "{}".into(),
            status: status.into(),
            status_message: None,
            pending: (status == "input_required").then(|| {
                r#"{"requests":{"confirm":{"method":"elicitation/create"}},"state":"sealed"}"#
                    .into()
            }),
            outcome: outcome.map(str::to_string),
            runner_node: None,
            revision: 1,
            created_at: created,
            updated_at: created + chrono::TimeDelta::milliseconds(1500),
            expires_at: created + chrono::TimeDelta::hours(1),
        }
    }

    #[test]
    fn a_created_task_is_flat_with_integer_durations() {
        let created = created(&row("working"), &TasksConfig::default());
        assert_eq!(created["resultType"], "task");
        assert_eq!(created["taskId"], "t1");
        assert_eq!(created["status"], "working");
        assert_eq!(created["createdAt"], "2026-12-02T10:00:00.250Z");
        assert_eq!(created["lastUpdatedAt"], "2026-12-02T10:00:01.750Z");
        assert_eq!(created["ttlMs"], 3_600_000);
        assert_eq!(created["pollIntervalMs"], 1000);
        for absent in [
            "task",
            "result",
            "error",
            "inputRequests",
            "requestState",
            "ttl",
            "pollInterval",
        ] {
            assert!(created.get(absent).is_none(), "{absent} in {created}");
        }
    }

    #[test]
    fn a_detailed_task_carries_what_its_status_has_and_nothing_else() {
        let config = TasksConfig::default();
        let working = detailed(&row("working"), &config);
        assert!(working.get("result").is_none() && working.get("error").is_none());
        let waiting = detailed(&row("input_required"), &config);
        assert_eq!(
            waiting["inputRequests"]["confirm"]["method"],
            "elicitation/create"
        );
        assert!(waiting.get("requestState").is_none());
        let done = detailed(&row("completed"), &config);
        assert_eq!(done["result"]["content"][0]["text"], "done");
        assert!(done.get("error").is_none() && done.get("inputRequests").is_none());
        let failed = detailed(&row("failed"), &config);
        assert_eq!(failed["error"]["code"], -32603);
        assert!(failed.get("result").is_none());
        let cancelled = detailed(&row("cancelled"), &config);
        assert!(cancelled.get("result").is_none() && cancelled.get("inputRequests").is_none());
    }
}
