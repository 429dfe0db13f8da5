//! Sessions of the older protocols (2025-06-18, 2025-11-25): made by `initialize`, named by
//! `Mcp-Session-Id`, ended by DELETE, by idleness, or when the credential it goes on with
//! no longer stands (its [`Grant`] ends: the GET stream gets a last `notifications/message`
//! saying why, then ends). A session belongs to the principal that made it and lives on the
//! node that made it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::call::{ClientRequests, LogLevel};
use super::notices::Notice;
use super::protocol::Version;
use crate::context::Context;
use crate::events::{Change, TenantEvents};
use crate::tenancy::Principal;
use crate::tenancy::grants::{Ended, Grant};

/// The last message of a session or stream whose credential no longer stands: a log
/// message at level error, whatever level the client asked for, since it explains why the
/// stream ends. `data.reason` is `revoked`, `expired` or `reduced`.
pub fn ended_notice(ended: &Ended) -> Value {
    super::protocol::notification(
        "notifications/message",
        serde_json::json!({
            "level": "error",
            "logger": "devmesh",
            "data": { "reason": ended.kind.label(), "message": ended.message },
        }),
    )
}

/// A message on the session's own stream (the GET stream), with its event id.
pub type StreamEvent = (u64, Arc<str>);

/// Server messages that belong to no request: kept for replay, and pushed to the
/// GET stream while one is open.
struct ServerStream {
    next_id: u64,
    replay: VecDeque<StreamEvent>,
    capacity: usize,
    live: Option<mpsc::UnboundedSender<StreamEvent>>,
}

pub struct Session {
    pub id: String,
    pub version: Version,
    pub principal: Principal,
    pub client_capabilities: Arc<Map<String, Value>>,
    pub requests: Arc<ClientRequests>,
    /// The authority its streams go on with (`None` for a WebSocket's session: the
    /// connection holds the grant).
    grant: Option<Arc<Grant>>,
    log_level: Mutex<Option<LogLevel>>,
    subscriptions: Mutex<HashSet<String>>,
    stream: Mutex<ServerStream>,
    inflight: Mutex<HashMap<String, CancellationToken>>,
    last_used: Mutex<Instant>,
    initialized: AtomicBool,
    closed: CancellationToken,
}

impl Session {
    /// Whether `principal` may use this session: the same key or user that opened it.
    pub fn belongs_to(&self, principal: &Principal) -> bool {
        principal.organization_id == self.principal.organization_id
            && principal.actor_id() == self.principal.actor_id()
    }

    /// Goes on with the credential of the session's latest request.
    pub fn renew(&self, credential: Option<&str>, principal: &Principal) {
        if let Some(grant) = &self.grant {
            grant.renew(credential, principal);
        }
    }

    pub fn touch(&self) {
        *self.last_used.lock().unwrap() = Instant::now();
    }

    pub fn mark_initialized(&self) {
        self.initialized.store(true, Ordering::Relaxed);
    }

    pub fn log_level(&self) -> Option<LogLevel> {
        *self.log_level.lock().unwrap()
    }

    pub fn set_log_level(&self, level: LogLevel) {
        *self.log_level.lock().unwrap() = Some(level);
    }

    pub fn subscribe(&self, uri: &str) {
        self.subscriptions.lock().unwrap().insert(uri.to_string());
    }

    pub fn unsubscribe(&self, uri: &str) {
        self.subscriptions.lock().unwrap().remove(uri);
    }

    fn is_subscribed(&self, uri: &str) -> bool {
        self.subscriptions.lock().unwrap().contains(uri)
    }

    /// Sends a message on the session's stream (and keeps it for replay).
    pub fn push(&self, message: &Value) {
        let text: Arc<str> = message.to_string().into();
        let mut stream = self.stream.lock().unwrap();
        stream.next_id += 1;
        let event = (stream.next_id, text);
        if stream.replay.len() == stream.capacity {
            stream.replay.pop_front();
        }
        stream.replay.push_back(event.clone());
        if let Some(live) = &stream.live
            && live.send(event).is_err()
        {
            stream.live = None;
        }
    }

