//! Registering HTTP APIs as tools: the service behind `/api/v1/tools`. Every function
//! takes the caller's principal and touches only its organization; another
//! organization's tool is "not found". Fields follow [`super::validate`]; credentials are
//! [`super::sealed`] before they are stored, and only their kind is ever shown.

use std::time::Duration;

use serde_json::json;

use super::discover_job::DiscoverTool;
use super::filters::Filters;
use super::model::{
    AuthView, DiscoveryState, DiscoveryStatus, Health, NewTool, OperationView, Settings, ToolPatch,
    ToolView,
};
use super::sealed::{auth_purpose, seal_credential};
use super::stored::{discovery_of, found, json_text, pending, read_json, read_upload, settings_of};
use super::validate::{check_collision, check_name, check_settings, document_text, parse_base_url};
use super::{Api, Gateway};
use crate::context::Context as Node;
use crate::events::{self, Change};
use crate::service::{Page, PageRequest, ServiceError, ServiceResult, is_unique_violation};
use crate::storage::gateway::{self as store, NewToolRow, ToolChanges, ToolRow};
use crate::tenancy::audit::{self, Event};
use crate::tenancy::scopes::Scope;
use crate::tenancy::{Principal, new_id, utc};

const NOT_FOUND: ServiceError = ServiceError::NotFound("tool");

fn view(row: ToolRow, uploaded: bool) -> ToolView {
    let settings = settings_of(&row);
    let discovery = discovery_of(&row).unwrap_or_else(|| pending("url"));
    ToolView {
        auth: AuthView {
            kind: row.auth_kind.clone(),
            has_credential: row.auth_sealed.is_some(),
        },
        health: read_json::<Health>(&row.health).or_unknown(),
        id: row.id,
        name: row.name,
        base_url: row.base_url,
        settings,
        uploaded,
        discovery,
        revision: row.revision,
        created_at: utc(row.created_at),
        updated_at: utc(row.updated_at),
    }
}

/// Tells every node that the organization's tools changed: their cached catalogs go
/// stale, and the organization's MCP clients get `notifications/tools/list_changed`.
pub async fn tools_changed(node: &Node, organization_id: &str) {
    node.bus
        .generations
        .advance(
            &super::generation(organization_id),
            Duration::from_secs(300),
        )
        .await;
    events::publish(node, organization_id, Change::ToolsChanged).await;
}

async fn enqueue_discovery(
    node: &Node,
    org: &str,
    id: &str,
    state: &DiscoveryState,
) -> ServiceResult<()> {
    let job = DiscoverTool {
        organization_id: org.to_string(),
        tool_id: id.to_string(),
        attempt_id: state.attempt_id.clone(),
    };
    crate::jobs::enqueue(&node.bus.queue, &job)
        .await
        .map(drop)
        .map_err(|e| ServiceError::Internal(format!("cannot enqueue the discovery: {e}")))
}

pub(super) async fn get_row(
    node: &Node,
    principal: &Principal,
    id: &str,
) -> ServiceResult<ToolRow> {
    store::get(&node.db, &principal.organization_id, id)
        .await
        .map_err(ServiceError::Storage)?
        .ok_or(NOT_FOUND)
}

async fn is_uploaded(node: &Node, org: &str, id: &str) -> ServiceResult<bool> {
    let ids = [id.to_string()];
    Ok(!store::uploaded(&node.db, org, &ids)
        .await
        .map_err(ServiceError::Storage)?
        .is_empty())
}

