//! What every part of a node shares: configuration, database, bus and the node's identity.
//! Handlers and jobs receive it; none of it is global.

use std::sync::Arc;

use crate::bus::Bus;
use crate::config::Config;
use crate::health::Health;
use crate::nodes::NodeIdentity;
use crate::service::{ServiceError, ServiceResult};
use crate::storage::Db;
use crate::tenancy::TenancyState;

#[derive(Clone)]
pub struct Context {
    pub config: Arc<Config>,
    pub db: Db,
    pub bus: Bus,
    pub node: Arc<NodeIdentity>,
    pub health: Arc<Health>,
    pub tenancy: Arc<TenancyState>,
    pub mcp: Arc<crate::mcp::Mcp>,
    /// The node's main runtime, where storage calls and [`Context::run_to_end`] run.
    pub runtime: tokio::runtime::Handle,
}

impl Context {
    /// Runs a service's steps on the node's runtime to their end, whoever stops waiting
    /// for them (a client that hangs up, an MCP cancellation, a timeout): for a change whose
    /// audit entry or announcement must not be lost halfway. A single storage call needs
    /// no help: storage calls always finish (see `storage`).
    pub async fn run_to_end<T, Fut>(&self, steps: impl FnOnce(Context) -> Fut) -> ServiceResult<T>
    where
        Fut: Future<Output = ServiceResult<T>> + Send + 'static,
        T: Send + 'static,
    {
        self.runtime
            .spawn(steps(self.clone()))
            .await
            .map_err(|e| ServiceError::Internal(format!("a service call stopped: {e}")))?
    }

    /// Connects the database and the bus for this configuration (lazily: nothing is
    /// reached until used) and loads the node's identity.
    pub fn connect(config: Arc<Config>) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let db = Db::connect(&config).context("cannot set up the database pool")?;
        let bus = Bus::connect(&config, db.clone())?;
        Ok(Self {
            node: Arc::new(NodeIdentity::load(&config)),
            health: Arc::new(Health::default()),
            tenancy: TenancyState::new(&config),
            mcp: crate::mcp::Mcp::new(&config),
            runtime: tokio::runtime::Handle::current(),
            config,
            db,
            bus,
        })
    }
}
