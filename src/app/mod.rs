//! A running node: [`Application::build`] binds the listeners of the configured roles and
//! prepares storage and bus; [`Application::run`] serves until the shutdown token is
//! cancelled, then drains requests and jobs within the grace period.
//! [`Capabilities`] holds each capability's state and wires them to the listeners, the
//! jobs and the node's lifecycle.

mod capabilities;

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, DatabaseTarget, ListenAddr, Role};
use crate::context::Context;
use crate::health::SchemaState;
use crate::http::{self, Routes};
use crate::jobs::Registry;
use crate::jobs::recurring;
use crate::jobs::runner::{QueueSpec, Runner};
use crate::nodes;
use crate::storage::migrations;
use crate::telemetry;
pub use capabilities::Capabilities;

/// The queue the indexer role consumes; every other queue belongs to the worker role.
pub const INDEXING_QUEUE: &str = "indexing";

struct Bound {
    name: &'static str,
    listener: TcpListener,
    addr: SocketAddr,
    routes: Routes,
}

pub struct Application {
    ctx: Context,
    capabilities: Capabilities,
    registry: Registry,
    listeners: Vec<Bound>,
}

impl Application {
    /// Builds the node with the platform's and the capabilities' job kinds.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        Self::build_with_jobs(config, Registry::new()).await
    }

    /// Builds the node with the platform's and the capabilities' job kinds and `extra`
    /// ones (tests add their own).
    pub async fn build_with_jobs(config: Config, extra: Registry) -> anyhow::Result<Self> {
        telemetry::metrics::handle();
        let config = Arc::new(config);
        let ctx = Context::connect(config.clone())?;
        let capabilities = Capabilities::new(&config);
        let registry = capabilities.jobs().merge(extra);

        if matches!(config.database_target(), DatabaseTarget::Postgres(_))
            && !ctx.bus.is_distributed()
        {
            tracing::warn!(
                "running on PostgreSQL without redis.url: pub/sub, caches and rate-limit counters stay in this \
                 node's memory, so run a single node, or set redis.url before adding more"
            );
        }

        if let Some(slug) = &config.mcp.anonymous_tenant {
            tracing::warn!(
                organization = %slug,
                "mcp.anonymous_tenant is set: MCP requests without credentials act as a member of this organization; \
                 unset it unless this node serves one trusted machine"
            );
        }
        let roles = &config.node.roles;
        let background_roles = roles.has(Role::Worker) || roles.has(Role::Indexer);
        let wanted = [
            (
                roles.has(Role::Mcp),
                "mcp",
                Some(config.mcp.listen),
                capabilities.mcp_routes(),
            ),
            (
                roles.has(Role::Api),
                "api",
                Some(config.api.listen),
                capabilities.api_routes(),
            ),
            (
                background_roles,
                "worker",
                config.worker.listen,
                Arc::new(|_: &mut actix_web::web::ServiceConfig| {}) as Routes,
            ),
        ];
        let mut listeners = Vec::new();
        for (wanted, name, addr, routes) in wanted {
            let Some(ListenAddr(addr)) = addr.filter(|_| wanted) else {
                continue;
            };
            let listener = TcpListener::bind(addr)
                .with_context(|| format!("cannot listen on {addr} ({name}.listen)"))?;
            let addr = listener.local_addr()?;
            tracing::info!(listener = name, %addr, "listening");
            listeners.push(Bound {
                name,
                listener,
                addr,
                routes,
            });
        }
        Ok(Self {
            ctx,
            capabilities,
            registry,
            listeners,
        })
    }

    pub fn context(&self) -> &Context {
        &self.ctx
    }

    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    /// The bound address of a listener (`"api"`, `"mcp"` or `"worker"`), if this node has it.
    pub fn addr(&self, name: &str) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|l| l.name == name)
            .map(|l| l.addr)
    }

    /// Serves until `shutdown` is cancelled, then stops accepting connections and lets
    /// in-flight requests and jobs finish within `shutdown.grace_period`.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let (ctx, capabilities) = (self.ctx, self.capabilities);
        let roles = &ctx.config.node.roles;
        tracing::info!(
            node.id = %ctx.node.id, roles = %roles, database = ctx.db.backend_name(),
            bus = ctx.bus.queue.backend_name(), version = ctx.node.version, "devmesh starting"
        );

        let mut servers = Vec::new();
        let mut addresses = BTreeMap::new();
        for bound in self.listeners {
            addresses.insert(bound.name.to_string(), bound.addr.to_string());
            servers.push(http::serve(
                bound.listener,
                bound.name,
                bound.routes,
                ctx.clone(),
            )?);
        }
        let handles: Vec<_> = servers.iter().map(|s| s.handle()).collect();
        let server_tasks: Vec<_> = servers.into_iter().map(tokio::spawn).collect();

        let background = shutdown.child_token();
        let mut tasks = JoinSet::new();
        tasks.spawn(telemetry::metrics::run_upkeep(background.clone()));
        tasks.spawn(prepare_database(ctx.clone(), background.clone()));
        // Open connections and streams lose what their credential lost, on every node.
        tasks.spawn(when_schema_ready(
            ctx.clone(),
            background.clone(),
            crate::tenancy::grants::Grants::watch(
                capabilities.tenancy.clone(),
                ctx.clone(),
                background.clone(),
            ),
        ));
        tasks.spawn(when_schema_ready(ctx.clone(), background.clone(), {
            let (ctx, token) = (ctx.clone(), background.clone());
            let work = capabilities.node_work();
            async move {
                let interval = ctx.config.node.heartbeat_interval.get();
                nodes::heartbeat(&ctx, work, addresses, interval, token).await
            }
        }));
        let queues = consumed_queues(&ctx.config, &self.registry);
        if !queues.is_empty() {
            let runner = Runner::new(ctx.clone(), self.registry, queues);
            tasks.spawn(when_schema_ready(
                ctx.clone(),
                background.clone(),
                runner.run(background.clone()),
            ));
        }
        if roles.has(Role::Worker) {
            let recurring = capabilities.recurring(&ctx.config);
            let queue = ctx.bus.queue.clone();
            tasks.spawn(when_schema_ready(
                ctx.clone(),
                background.clone(),
                recurring::run(queue, recurring, background.clone()),
            ));
        }

        shutdown.cancelled().await;
        let grace = ctx.config.shutdown.grace_period.get();
        tracing::info!(
            grace_period_s = grace.as_secs_f64(),
            "shutting down: no new connections; finishing requests and jobs in flight"
        );
        background.cancel();
        // WebSocket connections would hold the listeners open: close them (1001).
        capabilities.mcp.hub.close_all();
        let stop_servers = async {
            futures_util::future::join_all(handles.iter().map(|h| h.stop(true))).await;
            for task in server_tasks {
                if let Ok(Err(e)) = task.await {
                    tracing::warn!(error = %e, "listener stopped with an error");
                }
            }
            tracing::debug!("listeners stopped");
        };
        let drain_jobs = async {
            while tasks.join_next().await.is_some() {}
            tracing::debug!("background tasks stopped");
        };
        // The servers and the runner each honour the grace period; this bound is a backstop.
        let drained = tokio::time::timeout(grace + Duration::from_secs(5), async {
            tokio::join!(stop_servers, drain_jobs)
        })
        .await;
        if drained.is_err() {
            tracing::warn!("some work did not finish within the grace period");
        }
        ctx.bus.close().await;
        ctx.db.close();
        tracing::info!("devmesh stopped");
        Ok(())
    }
}

