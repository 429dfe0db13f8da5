//! The configuration: one typed tree, loaded once from defaults, `devmesh.toml`,
//! `DEVMESH_SECTION__KEY` environment variables and command-line flags (in that order),
//! validated before anything starts, then passed explicitly.

mod agents;
mod load;
mod mcp;
mod security;
mod show;
mod tenancy;
mod types;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Exit status for a configuration error (bad value, unknown key, missing file): every
/// command that loads the configuration exits with it.
pub const EXIT_CONFIG: u8 = 2;

pub use agents::{AgentsConfig, EngineWeights};
pub use load::{ConfigError, LoadedConfig, Overrides, load};
pub use mcp::{McpConfig, TasksConfig, WsConfig};
pub use security::{GatewayConfig, OutboundConfig, SecretsConfig};
pub use show::render_with_sources;
pub use tenancy::{
    Argon2Config, AuthConfig, ContextsConfig, LockoutConfig, Quota, RateLimitConfig,
};
pub use types::{Duration, ListenAddr, Role, Roles, SecretString, SecretUrl};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Directory for the embedded database and the node's identity file.
    pub data_dir: PathBuf,
    pub node: NodeConfig,
    pub mcp: McpConfig,
    pub api: ListenerConfig,
    pub worker: WorkerConfig,
    pub http: HttpConfig,
    pub database: DatabaseConfig,
    pub redis: RedisConfig,
    pub jobs: JobsConfig,
    pub log: LogConfig,
    pub shutdown: ShutdownConfig,
    pub auth: AuthConfig,
    pub rate_limits: RateLimitConfig,
    pub contexts: ContextsConfig,
    pub secrets: SecretsConfig,
    pub outbound: OutboundConfig,
    pub gateway: GatewayConfig,
    pub agents: AgentsConfig,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Roles this node runs.
    pub roles: Roles,
    /// Human-readable node name shown in the node registry; defaults to the host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// How often the node records that it is alive.
    pub heartbeat_interval: Duration,
    /// A node that has not beaten for this long is marked gone.
    pub gone_after: Duration,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    pub listen: ListenAddr,
}

/// The worker and indexer roles have no listener of their own; this one, when set, serves
/// `/health`, `/ready` and `/metrics` for probes and Prometheus on such nodes.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<ListenAddr>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Largest accepted request body, in bytes.
    pub body_limit_bytes: usize,
    /// HTTP worker threads per listener; 0 means one per CPU core.
    pub workers: usize,
    /// How long a readiness check waits for each dependency.
    pub ready_timeout: Duration,
    /// Behind a load balancer or proxy: the header it sets to the client's address
    /// (`X-Forwarded-For`, `X-Real-IP`); its last entry is taken as the client. Unset:
    /// the connection's peer address. Set it only when every request comes through a
    /// proxy that sets this header, or clients can claim any address.
    pub client_ip_header: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `postgres://...` for the scale-out shape; unset means SQLite in the data directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<SecretUrl>,
    /// Connections in the pool; on SQLite, the read-only connections of the hottest
    /// reads (every other call queues for the one writing connection).
    pub max_connections: usize,
    pub connect_timeout: Duration,
    /// How long a request waits for a PostgreSQL call before it is answered 503 (a
    /// database that hangs); the call itself goes on to its end or its error.
    pub request_timeout: Duration,
    /// Apply pending migrations when `serve` starts.
    pub auto_migrate: bool,
    /// How long SQLite waits for a lock before giving up.
    pub sqlite_busy_timeout: Duration,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://...`: job streams, cross-node pub/sub, caches and counters. Unset means in-process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<SecretUrl>,
    /// Prefix of every key and channel devmesh uses, so that several deployments can share one Redis.
    pub key_prefix: String,
    /// How long one Redis command may take.
    pub command_timeout: Duration,
    /// How long a Redis command on a request's path (the revocation check, rate limits,
    /// notices) may take before the request goes on without it; while Redis is
    /// disconnected such commands fail at once.
    pub request_timeout: Duration,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobsConfig {
    /// A job not acknowledged within this time is handed to another worker.
    pub visibility_timeout: Duration,
    /// How long an idle worker waits for a job before asking again.
    pub poll_interval: Duration,
    /// How long a deduplication key keeps a second identical job out.
    pub dedup_window: Duration,
    /// Concurrent jobs per queue on each node that consumes it.
    pub concurrency: BTreeMap<String, usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable on a terminal, JSON otherwise.
    Auto,
    Json,
    Text,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A level (`info`) or a filter (`info,devmesh::jobs=debug`).
    pub level: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownConfig {
    /// How long in-flight requests and jobs get to finish after SIGTERM or SIGINT.
    pub grace_period: Duration,
}

impl Default for Config {
    fn default() -> Self {
        let concurrency = [("default", 4), ("system", 1), ("indexing", 1)]
            .into_iter()
            .map(|(q, n)| (q.to_string(), n))
            .collect();
        Self {
            data_dir: PathBuf::from("devmesh-data"),
            node: NodeConfig {
                roles: Roles::all(),
                name: None,
                heartbeat_interval: Duration::from_secs(10),
                gone_after: Duration::from_secs(60),
            },
            mcp: McpConfig::default(),
            api: ListenerConfig {
                listen: ListenAddr(([127, 0, 0, 1], 8081).into()),
            },
            worker: WorkerConfig::default(),
            http: HttpConfig {
                body_limit_bytes: 1024 * 1024,
                workers: 0,
                ready_timeout: Duration::from_secs(2),
                client_ip_header: None,
            },
            database: DatabaseConfig {
                url: None,
                max_connections: 16,
                connect_timeout: Duration::from_secs(5),
                request_timeout: Duration::from_secs(5),
                auto_migrate: true,
                sqlite_busy_timeout: Duration::from_secs(5),
            },
            redis: RedisConfig {
                url: None,
                key_prefix: "devmesh:".into(),
                command_timeout: Duration::from_secs(5),
                request_timeout: Duration::from_millis(250),
            },
            jobs: JobsConfig {
                visibility_timeout: Duration::from_secs(60),
                poll_interval: Duration::from_secs(1),
                dedup_window: Duration::from_secs(24 * 3600),
                concurrency,
            },
            log: LogConfig {
                format: LogFormat::Auto,
                level: "info".into(),
            },
            shutdown: ShutdownConfig {
                grace_period: Duration::from_secs(30),
            },
            auth: AuthConfig::default(),
            rate_limits: RateLimitConfig::default(),
            contexts: ContextsConfig::default(),
            secrets: SecretsConfig::default(),
            outbound: OutboundConfig::default(),
            gateway: GatewayConfig::default(),
            agents: AgentsConfig::default(),
        }
    }
}

/// Which database this configuration points at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatabaseTarget {
    Sqlite(PathBuf),
    Postgres(SecretUrl),
}

