//! Registering HTTP APIs as tools: the service behind `/api/v1/tools`. Every function
//! takes the caller's principal and touches only its organization; another
//! organization's tool is "not found". Credentials are sealed before they are stored
//! (`sealing`, purpose `tool:<id>:auth`, or `tool:<id>:credential:<owner>` for a
//! principal's own) and only their kind is ever shown.

use std::time::Duration;

use serde_json::json;
use url::Url;

use super::credentials::Credential;
use super::discover_job::DiscoverTool;
use super::document::{self, DocumentSet};
use super::filters::Filters;
use super::model::{
    AuthView, DiscoveryState, DiscoveryStatus, Health, NewTool, OperationView, OwnCredential,
    Passthrough, Settings, ToolPatch, ToolView,
};
use super::{Api, Gateway};
use crate::context::Context as Node;
use crate::events::{self, Change};
use crate::sealing::{SealError, Sealed};
use crate::service::{Page, PageRequest, ServiceError, ServiceResult, is_unique_violation};
use crate::storage::gateway::{self as store, CredentialRow, NewToolRow, ToolChanges, ToolRow};
use crate::tenancy::audit::{self, Event};
use crate::tenancy::scopes::Scope;
use crate::tenancy::{Principal, new_id, utc};

const NOT_FOUND: ServiceError = ServiceError::NotFound("tool");
/// Starts a tool name may not have: they would mix with devmesh's own tools.
const RESERVED: &[&str] = &["devmesh"];
/// Tags one tool may carry, and custom discovery paths.
const MAX_TAGS: usize = 20;
const MAX_CUSTOM_PATHS: usize = 20;
/// The longest URL accepted.
const MAX_URL_CHARS: usize = 2_048;

/// Who a principal's own credential belongs to: `user:<id>` or `api_key:<id>`.
pub fn owner_of(principal: &Principal) -> String {
    format!("{}:{}", principal.actor_type(), principal.actor_id())
}

/// The sealing purpose of a tool's organization credential.
pub fn auth_purpose(tool_id: &str) -> String {
    format!("tool:{tool_id}:auth")
}

/// The sealing purpose of a principal's own credential for a tool.
pub fn own_purpose(tool_id: &str, owner: &str) -> String {
    format!("tool:{tool_id}:credential:{owner}")
}

fn seal_error(e: SealError) -> ServiceError {
    match e {
        SealError::NoMasterKey => ServiceError::Unprocessable(
            "credentials cannot be stored: this devmesh has no master key. Set secrets.master_key \
             (or DEVMESH_SECRETS__MASTER_KEY) to 32 random bytes in base64, for example from \
             `openssl rand -base64 32`, and restart"
                .into(),
        ),
        e => ServiceError::Internal(format!("sealing a credential failed: {e}")),
    }
}

/// Opens a sealed credential. The error says why without the secret.
pub fn open_credential(
    gateway: &Gateway,
    organization_id: &str,
    purpose: &str,
    sealed: &str,
) -> Result<Credential, String> {
    let bytes = gateway
        .sealer
        .open(organization_id, purpose, &Sealed(sealed.to_string()))
        .map_err(|e| format!("the stored credential cannot be opened: {e}"))?;
    serde_json::from_slice(&bytes).map_err(|_| "the stored credential cannot be read".to_string())
}

fn seal_credential(
    gateway: &Gateway,
    organization_id: &str,
    purpose: &str,
    credential: &Credential,
) -> ServiceResult<(String, String)> {
    check_credential(gateway, credential)?;
    let bytes = serde_json::to_vec(credential).expect("a credential serializes");
    let sealed = gateway
        .sealer
        .seal(organization_id, purpose, &bytes)
        .map_err(seal_error)?;
    Ok((credential.kind().to_string(), sealed.0))
}

