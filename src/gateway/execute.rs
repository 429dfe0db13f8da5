//! One call of a converted operation: the credential chosen (the caller's own or the
//! organization's, by the tool's `passthrough`), the request built from the arguments,
//! sent through the outbound client within the tool's timeout, and the answer mapped to
//! a `CallToolResult`. Whatever goes wrong upstream (a refusal, a timeout, an HTTP
//! error, an open circuit) is a tool error the model can read, never a protocol error.
//!
//! With OAuth client credentials, a 401 drops the cached token and the request is sent
//! once more with a fresh one.

use std::time::{Duration, Instant};

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName};
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;
use url::Url;

use super::Gateway;
use super::credentials::Credential;
use super::model::Passthrough;
use super::operations::Operation;
use super::provider::ApiEntry;
use super::request;
use super::response::{Answer, to_result};
use super::sealed::{self, auth_purpose, own_purpose, owner_of};
use crate::context::Context as Node;
use crate::mcp::engine::tool_error;
use crate::outbound::{OutboundError, OutboundRequest};
use crate::storage::gateway as store;
use crate::tenancy::Principal;

/// How often a call in flight reports progress.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// What a call may tell its caller while it runs.
pub trait Progress: Send + Sync {
    fn report(&self, elapsed: Duration, message: String);
}

impl Progress for () {
    fn report(&self, _: Duration, _: String) {}
}

/// Who calls, how they hear of progress, and what cancels the call.
pub struct Caller<'a> {
    pub principal: &'a Principal,
    pub progress: &'a dyn Progress,
    pub cancel: &'a CancellationToken,
}

/// A credential ready to apply, and the key its OAuth token is cached under.
struct Chosen {
    credential: Credential,
    key: String,
}

/// Opens a sealed credential and applies it to a fresh set of headers (discovery and the
/// health checks, which send no arguments): the headers and the names of those that
/// carry the credential. An API key in the query is not sent this way.
pub async fn applied_headers(
    gateway: &Gateway,
    organization_id: &str,
    purpose: &str,
    sealed: &str,
) -> Result<(HeaderMap, Vec<HeaderName>), String> {
    let credential = sealed::open_credential(gateway, organization_id, purpose, sealed)?;
    let credential = bearer_of(gateway, credential, sealed).await?;
    let mut headers = HeaderMap::new();
    let mut url = Url::parse("http://headers.invalid/").expect("a URL");
    // An API key without a name waits for the description's scheme: none applied.
    let names: Vec<HeaderName> = credential.apply(&mut headers, &mut url).unwrap_or_default();
    Ok((headers, names))
}

/// Client credentials exchanged for their bearer token; other credentials as they are.
async fn bearer_of(
    gateway: &Gateway,
    credential: Credential,
    key: &str,
) -> Result<Credential, String> {
    match credential {
        Credential::OAuth2ClientCredentials(grant) => {
            let token = gateway
                .tokens
                .token(&gateway.outbound, key, &grant)
                .await
                .map_err(|e| e.to_string())?;
            Ok(Credential::Bearer { token })
        }
        other => Ok(other),
    }
}

async fn choose(
    node: &Node,
    gateway: &Gateway,
    entry: &ApiEntry,
    principal: &Principal,
) -> Result<Option<Chosen>, String> {
    let org = &entry.organization_id;
    let own = if entry.settings.passthrough == Passthrough::Disabled {
        None
    } else {
        let owner = owner_of(principal);
        store::credential(&node.db, org, &entry.id, &owner)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "cannot read a caller's own tool credential");
                "the caller's credential for this tool cannot be read right now; try again"
                    .to_string()
            })?
            .map(|row| {
                let credential = sealed::open_credential(
                    gateway,
                    org,
                    &own_purpose(&entry.id, &owner),
                    &row.auth_sealed,
                )?;
                Ok::<_, String>(Chosen {
                    credential,
                    key: row.auth_sealed,
                })
            })
            .transpose()?
    };
    if own.is_some() {
        return Ok(own);
    }
    if entry.settings.passthrough == Passthrough::Required {
        return Err(format!(
            "the tool {} needs your own credential: store it with PUT /api/v1/tools/{}/credentials/me",
            entry.name, entry.id
        ));
    }
    entry
        .auth_sealed
        .as_ref()
        .map(|sealed| {
            Ok(Chosen {
                credential: sealed::open_credential(
                    gateway,
                    org,
                    &auth_purpose(&entry.id),
                    sealed,
                )?,
                key: sealed.clone(),
            })
        })
        .transpose()
}

/// Sends a request and reads at most `limit` bytes of its answer.
async fn exchange(
    gateway: &Gateway,
    request: OutboundRequest,
    limit: usize,
) -> Result<(u16, Option<String>, Vec<u8>, bool), OutboundError> {
    let what = crate::outbound::host_of(&request.url);
    let mut response = gateway.outbound.send(request).await?;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut body = Vec::new();
    let mut truncated = false;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = limit.saturating_sub(body.len());
                if chunk.len() > room {
                    body.extend_from_slice(&chunk[..room]);
                    truncated = true;
                    break;
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) => {
                return Err(OutboundError::Failed(
                    what,
                    format!("the answer broke off: {e}"),
                ));
            }
        }
    }
    Ok((status, content_type, body, truncated))
}

