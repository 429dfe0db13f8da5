//! What a registered API offers as MCP tools: one tool per operation the filters admit,
//! or, with `group_operations`, one tool per tag whose `operation` argument names the
//! operation and whose `arguments` follow that operation's schema (a `oneOf` keyed by
//! `operation`'s `const`, JSON Schema 2020-12, section 10.2.1.3).
//!
//! Which to use: per-operation tools for an API of up to a few dozen operations, or one
//! narrowed with `include_operations`; grouping for a large API that agents should reach
//! whole (GitHub's 1,000 operations become some 40 tools).

use std::collections::BTreeMap;
use std::sync::Arc;

use rmcp::model::{Tool, ToolAnnotations};
use serde_json::{Map, Value, json};

use super::filters::Filters;
use super::naming::{self, Names};
use super::operations::Operation;
use crate::mcp::catalog::ToolSpec;

/// The longest tool description sent to clients, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 1_024;

/// An MCP tool and the operations behind it.
pub struct Offered {
    pub spec: Arc<ToolSpec>,
    pub route: Route,
}

/// How a call of the tool finds its operation.
pub enum Route {
    One(Arc<Operation>),
    /// By the `operation` argument: its short name to the operation, with a spec that
    /// checks that operation's `arguments`.
    Group(BTreeMap<String, Grouped>),
}

/// An operation of a grouped tool.
pub struct Grouped {
    pub operation: Arc<Operation>,
    /// Checks `arguments` against the operation's own schema.
    pub spec: Arc<ToolSpec>,
}

/// An operation's name within its group: its tool name without the API's prefix.
pub fn short_name<'a>(prefix: &str, op: &'a Operation) -> &'a str {
    op.name
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        .filter(|rest| !rest.is_empty())
        .unwrap_or(&op.name)
}

/// The group of an operation: its first tag, slugged (`default` without one).
pub fn group_of(op: &Operation) -> String {
    op.tags
        .first()
        .map(|t| naming::slug(t))
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "default".into())
}

fn object(value: Value) -> Arc<Map<String, Value>> {
    match value {
        Value::Object(map) => Arc::new(map),
        _ => Arc::new(Map::new()),
    }
}

fn annotations(ops: &[&Operation]) -> ToolAnnotations {
    ToolAnnotations::new()
        .read_only(ops.iter().all(|o| o.hints.read_only))
        .destructive(ops.iter().any(|o| o.hints.destructive))
        .idempotent(ops.iter().all(|o| o.hints.idempotent || o.hints.read_only))
        .open_world(true)
}

/// Keeps a tool whose spec compiled; notes why one did not.
fn keep(
    out: &mut Vec<Offered>,
    notes: &mut Vec<String>,
    spec: Result<Arc<ToolSpec>, String>,
    route: Route,
) {
    match spec {
        Ok(spec) => out.push(Offered { spec, route }),
        Err(e) => notes.push(format!("left out: {e}")),
    }
}

/// The MCP tools of the operations of one API that `filters` admit. A tool whose schema
/// does not compile is left out, with a note.
pub fn offer(
    prefix: &str,
    operations: &[Operation],
    filters: &Filters,
    group: bool,
    notes: &mut Vec<String>,
) -> Vec<Offered> {
    let admitted = operations.iter().filter(|op| filters.admits(op));
    let mut out = Vec::new();
    if !group {
        for op in admitted {
            let description = super::operations::cap(
                format!("{}\n\n{} {}", op.description, op.method, op.path).trim(),
                MAX_DESCRIPTION_CHARS,
            );
            let tool = Tool::new(
                op.name.clone(),
                description,
                object(op.input_schema.clone()),
            )
            .annotate(annotations(&[op]));
            keep(
                &mut out,
                notes,
                ToolSpec::try_new(tool),
                Route::One(Arc::new(op.clone())),
            );
        }
        return out;
    }
    let mut groups: BTreeMap<String, Vec<&Operation>> = BTreeMap::new();
    for op in admitted {
        groups.entry(group_of(op)).or_default().push(op);
    }
    let mut names = Names::default();
    for (tag, ops) in groups {
        let name = names.next(prefix, &tag);
        let mut routes = BTreeMap::new();
        let mut branches = Vec::new();
        let mut listing = String::new();
        for op in &ops {
            let short = short_name(prefix, op).to_string();
            let mut branch = json!({
                "properties": {
                    "operation": { "const": short },
                    "arguments": op.input_schema,
                },
            });
            if op.input_schema["required"]
                .as_array()
                .is_some_and(|r| !r.is_empty())
            {
                branch["required"] = json!(["arguments"]);
            }
            branches.push(branch);
            let summary = op.description.lines().next().unwrap_or("");
            listing.push_str(&format!("\n- {short}: {} {} {summary}", op.method, op.path));
            let own = Tool::new(op.name.clone(), "", object(op.input_schema.clone()));
            match ToolSpec::try_new(own) {
                Ok(spec) => {
                    let operation = Arc::new((*op).clone());
                    routes.insert(short, Grouped { operation, spec });
                }
                Err(e) => notes.push(format!("left out: {e}")),
            }
        }
        let schema = json!({
            "type": "object",
            "properties": {
                "operation": {
                    "type": "string",
                    "enum": routes.keys().collect::<Vec<_>>(),
                    "description": "The operation to call.",
                },
                "arguments": {
                    "type": "object",
                    "description": "The operation's arguments, as its schema in oneOf gives them.",
                },
            },
            "required": ["operation"],
            "additionalProperties": false,
            "oneOf": branches,
        });
        let description = super::operations::cap(
            &format!("Operations tagged {tag:?}; name one in `operation`:{listing}"),
            MAX_DESCRIPTION_CHARS * 4,
        );
        // Checked loosely here; `arguments` against the named operation's own schema
        // when the call is routed (see `provider::resolve`).
        let loose = json!({
            "type": "object",
            "properties": {
                "operation": schema["properties"]["operation"].clone(),
                "arguments": { "type": "object" },
            },
            "required": ["operation"],
            "additionalProperties": false,
        });
        let tool = Tool::new(name, description, object(schema)).annotate(annotations(&ops));
        keep(
            &mut out,
            notes,
            ToolSpec::try_validating(tool, &loose),
            Route::Group(routes),
        );
    }
    out
}