pub async fn create(
    node: &Node,
    gateway: &Gateway,
    principal: &Principal,
    new: NewTool,
) -> ServiceResult<ToolView> {
    principal.require(Scope::ToolsWrite)?;
    let org = principal.organization_id.clone();
    check_name(&new.name)?;
    parse_base_url(gateway, &new.base_url)?;
    let settings = Settings {
        openapi_url: new.openapi_url,
        discovery_hints: new.discovery_hints.unwrap_or_default(),
        tags: new.tags,
        include_operations: new.include_operations,
        exclude_operations: new.exclude_operations,
        group_operations: new.group_operations,
        health_check: new.health_check,
        timeout: new.timeout,
        max_response_bytes: new.max_response_bytes,
        passthrough: new.passthrough.unwrap_or_default(),
    };
    check_settings(gateway, &settings)?;
    let existing = store::names(&node.db, &org)
        .await
        .map_err(ServiceError::Storage)?;
    if existing.len() as u32 >= gateway.config.max_tools {
        return Err(ServiceError::Unprocessable(format!(
            "the organization has {} tools; the limit is {} (gateway.max_tools)",
            existing.len(),
            gateway.config.max_tools
        )));
    }
    let id = new_id();
    check_collision(&existing, &id, &new.name)?;
    let auth = new
        .auth
        .as_ref()
        .map(|c| seal_credential(gateway, &org, &auth_purpose(&id), c))
        .transpose()?;
    let document = new.openapi.map(|v| document_text(gateway, v)).transpose()?;
    let (discovery, api) = match &document {
        Some(text) => {
            let (state, api) = read_upload(gateway, &new.name, text.clone(), &settings).await?;
            (state, Some(json_text(&api)))
        }
        None => (pending("url"), None),
    };
    let now = crate::storage::now();
    let row = NewToolRow {
        id: id.clone(),
        organization_id: org.clone(),
        name: new.name.clone(),
        base_url: new.base_url,
        settings: json_text(&settings),
        auth_kind: auth.as_ref().map(|a| a.0.clone()),
        auth_sealed: auth.map(|a| a.1),
        document,
        discovery: json_text(&discovery),
        api,
        revision: 1,
        health: json_text(&Health::default()),
        created_at: now,
        updated_at: now,
    };
    let uploaded = row.document.is_some();
    if let Err(e) = store::insert(&node.db, &row)
        .await
        .map_err(ServiceError::Storage)
    {
        if is_unique_violation(&e) {
            return Err(ServiceError::Conflict(format!(
                "the organization already has a tool named {:?}",
                new.name
            )));
        }
        return Err(e);
    }
    if discovery.status == DiscoveryStatus::Pending {
        enqueue_discovery(node, &org, &id, &discovery).await?;
    }
    audit::record(
        node,
        Event::by(principal, "tool.created")
            .target("tool", &id)
            .details(json!({ "name": new.name, "auth": row.auth_kind })),
    )
    .await;
    tools_changed(node, &org).await;
    let row = get_row(node, principal, &id).await?;
    Ok(view(row, uploaded))
}

pub async fn get(node: &Node, principal: &Principal, id: &str) -> ServiceResult<ToolView> {
    principal.require(Scope::ToolsRead)?;
    let row = get_row(node, principal, id).await?;
    let uploaded = is_uploaded(node, &principal.organization_id, id).await?;
    Ok(view(row, uploaded))
}

pub async fn list(
    node: &Node,
    principal: &Principal,
    page: PageRequest,
) -> ServiceResult<Page<ToolView>> {
    principal.require(Scope::ToolsRead)?;
    let rows = store::list(
        &node.db,
        &principal.organization_id,
        page.after.as_deref(),
        page.fetch(),
    )
    .await
    .map_err(ServiceError::Storage)?;
    let page = page.page(rows, |r| &r.id, |r| r);
    let ids: Vec<String> = page.items.iter().map(|r| r.id.clone()).collect();
    let uploaded = store::uploaded(&node.db, &principal.organization_id, &ids)
        .await
        .map_err(ServiceError::Storage)?;
    Ok(Page {
        items: page
            .items
            .into_iter()
            .map(|row| {
                let up = uploaded.contains(&row.id);
                view(row, up)
            })
            .collect(),
        next_cursor: page.next_cursor,
    })
}

