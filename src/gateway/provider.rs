//! The gateway's MCP provider: each organization's converted tools in `tools/list`, and
//! `tools/call` of them through [`super::execute`].
//!
//! Each node keeps every organization's catalog built (schemas compiled) and trusts it
//! while the organization's generation (`bus::generation`, [`super::generation`]) has
//! not moved; any change of a tool advances it. A stale catalog is rebuilt from the rows
//! whose revision or health changed, the rest kept.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use serde_json::{Map, Value};
use url::Url;

use super::Gateway;
use super::filters::Filters;
use super::model::{Health, Settings};
use super::offer::{Offered, Route, offer};
use super::operations::Operation;
use crate::context::Context as Node;
use crate::mcp::call::Call;
use crate::mcp::catalog::{Provider, Reply, ToolSpec};
use crate::mcp::engine::tool_error;
use crate::mcp::protocol::RpcError;
use crate::storage::StorageError;
use crate::storage::gateway::{self as store, CatalogRow};
use crate::tenancy::scopes::Scope;

/// One registered API as its calls need it.
pub struct ApiEntry {
    pub id: String,
    pub organization_id: String,
    pub name: String,
    pub revision: i64,
    pub health: Health,
    health_text: String,
    pub settings: Settings,
    /// Where operation paths are appended (see [`base_of`]).
    pub base: Url,
    /// The description's security schemes (API key names come from them).
    pub schemes: Value,
    pub auth_sealed: Option<String>,
    pub offered: Arc<Vec<Offered>>,
}

impl ApiEntry {
    /// A tool error's text when the tool's circuit is open.
    pub fn circuit_open(&self) -> Option<String> {
        if self.health.status != "unhealthy" {
            return None;
        }
        let since = self
            .health
            .since
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_else(|| "recently".into());
        let last = self
            .health
            .checks
            .last()
            .map(|c| format!(" (last check: {})", c.outcome))
            .unwrap_or_default();
        Some(format!(
            "the API {} is unavailable since {since}: its health checks fail{last}. Calls fail fast until a check passes.",
            self.name
        ))
    }
}

/// The base URL operations are sent to: the registered `base_url` when it has a path;
/// else its origin with the path of the description's first server (relative or
/// absolute), so that `https://gitlab.example.com` with a server `/api/v4` calls
/// `https://gitlab.example.com/api/v4/...`. The host is always the registered one.
pub fn base_of(base_url: &str, servers: &[String]) -> Option<Url> {
    let base = Url::parse(base_url).ok()?;
    if base.path().trim_end_matches('/').is_empty()
        && let Some(server) = servers.first()
    {
        let path = match Url::parse(server) {
            Ok(absolute) => absolute.path().to_string(),
            Err(_) => server.clone(),
        };
        let path = path.trim_end_matches('/');
        if path.starts_with('/') && !path.is_empty() {
            let mut with = base.clone();
            with.set_path(path);
            return Some(with);
        }
    }
    Some(base)
}

/// An organization's catalog as built.
pub struct OrgCatalog {
    generation: Option<Arc<str>>,
    entries: HashMap<String, Arc<ApiEntry>>,
    pub tools: Vec<Arc<ToolSpec>>,
    /// MCP tool name → its API and its index in `offered`.
    routes: HashMap<String, (Arc<ApiEntry>, usize)>,
}

impl OrgCatalog {
    /// The API and offered tool of an MCP tool name.
    pub fn route(&self, name: &str) -> Option<(&Arc<ApiEntry>, &Offered)> {
        self.routes
            .get(name)
            .map(|(entry, i)| (entry, &entry.offered[*i]))
    }

    pub fn entry(&self, id: &str) -> Option<&Arc<ApiEntry>> {
        self.entries.get(id)
    }
}

/// Every organization's catalog on this node.
#[derive(Default)]
pub struct Catalogs {
    built: Mutex<HashMap<String, Arc<OrgCatalog>>>,
    /// One rebuild at a time on a node; callers of the same organization then find it
    /// built.
    rebuilding: tokio::sync::Mutex<()>,
}

fn build_entry(row: CatalogRow) -> Option<ApiEntry> {
    let settings: Settings = serde_json::from_str(&row.settings).unwrap_or_default();
    let health: Health = serde_json::from_str(&row.health).unwrap_or_default();
    let api: Option<super::Api> = row
        .api
        .as_deref()
        .and_then(|t| serde_json::from_str(t).ok());
    let (servers, schemes, operations) = match api {
        Some(api) => (api.servers, api.security_schemes, api.operations),
        None => (Vec::new(), Value::Null, Vec::new()),
    };
    let filters = Filters::new(&settings.include_operations, &settings.exclude_operations)
        .unwrap_or_else(|_| Filters::new(&[], &[]).expect("no globs compile"));
    let mut notes = Vec::new();
    let offered = offer(
        &row.name,
        &operations,
        &filters,
        settings.group_operations,
        &mut notes,
    );
    for note in notes {
        tracing::warn!(tool = %row.id, "{note}");
    }
    Some(ApiEntry {
        base: base_of(&row.base_url, &servers)?,
        id: row.id,
        organization_id: row.organization_id,
        name: row.name,
        revision: row.revision,
        health,
        health_text: row.health,
        settings,
        schemes,
        auth_sealed: row.auth_sealed,
        offered: Arc::new(offered),
    })
}

