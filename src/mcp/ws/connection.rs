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
use crate::http::auth::check_limits;
use crate::mcp::call::{Call, Speaking};
use crate::mcp::engine;
use crate::mcp::listen::{self, Listen};
use crate::mcp::protocol::{Incoming, RpcError, Version, code, response};
use crate::mcp::respond::{answer, count_error, method_label, perform};
use crate::mcp::sessions::Session;
use crate::mcp::stateless::{message_meta, object};
use crate::tenancy::Principal;

/// Close codes of our own (4000-4999 are for applications).
pub mod close {
    /// The client stopped reading and its outbound queue filled up.
    pub const SLOW_CONSUMER: u16 = 4001;
    /// The client did not answer a ping before the next one was due.
    pub const PING_TIMEOUT: u16 = 4002;
}

/// How long a closing handshake may wait on a client that is not reading.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

type Inflight = Arc<Mutex<HashMap<String, CancellationToken>>>;

pub(super) struct Connection {
    pub node: Context,
    pub principal: Principal,
    pub link: Arc<Link>,
    pub registration: Registration,
    session: Option<(Arc<Session>, TenantEvents)>,
    inflight: Inflight,
}

impl Connection {
    pub fn new(
        node: Context,
        principal: Principal,
        link: Arc<Link>,
        registration: Registration,
    ) -> Self {
        Self {
            node,
            principal,
            link,
            registration,
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
        let closing = self.node.mcp.hub.closing().clone();
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
            let call = Call::start(&self.node, self.principal.clone(), speaking, &params)?;
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
        if method == "subscriptions/listen" {
            let listen = Listen::parse(id.clone(), &params)?;
            self.spawn_listen(listen, id, kind);
            return Ok(());
        }
        let speaking = Speaking::Alone {
            version,
            client_capabilities,
        };
        let call = Call::start(&self.node, self.principal.clone(), speaking, &params)?;
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
        let events = listen::follow(&self.node, &self.principal.organization_id).await?;
        let session = Session::new(version, self.principal.clone(), capabilities, 1);
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
        (call, mut outbound): (Call, mpsc::UnboundedReceiver<Value>),
        session: Option<Arc<Session>>,
        id: Value,
        kind: FrameKind,
        method: String,
        params: Map<String, Value>,
    ) {
        let guard = self.track(&id, call.cancel.clone());
        let link = self.link.clone();
        let node = self.node.clone();
        let started = std::time::Instant::now();
        self.node.runtime.spawn(async move {
            let _guard = guard;
            if let Err(e) = charge(&node, &call.principal).await {
                count_error(&e);
                link.send(kind, &e.with_id(id).to_message());
                return;
            }
            let work = perform(&node.mcp, &call, session.as_ref(), &method, &params);
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
    /// client cancels the request or the connection closes.
    fn spawn_listen(&self, listen: Listen, id: Value, kind: FrameKind) {
        let token = CancellationToken::new();
        let guard = self.track(&id, token.clone());
        let link = self.link.clone();
        let node = self.node.clone();
        let organization_id = self.principal.organization_id.clone();
        self.node.runtime.spawn(async move {
            let _guard = guard;
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
        .with_data(serde_json::json!({ "retryAfterMs": d.retry_after.as_millis() as u64 }))),
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

fn reason(code: CloseCode, description: impl Into<String>) -> CloseReason {
    CloseReason {
        code,
        description: Some(description.into()),
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
    let code = match e {
        P::Overflow => 1009,
        _ => 1002,
    };
    let label = if code == 1009 {
        "too_large"
    } else {
        "protocol_error"
    };
    counted(label, code, e.to_string())
}