pub async fn update(
    node: &Node,
    gateway: &Gateway,
    principal: &Principal,
    id: &str,
    patch: ToolPatch,
) -> ServiceResult<ToolView> {
    principal.require(Scope::ToolsWrite)?;
    let org = principal.organization_id.clone();
    let row = get_row(node, principal, id).await?;
    let mut settings = settings_of(&row);
    let mut changes = ToolChanges::default();
    let mut rediscover = false;
    if let Some(name) = &patch.name
        && *name != row.name
    {
        check_name(name)?;
        let names = store::names(&node.db, &org)
            .await
            .map_err(ServiceError::Storage)?;
        check_collision(&names, id, name)?;
        changes.name = Some(name.clone());
        rediscover = true;
    }
    if let Some(base) = &patch.base_url
        && *base != row.base_url
    {
        parse_base_url(gateway, base)?;
        changes.base_url = Some(base.clone());
        rediscover = true;
    }
    if let Some(url) = patch.openapi_url {
        rediscover |= url != settings.openapi_url;
        settings.openapi_url = url;
    }
    if let Some(hints) = patch.discovery_hints {
        rediscover |= hints != settings.discovery_hints;
        settings.discovery_hints = hints;
    }
    if let Some(auth) = &patch.auth {
        let sealed = auth
            .as_ref()
            .map(|c| seal_credential(gateway, &org, &auth_purpose(id), c))
            .transpose()?;
        changes.auth_kind = Some(sealed.as_ref().map(|s| s.0.clone()));
        changes.auth_sealed = Some(sealed.map(|s| s.1));
    }
    let offered_before = (
        settings.include_operations.clone(),
        settings.exclude_operations.clone(),
        settings.group_operations,
    );
    // The settings that only change what is offered and how calls go.
    macro_rules! replace {
        ($($field:ident),*) => {
            $( if let Some(v) = patch.$field { settings.$field = v; } )*
        };
    }
    replace!(
        tags,
        include_operations,
        exclude_operations,
        group_operations,
        health_check,
        timeout,
        max_response_bytes,
        passthrough
    );
    check_settings(gateway, &settings)?;
    changes.settings = Some(json_text(&settings));
    changes.revision = Some(row.revision + 1);
    changes.updated_at = Some(crate::storage::now());
    let uploaded = is_uploaded(node, &org, id).await?;
    let name = changes.name.clone().unwrap_or_else(|| row.name.clone());
    let mut start_job = None;
    if rediscover {
        if uploaded {
            let state = reconvert(node, gateway, &org, id, &name, &settings).await?;
            changes.discovery = Some(json_text(&state.0));
            changes.api = Some(Some(state.1));
        } else {
            let state = pending("url");
            changes.discovery = Some(json_text(&state));
            start_job = Some(state);
        }
    } else if offered_before
        != (
            settings.include_operations.clone(),
            settings.exclude_operations.clone(),
            settings.group_operations,
        )
        && let Some(mut state) = discovery_of(&row)
        && state.status == DiscoveryStatus::Ready
    {
        // The filters or the grouping changed: recount what is offered (this reads the
        // converted API, which may be megabytes; other changes do not need it).
        if let Some(api) = stored_api(node, &org, id).await? {
            let again = found(
                state.attempt_id.clone(),
                &state.source,
                state.url.clone(),
                &api,
                &settings,
                std::mem::take(&mut state.tried),
                state.requested_at,
            );
            changes.discovery = Some(json_text(&DiscoveryState {
                finished_at: state.finished_at,
                ..again
            }));
        }
    }
    if !store::update(&node.db, &org, id, &changes).await.map_err(
        |e| match ServiceError::Storage(e) {
            e if is_unique_violation(&e) => ServiceError::Conflict(format!(
                "the organization already has a tool named {name:?}"
            )),
            e => e,
        },
    )? {
        return Err(NOT_FOUND);
    }
    if let Some(state) = start_job {
        enqueue_discovery(node, &org, id, &state).await?;
    }
    audit::record(
        node,
        Event::by(principal, "tool.updated")
            .target("tool", id)
            .details(json!({ "rediscover": rediscover, "auth_changed": patch.auth.is_some() })),
    )
    .await;
    tools_changed(node, &org).await;
    let row = get_row(node, principal, id).await?;
    Ok(view(row, uploaded))
}

async fn stored_api(node: &Node, org: &str, id: &str) -> ServiceResult<Option<Api>> {
    let text = store::api_of(&node.db, org, id)
        .await
        .map_err(ServiceError::Storage)?;
    Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
}

/// Converts the stored upload again (a new name, a rediscovery).
async fn reconvert(
    node: &Node,
    gateway: &Gateway,
    org: &str,
    id: &str,
    name: &str,
    settings: &Settings,
) -> ServiceResult<(DiscoveryState, String)> {
    let text = store::document_of(&node.db, org, id)
        .await
        .map_err(ServiceError::Storage)?
        .ok_or(NOT_FOUND)?;
    let (state, api) = read_upload(gateway, name, text, settings).await?;
    Ok((state, json_text(&api)))
}

pub async fn delete(node: &Node, principal: &Principal, id: &str) -> ServiceResult<()> {
    principal.require(Scope::ToolsWrite)?;
    let org = &principal.organization_id;
    if !store::delete(&node.db, org, id)
        .await
        .map_err(ServiceError::Storage)?
    {
        return Err(NOT_FOUND);
    }
    audit::record(
        node,
        Event::by(principal, "tool.deleted").target("tool", id),
    )
    .await;
    tools_changed(node, org).await;
    Ok(())
}