    /// Opens the session's stream, replacing an earlier one; with `after`, first replays
    /// the kept messages that came after that event id.
    pub fn open_stream(&self, after: Option<u64>) -> mpsc::UnboundedReceiver<StreamEvent> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut stream = self.stream.lock().unwrap();
        if let Some(after) = after {
            for event in stream.replay.iter().filter(|(id, _)| *id > after) {
                let _ = tx.send(event.clone());
            }
        }
        stream.live = Some(tx);
        rx
    }

    /// Registers a running request, so that `notifications/cancelled` can stop it.
    pub fn track(&self, request_id: &Value, token: CancellationToken) {
        self.inflight
            .lock()
            .unwrap()
            .insert(request_id.to_string(), token);
    }

    pub fn untrack(&self, request_id: &Value) {
        self.inflight
            .lock()
            .unwrap()
            .remove(&request_id.to_string());
    }

    /// Stops a running request; false if there is none with that id.
    pub fn cancel(&self, request_id: &Value) -> bool {
        match self
            .inflight
            .lock()
            .unwrap()
            .remove(&request_id.to_string())
        {
            Some(token) => {
                token.cancel();
                true
            }
            None => false,
        }
    }

    pub fn closed(&self) -> &CancellationToken {
        &self.closed
    }

    fn close(&self) {
        self.closed.cancel();
        for (_, token) in self.inflight.lock().unwrap().drain() {
            token.cancel();
        }
        self.stream.lock().unwrap().live = None;
    }

    /// A session of its own, in no node's map: a WebSocket connection's.
    pub fn new(
        version: Version,
        principal: Principal,
        client_capabilities: Map<String, Value>,
        replay_capacity: usize,
    ) -> Arc<Self> {
        Self::build(
            version,
            principal,
            None,
            client_capabilities,
            replay_capacity,
        )
    }

    fn build(
        version: Version,
        principal: Principal,
        grant: Option<Arc<Grant>>,
        client_capabilities: Map<String, Value>,
        replay_capacity: usize,
    ) -> Arc<Self> {
        Arc::new(Session {
            id: format!("mcp-{}", uuid::Uuid::now_v7().simple()),
            version,
            principal,
            client_capabilities: Arc::new(client_capabilities),
            requests: Arc::new(ClientRequests::default()),
            grant,
            log_level: Mutex::new(None),
            subscriptions: Mutex::new(HashSet::new()),
            stream: Mutex::new(ServerStream {
                next_id: 0,
                replay: VecDeque::new(),
                capacity: replay_capacity.max(1),
                live: None,
            }),
            inflight: Mutex::new(HashMap::new()),
            last_used: Mutex::new(Instant::now()),
            initialized: AtomicBool::new(false),
            closed: CancellationToken::new(),
        })
    }

    /// The notification a tenant change makes in this session, if any: list changes
    /// always, resource updates only for the resources it subscribed to; task changes
    /// never (sessions follow tasks with `tasks/get`).
    pub fn notice_for(&self, change: &Change) -> Option<Value> {
        self.wants(change).then(|| Notice::of(change).message(None))
    }

    /// Whether a tenant change makes a notification in this session (see
    /// [`Session::notice_for`]).
    pub fn wants(&self, change: &Change) -> bool {
        match Notice::of(change) {
            Notice::ResourceUpdated(uri) => self.is_subscribed(&uri),
            Notice::TaskStatus { .. } => false,
            _ => true,
        }
    }

    /// Turns tenant changes into this session's notifications until it closes; ends the
    /// session when its grant ends.
    async fn follow(self: Arc<Self>, mut events: TenantEvents, sessions: Weak<Sessions>) {
        let grant = self.grant.clone();
        let grant_ended = async {
            match &grant {
                Some(grant) => grant.ended().await.clone(),
                None => std::future::pending().await,
            }
        };
        tokio::pin!(grant_ended);
        loop {
            let change = tokio::select! {
                _ = self.closed.cancelled() => return,
                ended = &mut grant_ended => {
                    self.push(&ended_notice(&ended));
                    if let Some(sessions) = sessions.upgrade() {
                        sessions.remove(&self.id);
                    }
                    tracing::debug!(session = %self.id, reason = ended.kind.label(), "MCP session ended: its credential no longer stands");
                    return;
                }
                change = events.recv() => match change {
                    Some(change) => change,
                    None => return,
                },
            };
            if let Some(message) = self.notice_for(&change) {
                self.push(&message);
            }
        }
    }
}

