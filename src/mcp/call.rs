//! What a provider gets with each request: who is calling, under which protocol, and a way
//! to talk back (progress, log messages, requests to the client) while it works.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Map, Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::protocol::{RpcError, Version, code, meta, notification};
use super::sessions::Session;
use super::stateless::object;
use crate::context::Context;
use crate::tenancy::Principal;

/// Severity of a log message (RFC 5424 order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Debug,
    Info,
    Notice,
    Warning,
    Error,
    Critical,
    Alert,
    Emergency,
}

impl LogLevel {
    const NAMES: [(&'static str, LogLevel); 8] = [
        ("debug", Self::Debug),
        ("info", Self::Info),
        ("notice", Self::Notice),
        ("warning", Self::Warning),
        ("error", Self::Error),
        ("critical", Self::Critical),
        ("alert", Self::Alert),
        ("emergency", Self::Emergency),
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Self::NAMES.iter().find(|(n, _)| *n == s).map(|(_, l)| *l)
    }

    pub fn as_str(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, l)| *l == self)
            .expect("every level is named")
            .0
    }
}

/// `data.reason` of the error [`Call::ask_client`] returns when the client answered with
/// an error (its error object in `data.clientError`).
pub const CLIENT_ERROR: &str = "client_error";

/// Requests the server has sent a client and is waiting on, by id.
#[derive(Default)]
pub struct ClientRequests {
    next: AtomicU64,
    waiting: std::sync::Mutex<HashMap<String, oneshot::Sender<Result<Value, Value>>>>,
}

impl ClientRequests {
    fn open(&self) -> (String, oneshot::Receiver<Result<Value, Value>>) {
        let id = format!("devmesh-{}", self.next.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().unwrap().insert(id.clone(), tx);
        (id, rx)
    }

    fn forget(&self, id: &str) {
        self.waiting.lock().unwrap().remove(id);
    }

    /// Hands the client's answer to whoever asked; false if nobody is waiting for it.
    pub fn answer(&self, id: &Value, outcome: Result<Value, Value>) -> bool {
        let Some(id) = id.as_str() else { return false };
        match self.waiting.lock().unwrap().remove(id) {
            Some(tx) => tx.send(outcome).is_ok(),
            None => false,
        }
    }
}

/// The way back to the client for one request: messages sent here reach the client on
/// the request's response stream, before the result.
#[derive(Clone, Default)]
pub struct Outbound {
    tx: Option<mpsc::UnboundedSender<Value>>,
    progress_token: Option<Value>,
    log_level: Option<LogLevel>,
    requests: Option<Arc<ClientRequests>>,
    /// How long a request to the client waits for its answer (`mcp.client_request_timeout`).
    answer_within: std::time::Duration,
}

impl Outbound {
    pub fn new(
        tx: mpsc::UnboundedSender<Value>,
        progress_token: Option<Value>,
        log_level: Option<LogLevel>,
        requests: Option<Arc<ClientRequests>>,
        answer_within: std::time::Duration,
    ) -> Self {
        Self {
            tx: Some(tx),
            progress_token,
            log_level,
            requests,
            answer_within,
        }
    }

