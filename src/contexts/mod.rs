//! Contexts: conversation and session history that agents share, the first tenant
//! resource. Every function takes the caller's principal and touches only its organization.

pub mod fields;
pub mod model;

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::context::Context as Node;
use crate::events::{self, Change};
use crate::service::{Page, PageRequest, ServiceError, ServiceResult};
use crate::storage::contexts::{
    self as store, AppendRefusal, Conditional, ContextChanges, ContextFilter, ContextRow, ItemRow,
};
use crate::tenancy::names::DisplayName;
use crate::tenancy::scopes::Scope;
use crate::tenancy::{Principal, new_id, utc};
use model::{
    AppendItems, Appended, Context, ContextPatch, Item, NewContext, NewItem, RoleTotals, Summary,
    Truncation,
};

/// What a conditional write names: some versions (`If-Match: "3"`, or a list of entity
/// tags, of which only ours can match; an empty list matches nothing), any version (`*`),
/// or nothing at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    OneOf(Vec<i64>),
    Any,
    None,
}

/// A version no context is at: what an entity tag that is not ours stands for.
pub const NO_VERSION: i64 = -1;

const NOT_FOUND: ServiceError = ServiceError::NotFound("context");

/// An agent's key reaches only the contexts given to its agent: those that name it, and
/// those its tasks name (`context_id`). Any other is not found, as another tenant's is.
async fn reachable(node: &Node, principal: &Principal, id: &str) -> ServiceResult<()> {
    match principal.agent_id() {
        Some(agent)
            if !store::given_to_agent(&node.db, &principal.organization_id, id, agent).await? =>
        {
            Err(NOT_FOUND)
        }
        _ => Ok(()),
    }
}

fn metadata_text(
    node: &Node,
    field: &'static str,
    metadata: Option<Map<String, Value>>,
) -> ServiceResult<String> {
    let text = Value::Object(metadata.unwrap_or_default()).to_string();
    let max = node.config.contexts.max_metadata_bytes;
    if text.len() > max {
        return Err(ServiceError::TooLarge(format!(
            "{field} is {} bytes of JSON; the limit is {max} bytes (contexts.max_metadata_bytes)",
            text.len()
        )));
    }
    Ok(text)
}

/// Checks items against the size limits and counts their tokens.
fn prepare_items(node: &Node, items: Vec<NewItem>) -> ServiceResult<Vec<store::NewItem>> {
    let max_bytes = node.config.contexts.max_item_bytes;
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            if item.content.len() > max_bytes {
                return Err(ServiceError::TooLarge(format!(
                    "items[{i}].content is {} bytes; the limit is {max_bytes} bytes (contexts.max_item_bytes)",
                    item.content.len()
                )));
            }
            let token_count = match item.token_count {
                Some(n) => i64::from(n),
                None => item.content.chars().count().div_ceil(4) as i64,
            };
            Ok(store::NewItem {
                role: item.role.as_str().to_string(),
                content: item.content,
                token_count,
                metadata: metadata_text(node, "items[].metadata", item.metadata)?,
            })
        })
        .collect()
}

fn too_many(count: i64, max: i64) -> ServiceError {
    ServiceError::Unprocessable(format!(
        "the context would hold {count} items; the limit is {max} (contexts.max_items)"
    ))
}

fn over_budget(tokens: i64, budget: i64) -> ServiceError {
    ServiceError::Unprocessable(format!(
        "the context would hold {tokens} tokens, over its token budget of {budget}; \
         append with \"truncation\": \"drop_oldest\" to make room, or raise token_budget"
    ))
}

