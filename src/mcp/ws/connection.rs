//! One WebSocket connection: its loop reads frames, writes the queued ones, pings, and
//! carries the session's notifications; each request runs on the node's runtime and
//! answers through the connection's [`Link`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode, CloseReason};
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::frame;
use super::hub::Registration;
use super::link::{FrameKind, Link, Outgoing};
use crate::context::Context;
use crate::events::{Change, TenantEvents};
use crate::mcp::Mcp;
use crate::mcp::call::{Call, Speaking};
use crate::mcp::engine;
use crate::mcp::listen::{self, Listen};
use crate::mcp::protocol::{Incoming, RpcError, Version, code, response};
use crate::mcp::respond::{answer, count_error, method_label, perform};
use crate::mcp::sessions::Session;
use crate::mcp::stateless::{message_meta, object};
use crate::tenancy::Principal;
use crate::tenancy::extract::check_limits;
use crate::tenancy::grants::{EndKind, Ended, Grant};

/// Close codes of our own (4000-4999 are for applications).
pub mod close {
    /// The client stopped reading and its outbound queue filled up.
    pub const SLOW_CONSUMER: u16 = 4001;
    /// The client did not answer a ping before the next one was due.
    pub const PING_TIMEOUT: u16 = 4002;
    /// The connection's credential was revoked, or its user removed: do not reconnect
    /// with it.
    pub const CREDENTIAL_REVOKED: u16 = 4003;
    /// The connection's credential expired: reconnect with a fresh one.
    pub const CREDENTIAL_EXPIRED: u16 = 4004;
    /// The connection's credential lost scopes it was opened with: reconnect to go on
    /// with the ones it has now.
    pub const CREDENTIAL_REDUCED: u16 = 4005;
}

/// How long a closing handshake may wait on a client that is not reading.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

type Inflight = Arc<Mutex<HashMap<String, CancellationToken>>>;

pub(super) struct Connection {
    pub node: Context,
    pub mcp: Arc<Mcp>,
    /// The authority of the credential the connection was opened with; every request is
    /// authorized again with it.
    pub grant: Arc<Grant>,
    pub link: Arc<Link>,
    pub registration: Registration,
    /// What the observers hold while the connection is open (presence).
    _held: super::super::Held,
    session: Option<(Arc<Session>, TenantEvents)>,
    inflight: Inflight,
}

impl Connection {
    pub fn new(
        node: Context,
        mcp: Arc<Mcp>,
        grant: Arc<Grant>,
        link: Arc<Link>,
        registration: Registration,
        held: super::super::Held,
    ) -> Self {
        Self {
            node,
            mcp,
            grant,
            link,
            registration,
            _held: held,
            session: None,
            inflight: Arc::default(),
        }
    }

