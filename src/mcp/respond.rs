//! Answering a request: its work runs on the node's runtime, and the answer is plain JSON
//! when the work sends nothing before its result, otherwise an event stream of its
//! messages and then the result. Cancellation (or the client going away) drops the work.

use std::sync::Arc;

use actix_web::HttpRequest;
use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::web::{self, Bytes};
use futures_util::stream;
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::call::Call;
use super::endpoint::accepts_sse;
use super::protocol::{RpcError, response};
use super::sessions::Session;
use super::{engine, sse};
use crate::context::Context;

pub(super) fn count_error(e: &RpcError) {
    metrics::counter!("devmesh_mcp_errors_total", "code" => engine::error_label(e)).increment(1);
}

pub(super) fn json_response(status: StatusCode, message: &Value) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("application/json")
        .body(serde_json::to_vec(message).expect("messages serialize"))
}

/// Cancels a request's work when its HTTP exchange goes away before it finished.
struct CancelOnDrop {
    token: CancellationToken,
    session: Option<(Arc<Session>, Value)>,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.token.cancel();
        if let Some((session, id)) = &self.session {
            session.untrack(id);
        }
    }
}

/// Runs a request on the node's runtime. The answer is plain JSON when the work sends
/// nothing before its result; otherwise an event stream of its messages, then the result.
pub(super) async fn run(
    req: &HttpRequest,
    ctx: &web::Data<Context>,
    (call, mut rx): (Call, mpsc::UnboundedReceiver<Value>),
    session: Option<Arc<Session>>,
    id: Value,
    method: String,
    params: Map<String, Value>,
) -> HttpResponse {
    let stateless = call.version.is_stateless();
    let token = call.cancel.clone();
    if let Some(s) = &session {
        s.track(&id, token.clone());
    }
    let guard = CancelOnDrop {
        token: token.clone(),
        session: session.clone().map(|s| (s, id.clone())),
    };
    let mcp = call.mcp.clone();
    let mut task = ctx
        .runtime
        .spawn(async move { perform(&mcp, &call, session.as_ref(), &method, &params).await });
    let wants_stream = accepts_sse(req);
    let first = if wants_stream {
        tokio::select! {
            biased;
            done = &mut task => Err(done),
            message = rx.recv() => match message {
                Some(message) => Ok(sse::event(None, &message.to_string())),
                // The work dropped its way back: it has finished.
                None => Err((&mut task).await),
            },
            // Slow work is answered on a stream, so that a client who hangs up is noticed
            // (and its work cancelled) rather than waited for.
            _ = tokio::time::sleep(STREAM_AFTER) => Ok(sse::keepalive()),
        }
    } else {
        Err((&mut task).await)
    };
    match first {
        Err(done) => match rx.try_recv() {
            // Finished, with messages queued before the result: stream them all.
            Ok(message) if wants_stream => stream_response(
                Some(sse::event(None, &message.to_string())),
                rx,
                Finished::Done(answer(done, &id)),
                guard,
            ),
            _ => {
                drop(guard);
                match answer(done, &id) {
                    Some(Ok(message)) => json_response(StatusCode::OK, &message),
                    // The stateless protocol answers errors with their HTTP status; in a
                    // session a 4xx would read as a broken session.
                    Some(Err(e)) if stateless => json_response(e.status, &e.to_message()),
                    Some(Err(e)) => json_response(StatusCode::OK, &e.to_message()),
                    // Cancelled: the client asked for no answer.
                    None => HttpResponse::Accepted().finish(),
                }
            }
        },
        Ok(first) => stream_response(Some(first), rx, Finished::Running(task, id), guard),
    }
}

pub(super) type Outcome = Option<Result<Value, RpcError>>;

/// Does a request's work, unless it is cancelled first (or its client goes away): then
/// the work is dropped where it stands, and the outcome is `None`.
pub(super) async fn perform(
    mcp: &super::Mcp,
    call: &Call,
    session: Option<&Arc<Session>>,
    method: &str,
    params: &Map<String, Value>,
) -> Outcome {
    tokio::select! {
        result = engine::handle(mcp, call, session, method, params) => Some(result),
        _ = call.cancel.cancelled() => {
            metrics::counter!("devmesh_mcp_cancelled_total", "method" => method_label(Some(method)))
                .increment(1);
            None
        }
    }
}