impl Catalogs {
    /// The organization's catalog, current as of its generation.
    pub async fn of(&self, node: &Node, org: &str) -> Result<Arc<OrgCatalog>, StorageError> {
        let name = super::generation(org);
        let generation = node.bus.generations.current(&name).await;
        let cached = self
            .built
            .lock()
            .expect("the catalogs lock")
            .get(org)
            .cloned();
        if let Some(c) = &cached
            && generation.is_some()
            && c.generation == generation
        {
            return Ok(c.clone());
        }
        let _turn = self.rebuilding.lock().await;
        // Another caller may have rebuilt it meanwhile.
        if let Some(c) = self.built.lock().expect("the catalogs lock").get(org)
            && generation.is_some()
            && c.generation == generation
        {
            return Ok(c.clone());
        }
        let catalog = Arc::new(self.rebuild(node, org, generation, cached).await?);
        self.built
            .lock()
            .expect("the catalogs lock")
            .insert(org.to_string(), catalog.clone());
        Ok(catalog)
    }

    async fn rebuild(
        &self,
        node: &Node,
        org: &str,
        generation: Option<Arc<str>>,
        cached: Option<Arc<OrgCatalog>>,
    ) -> Result<OrgCatalog, StorageError> {
        let current = store::revisions(&node.db, org).await?;
        let mut entries: HashMap<String, Arc<ApiEntry>> = HashMap::new();
        let mut stale = Vec::new();
        for (id, revision, health) in &current {
            match cached.as_ref().and_then(|c| c.entries.get(id)) {
                Some(e) if e.revision == *revision && e.health_text == *health => {
                    entries.insert(id.clone(), e.clone());
                }
                Some(e) if e.revision == *revision => {
                    // Only the health moved: keep the compiled tools.
                    let health_parsed: Health = serde_json::from_str(health).unwrap_or_default();
                    entries.insert(
                        id.clone(),
                        Arc::new(ApiEntry {
                            id: e.id.clone(),
                            organization_id: e.organization_id.clone(),
                            name: e.name.clone(),
                            revision: e.revision,
                            health: health_parsed,
                            health_text: health.clone(),
                            settings: e.settings.clone(),
                            base: e.base.clone(),
                            schemes: e.schemes.clone(),
                            auth_sealed: e.auth_sealed.clone(),
                            offered: e.offered.clone(),
                        }),
                    );
                }
                _ => stale.push(id.clone()),
            }
        }
        if !stale.is_empty() {
            for chunk in stale.chunks(50) {
                let rows = store::catalog_rows(&node.db, org, chunk).await?;
                let built = tokio::task::spawn_blocking(move || {
                    rows.into_iter().filter_map(build_entry).collect::<Vec<_>>()
                })
                .await
                .unwrap_or_default();
                for e in built {
                    entries.insert(e.id.clone(), Arc::new(e));
                }
            }
        }
        let mut ids: Vec<&String> = entries.keys().collect();
        ids.sort();
        let mut routes = HashMap::new();
        let mut tools = Vec::new();
        for id in ids {
            let entry = &entries[id];
            for (i, offered) in entry.offered.iter().enumerate() {
                let name = offered.spec.tool.name.to_string();
                if routes.contains_key(&name) {
                    tracing::warn!(tool = %entry.id, name, "an MCP tool name is taken by another tool; left out");
                    continue;
                }
                routes.insert(name, (entry.clone(), i));
                tools.push(offered.spec.clone());
            }
        }
        tools.sort_by(|a, b| a.tool.name.cmp(&b.tool.name));
        Ok(OrgCatalog {
            generation,
            entries,
            tools,
            routes,
        })
    }
}

/// Progress of a tool call as MCP `notifications/progress`.
struct McpProgress<'a>(&'a Call);

impl super::execute::Progress for McpProgress<'_> {
    fn report(&self, elapsed: std::time::Duration, message: String) {
        self.0
            .out
            .progress(elapsed.as_secs_f64().floor(), None, Some(message));
    }
}

