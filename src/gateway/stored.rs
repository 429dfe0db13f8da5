//! What a tool's row holds beside its name and URL, as JSON: its settings, its discovery
//! state and its converted API; and the conversion of an uploaded description.

use url::Url;

use super::document::{self, DocumentSet};
use super::filters::Filters;
use super::model::{DiscoveryState, DiscoveryStatus, Settings};
use super::{Api, Gateway};
use crate::service::{ServiceError, ServiceResult};
use crate::storage::gateway::ToolRow;
use crate::tenancy::new_id;

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

pub fn pending(source: &str) -> DiscoveryState {
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

pub fn json_text<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("gateway state serializes")
}

pub fn read_json<T: serde::de::DeserializeOwned + Default>(text: &str) -> T {
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

/// Reads an uploaded description into its API and the discovery state that says so; a
/// document that cannot be read is a 422 that says why.
pub async fn read_upload(
    gateway: &Gateway,
    prefix: &str,
    text: String,
    settings: &Settings,
) -> ServiceResult<(DiscoveryState, Api)> {
    let requested = chrono::Utc::now();
    let api = convert_upload(gateway, prefix, text).await.map_err(|e| {
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
    Ok((state, api))
}