    /// Serves the connection until either side closes it.
    pub async fn run(
        mut self,
        mut ws: actix_ws::Session,
        mut frames: AggregatedMessageStream,
        mut queued: mpsc::Receiver<Outgoing>,
    ) {
        let every = self.node.config.mcp.ws.ping_interval.get();
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut awaiting_pong = false;
        let overflowed = self.link.overflowed().clone();
        let closing = self.mcp.hub.closing().clone();
        let grant = self.grant.clone();
        let reason = loop {
            tokio::select! {
                biased;
                _ = overflowed.cancelled() => break Some(slow_consumer(&self.node)),
                _ = closing.cancelled() => {
                    break Some(reason(CloseCode::Away, "the server is shutting down; reconnect"));
                }
                out = queued.recv() => {
                    let Some(out) = out else { break None };
                    let written = tokio::select! {
                        biased;
                        _ = overflowed.cancelled() => break Some(slow_consumer(&self.node)),
                        written = write(&mut ws, out) => written,
                    };
                    if written.is_err() {
                        break None;
                    }
                }
                // After what is queued: a refused request hears why before the close.
                ended = grant.ended() => break Some(credential_ended(ended)),
                message = frames.recv() => match message {
                    None => break None,
                    Some(Err(e)) => break Some(protocol_error(e)),
                    // Requests are boxed: their futures are large, and an idle
                    // connection should not carry one.
                    Some(Ok(message)) => match message {
                        AggregatedMessage::Text(text) => Box::pin(self.incoming(text.as_bytes(), FrameKind::Text)).await,
                        AggregatedMessage::Binary(bytes) => {
                            match frame::decode(&bytes, self.node.config.mcp.max_message_bytes) {
                                Ok((json, c)) => Box::pin(self.incoming(&json, FrameKind::Binary(c))).await,
                                Err(e) => break Some(counted("bad_frame", e.close_code(), e.to_string())),
                            }
                        }
                        AggregatedMessage::Ping(payload) => {
                            if ws.pong(&payload).await.is_err() {
                                break None;
                            }
                        }
                        AggregatedMessage::Pong(_) => awaiting_pong = false,
                        // The client closes: answer in kind.
                        AggregatedMessage::Close(theirs) => {
                            metrics::counter!("devmesh_ws_closed_total", "reason" => "client").increment(1);
                            break Some(theirs.unwrap_or_else(|| CloseCode::Normal.into()));
                        }
                    },
                },
                change = next_change(&mut self.session) => {
                    if let Some((session, _)) = &self.session
                        && let Some(message) = session.notice_for(&change)
                    {
                        self.link.push(&message);
                    }
                }
                _ = ping.tick() => {
                    if awaiting_pong {
                        break Some(counted(
                            "ping_timeout",
                            close::PING_TIMEOUT,
                            format!("no answer to a ping within {}", self.node.config.mcp.ws.ping_interval),
                        ));
                    }
                    awaiting_pong = true;
                    self.registration.keep_alive();
                    if ws.ping(b"devmesh").await.is_err() {
                        break None;
                    }
                }
            }
        };
        for (_, token) in self.inflight.lock().unwrap().drain() {
            token.cancel();
        }
        if let Some(reason) = reason {
            let _ = tokio::time::timeout(CLOSE_WAIT, ws.close(Some(reason))).await;
        }
        tracing::debug!(connection = %self.registration.info.id, "WebSocket connection closed");
    }

    /// One JSON-RPC message from the client.
    async fn incoming(&mut self, bytes: &[u8], kind: FrameKind) {
        self.link.saw(kind);
        let incoming = match Incoming::parse(bytes) {
            Ok(incoming) => incoming,
            Err(e) => {
                count_error(&e);
                self.link.send(kind, &e.to_message());
                return;
            }
        };
        match incoming {
            Incoming::Request { id, method, params } => {
                if let Err(e) = self.request(id.clone(), kind, method, params).await {
                    count_error(&e);
                    self.link.send(kind, &e.with_id(id).to_message());
                }
            }
            Incoming::Notification { method, params } => match method.as_str() {
                "notifications/initialized" => {
                    if let Some((session, _)) = &self.session {
                        session.mark_initialized();
                    }
                }
                "notifications/cancelled" => {
                    if let Some(id) = params.get("requestId")
                        && let Some(token) = self.inflight.lock().unwrap().remove(&id.to_string())
                    {
                        token.cancel();
                    }
                }
                _ => {}
            },
            Incoming::Response { id, outcome } => {
                let answered = self
                    .session
                    .as_ref()
                    .is_some_and(|(s, _)| s.requests.answer(&id, outcome));
                if !answered {
                    tracing::debug!(%id, "a response to no waiting request was ignored");
                }
            }
        }
    }

    async fn request(
        &mut self,
        id: Value,
        kind: FrameKind,
        method: String,
        params: Map<String, Value>,
    ) -> Result<(), RpcError> {
        if let Some((session, _)) = &self.session {
            if method == "initialize" {
                return Err(RpcError::invalid_request(
                    "this connection's session is already initialized; open another connection for another session",
                ));
            }
            let speaking = Speaking::InSession {
                session,
                streams: true,
            };
            let call = Call::start(
                &self.node,
                &self.mcp,
                self.grant.principal(),
                speaking,
                &params,
            )?;
            let session = Some(session.clone());
            self.spawn_request(call, session, id, kind, method, params);
            return Ok(());
        }
        let has_meta = object(&params, "_meta").is_some();
        if method == "initialize" && !has_meta {
            return self.initialize(id, kind, &params).await;
        }
        let (version, client_capabilities) = message_meta(&params).map_err(|e| {
            if has_meta {
                e
            } else {
                RpcError::invalid_request(format!(
                    "send initialize first (protocols {} and {}), or carry params._meta (protocol {})",
                    Version::V2025_11_25,
                    Version::V2025_06_18,
                    Version::V2026_07_28
                ))
            }
        })?;
        let speaking = Speaking::Alone {
            version,
            client_capabilities,
        };
        let call = Call::start(
            &self.node,
            &self.mcp,
            self.grant.principal(),
            speaking,
            &params,
        )?;
        if method == "subscriptions/listen" {
            let owner = crate::mcp::tasks::owner(&self.grant.principal());
            let listen = Listen::parse(id.clone(), &params, owner)?;
            self.spawn_listen(listen, call.0, id, kind);
            return Ok(());
        }
        self.spawn_request(call, None, id, kind, method, params);
        Ok(())
    }

