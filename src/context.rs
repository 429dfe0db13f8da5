//! What every part of a node shares: configuration, database, bus and the node's identity.
//! Handlers and jobs receive it; none of it is global.

use std::sync::Arc;

use crate::bus::Bus;
use crate::config::Config;
use crate::health::Health;
use crate::nodes::NodeIdentity;
use crate::storage::Db;

#[derive(Clone)]
pub struct Context {
    pub config: Arc<Config>,
    pub db: Db,
    pub bus: Bus,
    pub node: Arc<NodeIdentity>,
    pub health: Arc<Health>,
}