pub async fn create(node: &Node, principal: &Principal, new: NewContext) -> ServiceResult<Context> {
    principal.require(Scope::ContextsWrite)?;
    let name = DisplayName::parse("name", &new.name)?;
    let context_type = fields::context_type(new.context_type.as_deref().unwrap_or("conversation"))?;
    let label = |field, v: Option<String>| v.map(|v| fields::label(field, &v)).transpose();
    let token_budget = new.token_budget.map(fields::token_budget).transpose()?;
    let items = prepare_items(node, new.items.unwrap_or_default())?;
    let count = items.len() as i64;
    let tokens: i64 = items.iter().map(|i| i.token_count).sum();
    let max = i64::from(node.config.contexts.max_items);
    if count > max {
        return Err(too_many(count, max));
    }
    if let Some(budget) = token_budget.filter(|b| tokens > *b) {
        return Err(over_budget(tokens, budget));
    }
    let now = crate::storage::now();
    let row = ContextRow {
        id: new_id(),
        organization_id: principal.organization_id.clone(),
        name: name.as_str().to_string(),
        context_type,
        // What an agent's key creates is its agent's.
        agent_id: match principal.agent_id() {
            Some(agent) => Some(agent.to_string()),
            None => label("agent_id", new.agent_id)?,
        },
        model_id: label("model_id", new.model_id)?,
        session_id: label("session_id", new.session_id)?,
        metadata: metadata_text(node, "metadata", new.metadata)?,
        token_budget,
        version: 1,
        item_count: count,
        token_total: tokens,
        next_seq: count,
        created_at: now,
        updated_at: now,
    };
    let item_rows: Vec<ItemRow> = items
        .into_iter()
        .zip(0..)
        .map(|(item, seq)| ItemRow {
            id: new_id(),
            context_id: row.id.clone(),
            organization_id: row.organization_id.clone(),
            seq,
            role: item.role,
            content: item.content,
            token_count: item.token_count,
            metadata: item.metadata,
            created_at: now,
        })
        .collect();
    // The write and its announcement go together, whoever stops waiting.
    let (row, item_rows) = node
        .run_to_end(move |node| async move {
            store::insert(&node.db, &row, &item_rows).await?;
            events::publish(&node, &row.organization_id, Change::ResourcesChanged).await;
            Ok((row, item_rows))
        })
        .await?;
    let mut context = Context::from(row);
    context.items = Some(item_rows.into_iter().map(Item::from).collect());
    Ok(context)
}

/// One context; with `last`, only its newest `last` items.
pub async fn get(
    node: &Node,
    principal: &Principal,
    id: &str,
    last: Option<u32>,
) -> ServiceResult<Context> {
    principal.require(Scope::ContextsRead)?;
    reachable(node, principal, id).await?;
    let (row, items) = store::get_with_items(
        &node.db,
        &principal.organization_id,
        id,
        last.map(i64::from),
    )
    .await?
    .ok_or(NOT_FOUND)?;
    let mut context = Context::from(row);
    context.items = Some(items.into_iter().map(Item::from).collect());
    Ok(context)
}

pub async fn list(
    node: &Node,
    principal: &Principal,
    filter: ContextFilter,
    page: PageRequest,
) -> ServiceResult<Page<Context>> {
    principal.require(Scope::ContextsRead)?;
    let mut filter = filter;
    filter.given_to = principal.agent_id().map(str::to_string);
    let rows = store::list(
        &node.db,
        &principal.organization_id,
        &filter,
        page.after.as_deref(),
        page.fetch(),
    )
    .await?;
    Ok(page.page(rows, |r| &r.id, Context::from))
}

fn stale(version: i64) -> ServiceError {
    ServiceError::PreconditionFailed(format!(
        "the context has changed (it is at version {version}); fetch it again and retry"
    ))
}

/// The version a conditional write must match.
async fn expected_version(
    node: &Node,
    principal: &Principal,
    id: &str,
    pre: Precondition,
) -> ServiceResult<i64> {
    let current = async {
        Ok::<_, ServiceError>(
            store::get(&node.db, &principal.organization_id, id)
                .await?
                .ok_or(NOT_FOUND)?
                .version,
        )
    };
    match pre {
        Precondition::OneOf(versions) if versions.len() == 1 => Ok(versions[0]),
        // The write is made conditional on the current version if the list names it.
        Precondition::OneOf(versions) => {
            let current = current.await?;
            Ok(if versions.contains(&current) {
                current
            } else {
                NO_VERSION
            })
        }
        Precondition::Any => current.await,
        Precondition::None => Err(ServiceError::PreconditionRequired(
            "send If-Match with the context's ETag, so that a change made meanwhile is not overwritten".into(),
        )),
    }
}

pub async fn update(
    node: &Node,
    principal: &Principal,
    id: &str,
    pre: Precondition,
    patch: ContextPatch,
) -> ServiceResult<Context> {
    principal.require(Scope::ContextsWrite)?;
    reachable(node, principal, id).await?;
    let label = |field, v: Option<Option<String>>| -> ServiceResult<Option<Option<String>>> {
        v.map(|v| v.map(|v| fields::label(field, &v)).transpose())
            .transpose()
    };
    let changes = ContextChanges {
        name: patch
            .name
            .map(|n| DisplayName::parse("name", &n).map(|n| n.as_str().to_string()))
            .transpose()?,
        context_type: patch
            .context_type
            .map(|t| fields::context_type(&t))
            .transpose()?,
        agent_id: label("agent_id", patch.agent_id)?,
        model_id: label("model_id", patch.model_id)?,
        session_id: label("session_id", patch.session_id)?,
        metadata: patch
            .metadata
            .map(|m| metadata_text(node, "metadata", Some(m)))
            .transpose()?,
        token_budget: patch
            .token_budget
            .map(|b| b.map(fields::token_budget).transpose())
            .transpose()?,
    };
    let version = expected_version(node, principal, id, pre).await?;
    let (org, id) = (principal.organization_id.clone(), id.to_string());
    let updated = node
        .run_to_end(move |node| async move {
            let outcome = store::update(&node.db, &org, &id, version, &changes).await?;
            if let Conditional::Done(_) = &outcome {
                changed(&node, &org, &id).await;
            }
            Ok(outcome)
        })
        .await?;
    match updated {
        Conditional::Done(row) => Ok(row.into()),
        Conditional::Stale(version) => Err(stale(version)),
        Conditional::Missing => Err(NOT_FOUND),
    }
}