/// A credential that could never be sent is refused when it is given, not at its first
/// call.
fn check_credential(gateway: &Gateway, credential: &Credential) -> ServiceResult<()> {
    let invalid = |m: String| ServiceError::invalid("auth", m);
    let blank = |s: &str| s.trim().is_empty();
    let empty = match credential {
        Credential::Bearer { token } => blank(token),
        Credential::ApiKey { value, name, .. } => {
            blank(value) || name.as_deref().is_some_and(blank)
        }
        Credential::Basic { username, .. } => blank(username),
        Credential::Headers { headers } => {
            headers.is_empty() || headers.iter().any(|(k, v)| blank(k) || blank(v))
        }
        Credential::OAuth2ClientCredentials(grant) => {
            blank(&grant.client_id) || blank(&grant.client_secret)
        }
    };
    if empty {
        return Err(invalid(format!(
            "the {} credential is empty or blank: give its value (and name)",
            credential.kind()
        )));
    }
    // RFC 7617, section 2: the user-id cannot contain a colon.
    if let Credential::Basic { username, .. } = credential
        && username.contains(':')
    {
        return Err(invalid(
            "a basic credential's username cannot contain \":\" (RFC 7617)".into(),
        ));
    }
    // A credential sets the headers it names; the connection's are not among them.
    let header_names: Vec<&str> = match credential {
        Credential::Headers { headers } => headers.keys().map(String::as_str).collect(),
        Credential::ApiKey {
            location: Some(super::credentials::KeyLocation::Header),
            name: Some(name),
            ..
        } => vec![name.as_str()],
        _ => Vec::new(),
    };
    if let Some(name) = header_names
        .into_iter()
        .find(|n| super::request::is_connection_header(n))
    {
        return Err(invalid(format!(
            "a credential cannot set the header {name:?}: it belongs to the connection"
        )));
    }
    match credential {
        Credential::OAuth2ClientCredentials(grant) => {
            parse_url(gateway, "auth.token_url", &grant.token_url).map(drop)
        }
        Credential::ApiKey {
            location: None,
            name: None,
            ..
        } => Ok(()),
        Credential::ApiKey {
            location, name, ..
        } if location.is_none() || name.is_none() => Err(invalid(
            "give both location and name of the API key, or neither (then they come from the description's apiKey security scheme)".into(),
        )),
        other => {
            let mut headers = reqwest::header::HeaderMap::new();
            let mut url = Url::parse("http://check.invalid/").expect("a URL");
            other
                .apply(&mut headers, &mut url)
                .map(drop)
                .map_err(|e| invalid(e.0))
        }
    }
}

/// An `http` or `https` URL with a host, no user info, allowed by the SSRF guard as far
/// as an IP literal shows (names are checked as they resolve).
fn parse_url(gateway: &Gateway, field: &'static str, text: &str) -> ServiceResult<Url> {
    if text.chars().count() > MAX_URL_CHARS {
        return Err(ServiceError::invalid(
            field,
            format!("is longer than {MAX_URL_CHARS} characters"),
        ));
    }
    let url =
        Url::parse(text).map_err(|e| ServiceError::invalid(field, format!("is not a URL: {e}")))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ServiceError::invalid(
            field,
            "must not carry a user name or password: give the credential in auth",
        ));
    }
    gateway
        .outbound
        .check_url(&url)
        .map_err(|e| ServiceError::invalid(field, e.to_string()))?;
    Ok(url)
}

/// A base URL: [`parse_url`]'s rules, and no query or fragment (operations bring their
/// own queries; a credential goes in `auth`).
fn parse_base_url(gateway: &Gateway, text: &str) -> ServiceResult<Url> {
    let url = parse_url(gateway, "base_url", text)?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ServiceError::invalid(
            "base_url",
            "must not have a query or fragment: operations add their own query, and a key goes in auth",
        ));
    }
    Ok(url)
}

/// A path on the API's host: not a URL, not protocol-relative (`//other/x`), no
/// backslash (which URLs of http and https read as `/`).
fn is_host_path(path: &str) -> bool {
    !path.contains("://") && !path.starts_with("//") && !path.contains('\\')
}