/// Starts discovery again (an uploaded description is converted again at once).
pub async fn rediscover(
    node: &Node,
    gateway: &Gateway,
    principal: &Principal,
    id: &str,
) -> ServiceResult<ToolView> {
    principal.require(Scope::ToolsWrite)?;
    let org = principal.organization_id.clone();
    let row = get_row(node, principal, id).await?;
    let uploaded = is_uploaded(node, &org, id).await?;
    let mut changes = ToolChanges::default();
    if uploaded {
        let (state, api) =
            reconvert(node, gateway, &org, id, &row.name, &settings_of(&row)).await?;
        changes.discovery = Some(json_text(&state));
        changes.api = Some(Some(api));
        changes.revision = Some(row.revision + 1);
        store::update(&node.db, &org, id, &changes)
            .await
            .map_err(ServiceError::Storage)?;
        tools_changed(node, &org).await;
    } else {
        let state = pending("url");
        changes.discovery = Some(json_text(&state));
        store::update(&node.db, &org, id, &changes)
            .await
            .map_err(ServiceError::Storage)?;
        enqueue_discovery(node, &org, id, &state).await?;
    }
    audit::record(
        node,
        Event::by(principal, "tool.rediscovered").target("tool", id),
    )
    .await;
    let row = get_row(node, principal, id).await?;
    Ok(view(row, uploaded))
}

/// Replaces the tool's description by an uploaded one (`PUT /tools/{id}/openapi`):
/// converted at once; a document that cannot be read is a 422 and changes nothing.
pub async fn upload(
    node: &Node,
    gateway: &Gateway,
    principal: &Principal,
    id: &str,
    body: &[u8],
) -> ServiceResult<ToolView> {
    principal.require(Scope::ToolsWrite)?;
    let org = principal.organization_id.clone();
    let row = get_row(node, principal, id).await?;
    if body.len() > gateway.config.max_document_bytes {
        return Err(ServiceError::TooLarge(format!(
            "the description is {} bytes; the limit is {} (gateway.max_document_bytes)",
            body.len(),
            gateway.config.max_document_bytes
        )));
    }
    let text = String::from_utf8(body.to_vec())
        .map_err(|_| ServiceError::invalid("body", "the description must be UTF-8 JSON or YAML"))?;
    let (state, api) = read_upload(gateway, &row.name, text.clone(), &settings_of(&row)).await?;
    let changes = ToolChanges {
        document: Some(Some(text)),
        discovery: Some(json_text(&state)),
        api: Some(Some(json_text(&api))),
        revision: Some(row.revision + 1),
        updated_at: Some(crate::storage::now()),
        ..Default::default()
    };
    if !store::update(&node.db, &org, id, &changes)
        .await
        .map_err(ServiceError::Storage)?
    {
        return Err(NOT_FOUND);
    }
    audit::record(
        node,
        Event::by(principal, "tool.uploaded").target("tool", id),
    )
    .await;
    tools_changed(node, &org).await;
    let row = get_row(node, principal, id).await?;
    Ok(view(row, true))
}

/// Every operation of the tool's description, with the MCP tool that carries it and
/// whether the filters let it through.
pub async fn operations(
    node: &Node,
    principal: &Principal,
    id: &str,
) -> ServiceResult<Vec<OperationView>> {
    principal.require(Scope::ToolsRead)?;
    let row = get_row(node, principal, id).await?;
    let Some(api) = stored_api(node, &principal.organization_id, id).await? else {
        return Ok(Vec::new());
    };
    let settings = settings_of(&row);
    let filters = Filters::new(&settings.include_operations, &settings.exclude_operations)
        .map_err(|e| ServiceError::Internal(format!("stored filters do not compile: {e}")))?;
    let mut group_names = super::naming::Names::default();
    let mut groups = std::collections::BTreeMap::new();
    if settings.group_operations {
        let tags: std::collections::BTreeSet<String> = api
            .operations
            .iter()
            .filter(|o| filters.admits(o))
            .map(super::offer::group_of)
            .collect();
        for tag in tags {
            let name = group_names.next(&row.name, &tag);
            groups.insert(tag, name);
        }
    }
    Ok(api
        .operations
        .into_iter()
        .map(|op| {
            let included = filters.admits(&op);
            let (name, tool) = if settings.group_operations {
                let group = groups
                    .get(&super::offer::group_of(&op))
                    .cloned()
                    .unwrap_or_default();
                (super::offer::short_name(&row.name, &op).to_string(), group)
            } else {
                (op.name.clone(), op.name.clone())
            };
            OperationView {
                name,
                tool: if included { tool } else { String::new() },
                operation_id: op.operation_id,
                method: op.method,
                path: op.path,
                description: op.description,
                tags: op.tags,
                deprecated: op.deprecated,
                included,
                input_schema: op.input_schema,
            }
        })
        .collect())
}

/// The tool's health: its last checks and its circuit.
pub async fn health(node: &Node, principal: &Principal, id: &str) -> ServiceResult<Health> {
    principal.require(Scope::ToolsRead)?;
    let row = get_row(node, principal, id).await?;
    Ok(read_json::<Health>(&row.health).or_unknown())
}