    /// Opens the connection's session: the connection is the session.
    async fn initialize(
        &mut self,
        id: Value,
        kind: FrameKind,
        params: &Map<String, Value>,
    ) -> Result<(), RpcError> {
        let (version, capabilities) = engine::negotiate(params)?;
        let principal = self.grant.principal();
        let events = listen::follow(&self.node, &principal.organization_id).await?;
        let session = Session::new(version, principal, capabilities, 1);
        self.session = Some((session, events));
        self.link
            .send(kind, &response(&id, engine::initialize_result(version)));
        Ok(())
    }

    fn track(&self, id: &Value, token: CancellationToken) -> InflightGuard {
        let key = id.to_string();
        self.inflight.lock().unwrap().insert(key.clone(), token);
        InflightGuard {
            inflight: self.inflight.clone(),
            key,
        }
    }

    /// Runs a request on the node's runtime; what it sends before its result, then the
    /// result, go out in the kind of frame the request came in.
    fn spawn_request(
        &self,
        (mut call, mut outbound): (Call, mpsc::UnboundedReceiver<Value>),
        session: Option<Arc<Session>>,
        id: Value,
        kind: FrameKind,
        method: String,
        params: Map<String, Value>,
    ) {
        let guard = self.track(&id, call.cancel.clone());
        let link = self.link.clone();
        let (node, mcp) = (self.node.clone(), self.mcp.clone());
        let grant = self.grant.clone();
        let started = std::time::Instant::now();
        self.node.runtime.spawn(async move {
            let _guard = guard;
            // Authorized now, not when the connection opened; a refusal is answered
            // before the connection closes.
            let checked = grant.check(&node, &mcp.tenancy).await;
            if let Err(e) = &checked {
                let e = unauthorized(e);
                count_error(&e);
                link.send(kind, &e.with_id(id).to_message());
                grant.settle(&checked);
                return;
            }
            grant.settle(&checked);
            if let Ok(principal) = checked {
                call.principal = principal;
            }
            if let Err(e) = charge(&node, &call.principal).await {
                count_error(&e);
                link.send(kind, &e.with_id(id).to_message());
                return;
            }
            let work = perform(&mcp, &call, session.as_ref(), &method, &params);
            tokio::pin!(work);
            let outcome = loop {
                tokio::select! {
                    biased;
                    Some(message) = outbound.recv() => { link.send(kind, &message); }
                    outcome = &mut work => break outcome,
                }
            };
            while let Ok(message) = outbound.try_recv() {
                link.send(kind, &message);
            }
            let label = match answer(Ok(outcome), &id) {
                Some(Ok(message)) => {
                    link.send(kind, &message);
                    "ok"
                }
                Some(Err(e)) => {
                    link.send(kind, &e.to_message());
                    "error"
                }
                None => "cancelled",
            };
            let method = method_label(Some(&method));
            metrics::counter!("devmesh_mcp_requests_total", "method" => method, "outcome" => label)
                .increment(1);
            metrics::histogram!("devmesh_mcp_request_duration_seconds", "method" => method)
                .record(started.elapsed().as_secs_f64());
        });
    }

    /// `subscriptions/listen`: notifications tagged with the request's id until the
    /// client cancels the request or the connection closes. On its own task, which first
    /// reads what the stream names (with `call`, as the caller) while the connection goes
    /// on.
    fn spawn_listen(&self, listen: Listen, call: Call, id: Value, kind: FrameKind) {
        let token = CancellationToken::new();
        let guard = self.track(&id, token.clone());
        let link = self.link.clone();
        let node = self.node.clone();
        let organization_id = self.grant.principal().organization_id;
        let mcp = self.mcp.clone();
        self.node.runtime.spawn(async move {
            let _guard = guard;
            if let Err(e) =
                crate::mcp::engine::refuse_unreadable(&mcp, &call, listen.resources()).await
            {
                link.send(kind, &e.with_id(id).to_message());
                return;
            }
            drop(call);
            let mut events = match listen::follow(&node, &organization_id).await {
                Ok(events) => events,
                Err(e) => {
                    link.send(kind, &e.with_id(id).to_message());
                    return;
                }
            };
            link.send(kind, &listen.acknowledgement());
            loop {
                tokio::select! {
                    _ = token.cancelled() => return,
                    change = events.recv() => {
                        let Some(change) = change else { return };
                        if let Some(message) = listen.message_for(&change)
                            && !link.send(kind, &message)
                        {
                            return;
                        }
                    }
                }
            }
        });
    }
}