/// `^[a-zA-Z][a-zA-Z0-9_-]{0,31}$`, not starting as devmesh's own tools do.
fn check_name(name: &str) -> ServiceResult<()> {
    let ok = (1..=32).contains(&name.len())
        && name.as_bytes()[0].is_ascii_alphabetic()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !ok {
        return Err(ServiceError::invalid(
            "name",
            format!(
                "{:?} is not a tool name: a letter, then letters, digits, _ or -, 1 to 32 characters in all",
                super::operations::cap(name, 80)
            ),
        ));
    }
    let lower = name.to_ascii_lowercase();
    if let Some(reserved) = RESERVED.iter().find(|r| lower.starts_with(*r)) {
        return Err(ServiceError::invalid(
            "name",
            format!(
                "{name:?} starts with {reserved:?}, which devmesh's own tools' names start with"
            ),
        ));
    }
    Ok(())
}

/// 409 when `name` is another tool's name, or one is the other's start up to `_`: their
/// MCP tool names could collide (`git` + `hub_x` and `git_hub` + `x`).
fn check_collision(names: &[(String, String)], id: &str, name: &str) -> ServiceResult<()> {
    let lower = name.to_ascii_lowercase();
    for (other_id, other) in names {
        if other_id == id {
            continue;
        }
        let other_lower = other.to_ascii_lowercase();
        if other_lower == lower
            || lower.starts_with(&format!("{other_lower}_"))
            || other_lower.starts_with(&format!("{lower}_"))
        {
            return Err(ServiceError::Conflict(format!(
                "the tool name {name:?} collides with the tool {other:?}: their MCP tool names could be the same"
            )));
        }
    }
    Ok(())
}

fn check_settings(gateway: &Gateway, s: &Settings) -> ServiceResult<()> {
    if let Some(url) = &s.openapi_url {
        parse_url(gateway, "openapi_url", url)?;
    }
    let paths = &s.discovery_hints.custom_paths;
    if paths.len() > MAX_CUSTOM_PATHS {
        return Err(ServiceError::invalid(
            "discovery_hints.custom_paths",
            format!("has {} paths; at most {MAX_CUSTOM_PATHS}", paths.len()),
        ));
    }
    if let Some(p) = paths
        .iter()
        .find(|p| p.is_empty() || p.len() > 512 || !is_host_path(p))
    {
        return Err(ServiceError::invalid(
            "discovery_hints.custom_paths",
            format!(
                "{:?} is not a path of 1 to 512 characters on the API's host",
                super::operations::cap(p, 80)
            ),
        ));
    }
    if s.tags.len() > MAX_TAGS
        || s.tags
            .iter()
            .any(|t| t.is_empty() || t.chars().count() > 64)
    {
        return Err(ServiceError::invalid(
            "tags",
            format!("at most {MAX_TAGS} tags of 1 to 64 characters"),
        ));
    }
    Filters::new(&s.include_operations, &s.exclude_operations).map_err(|m| {
        let field = if m.starts_with("include") {
            "include_operations"
        } else {
            "exclude_operations"
        };
        ServiceError::invalid(field, m)
    })?;
    if let Some(t) = s.timeout
        && !(0.1..=600.0).contains(&t)
    {
        return Err(ServiceError::invalid(
            "timeout",
            format!("must be 0.1 to 600 seconds (it is {t})"),
        ));
    }
    if let Some(n) = s.max_response_bytes
        && !(1024..=64 * 1024 * 1024).contains(&n)
    {
        return Err(ServiceError::invalid(
            "max_response_bytes",
            format!("must be 1024 to 67108864 bytes (it is {n})"),
        ));
    }
    if let Some(h) = &s.health_check {
        if let Some(i) = h.interval
            && !(5..=86_400).contains(&i)
        {
            return Err(ServiceError::invalid(
                "health_check.interval",
                format!("must be 5 to 86400 seconds (it is {i})"),
            ));
        }
        if let Some(p) = &h.path
            && (p.len() > 512 || !is_host_path(p))
        {
            return Err(ServiceError::invalid(
                "health_check.path",
                "must be a path of at most 512 characters on the API's host",
            ));
        }
    }
    Ok(())
}