    fn send(&self, message: Value) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(message);
        }
    }

    /// `notifications/progress`, when the client asked for progress with a token.
    pub fn progress(&self, progress: f64, total: Option<f64>, message: Option<String>) {
        let Some(token) = &self.progress_token else {
            return;
        };
        let mut params = json!({ "progressToken": token, "progress": progress });
        if let Some(total) = total {
            params["total"] = json!(total);
        }
        if let Some(message) = message {
            params["message"] = json!(message);
        }
        self.send(notification("notifications/progress", params));
    }

    /// `notifications/message`, when the client asked for messages of this level.
    pub fn log(&self, level: LogLevel, logger: &str, data: Value) {
        if self.log_level.is_some_and(|min| level >= min) {
            self.send(notification(
                "notifications/message",
                json!({ "level": level.as_str(), "logger": logger, "data": data }),
            ));
        }
    }

    /// Sends the client a request and waits for its answer (see [`Call::ask_client`]).
    async fn request(&self, method: &str, params: Value) -> Result<Value, RpcError> {
        let (Some(requests), Some(_)) = (&self.requests, &self.tx) else {
            return Err(RpcError::new(
                code::INVALID_REQUEST,
                format!("{method} needs a session with a response stream"),
            ));
        };
        let (id, rx) = requests.open();
        self.send(json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }));
        let answer = tokio::time::timeout(self.answer_within, rx).await;
        // An answer that comes later is refused (400): nobody waits for it.
        requests.forget(&id);
        match answer {
            Ok(Ok(Ok(result))) => Ok(result),
            Ok(Ok(Err(error))) => Err(RpcError::new(
                code::INTERNAL_ERROR,
                format!("the client answered {method} with an error: {error}"),
            )
            .with_data(json!({ "reason": CLIENT_ERROR, "clientError": error }))),
            Ok(Err(_)) => Err(RpcError::new(
                code::INTERNAL_ERROR,
                format!("the client did not answer {method}"),
            )),
            Err(_) => Err(RpcError::new(
                code::INTERNAL_ERROR,
                format!(
                    "the client did not answer {method} within {} s (mcp.client_request_timeout)",
                    self.answer_within.as_secs()
                ),
            )
            .with_data(json!({ "reason": "client_timeout" }))),
        }
    }
}

/// One request as a provider sees it.
pub struct Call {
    pub node: Context,
    /// The MCP's state on this node: the catalog, the sessions, the running tasks.
    pub mcp: Arc<super::Mcp>,
    pub principal: Principal,
    pub version: Version,
    /// Shared with the session, not copied per request.
    pub client_capabilities: Arc<Map<String, Value>>,
    /// Answers to an earlier input-required result (protocol 2026-07-28).
    pub input_responses: Option<Map<String, Value>>,
    /// The `requestState` an earlier input-required result carried, echoed back.
    pub request_state: Option<String>,
    pub out: Outbound,
    /// Cancelled when the client cancels the request or goes away.
    pub cancel: CancellationToken,
    /// The request's `Mcp-Param-*` headers (lowercase name, value as sent) when it came
    /// over Streamable HTTP under 2026-07-28; `None` on a transport without headers.
    pub param_headers: Option<Vec<(String, String)>>,
    /// Whether the client negotiated the tasks extension, for its session or for this
    /// request (see [`super::tasks`]).
    pub tasks_negotiated: bool,
    /// The task this call is a round of, when it runs as one.
    pub task_id: Option<String>,
}

impl Call {
    /// Whether a tool may answer this call with [`super::tasks::escalate`]: the client
    /// negotiated tasks and the call is not already a task's round. A provider asks this
    /// only for its tools whose task support is optional or required.
    pub fn can_escalate(&self) -> bool {
        self.tasks_negotiated && self.task_id.is_none()
    }

    pub fn client_can(&self, capability: &str) -> bool {
        self.client_capabilities.contains_key(capability)
    }

    /// Asks the client (sampling, elicitation, roots) and waits for its answer. Only
    /// sessions with a response stream can; under protocol 2026-07-28 a provider returns
    /// an input-required result instead. A client that did not declare the capability
    /// is not asked.
    pub async fn ask_client(&self, method: &str, params: Value) -> Result<Value, RpcError> {
        if let Some(capability) = capability_for(method)
            && !self.client_can(capability)
        {
            return Err(RpcError::missing_capability(capability, method));
        }
        self.out.request(method, params).await
    }

    /// Refuses an input-required result whose requests (`inputRequests`, by key) this
    /// client cannot answer: -32021 naming the capability it did not declare (SEP-2575,
    /// "Missing Required Capabilities"), rather than a request left unanswered. `what`
    /// says who asked.
    pub fn check_answerable(
        &self,
        what: &str,
        requests: &Map<String, Value>,
    ) -> Result<(), RpcError> {
        for request in requests.values() {
            let method = request.get("method").and_then(Value::as_str).unwrap_or("");
            if let Some(capability) = capability_for(method)
                && !self.client_can(capability)
            {
                return Err(RpcError::missing_capability(capability, what));
            }
        }
        Ok(())
    }