/// The operation a call names: the tool's own, or, for a grouped tool, the one named by
/// `operation`, with its `arguments`.
pub fn resolve(
    offered: &Offered,
    args: Map<String, Value>,
) -> Result<(&Operation, Map<String, Value>), String> {
    match &offered.route {
        Route::One(op) => Ok((op, args)),
        Route::Group(ops) => {
            let name = args.get("operation").and_then(Value::as_str).unwrap_or("");
            let grouped = ops
                .get(name)
                .ok_or_else(|| format!("unknown operation {name:?}"))?;
            let arguments = match args.get("arguments") {
                Some(Value::Object(m)) => m.clone(),
                _ => Map::new(),
            };
            grouped
                .spec
                .check_arguments(&arguments)
                .map_err(|problems| {
                    format!("invalid arguments for the operation {name}: {problems}")
                })?;
            Ok((&grouped.operation, arguments))
        }
    }
}

/// Why [`find_operation`] found none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotOffered {
    Unknown,
    /// The operationId is shared by these operations (their tool names): name one.
    Ambiguous(Vec<String>),
}

/// The offered tool that carries an operation named by its MCP tool name, its name in
/// its group, or its operationId (when no other operation shares it), with the
/// arguments as that tool takes them: `POST /tools/{id}/execute`.
pub fn find_operation<'a>(
    entry: &'a ApiEntry,
    operation: &str,
    arguments: Map<String, Value>,
) -> Result<(&'a Offered, Map<String, Value>), NotOffered> {
    // Every operation offered, with its tool and its name in its group (if grouped).
    let mut all: Vec<(&Offered, &Operation, Option<&String>)> = Vec::new();
    for offered in entry.offered.iter() {
        match &offered.route {
            Route::One(op) => all.push((offered, op, None)),
            Route::Group(ops) => {
                all.extend(
                    ops.iter()
                        .map(|(short, g)| (offered, &*g.operation, Some(short))),
                );
            }
        }
    }
    let by_name = all
        .iter()
        .find(|(_, op, short)| op.name == operation || short.is_some_and(|s| s == operation));
    let found = match by_name {
        Some(found) => *found,
        None => {
            let by_id: Vec<_> = all
                .iter()
                .filter(|(_, op, _)| op.operation_id.as_deref() == Some(operation))
                .collect();
            match by_id.as_slice() {
                [] => return Err(NotOffered::Unknown),
                [one] => **one,
                many => {
                    return Err(NotOffered::Ambiguous(
                        many.iter().map(|(_, op, _)| op.name.clone()).collect(),
                    ));
                }
            }
        }
    };
    let (offered, _, short) = found;
    match short {
        None => Ok((offered, arguments)),
        Some(short) => {
            let mut wrapped = Map::new();
            wrapped.insert("operation".into(), Value::String(short.clone()));
            wrapped.insert("arguments".into(), Value::Object(arguments));
            Ok((offered, wrapped))
        }
    }
}

/// Runs a call of an offered tool for the caller.
pub async fn run(
    node: &Node,
    gateway: &Gateway,
    entry: &ApiEntry,
    offered: &Offered,
    args: Map<String, Value>,
    caller: &super::execute::Caller<'_>,
) -> Value {
    match resolve(offered, args) {
        Ok((op, arguments)) => {
            super::execute::call(node, gateway, entry, op, &arguments, caller).await
        }
        Err(why) => tool_error(why),
    }
}

/// The provider the MCP catalog holds.
pub struct GatewayProvider(pub Arc<Gateway>);

impl GatewayProvider {
    async fn catalog(&self, call: &Call) -> Option<Arc<OrgCatalog>> {
        if !call.principal.scopes.contains(Scope::ToolsCall) {
            return None;
        }
        match self
            .0
            .catalogs
            .of(&call.node, &call.principal.organization_id)
            .await
        {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the organization's HTTP tools");
                None
            }
        }
    }
}

impl Provider for GatewayProvider {
    fn tools<'a>(&'a self, call: &'a Call) -> BoxFuture<'a, Vec<Arc<ToolSpec>>> {
        Box::pin(async move {
            match self.catalog(call).await {
                Some(c) => c.tools.clone(),
                None => Vec::new(),
            }
        })
    }

    fn call_tool<'a>(
        &'a self,
        name: &'a str,
        args: Map<String, Value>,
        call: &'a Call,
    ) -> Reply<'a> {
        Box::pin(async move {
            let Some(catalog) = self.catalog(call).await else {
                return Err(RpcError::invalid_params(format!("unknown tool: {name}")));
            };
            let Some((entry, offered)) = catalog.route(name) else {
                return Err(RpcError::invalid_params(format!("unknown tool: {name}")));
            };
            let caller = super::execute::Caller {
                principal: &call.principal,
                progress: &McpProgress(call),
                cancel: &call.cancel,
            };
            Ok(run(&call.node, &self.0, entry, offered, args, &caller).await)
        })
    }
}