/// The text of an uploaded description: a JSON object as JSON, a string as given.
fn document_text(gateway: &Gateway, value: serde_json::Value) -> ServiceResult<String> {
    let text = match value {
        serde_json::Value::String(s) => s,
        v @ serde_json::Value::Object(_) => v.to_string(),
        _ => {
            return Err(ServiceError::invalid(
                "openapi",
                "must be the description as a JSON object, or as JSON or YAML text",
            ));
        }
    };
    if text.len() > gateway.config.max_document_bytes {
        return Err(ServiceError::TooLarge(format!(
            "the description is {} bytes; the limit is {} (gateway.max_document_bytes)",
            text.len(),
            gateway.config.max_document_bytes
        )));
    }
    Ok(text)
}

/// Reads and converts an uploaded description, off the async threads. Its `$ref`s to
/// other files cannot be followed (there are none beside it) and are reported.
pub async fn convert_upload(gateway: &Gateway, prefix: &str, text: String) -> Result<Api, String> {
    let limits = gateway.limits();
    let prefix = prefix.to_string();
    tokio::task::spawn_blocking(move || {
        let value = document::parse("the uploaded description", text.as_bytes(), &limits)
            .map_err(|e| e.to_string())?;
        let root = Url::parse("upload:///openapi").expect("a URL");
        let set = DocumentSet::single(root, value);
        super::convert(&set, &prefix).map_err(|e| e.to_string())
    })
    .await
    .map_err(|_| "the conversion failed".to_string())?
}

/// The discovery state of an API just read.
pub fn found(
    attempt_id: String,
    source: &str,
    url: Option<String>,
    api: &Api,
    settings: &Settings,
    tried: Vec<super::discovery::Attempt>,
    requested_at: chrono::DateTime<chrono::Utc>,
) -> DiscoveryState {
    let filters = Filters::new(&settings.include_operations, &settings.exclude_operations)
        .unwrap_or_else(|_| Filters::new(&[], &[]).expect("no globs compile"));
    let mut notes: Vec<String> = api
        .dangling
        .iter()
        .map(|(r, why)| format!("{r}: {why}"))
        .collect();
    // The same cut in many operations is one note naming them.
    let mut cuts: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for op in &api.operations {
        for cut in &op.cuts {
            cuts.entry(cut).or_default().push(&op.name);
        }
    }
    for (cut, ops) in cuts {
        let named = ops.iter().take(5).copied().collect::<Vec<_>>().join(", ");
        let more = if ops.len() > 5 {
            format!(" and {} more", ops.len() - 5)
        } else {
            String::new()
        };
        notes.push(format!("{cut} (in {named}{more})"));
    }
    if api.operations.is_empty() {
        notes.insert(
            0,
            "the description has no operations (its paths hold none, or only webhooks): the tool offers nothing".into(),
        );
    }
    let total = notes.len();
    notes.truncate(50);
    if total > 50 {
        notes.push(format!("... and {} more", total - 50));
    }
    DiscoveryState {
        status: DiscoveryStatus::Ready,
        attempt_id,
        source: source.into(),
        tried,
        url,
        format: Some(api.format),
        spec_version: api.spec_version.clone(),
        title: api.title.clone(),
        api_version: api.version.clone(),
        operation_count: api.operations.len(),
        tool_count: if settings.group_operations {
            let groups: std::collections::BTreeSet<String> = api
                .operations
                .iter()
                .filter(|o| filters.admits(o))
                .map(super::offer::group_of)
                .collect();
            groups.len()
        } else {
            api.operations.iter().filter(|o| filters.admits(o)).count()
        },
        notes,
        error: None,
        requested_at,
        finished_at: Some(chrono::Utc::now()),
    }
}

fn pending(source: &str) -> DiscoveryState {
    DiscoveryState {
        status: DiscoveryStatus::Pending,
        attempt_id: new_id(),
        source: source.into(),
        tried: Vec::new(),
        url: None,
        format: None,
        spec_version: None,
        title: None,
        api_version: None,
        operation_count: 0,
        tool_count: 0,
        notes: Vec::new(),
        error: None,
        requested_at: chrono::Utc::now(),
        finished_at: None,
    }
}

fn json_text<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("gateway state serializes")
}

fn read_json<T: serde::de::DeserializeOwned + Default>(text: &str) -> T {
    serde_json::from_str(text).unwrap_or_default()
}

/// A stored row's settings.
pub fn settings_of(row: &ToolRow) -> Settings {
    read_json(&row.settings)
}

