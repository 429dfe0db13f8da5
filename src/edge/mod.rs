//! `devmesh edge`: MCP over stdio for IDEs and agent tools, forwarded to a devmesh
//! server. The local client speaks whichever protocol it likes (2025-06-18 and
//! 2025-11-25 sessions, or 2026-07-28); the edge speaks 2026-07-28 to the server, so a
//! server restart loses no session. Catalog changes come over `subscriptions/listen`;
//! while the server cannot be reached the edge answers with a clear error and retries
//! with backoff. stdout carries the protocol only; logs go to stderr (`docs/edge.md`).

pub mod local_tools;
mod upstream;

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{Notify, mpsc};

use crate::mcp::engine;
use crate::mcp::protocol::{Incoming, RpcError, meta, response};
use local_tools::LocalTools;
use upstream::{Upstream, UpstreamError};

/// JSON-RPC code of "the server cannot be reached" (implementation-defined range).
pub const UNREACHABLE: i32 = -32000;

const MAX_BACKOFF: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    /// Streamable HTTP at /mcp
    Http,
    /// WebSocket at /ws
    Ws,
}

#[derive(Debug, clap::Args)]
pub struct EdgeOpts {
    /// The devmesh server's MCP address, e.g. https://devmesh.example.com
    #[arg(long, env = "DEVMESH_URL")]
    url: String,
    /// An API key (or access token) of the devmesh server
    #[arg(long, env = "DEVMESH_API_KEY", hide_env_values = true)]
    api_key: String,
    /// How to reach the server
    #[arg(long, value_enum, default_value = "http")]
    transport: Transport,
    /// Expose the local tool `edge_run_command`, allowed to run this executable
    /// (repeatable); nothing else is run
    #[arg(long = "allow-command", value_name = "NAME")]
    allow_commands: Vec<String>,
    /// The directory local commands run in; they cannot leave it [default: the current directory]
    #[arg(long, value_name = "DIR")]
    workdir: Option<PathBuf>,
    /// A local command still running after this long is killed with its process group
    #[arg(long, default_value = "30s", value_name = "DURATION")]
    command_timeout: crate::config::Duration,
    /// Output of a local command kept, per stream; past it the command is stopped
    #[arg(long, default_value_t = 1024 * 1024, value_name = "BYTES")]
    max_output_bytes: usize,
    /// Log level or filter, on stderr
    #[arg(long, env = "DEVMESH_EDGE_LOG", default_value = "info")]
    log_level: String,
}

pub fn main(opts: EdgeOpts) -> ExitCode {
    crate::telemetry::init_logs(&crate::config::LogConfig {
        format: crate::config::LogFormat::Text,
        level: opts.log_level.clone(),
    });
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("devmesh edge: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(opts));
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("devmesh edge: {e}");
            ExitCode::from(crate::config::EXIT_CONFIG)
        }
    }
}