impl Config {
    pub fn database_target(&self) -> DatabaseTarget {
        match &self.database.url {
            Some(url) => DatabaseTarget::Postgres(url.clone()),
            None => DatabaseTarget::Sqlite(self.data_dir.join("devmesh.db")),
        }
    }

    /// Checks what the types alone cannot; each error names the key, the value and what is expected.
    pub fn validate(&self) -> Result<(), Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut check = |ok: bool, key: &str, value: String, expected: &str| {
            if !ok {
                errors.push(ConfigError::invalid(key, value, expected));
            }
        };
        if let Some(url) = &self.database.url {
            check(
                matches!(url.scheme(), "postgres" | "postgresql"),
                "database.url",
                url.redacted(),
                "a postgres:// URL (leave it unset for the embedded SQLite database)",
            );
        }
        if let Some(url) = &self.redis.url {
            check(
                matches!(url.scheme(), "redis" | "rediss"),
                "redis.url",
                url.redacted(),
                "a redis:// or rediss:// URL",
            );
        }
        check(
            (1..=1000).contains(&self.database.max_connections),
            "database.max_connections",
            self.database.max_connections.to_string(),
            "a number from 1 to 1000",
        );
        check(
            self.http.body_limit_bytes >= 1024,
            "http.body_limit_bytes",
            self.http.body_limit_bytes.to_string(),
            "at least 1024 bytes",
        );
        check(
            self.mcp.max_message_bytes >= 1024,
            "mcp.max_message_bytes",
            self.mcp.max_message_bytes.to_string(),
            "at least 1024 bytes",
        );
        check(
            (1..=1000).contains(&self.mcp.page_size),
            "mcp.page_size",
            self.mcp.page_size.to_string(),
            "a number from 1 to 1000",
        );
        for (key, n) in [
            ("mcp.ws.outbound_queue", self.mcp.ws.outbound_queue),
            ("mcp.ws.max_connections", self.mcp.ws.max_connections),
            (
                "mcp.ws.max_connections_per_key",
                self.mcp.ws.max_connections_per_key,
            ),
        ] {
            check(n >= 1, key, n.to_string(), "a number of at least 1");
        }
        for origin in &self.mcp.allowed_origins {
            check(
                origin.starts_with("http://") || origin.starts_with("https://"),
                "mcp.allowed_origins",
                format!("{origin:?}"),
                "origins such as \"https://app.example.com\" (scheme, host and optional port)",
            );
        }
        check(
            self.http.workers <= 256,
            "http.workers",
            self.http.workers.to_string(),
            "a number from 0 (one per core) to 256",
        );
        check(
            !self.redis.key_prefix.is_empty()
                && !self.redis.key_prefix.contains(char::is_whitespace),
            "redis.key_prefix",
            format!("{:?}", self.redis.key_prefix),
            "a non-empty prefix without spaces",
        );
        check(
            is_log_filter(&self.log.level),
            "log.level",
            format!("{:?}", self.log.level),
            "a level (error, warn, info, debug, trace) or a filter such as \"info,devmesh=debug\"",
        );
        for (key, d) in [
            ("node.heartbeat_interval", self.node.heartbeat_interval),
            ("jobs.visibility_timeout", self.jobs.visibility_timeout),
            ("jobs.poll_interval", self.jobs.poll_interval),
            ("jobs.dedup_window", self.jobs.dedup_window),
            ("outbound.connect_timeout", self.outbound.connect_timeout),
            ("outbound.timeout", self.outbound.timeout),
            ("http.ready_timeout", self.http.ready_timeout),
            ("database.connect_timeout", self.database.connect_timeout),
            ("database.request_timeout", self.database.request_timeout),
            ("redis.command_timeout", self.redis.command_timeout),
            ("redis.request_timeout", self.redis.request_timeout),
            ("auth.recheck_interval", self.auth.recheck_interval),
            ("mcp.session_idle_timeout", self.mcp.session_idle_timeout),
            ("mcp.sse_keepalive", self.mcp.sse_keepalive),
            ("mcp.ws.ping_interval", self.mcp.ws.ping_interval),
            ("mcp.tasks.poll_interval", self.mcp.tasks.poll_interval),
            (
                "mcp.client_request_timeout",
                self.mcp.client_request_timeout,
            ),
        ] {
            check(
                !d.get().is_zero(),
                key,
                d.to_string(),
                "a duration greater than zero",
            );
        }
        let task_ttl = self.mcp.tasks.ttl.get();
        check(
            task_ttl >= std::time::Duration::from_secs(1)
                && task_ttl <= std::time::Duration::from_secs(30 * 86_400),
            "mcp.tasks.ttl",
            self.mcp.tasks.ttl.to_string(),
            "a duration from 1s to 30d",
        );
        check(
            (1..=100_000).contains(&self.mcp.tasks.max_active_per_principal),
            "mcp.tasks.max_active_per_principal",
            self.mcp.tasks.max_active_per_principal.to_string(),
            "a number from 1 to 100000",
        );
        check(
            self.node.gone_after > self.node.heartbeat_interval,
            "node.gone_after",
            self.node.gone_after.to_string(),
            "a duration longer than node.heartbeat_interval",
        );
        for (queue, n) in &self.jobs.concurrency {
            check(
                (1..=1024).contains(n),
                &format!("jobs.concurrency.{queue}"),
                n.to_string(),
                "a number from 1 to 1024",
            );
        }
        for (key, d) in [
            ("auth.access_token_ttl", self.auth.access_token_ttl),
            ("auth.refresh_token_ttl", self.auth.refresh_token_ttl),
            ("auth.invitation_ttl", self.auth.invitation_ttl),
            ("auth.lockout.window", self.auth.lockout.window),
            ("auth.lockout.duration", self.auth.lockout.duration),
        ] {
            check(
                !d.get().is_zero(),
                key,
                d.to_string(),
                "a duration greater than zero",
            );
        }
        if let Some(secret) = &self.auth.jwt_secret {
            check(
                secret.expose().len() >= 32,
                "auth.jwt_secret",
                "***".into(),
                "a secret of at least 32 bytes",
            );
        }
        check(
            self.auth.lockout.max_failures >= 1,
            "auth.lockout.max_failures",
            self.auth.lockout.max_failures.to_string(),
            "at least 1",
        );
        let a = &self.auth.argon2;
        check(
            argon2::Params::new(a.memory_kib, a.iterations, a.parallelism, None).is_ok(),
            "auth.argon2",
            format!(
                "memory_kib = {}, iterations = {}, parallelism = {}",
                a.memory_kib, a.iterations, a.parallelism
            ),
            "argon2 parameters: memory_kib at least 8 x parallelism, iterations and parallelism at least 1",
        );
        for (key, q) in [
            ("rate_limits.key", self.rate_limits.key),
            ("rate_limits.organization", self.rate_limits.organization),
            ("rate_limits.anonymous", self.rate_limits.anonymous),
        ] {
            check(
                (1..=60_000_000).contains(&q.per_minute) && q.burst >= 1,
                key,
                format!("per_minute = {}, burst = {}", q.per_minute, q.burst),
                "per_minute from 1 to 60000000 and burst of at least 1",
            );
        }
        check(
            self.contexts.max_items >= 1,
            "contexts.max_items",
            self.contexts.max_items.to_string(),
            "at least 1",
        );
        check(
            self.contexts.max_item_bytes >= 1,
            "contexts.max_item_bytes",
            self.contexts.max_item_bytes.to_string(),
            "at least 1",
        );
        check(
            self.gateway.failure_threshold >= 1,
            "gateway.failure_threshold",
            self.gateway.failure_threshold.to_string(),
            "at least 1",
        );
        check(
            self.gateway.max_document_bytes >= 1024 && self.gateway.max_documents >= 1,
            "gateway.max_document_bytes",
            format!(
                "max_document_bytes = {}, max_documents = {}",
                self.gateway.max_document_bytes, self.gateway.max_documents
            ),
            "at least 1024 bytes and 1 document",
        );
        check(
            !self.gateway.health_tick.get().is_zero() && !self.gateway.call_timeout.get().is_zero(),
            "gateway.health_tick",
            format!(
                "health_tick = {}, call_timeout = {}",
                self.gateway.health_tick, self.gateway.call_timeout
            ),
            "durations above zero",
        );
        let agents = &self.agents;
        check(
            !agents.heartbeat_interval.get().is_zero()
                && !agents.sweep_interval.get().is_zero()
                && !agents.default_timeout.get().is_zero()
                && !agents.default_assign_timeout.get().is_zero(),
            "agents.heartbeat_interval",
            format!(
                "heartbeat_interval = {}, sweep_interval = {}, default_timeout = {}, default_assign_timeout = {}",
                agents.heartbeat_interval,
                agents.sweep_interval,
                agents.default_timeout,
                agents.default_assign_timeout
            ),
            "durations above zero",
        );
        check(
            agents.default_max_attempts >= 1 && agents.breaker_failures >= 1,
            "agents.breaker_failures",
            format!(
                "default_max_attempts = {}, breaker_failures = {}",
                agents.default_max_attempts, agents.breaker_failures
            ),
            "at least 1 each",
        );
        let w = agents.weights;
        check(
            (0.0..=1.0).contains(&agents.exploration)
                && [w.capability, w.load, w.performance, w.cost]
                    .iter()
                    .all(|x| x.is_finite() && *x >= 0.0)
                && w.capability + w.load + w.performance + w.cost > 0.0,
            "agents.weights",
            format!(
                "exploration = {}, weights = {} {} {} {}",
                agents.exploration, w.capability, w.load, w.performance, w.cost
            ),
            "exploration from 0 to 1 and weights of at least 0 that add up to more than 0",
        );
        if let Some(header) = &self.http.client_ip_header {
            check(
                actix_web::http::header::HeaderName::from_bytes(header.as_bytes()).is_ok(),
                "http.client_ip_header",
                format!("{header:?}"),
                "an HTTP header name such as \"X-Forwarded-For\"",
            );
        }
        if let Some(name) = &self.node.name {
            check(
                !name.is_empty() && name.len() <= 128,
                "node.name",
                format!("{name:?}"),
                "a name of 1 to 128 characters",
            );
        }
        if let Some(url) = &self.database.url
            && matches!(url.scheme(), "postgres" | "postgresql")
            && let Err(why) = crate::storage::postgres::PgConnector::from_url(url.expose())
        {
            errors.push(ConfigError::invalid("database.url", url.redacted(), &why));
        }
        if let Err(why) = crate::sealing::Sealer::from_config(&self.secrets) {
            let key = why.split(' ').next().unwrap_or("secrets.master_key");
            errors.push(ConfigError::invalid(
                key,
                "***".into(),
                &format!(
                    "32 random bytes in base64, such as `openssl rand -base64 32` prints ({why})"
                ),
            ));
        }
        if self.outbound.max_redirects > 20 {
            errors.push(ConfigError::invalid(
                "outbound.max_redirects",
                self.outbound.max_redirects.to_string(),
                "a number from 0 to 20",
            ));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// Concurrency for a queue: its configured value, else the `default` queue's.
    pub fn queue_concurrency(&self, queue: &str) -> usize {
        self.jobs
            .concurrency
            .get(queue)
            .or_else(|| self.jobs.concurrency.get("default"))
            .copied()
            .unwrap_or(1)
    }
}

/// A level, or comma-separated `target=level` directives (`info,devmesh::jobs=debug`).
fn is_log_filter(filter: &str) -> bool {
    const LEVELS: &[&str] = &["off", "error", "warn", "info", "debug", "trace"];
    let is_level = |s: &str| LEVELS.iter().any(|l| s.eq_ignore_ascii_case(l));
    let is_target = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    !filter.trim().is_empty()
        && filter
            .split(',')
            .map(str::trim)
            .all(|d| match d.split_once('=') {
                Some((target, level)) => is_target(target) && is_level(level),
                None => is_level(d) || is_target(d),
            })
        && tracing_subscriber::EnvFilter::try_new(filter).is_ok()
}