/// Tells every node that a context changed, so that watchers hear of it.
async fn changed(node: &Node, organization_id: &str, id: &str) {
    let change = Change::ContextChanged { id: id.to_string() };
    events::publish(node, organization_id, change).await;
}

pub async fn delete(
    node: &Node,
    principal: &Principal,
    id: &str,
    pre: Precondition,
) -> ServiceResult<()> {
    principal.require(Scope::ContextsWrite)?;
    reachable(node, principal, id).await?;
    let version = match pre {
        Precondition::OneOf(_) => Some(expected_version(node, principal, id, pre).await?),
        Precondition::Any | Precondition::None => None,
    };
    let (org, id) = (principal.organization_id.clone(), id.to_string());
    let deleted = node
        .run_to_end(move |node| async move {
            let outcome = store::delete(&node.db, &org, &id, version).await?;
            if let Conditional::Done(()) = outcome {
                changed(&node, &org, &id).await;
                events::publish(&node, &org, Change::ResourcesChanged).await;
            }
            Ok(outcome)
        })
        .await?;
    match deleted {
        Conditional::Done(()) => Ok(()),
        Conditional::Stale(version) => Err(stale(version)),
        Conditional::Missing => Err(NOT_FOUND),
    }
}

pub async fn append(
    node: &Node,
    principal: &Principal,
    id: &str,
    request: AppendItems,
) -> ServiceResult<Appended> {
    principal.require(Scope::ContextsWrite)?;
    reachable(node, principal, id).await?;
    if request.items.is_empty() {
        return Err(ServiceError::invalid(
            "items",
            "must hold at least one item",
        ));
    }
    let items = prepare_items(node, request.items)?;
    let max = i64::from(node.config.contexts.max_items);
    let drop_oldest = request.truncation == Truncation::DropOldest;
    let (org, id) = (principal.organization_id.clone(), id.to_string());
    let outcome = node
        .run_to_end(move |node| async move {
            let outcome = store::append(&node.db, &org, &id, &items, max, drop_oldest).await?;
            if outcome.is_ok() {
                changed(&node, &org, &id).await;
            }
            Ok(outcome)
        })
        .await?;
    match outcome {
        Ok(done) => Ok(Appended {
            context: done.context.into(),
            items: done.items.into_iter().map(Item::from).collect(),
            dropped_items: done.dropped_items,
            dropped_tokens: done.dropped_tokens,
        }),
        Err(AppendRefusal::Missing) => Err(NOT_FOUND),
        Err(AppendRefusal::TooManyItems { count, max }) => Err(too_many(count, max)),
        Err(AppendRefusal::OverBudget { tokens, budget }) => Err(over_budget(tokens, budget)),
        Err(AppendRefusal::NewItemsOverBudget { tokens, budget }) => {
            Err(ServiceError::Unprocessable(format!(
                "the new items alone count {tokens} tokens, over the token budget of {budget}"
            )))
        }
    }
}

pub async fn summary(node: &Node, principal: &Principal, id: &str) -> ServiceResult<Summary> {
    principal.require(Scope::ContextsRead)?;
    reachable(node, principal, id).await?;
    let row = store::get(&node.db, &principal.organization_id, id)
        .await?
        .ok_or(NOT_FOUND)?;
    let stats = store::item_stats(&node.db, &principal.organization_id, id).await?;
    let mut by_role: BTreeMap<String, RoleTotals> = BTreeMap::new();
    for (role, tokens, _) in &stats {
        let totals = by_role.entry(role.clone()).or_default();
        totals.items += 1;
        totals.tokens += tokens;
    }
    let first = stats.iter().map(|(_, _, t)| *t).min();
    let last = stats
        .iter()
        .map(|(_, _, t)| *t)
        .max()
        .unwrap_or(row.updated_at)
        .max(row.updated_at);
    Ok(Summary {
        id: row.id,
        name: row.name,
        item_count: row.item_count,
        token_total: row.token_total,
        token_budget: row.token_budget,
        by_role,
        first_activity: first.map(utc),
        last_activity: utc(last),
        version: row.version,
    })
}