async fn run(opts: EdgeOpts) -> Result<(), String> {
    if !opts.url.starts_with("http://") && !opts.url.starts_with("https://") {
        return Err(format!(
            "--url {:?} must start with http:// or https://",
            opts.url
        ));
    }
    let local = if opts.allow_commands.is_empty() {
        None
    } else {
        let workdir = match &opts.workdir {
            Some(dir) => dir.clone(),
            None => std::env::current_dir().map_err(|e| format!("no current directory: {e}"))?,
        };
        Some(LocalTools::new(
            &opts.allow_commands,
            &workdir,
            opts.command_timeout.get(),
            opts.max_output_bytes,
            vec![opts.api_key.clone()],
        )?)
    };
    let (out, mut outgoing) = mpsc::unbounded_channel::<Value>();
    let (notices, mut notices_rx) = mpsc::unbounded_channel::<Value>();
    let upstream = match opts.transport {
        Transport::Http => Upstream::Http(upstream::Http::new(&opts.url, &opts.api_key, notices)?),
        Transport::Ws => Upstream::Ws(upstream::Ws::new(&opts.url, &opts.api_key, notices)),
    };
    let edge = Arc::new(Edge {
        url: opts.url.clone(),
        upstream,
        local,
        out,
        client: Mutex::new(Client::default()),
        inflight: Mutex::new(HashMap::new()),
        resubscribe: Notify::new(),
    });
    tracing::info!(url = %opts.url, transport = ?opts.transport, "devmesh edge started");

    // stdout: one JSON-RPC message per line, from one writer.
    let writer = tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        while let Some(message) = outgoing.recv().await {
            let mut line = serde_json::to_vec(&message).expect("messages serialize");
            line.push(b'\n');
            if stdout.write_all(&line).await.is_err() || stdout.flush().await.is_err() {
                break;
            }
        }
    });
    // The server's notifications reach the client once it is initialized.
    let relay = edge.clone();
    tokio::spawn(async move {
        while let Some(message) = notices_rx.recv().await {
            relay.notify(message);
        }
    });
    tokio::spawn(edge.clone().keep_listening());

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if line.trim().is_empty() {
            continue;
        }
        edge.clone().incoming(line.as_bytes());
    }
    tracing::info!("stdin closed; devmesh edge stops");
    drop(edge);
    let _ = tokio::time::timeout(Duration::from_secs(1), writer).await;
    Ok(())
}

/// What the local client said about itself.
#[derive(Default)]
struct Client {
    /// It sent `notifications/initialized` (protocols with sessions).
    initialized: bool,
    /// It sent a 2026-07-28 request: it takes notifications without initializing.
    stateless: bool,
    info: Option<Value>,
    log_level: Option<String>,
    /// It declared the tasks extension at initialize, so the server may answer it with
    /// tasks.
    tasks: bool,
    subscriptions: BTreeSet<String>,
}

struct Edge {
    url: String,
    upstream: Upstream,
    local: Option<LocalTools>,
    out: mpsc::UnboundedSender<Value>,
    client: Mutex<Client>,
    inflight: Mutex<HashMap<String, tokio::task::AbortHandle>>,
    resubscribe: Notify,
}

impl Edge {
    fn send(&self, message: Value) {
        let _ = self.out.send(message);
    }

    /// A notification for the local client, once it can take one.
    fn notify(&self, message: Value) {
        let ready = {
            let client = self.client.lock().unwrap();
            client.initialized || client.stateless
        };
        if ready {
            self.send(message);
        }
    }

    fn incoming(self: Arc<Self>, bytes: &[u8]) {
        let incoming = match Incoming::parse(bytes) {
            Ok(i) => i,
            Err(e) => return self.send(e.to_message()),
        };
        match incoming {
            Incoming::Request { id, method, params } => {
                let key = id.to_string();
                let this = self.clone();
                // Held while the task is made, so that it cannot finish (and forget
                // itself) before it is remembered.
                let mut inflight = self.inflight.lock().unwrap();
                let task = tokio::spawn(async move {
                    let answer = match this.request(&method, params).await {
                        Ok(result) => response(&id, result),
                        Err(e) => e.with_id(id.clone()).to_message(),
                    };
                    this.inflight.lock().unwrap().remove(&id.to_string());
                    this.send(answer);
                });
                inflight.insert(key, task.abort_handle());
            }
            Incoming::Notification { method, params } => match method.as_str() {
                "notifications/initialized" => {
                    self.client.lock().unwrap().initialized = true;
                }
                "notifications/cancelled" => {
                    let id = params.get("requestId").map(Value::to_string);
                    if let Some(task) = id.and_then(|id| self.inflight.lock().unwrap().remove(&id))
                    {
                        // Dropping the forwarded request cancels it on the server too.
                        task.abort();
                    }
                }
                _ => {}
            },
            Incoming::Response { .. } => {
                tracing::debug!(
                    "a response from the local client was ignored: the edge sends no requests"
                );
            }
        }
    }