    /// The same call, for its next round: with the client's answers to the last round's
    /// input requests, and the state the tool sealed for this one.
    pub fn next_round(
        &self,
        input_responses: Map<String, Value>,
        request_state: Option<String>,
    ) -> Call {
        Call {
            node: self.node.clone(),
            mcp: self.mcp.clone(),
            principal: self.principal.clone(),
            version: self.version,
            client_capabilities: self.client_capabilities.clone(),
            input_responses: Some(input_responses),
            request_state,
            out: self.out.clone(),
            cancel: self.cancel.clone(),
            param_headers: self.param_headers.clone(),
            tasks_negotiated: self.tasks_negotiated,
            task_id: self.task_id.clone(),
        }
    }
}

/// The client capability a server-to-client request needs.
fn capability_for(method: &str) -> Option<&'static str> {
    match method {
        "sampling/createMessage" => Some("sampling"),
        "elicitation/create" => Some("elicitation"),
        "roots/list" => Some("roots"),
        _ => None,
    }
}

/// How a request is spoken: on its own (2026-07-28) or in a session.
pub enum Speaking<'a> {
    Alone {
        version: Version,
        client_capabilities: Map<String, Value>,
    },
    InSession {
        session: &'a Arc<Session>,
        /// Whether the answer can be a stream (and so carry requests to the client).
        streams: bool,
    },
}

impl Call {
    /// A request's call, and the receiving end of its way back to the client.
    pub fn start(
        node: &Context,
        mcp: &Arc<super::Mcp>,
        principal: Principal,
        speaking: Speaking<'_>,
        params: &Map<String, Value>,
    ) -> Result<(Call, mpsc::UnboundedReceiver<Value>), RpcError> {
        // Tasks are negotiated for the session, or for this request alone (SEP-2575).
        let per_request = object(params, "_meta")
            .and_then(|m| m.get(meta::CLIENT_CAPABILITIES))
            .and_then(Value::as_object)
            .is_some_and(super::tasks::declared);
        let (version, client_capabilities, log_level, requests) = match speaking {
            Speaking::Alone {
                version,
                client_capabilities,
            } => {
                // Log messages only for a request that asks for them, at its level.
                let level = object(params, "_meta")
                    .and_then(|m| m.get(meta::LOG_LEVEL))
                    .and_then(Value::as_str)
                    .and_then(LogLevel::parse);
                (version, Arc::new(client_capabilities), level, None)
            }
            Speaking::InSession { session, streams } => (
                session.version,
                session.client_capabilities.clone(),
                session.log_level(),
                // Requests to the client travel on the response stream: without one, none.
                streams.then(|| session.requests.clone()),
            ),
        };
        let progress_token = object(params, "_meta")
            .and_then(|m| m.get("progressToken"))
            .cloned();
        let input_responses = match params.get("inputResponses") {
            None | Some(Value::Null) => None,
            Some(Value::Object(map)) => Some(map.clone()),
            Some(_) => {
                return Err(RpcError::invalid_params(
                    "\"inputResponses\" must be an object",
                ));
            }
        };
        let request_state = match params.get("requestState") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                return Err(RpcError::invalid_params(
                    "\"requestState\" must be a string",
                ));
            }
        };
        let tasks_negotiated = per_request || super::tasks::declared(&client_capabilities);
        let (tx, rx) = mpsc::unbounded_channel();
        let answer_within = node.config.mcp.client_request_timeout.get();
        let out = Outbound::new(tx, progress_token, log_level, requests, answer_within);
        Ok((
            Call {
                node: node.clone(),
                mcp: mcp.clone(),
                principal,
                version,
                client_capabilities,
                input_responses,
                request_state,
                out,
                cancel: CancellationToken::new(),
                param_headers: None,
                tasks_negotiated,
                task_id: None,
            },
            rx,
        ))
    }
}