/// The sessions of this node.
pub struct Sessions {
    map: RwLock<HashMap<String, Arc<Session>>>,
    idle_timeout: Duration,
    replay_capacity: usize,
    reaper: std::sync::Once,
}

impl Sessions {
    pub fn new(idle_timeout: Duration, replay_capacity: usize) -> Self {
        Self {
            map: RwLock::new(HashMap::new()),
            idle_timeout,
            replay_capacity: replay_capacity.max(1),
            reaper: std::sync::Once::new(),
        }
    }

    /// Opens a session that goes on with `grant`, and starts following its tenant's
    /// changes.
    pub async fn open(
        self: &Arc<Self>,
        node: &Context,
        version: Version,
        grant: Arc<Grant>,
        client_capabilities: Map<String, Value>,
    ) -> Result<Arc<Session>, crate::bus::pubsub::PubSubError> {
        let principal = grant.principal();
        let organization_id = principal.organization_id.clone();
        let session = Session::build(
            version,
            principal,
            Some(grant),
            client_capabilities,
            self.replay_capacity,
        );
        // Only what makes a notification here is handed to the session.
        let weak = Arc::downgrade(&session);
        let wants =
            Arc::new(move |change: &Change| weak.upgrade().is_some_and(|s| s.wants(change)));
        let events = TenantEvents::subscribe_to(node, &organization_id, wants).await?;
        node.runtime
            .spawn(session.clone().follow(events, Arc::downgrade(self)));
        self.map
            .write()
            .unwrap()
            .insert(session.id.clone(), session.clone());
        metrics::gauge!("devmesh_mcp_sessions_open").increment(1.0);
        self.start_reaper(node);
        Ok(session)
    }

    /// A live session by id; an idle-expired one is closed and not returned.
    pub fn get(&self, id: &str) -> Option<Arc<Session>> {
        let session = self.map.read().unwrap().get(id).cloned()?;
        if session.last_used.lock().unwrap().elapsed() > self.idle_timeout {
            self.remove(id);
            return None;
        }
        session.touch();
        Some(session)
    }

    /// Ends a session; false if there was none.
    pub fn remove(&self, id: &str) -> bool {
        match self.map.write().unwrap().remove(id) {
            Some(session) => {
                session.close();
                metrics::gauge!("devmesh_mcp_sessions_open").decrement(1.0);
                true
            }
            None => false,
        }
    }

    fn start_reaper(self: &Arc<Self>, node: &Context) {
        self.reaper.call_once(|| {
            let sessions = Arc::downgrade(self);
            let every =
                (self.idle_timeout / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
            node.runtime.spawn(async move {
                let mut tick = tokio::time::interval(every);
                loop {
                    tick.tick().await;
                    let Some(sessions) = sessions.upgrade() else {
                        return;
                    };
                    let idle: Vec<String> = sessions
                        .map
                        .read()
                        .unwrap()
                        .values()
                        .filter(|s| s.last_used.lock().unwrap().elapsed() > sessions.idle_timeout)
                        .map(|s| s.id.clone())
                        .collect();
                    for id in idle {
                        tracing::debug!(session = %id, "MCP session ended after being idle");
                        sessions.remove(&id);
                    }
                }
            });
        });
    }
}