/// The JSON-RPC message that ends a request: its result or its error; `None` when the
/// work was cancelled (or panicked, which is logged).
pub(super) fn answer(
    done: Result<Outcome, tokio::task::JoinError>,
    id: &Value,
) -> Option<Result<Value, RpcError>> {
    match done {
        Ok(Some(Ok(result))) => Some(Ok(response(id, result))),
        Ok(Some(Err(e))) => {
            count_error(&e);
            Some(Err(e.with_id(id.clone())))
        }
        Ok(None) => None,
        Err(e) => {
            tracing::error!(error = %e, "an MCP request failed unexpectedly");
            Some(Err(RpcError::internal().with_id(id.clone())))
        }
    }
}

enum Finished {
    Running(tokio::task::JoinHandle<Outcome>, Value),
    Done(Option<Result<Value, RpcError>>),
}

/// How long a request that accepts a stream is waited for before its answer becomes one.
const STREAM_AFTER: std::time::Duration = std::time::Duration::from_secs(1);
/// How often a stream whose work runs on says so (a comment): a client that hung up is
/// noticed at the latest then.
const KEEPALIVE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

fn stream_response(
    first: Option<Bytes>,
    rx: mpsc::UnboundedReceiver<Value>,
    finished: Finished,
    guard: CancelOnDrop,
) -> HttpResponse {
    let state = (first, rx, Some(finished), guard);
    let body = stream::unfold(state, |(first, mut rx, finished, guard)| async move {
        if let Some(bytes) = first {
            return Some((Ok(bytes), (None, rx, finished, guard)));
        }
        let finished = finished?;
        let done = match finished {
            Finished::Done(done) => {
                // Messages sent before the result go first.
                if let Ok(message) = rx.try_recv() {
                    let bytes = sse::event(None, &message.to_string());
                    return Some((Ok(bytes), (None, rx, Some(Finished::Done(done)), guard)));
                }
                done
            }
            Finished::Running(mut task, id) => {
                tokio::select! {
                    biased;
                    message = rx.recv(), if !rx.is_closed() || !rx.is_empty() => {
                        if let Some(message) = message {
                            let bytes = sse::event(None, &message.to_string());
                            return Some((Ok(bytes), (None, rx, Some(Finished::Running(task, id)), guard)));
                        }
                        let done = answer((&mut task).await, &id);
                        return continue_with(done, rx, guard);
                    }
                    done = &mut task => {
                        let done = answer(done, &id);
                        return continue_with(done, rx, guard);
                    }
                    _ = tokio::time::sleep(KEEPALIVE_EVERY) => {
                        return Some((Ok(sse::keepalive()), (None, rx, Some(Finished::Running(task, id)), guard)));
                    }
                }
            }
        };
        final_event(done).map(|bytes| (Ok(bytes), (None, rx, None, guard)))
    });
    sse::response(body)
}

type StreamState = (
    Option<Bytes>,
    mpsc::UnboundedReceiver<Value>,
    Option<Finished>,
    CancelOnDrop,
);

/// After the work finished: drain what it sent, then the result.
fn continue_with(
    done: Option<Result<Value, RpcError>>,
    mut rx: mpsc::UnboundedReceiver<Value>,
    guard: CancelOnDrop,
) -> Option<(Result<Bytes, actix_web::Error>, StreamState)> {
    if let Ok(message) = rx.try_recv() {
        let bytes = sse::event(None, &message.to_string());
        return Some((Ok(bytes), (None, rx, Some(Finished::Done(done)), guard)));
    }
    final_event(done).map(|bytes| (Ok(bytes), (None, rx, None, guard)))
}

fn final_event(done: Option<Result<Value, RpcError>>) -> Option<Bytes> {
    let message = match done? {
        Ok(message) => message,
        Err(e) => e.to_message(),
    };
    Some(sse::event(None, &message.to_string()))
}

/// A bounded label for metrics: known methods by name, anything else as "other".
pub(super) fn method_label(method: Option<&str>) -> &'static str {
    const KNOWN: [&str; 18] = [
        "initialize",
        "ping",
        "server/discover",
        "tools/list",
        "tools/call",
        "resources/list",
        "resources/templates/list",
        "resources/read",
        "resources/subscribe",
        "resources/unsubscribe",
        "prompts/list",
        "prompts/get",
        "completion/complete",
        "logging/setLevel",
        "subscriptions/listen",
        "notifications/initialized",
        "notifications/cancelled",
        "notifications/roots/list_changed",
    ];
    match method {
        None => "response",
        Some(m) => KNOWN.iter().find(|k| **k == m).copied().unwrap_or("other"),
    }
}
