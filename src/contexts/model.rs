//! What the contexts API takes and gives. Request bodies are strict: an unknown field is
//! an error that names it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::fields;
use crate::storage::contexts::{ContextRow, ItemRow};
use crate::tenancy::names::DisplayName;
use crate::tenancy::utc;

/// Who wrote an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ItemRole {
    System,
    User,
    Assistant,
    Tool,
}

impl ItemRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ItemRole::System => "system",
            ItemRole::User => "user",
            ItemRole::Assistant => "assistant",
            ItemRole::Tool => "tool",
        }
    }
}

/// What to do when an append would take the context past its token budget.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Truncation {
    /// Refuse the append with 422; nothing is written.
    #[default]
    Refuse,
    /// Drop the oldest items until the new ones fit.
    DropOldest,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewItem {
    pub role: ItemRole,
    pub content: String,
    /// Tokens this item counts for; estimated as one per four characters when absent.
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 4294967295u32)]
    pub token_count: Option<u32>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewContext {
    #[schema(schema_with = DisplayName::schema)]
    pub name: String,
    /// A kind of context, such as `conversation` (the default), `session` or `task`.
    #[serde(rename = "type")]
    #[schema(schema_with = fields::context_type_schema)]
    pub context_type: Option<String>,
    #[schema(schema_with = fields::label_schema)]
    pub agent_id: Option<String>,
    #[schema(schema_with = fields::label_schema)]
    pub model_id: Option<String>,
    #[schema(schema_with = fields::label_schema)]
    pub session_id: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
    /// Most tokens the items may add up to.
    #[schema(schema_with = fields::token_budget_schema)]
    pub token_budget: Option<u64>,
    /// Items to start with, in order.
    pub items: Option<Vec<NewItem>>,
}

/// Fields to change; absent ones stay, `null` clears an optional one.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContextPatch {
    #[schema(schema_with = fields::display_name_or_null)]
    pub name: Option<String>,
    #[serde(rename = "type")]
    #[schema(schema_with = fields::context_type_schema)]
    pub context_type: Option<String>,
    #[serde(default, deserialize_with = "crate::decode::present")]
    #[schema(schema_with = fields::label_schema)]
    pub agent_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::decode::present")]
    #[schema(schema_with = fields::label_schema)]
    pub model_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::decode::present")]
    #[schema(schema_with = fields::label_schema)]
    pub session_id: Option<Option<String>>,
    /// Replaces the whole metadata object.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
    #[serde(default, deserialize_with = "crate::decode::present")]
    #[schema(schema_with = fields::token_budget_schema)]
    pub token_budget: Option<Option<u64>>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppendItems {
    #[schema(min_items = 1)]
    pub items: Vec<NewItem>,
    /// What to do if the token budget would be exceeded (default `refuse`).
    #[serde(default)]
    pub truncation: Truncation,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Item {
    pub id: String,
    /// Position in the context; later items have larger numbers.
    pub seq: i64,
    pub role: String,
    pub content: String,
    pub token_count: i64,
    #[schema(value_type = Object)]
    pub metadata: Value,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

impl From<ItemRow> for Item {
    fn from(r: ItemRow) -> Self {
        Self {
            id: r.id,
            seq: r.seq,
            role: r.role,
            content: r.content,
            token_count: r.token_count,
            metadata: serde_json::from_str(&r.metadata).unwrap_or(Value::Null),
            created_at: utc(r.created_at),
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Context {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub context_type: String,
    pub agent_id: Option<String>,
    pub model_id: Option<String>,
    pub session_id: Option<String>,
    #[schema(value_type = Object)]
    pub metadata: Value,
    pub token_budget: Option<i64>,
    pub item_count: i64,
    pub token_total: i64,
    /// Changes with every write; the `ETag` of the context.
    pub version: i64,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
    /// The items in order (on a single context, not in lists).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub items: Option<Vec<Item>>,
}

impl From<ContextRow> for Context {
    fn from(r: ContextRow) -> Self {
        Self {
            id: r.id,
            name: r.name,
            context_type: r.context_type,
            agent_id: r.agent_id,
            model_id: r.model_id,
            session_id: r.session_id,
            metadata: serde_json::from_str(&r.metadata).unwrap_or(Value::Null),
            token_budget: r.token_budget,
            item_count: r.item_count,
            token_total: r.token_total,
            version: r.version,
            created_at: utc(r.created_at),
            updated_at: utc(r.updated_at),
            items: None,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Appended {
    /// The context after the append (without its items).
    pub context: Context,
    /// The items appended, with their positions.
    pub items: Vec<Item>,
    /// Items dropped to stay within the token budget.
    pub dropped_items: i64,
    pub dropped_tokens: i64,
}

#[derive(Debug, Default, Serialize, ToSchema)]
pub struct RoleTotals {
    pub items: i64,
    pub tokens: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Summary {
    pub id: String,
    pub name: String,
    pub item_count: i64,
    pub token_total: i64,
    pub token_budget: Option<i64>,
    /// Items and tokens per role.
    pub by_role: BTreeMap<String, RoleTotals>,
    /// Time of the oldest item kept.
    pub first_activity: Option<chrono::DateTime<chrono::Utc>>,
    /// Time of the newest item, or of the last change.
    pub last_activity: chrono::DateTime<chrono::Utc>,
    pub version: i64,
}