    async fn request(
        &self,
        method: &str,
        mut params: Map<String, Value>,
    ) -> Result<Value, RpcError> {
        let stateless = params
            .get("_meta")
            .and_then(|m| m.get(meta::PROTOCOL_VERSION))
            .is_some();
        if stateless {
            self.client.lock().unwrap().stateless = true;
        } else {
            match method {
                "initialize" => return self.initialize(&params),
                "ping" => return Ok(json!({})),
                "logging/setLevel" => {
                    let level = params
                        .get("level")
                        .and_then(Value::as_str)
                        .unwrap_or("info");
                    self.client.lock().unwrap().log_level = Some(level.to_string());
                    return Ok(json!({}));
                }
                "resources/subscribe" | "resources/unsubscribe" => {
                    let uri = params.get("uri").and_then(Value::as_str).ok_or_else(|| {
                        RpcError::invalid_params(format!("{method} needs \"uri\""))
                    })?;
                    {
                        let mut client = self.client.lock().unwrap();
                        if method == "resources/subscribe" {
                            client.subscriptions.insert(uri.to_string());
                        } else {
                            client.subscriptions.remove(uri);
                        }
                    }
                    self.resubscribe.notify_one();
                    return Ok(json!({}));
                }
                _ => {}
            }
            self.add_meta(&mut params);
        }
        if method == "tools/call"
            && let Some(local) = &self.local
            && params.get("name").and_then(Value::as_str) == Some(local_tools::TOOL_NAME)
        {
            let arguments = params
                .get("arguments")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            let mut result = local.call(&arguments).await;
            if stateless {
                result["resultType"] = json!("complete");
            }
            return Ok(result);
        }
        let mut result = self
            .upstream
            .request(method, params)
            .await
            .map_err(|e| self.error(e))?;
        if method == "tools/list"
            && let Some(local) = &self.local
            && result.get("nextCursor").is_none_or(Value::is_null)
            && let Some(tools) = result.get_mut("tools").and_then(Value::as_array_mut)
        {
            tools.push(local.spec());
        }
        if !stateless && let Some(obj) = result.as_object_mut() {
            // What only 2026-07-28 results carry. A CreateTaskResult keeps its resultType,
            // without which it is not one; a task's ttlMs is the task's, not a cache hint.
            let creates_task = obj.get("resultType") == Some(&json!("task"));
            if !creates_task {
                obj.remove("resultType");
            }
            if !creates_task && !method.starts_with("tasks/") {
                obj.remove("ttlMs");
                obj.remove("cacheScope");
            }
        }
        Ok(result)
    }

    /// The local session: the client's protocol when it is one with sessions, else the
    /// newest such.
    fn initialize(&self, params: &Map<String, Value>) -> Result<Value, RpcError> {
        let (version, capabilities) = engine::negotiate(params)?;
        let mut client = self.client.lock().unwrap();
        client.info = params.get("clientInfo").cloned();
        client.tasks = crate::mcp::tasks::declared(&capabilities);
        drop(client);
        let mut result = engine::initialize_result(version);
        result["serverInfo"] = json!({
            "name": "devmesh-edge",
            "title": "devmesh (through devmesh edge)",
            "version": env!("CARGO_PKG_VERSION"),
        });
        Ok(result)
    }