/// Calls `op` of `entry` with `arguments` (already checked against its schema) for the
/// caller. The result is a `CallToolResult`; the caller's `cancel` aborts the upstream
/// request.
pub async fn call(
    node: &Node,
    gateway: &Gateway,
    entry: &ApiEntry,
    op: &Operation,
    arguments: &Map<String, Value>,
    caller: &Caller<'_>,
) -> Value {
    let Caller {
        principal,
        progress,
        cancel,
    } = *caller;
    let started = Instant::now();
    let label = format!("{} {}", op.method, op.path);
    if let Some(open) = entry.circuit_open() {
        metrics::counter!("devmesh_gateway_calls_total", "outcome" => "circuit_open").increment(1);
        return tool_error(open);
    }
    let built = match request::build(op, &entry.base, arguments) {
        Ok(b) => b,
        Err(e) => return tool_error(format!("the arguments cannot make the request: {e}")),
    };
    let chosen = match choose(node, gateway, entry, principal).await {
        Ok(c) => c,
        Err(why) => return tool_error(why),
    };
    let timeout = entry
        .settings
        .timeout
        .map(Duration::from_secs_f64)
        .unwrap_or(gateway.config.call_timeout.get());
    let limit = entry
        .settings
        .max_response_bytes
        .map(|n| n as usize)
        .unwrap_or(gateway.config.max_response_bytes);
    let host = crate::outbound::host_of(&built.url);
    let attempt = |credential: Option<Credential>| {
        let built = built.clone();
        let schemes = &entry.schemes;
        async move {
            let mut url = built.url;
            let mut headers = built.headers;
            let mut credential_headers = Vec::new();
            if let Some(c) = credential {
                credential_headers = c
                    .with_scheme(schemes)
                    .apply(&mut headers, &mut url)
                    .map_err(|e| format!("the tool's credential cannot be applied: {e}"))?;
            }
            let request = OutboundRequest {
                method: built.method,
                url,
                headers,
                body: built.body,
                credential_headers,
                timeout: Some(timeout),
            };
            exchange(gateway, request, limit)
                .await
                .map_err(|e| describe(&e))
        }
    };
    let run = async {
        let (credential, key, oauth) = match chosen {
            Some(c) => {
                let oauth = matches!(c.credential, Credential::OAuth2ClientCredentials(_));
                let bearer = bearer_of(gateway, c.credential.clone(), &c.key).await?;
                (Some((bearer, c.credential)), Some(c.key), oauth)
            }
            None => (None, None, false),
        };
        let first = attempt(credential.as_ref().map(|c| c.0.clone())).await?;
        if first.0 == 401
            && oauth
            && let (Some(key), Some((_, grant))) = (&key, &credential)
        {
            // RFC 6750, section 3.1: the token was refused; get a fresh one once.
            gateway.tokens.forget(key);
            let fresh = bearer_of(gateway, grant.clone(), key).await?;
            return attempt(Some(fresh)).await;
        }
        Ok::<_, String>(first)
    };
    tokio::pin!(run);
    let mut ticks =
        tokio::time::interval_at(tokio::time::Instant::now() + PROGRESS_EVERY, PROGRESS_EVERY);
    let outcome = loop {
        tokio::select! {
            outcome = &mut run => break outcome,
            _ = cancel.cancelled() => {
                metrics::counter!("devmesh_gateway_calls_total", "outcome" => "cancelled").increment(1);
                return tool_error(format!("the call of {label} was cancelled; the request to {host} was aborted"));
            }
            _ = ticks.tick() => {
                progress.report(started.elapsed(), format!("waiting for {host} ({label})"));
            }
        }
    };
    let elapsed = started.elapsed();
    metrics::histogram!("devmesh_gateway_call_duration_seconds").record(elapsed.as_secs_f64());
    match outcome {
        Ok((status, content_type, body, truncated)) => {
            let outcome = if status >= 400 { "http_error" } else { "ok" };
            metrics::counter!("devmesh_gateway_calls_total", "outcome" => outcome).increment(1);
            tracing::debug!(tool = %entry.id, operation = %op.name, status, elapsed_ms = elapsed.as_millis() as u64, "tool call answered");
            to_result(&Answer {
                status,
                content_type: content_type.as_deref(),
                body: &body,
                truncated,
                limit,
                operation: &label,
            })
        }
        Err(why) => {
            metrics::counter!("devmesh_gateway_calls_total", "outcome" => "failed").increment(1);
            tool_error(format!("the call of {label} failed: {why}"))
        }
    }
}

/// An outbound failure as the model reads it: which of refused, timed out, unreachable.
fn describe(e: &OutboundError) -> String {
    match e {
        OutboundError::Refused(r) => {
            format!("the request was refused by devmesh's SSRF guard: {r}")
        }
        OutboundError::Timeout(host, within) => {
            format!(
                "{host} did not answer within the tool's timeout of {:.1} s",
                within.as_secs_f64()
            )
        }
        OutboundError::Connect(host, why) => format!("cannot connect to {host} ({why})"),
        other => other.to_string(),
    }
}
