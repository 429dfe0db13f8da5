//! Discovery as a background job: `pending` → `running` → `ready` or `failed`, each step
//! stored on the tool so that `GET /tools/{id}` shows it with every URL tried and why it
//! failed. Each discovery has an id; a job whose discovery was overtaken by a newer one
//! (the tool changed again) changes nothing.
//!
//! A description found teaches the organization where hosts of that kind serve theirs:
//! the path is stored for the host's pattern (`gateway_learned_paths`) and tried first the
//! next time.

use std::sync::Arc;

use reqwest::header::HeaderMap;
use serde::{Deserialize, Serialize};
use url::Url;

use super::Gateway;
use super::discovery::{self, Request};
use super::model::{DiscoveryState, DiscoveryStatus};
use super::registry;
use super::sealed::auth_purpose;
use super::stored::{self, discovery_of, settings_of};
use crate::context::Context as Node;
use crate::jobs::{Job, JobContext, JobError};
use crate::storage::gateway::{self as store, ToolChanges, ToolRow};

/// Discovers one tool's description.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DiscoverTool {
    pub organization_id: String,
    pub tool_id: String,
    /// The discovery this job is for (`DiscoveryState::attempt_id`).
    pub attempt_id: String,
}

impl Job for DiscoverTool {
    const NAME: &'static str = "gateway.discover";
    const MAX_ATTEMPTS: u32 = 3;
    type State = Arc<Gateway>;

    async fn run(self, gateway: Arc<Gateway>, ctx: JobContext) -> Result<(), JobError> {
        run(&ctx.ctx, &gateway, &self).await
    }
}

/// The pattern hosts of one kind share: the host with its first label a wildcard
/// (`gitlab.acme.com` → `*.acme.com`) when it has three labels or more; else the host
/// itself (`localhost`, `example.com`, an IP address). The port is not part of it.
pub fn host_pattern(url: &Url) -> Option<String> {
    match url.host()? {
        url::Host::Domain(d) => {
            let d = d.to_ascii_lowercase();
            let labels: Vec<&str> = d.split('.').collect();
            Some(if labels.len() >= 3 {
                format!("*.{}", labels[1..].join("."))
            } else {
                d
            })
        }
        host => Some(host.to_string()),
    }
}

async fn run(node: &Node, gateway: &Gateway, job: &DiscoverTool) -> Result<(), JobError> {
    let Some(row) = store::get(&node.db, &job.organization_id, &job.tool_id).await? else {
        return Ok(());
    };
    let Some(mut state) = discovery_of(&row) else {
        return Ok(());
    };
    if state.attempt_id != job.attempt_id || state.status == DiscoveryStatus::Ready {
        return Ok(());
    }
    let before = row.discovery.clone();
    state.status = DiscoveryStatus::Running;
    let running = serde_json::to_string(&state).expect("state serializes");
    let changes = ToolChanges {
        discovery: Some(running.clone()),
        ..Default::default()
    };
    if !store::update_if_discovery(&node.db, &row.organization_id, &row.id, &before, &changes)
        .await?
    {
        return Ok(());
    }
    let (final_state, api, running) = match discover(node, gateway, &row, state, running).await {
        Some(done) => done,
        None => return Ok(()),
    };
    let mut changes = ToolChanges {
        discovery: Some(serde_json::to_string(&final_state).expect("state serializes")),
        ..Default::default()
    };
    if let Some(api) = &api {
        changes.api = Some(Some(serde_json::to_string(api).expect("an API serializes")));
        changes.revision = Some(row.revision + 1);
    }
    let stored =
        store::update_if_discovery(&node.db, &row.organization_id, &row.id, &running, &changes)
            .await?;
    if stored {
        tracing::info!(
            tool = %row.id,
            status = ?final_state.status,
            tried = final_state.tried.len(),
            operations = final_state.operation_count,
            "discovery finished"
        );
        if api.is_some() {
            registry::tools_changed(node, &row.organization_id).await;
        }
    }
    Ok(())
}