    /// Makes a session request a 2026-07-28 one.
    fn add_meta(&self, params: &mut Map<String, Value>) {
        let client = self.client.lock().unwrap();
        let meta = params
            .entry("_meta")
            .or_insert_with(|| json!({}))
            .as_object_mut();
        let Some(meta) = meta else { return };
        meta.insert(
            meta::PROTOCOL_VERSION.into(),
            json!(upstream::VERSION.as_str()),
        );
        // What the edge can relay: tasks, when the client declared them (the server's
        // requests to the client travel in results, which the edge passes on as they are).
        let capabilities = if client.tasks {
            json!({ "extensions": { crate::mcp::tasks::EXTENSION: {} } })
        } else {
            json!({})
        };
        meta.insert(meta::CLIENT_CAPABILITIES.into(), capabilities);
        let info = client
            .info
            .clone()
            .unwrap_or(json!({ "name": "devmesh-edge-client", "version": "0" }));
        meta.insert(meta::CLIENT_INFO.into(), info);
        if let Some(level) = &client.log_level {
            meta.insert(meta::LOG_LEVEL.into(), json!(level));
        }
    }

    fn error(&self, e: UpstreamError) -> RpcError {
        match e {
            UpstreamError::Unreachable(why) => {
                tracing::warn!(error = %why, "the devmesh server is unreachable");
                RpcError::new(
                    UNREACHABLE,
                    format!(
                        "the devmesh server at {} is unreachable ({why}); devmesh edge keeps retrying, try again shortly",
                        self.url
                    ),
                )
            }
            UpstreamError::Rpc(error) => {
                let code = error["code"].as_i64().unwrap_or(-32603) as i32;
                let message = error["message"]
                    .as_str()
                    .unwrap_or("the server refused the request");
                let mut e = RpcError::new(code, message);
                if let Some(data) = error.get("data") {
                    e = e.with_data(data.clone());
                }
                e
            }
            UpstreamError::Protocol(why) => {
                RpcError::new(-32603, format!("the devmesh server answered oddly: {why}"))
            }
        }
    }

    /// What the listen stream asks for: every list change, and the client's resources.
    fn listen_params(&self) -> Map<String, Value> {
        let subscriptions: Vec<String> = self
            .client
            .lock()
            .unwrap()
            .subscriptions
            .iter()
            .cloned()
            .collect();
        let mut params = Map::new();
        params.insert(
            "notifications".into(),
            json!({
                "toolsListChanged": true,
                "promptsListChanged": true,
                "resourcesListChanged": true,
                "resourceSubscriptions": subscriptions,
            }),
        );
        self.add_meta(&mut params);
        params
    }

    /// Keeps a listen stream open, reconnecting with backoff; after an outage, tells the
    /// client that every list may have changed.
    async fn keep_listening(self: Arc<Self>) {
        let mut backoff = Duration::from_millis(250);
        let down = AtomicBool::new(false);
        loop {
            let opened = AtomicBool::new(false);
            let ended = tokio::select! {
                e = self.upstream.listen(self.listen_params(), || {
                    opened.store(true, Ordering::Relaxed);
                    if down.swap(false, Ordering::Relaxed) {
                        tracing::info!("the devmesh server is reachable again");
                        for method in [
                            "notifications/tools/list_changed",
                            "notifications/prompts/list_changed",
                            "notifications/resources/list_changed",
                        ] {
                            self.notify(json!({ "jsonrpc": "2.0", "method": method }));
                        }
                    }
                }) => Some(e),
                _ = self.resubscribe.notified() => None,
            };
            let Some(e) = ended else { continue };
            if opened.load(Ordering::Relaxed) {
                backoff = Duration::from_millis(250);
            }
            if !down.swap(true, Ordering::Relaxed) {
                let why = match &e {
                    UpstreamError::Unreachable(w) | UpstreamError::Protocol(w) => w.clone(),
                    UpstreamError::Rpc(error) => error.to_string(),
                };
                tracing::warn!(error = %why, retry_in_ms = backoff.as_millis() as u64, "lost the devmesh server; retrying");
            }
            tokio::select! {
                _ = tokio::time::sleep(jitter(backoff)) => {}
                _ = self.resubscribe.notified() => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

/// Up to a quarter more, so that many edges do not retry in step.
fn jitter(d: Duration) -> Duration {
    d + d.mul_f64(rand::random::<f64>() / 4.0)
}