/// Forgets a finished request, so that a later cancellation of its id does nothing.
struct InflightGuard {
    inflight: Inflight,
    key: String,
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.inflight.lock().unwrap().remove(&self.key);
    }
}

/// A request whose credential no longer stands; the database or bus being away is a
/// retryable internal error.
fn unauthorized(e: &crate::service::ServiceError) -> RpcError {
    match e {
        crate::service::ServiceError::Unauthenticated(message) => {
            RpcError::new(code::UNAUTHENTICATED, message.clone())
        }
        e => {
            tracing::warn!(error = %e, "cannot authorize a WebSocket request");
            RpcError::internal()
        }
    }
}

/// The close of a connection whose credential no longer stands.
fn credential_ended(ended: &Ended) -> CloseReason {
    let code = match ended.kind {
        EndKind::Revoked => close::CREDENTIAL_REVOKED,
        EndKind::Expired => close::CREDENTIAL_EXPIRED,
        EndKind::Reduced => close::CREDENTIAL_REDUCED,
    };
    counted("credential", code, ended.message.clone())
}

/// A request over WebSocket is charged to the same rate limits as one over HTTP.
async fn charge(node: &Context, principal: &Principal) -> Result<(), RpcError> {
    match check_limits(node, principal).await {
        Some(d) if !d.allowed => Err(RpcError::new(
            code::RATE_LIMITED,
            format!(
                "rate limit exceeded; retry in {} ms",
                d.retry_after.as_millis().max(1)
            ),
        )
        .with_data(serde_json::json!({
            "reason": "rate_limited",
            "retryAfterMs": d.retry_after.as_millis() as u64
        }))),
        _ => Ok(()),
    }
}

/// The next change of the session's tenant; pending forever without a session.
async fn next_change(session: &mut Option<(Arc<Session>, TenantEvents)>) -> Change {
    match session {
        Some((_, events)) => match events.recv().await {
            Some(change) => change,
            None => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

async fn write(ws: &mut actix_ws::Session, out: Outgoing) -> Result<(), actix_ws::Closed> {
    match out {
        Outgoing::Text(text) => ws.text(text).await,
        Outgoing::Binary(bytes) => ws.binary(bytes).await,
    }
}

/// A close reason; its description is cut to the 123 bytes a close frame can carry
/// (RFC 6455, section 5.5: control frames carry at most 125 bytes, two for the code).
fn reason(code: CloseCode, description: impl Into<String>) -> CloseReason {
    let mut description = description.into();
    if description.len() > 123 {
        let mut end = 120;
        while !description.is_char_boundary(end) {
            end -= 1;
        }
        description.truncate(end);
        description.push_str("...");
    }
    CloseReason {
        code,
        description: Some(description),
    }
}

fn counted(label: &'static str, code: u16, description: String) -> CloseReason {
    metrics::counter!("devmesh_ws_closed_total", "reason" => label).increment(1);
    reason(CloseCode::Other(code), description)
}

fn slow_consumer(node: &Context) -> CloseReason {
    counted(
        "slow_consumer",
        close::SLOW_CONSUMER,
        format!(
            "slow consumer: {} messages waited unread (mcp.ws.outbound_queue)",
            node.config.mcp.ws.outbound_queue
        ),
    )
}

fn protocol_error(e: actix_ws::ProtocolError) -> CloseReason {
    use actix_ws::ProtocolError as P;
    // RFC 6455, section 7.4.1: 1009 for a message too big, 1007 for data that does not
    // match its type (a text frame that is not UTF-8), 1002 for the rest.
    let (code, label) = match &e {
        P::Overflow => (1009, "too_large"),
        P::Io(io) if io.kind() == std::io::ErrorKind::InvalidData => (1007, "bad_frame"),
        _ => (1002, "protocol_error"),
    };
    counted(label, code, e.to_string())
}
