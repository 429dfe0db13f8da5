//! The node's infrastructure, which every part shares: configuration, database, bus,
//! node identity, health and the runtime. Handlers and jobs receive it; none of it is
//! global. Capabilities (tenancy, MCP, ...) keep their own state beside it, wired
//! together in `app`: nothing here knows them.

use std::sync::Arc;

use crate::bus::Bus;
use crate::config::Config;
use crate::health::Health;
use crate::nodes::NodeIdentity;
use crate::service::{ServiceError, ServiceResult};
use crate::storage::Db;

#[derive(Clone)]
pub struct Context {
    pub config: Arc<Config>,
    pub db: Db,
    pub bus: Bus,
    pub node: Arc<NodeIdentity>,
    pub health: Arc<Health>,
    /// The node's main runtime, where storage calls and [`Context::run_to_end`] run.
    pub runtime: tokio::runtime::Handle,
    /// The node's reader of tenant events, handing them to its subscribers.
    pub events: Arc<crate::events::Hub>,
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
            runtime: tokio::runtime::Handle::current(),
            events: Arc::default(),
            config,
            db,
            bus,
        })
    }
}