/// Runs the discovery, storing each try as it ends; a failure is a state, not an error.
/// Returns the outcome and the stored state it replaces; `None` when the discovery was
/// overtaken meanwhile (then it stops at once).
async fn discover(
    node: &Node,
    gateway: &Gateway,
    row: &ToolRow,
    state: DiscoveryState,
    running: String,
) -> Option<(DiscoveryState, Option<super::Api>, String)> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut shown = state.clone();
    let mut stored = running;
    let work = attempt(node, gateway, row, state, tx);
    tokio::pin!(work);
    loop {
        tokio::select! {
            done = &mut work => {
                let (state, api) = done;
                return Some((state, api, stored));
            }
            Some(tried) = rx.recv() => {
                shown.tried.push(tried);
                while let Ok(more) = rx.try_recv() {
                    shown.tried.push(more);
                }
                let text = serde_json::to_string(&shown).expect("state serializes");
                let changes = ToolChanges {
                    discovery: Some(text.clone()),
                    ..Default::default()
                };
                match store::update_if_discovery(&node.db, &row.organization_id, &row.id, &stored, &changes).await {
                    Ok(true) => stored = text,
                    Ok(false) => return None,
                    Err(e) => tracing::warn!(error = %e, "cannot show a discovery's progress"),
                }
            }
        }
    }
}

/// The discovery itself; each try is sent on `tried` as it ends.
async fn attempt(
    node: &Node,
    gateway: &Gateway,
    row: &ToolRow,
    mut state: DiscoveryState,
    tried: tokio::sync::mpsc::UnboundedSender<super::discovery::Attempt>,
) -> (DiscoveryState, Option<super::Api>) {
    let settings = settings_of(row);
    let fail = |mut state: DiscoveryState, why: String| {
        state.status = DiscoveryStatus::Failed;
        state.error = Some(why);
        state.finished_at = Some(chrono::Utc::now());
        (state, None)
    };
    let Ok(base) = Url::parse(&row.base_url) else {
        return fail(state, "the base URL is not a URL".into());
    };
    let openapi_url = match settings.openapi_url.as_deref().map(Url::parse).transpose() {
        Ok(u) => u,
        Err(_) => return fail(state, "openapi_url is not a URL".into()),
    };
    // The organization's credential goes with discovery's requests (same origin only):
    // some APIs serve their description only to authenticated callers.
    // A credential that cannot be used (a token endpoint that refuses) does not stop
    // discovery: most descriptions are public. Its problem is told if nothing is found.
    let mut headers = HeaderMap::new();
    let mut credential_headers = Vec::new();
    let mut credential_problem = None;
    if let Some(sealed) = &row.auth_sealed {
        match super::execute::applied_headers(
            gateway,
            &row.organization_id,
            &auth_purpose(&row.id),
            sealed,
        )
        .await
        {
            Ok((h, names)) => {
                headers = h;
                credential_headers = names;
            }
            Err(why) => credential_problem = Some(why),
        }
    }
    let pattern = host_pattern(&base);
    let learned = match &pattern {
        Some(p) => store::learned_path(&node.db, &row.organization_id, p)
            .await
            .ok()
            .flatten()
            .into_iter()
            .collect(),
        None => Vec::new(),
    };
    let request = Request {
        base_url: &base,
        openapi_url: openapi_url.as_ref(),
        custom_paths: &settings.discovery_hints.custom_paths,
        learned_paths: &learned,
        headers,
        credential_headers,
        prefix: &row.name,
        limits: gateway.limits(),
    };
    let outcome = discovery::discover_with(&gateway.outbound, request, |a| {
        let _ = tried.send(a.clone());
    })
    .await;
    match outcome {
        Ok(found) => {
            if let Some(expected) = settings.discovery_hints.api_format
                && expected != found.api.format
            {
                state.tried = found.tried;
                return fail(
                    state,
                    format!(
                        "the description at {} is {:?}, not the {:?} that discovery_hints.api_format asks for",
                        crate::outbound::redacted(&found.url),
                        found.api.format,
                        expected
                    ),
                );
            }
            if let Some(p) = &pattern
                && let Err(e) =
                    store::learn_path(&node.db, &row.organization_id, p, found.url.path()).await
            {
                tracing::warn!(error = %e, "cannot store a learned discovery path");
            }
            let done = stored::found(
                state.attempt_id.clone(),
                "url",
                Some(crate::outbound::redacted(&found.url)),
                &found.api,
                &settings,
                found.tried,
                state.requested_at,
            );
            (done, Some(found.api))
        }
        Err(not_found) => {
            let mut why = not_found.to_string();
            if let Some(problem) = credential_problem {
                why.push_str(&format!(
                    "; discovery went without the tool's credential, which could not be used: {problem}"
                ));
            }
            state.tried = not_found.tried;
            fail(state, why)
        }
    }
}