/// A stored row's discovery state.
pub fn discovery_of(row: &ToolRow) -> Option<DiscoveryState> {
    serde_json::from_str(&row.discovery).ok()
}

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

async fn get_row(node: &Node, principal: &Principal, id: &str) -> ServiceResult<ToolRow> {
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
            let requested = chrono::Utc::now();
            let api = convert_upload(gateway, &new.name, text.clone())
                .await
                .map_err(|e| {
                    ServiceError::Unprocessable(format!(
                        "the uploaded description cannot be read: {e}"
                    ))
                })?;
            let state = found(
                new_id(),
                "upload",
                None,
                &api,
                &settings,
                Vec::new(),
                requested,
            );
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
    } else if let Some(mut state) = discovery_of(&row)
        && state.status == DiscoveryStatus::Ready
    {
        // The filters may have changed: recount what is offered.
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
    let requested = chrono::Utc::now();
    let api = convert_upload(gateway, name, text).await.map_err(|e| {
        ServiceError::Unprocessable(format!("the uploaded description cannot be read: {e}"))
    })?;
    let state = found(
        new_id(),
        "upload",
        None,
        &api,
        settings,
        Vec::new(),
        requested,
    );
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
    let requested = chrono::Utc::now();
    let api = convert_upload(gateway, &row.name, text.clone())
        .await
        .map_err(|e| {
            ServiceError::Unprocessable(format!("the uploaded description cannot be read: {e}"))
        })?;
    let state = found(
        new_id(),
        "upload",
        None,
        &api,
        &settings_of(&row),
        Vec::new(),
        requested,
    );
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

/// Stores the caller's own credential for a tool whose passthrough is not `disabled`.
pub async fn put_own_credential(
    node: &Node,
    gateway: &Gateway,
    principal: &Principal,
    id: &str,
    body: OwnCredential,
) -> ServiceResult<AuthView> {
    principal.require(Scope::ToolsCall)?;
    let org = principal.organization_id.clone();
    let row = get_row(node, principal, id).await?;
    if settings_of(&row).passthrough == Passthrough::Disabled {
        return Err(ServiceError::Unprocessable(
            "this tool uses the organization's credential only (passthrough is disabled)".into(),
        ));
    }
    let owner = owner_of(principal);
    let (kind, sealed) = seal_credential(gateway, &org, &own_purpose(id, &owner), &body.auth)?;
    store::put_credential(
        &node.db,
        &CredentialRow {
            tool_id: id.to_string(),
            organization_id: org,
            owner,
            auth_kind: kind.clone(),
            auth_sealed: sealed,
            updated_at: crate::storage::now(),
        },
    )
    .await
    .map_err(ServiceError::Storage)?;
    audit::record(
        node,
        Event::by(principal, "tool.credential_stored")
            .target("tool", id)
            .details(json!({ "auth": kind })),
    )
    .await;
    Ok(AuthView {
        kind: Some(kind),
        has_credential: true,
    })
}

/// The kind of the caller's own credential for a tool, if they stored one.
pub async fn own_credential(
    node: &Node,
    principal: &Principal,
    id: &str,
) -> ServiceResult<AuthView> {
    principal.require(Scope::ToolsCall)?;
    get_row(node, principal, id).await?;
    let row = store::credential(
        &node.db,
        &principal.organization_id,
        id,
        &owner_of(principal),
    )
    .await
    .map_err(ServiceError::Storage)?;
    Ok(AuthView {
        has_credential: row.is_some(),
        kind: row.map(|r| r.auth_kind),
    })
}

pub async fn delete_own_credential(
    node: &Node,
    principal: &Principal,
    id: &str,
) -> ServiceResult<()> {
    principal.require(Scope::ToolsCall)?;
    get_row(node, principal, id).await?;
    if !store::delete_credential(
        &node.db,
        &principal.organization_id,
        id,
        &owner_of(principal),
    )
    .await
    .map_err(ServiceError::Storage)?
    {
        return Err(ServiceError::NotFound("credential"));
    }
    audit::record(
        node,
        Event::by(principal, "tool.credential_removed").target("tool", id),
    )
    .await;
    Ok(())
}