/// The queues this node consumes, with their concurrency: the worker role takes every
/// queue but indexing, the indexer role takes indexing.
fn consumed_queues(config: &Config, registry: &Registry) -> Vec<QueueSpec> {
    let roles = &config.node.roles;
    let mut names: Vec<String> = config.jobs.concurrency.keys().cloned().collect();
    names.extend(registry.queues().into_iter().map(String::from));
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter(|q| {
            if q == INDEXING_QUEUE {
                roles.has(Role::Indexer)
            } else {
                roles.has(Role::Worker)
            }
        })
        .map(|name| QueueSpec {
            concurrency: config.queue_concurrency(&name),
            name,
        })
        .collect()
}

/// Runs `work` once the schema is ready, unless shutdown comes first.
async fn when_schema_ready(
    ctx: Context,
    shutdown: CancellationToken,
    work: impl Future<Output = ()>,
) {
    tokio::select! {
        _ = shutdown.cancelled() => return,
        _ = ctx.health.schema_ready() => {}
    }
    work.await
}

/// Applies pending migrations (or, with `database.auto_migrate = false`, waits for them to
/// be applied), retrying with backoff while the database is unreachable.
async fn prepare_database(ctx: Context, shutdown: CancellationToken) {
    let target = ctx.config.database_target();
    let mut pause = Duration::from_millis(250);
    loop {
        let attempt = if ctx.config.database.auto_migrate {
            migrations::run_pending(&target).await.map(|applied| {
                for version in applied {
                    tracing::info!(version, "migration applied");
                }
            })
        } else {
            match migrations::pending_count(&target).await {
                Ok(0) => Ok(()),
                Ok(n) => Err(crate::storage::StorageError::Migration(format!(
                    "{n} migration(s) pending and database.auto_migrate is off: run `devmesh migrate run`"
                ))),
                Err(e) => Err(e),
            }
        };
        match attempt {
            Ok(()) => {
                ctx.health.set_schema(SchemaState::Ready);
                tracing::info!(database = ctx.db.backend_name(), "database ready");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = pause.as_millis() as u64, "database not ready");
                ctx.health.set_schema(SchemaState::Waiting(e.to_string()));
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(Duration::from_secs(30));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queues(roles: &str) -> Vec<(String, usize)> {
        let mut config = Config::default();
        config.node.roles = roles.parse().unwrap();
        config.jobs.concurrency.insert("webhooks".into(), 6);
        consumed_queues(&config, &Capabilities::new(&config).jobs())
            .into_iter()
            .map(|q| (q.name, q.concurrency))
            .collect()
    }

    #[test]
    fn roles_decide_the_queues_a_node_consumes() {
        let owned = |v: &[(&str, usize)]| {
            v.iter()
                .map(|(q, n)| (q.to_string(), *n))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            queues("worker"),
            owned(&[("default", 4), ("system", 1), ("webhooks", 6)])
        );
        assert_eq!(queues("indexer"), owned(&[("indexing", 1)]));
        assert_eq!(queues("all").len(), 4);
        assert!(queues("api,mcp").is_empty());
    }
}
