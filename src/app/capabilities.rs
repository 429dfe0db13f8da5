//! The node's capabilities, each with its own state, wired together: the one place that
//! knows them all. Below `app`, infrastructure (`context`, `http`, `jobs`, `nodes`, ...)
//! knows no capability, and a capability knows only those it builds on (MCP builds on
//! the tenancy and contexts; the tools gateway and agents on the tenancy and MCP; the REST
//! API on the tenancy, contexts, the gateway and agents).

use std::sync::Arc;

use actix_web::web;

use crate::agents::Agents;
use crate::agents::presence::Observer;
use crate::agents::provider::AgentsProvider;
use crate::agents::sweep::SweepTasks;
use crate::config::Config;
use crate::gateway::Gateway;
use crate::gateway::discover_job::DiscoverTool;
use crate::gateway::health::CheckHealth;
use crate::gateway::provider::GatewayProvider;
use crate::http::Routes;
use crate::jobs::Registry;
use crate::jobs::node_sweep::NodeSweep;
use crate::jobs::recurring::Recurring;
use crate::mcp::Mcp;
use crate::nodes::{NodeWork, NodeWorks};
use crate::tenancy::TenancyState;

/// Every capability's state on this node. Cheap to clone (each is shared).
#[derive(Clone)]
pub struct Capabilities {
    pub tenancy: Arc<TenancyState>,
    pub mcp: Arc<Mcp>,
    pub gateway: Arc<Gateway>,
    pub agents: Arc<Agents>,
}

impl Capabilities {
    pub fn new(config: &Config) -> Self {
        let tenancy = TenancyState::new(config);
        let gateway = Gateway::new(config);
        let agents = Agents::new(config);
        let mcp = Mcp::new(
            config,
            tenancy.clone(),
            vec![
                Box::new(GatewayProvider(gateway.clone())),
                Box::new(AgentsProvider::new(agents.clone())),
            ],
            vec![Arc::new(Observer(agents.clone()))],
        );
        Self {
            tenancy,
            mcp,
            gateway,
            agents,
        }
    }

    /// The work of every capability that outlives requests (see [`NodeWork`]).
    pub fn node_work(&self) -> NodeWorks {
        let tasks: Arc<dyn NodeWork> = self.mcp.tasks.clone();
        Arc::from(vec![tasks])
    }

    /// The job kinds of the platform and of every capability, with their state.
    pub fn jobs(&self) -> Registry {
        Registry::new()
            .register::<NodeSweep>(self.node_work())
            .register::<DiscoverTool>(self.gateway.clone())
            .register::<CheckHealth>(self.gateway.clone())
            .register::<SweepTasks>(self.agents.clone())
    }

    /// The recurring jobs, offered by every worker node (each runs once per slot).
    pub fn recurring(&self, config: &Config) -> Vec<Recurring> {
        vec![
            Recurring::new(NodeSweep {}, config.node.heartbeat_interval.get()),
            Recurring::new(CheckHealth {}, config.gateway.health_tick.get()),
            Recurring::new(SweepTasks {}, config.agents.sweep_interval.get()),
        ]
    }

    /// The mcp listener's routes (`/mcp`, `/ws`) with the state they use.
    pub fn mcp_routes(&self) -> Routes {
        let (tenancy, mcp) = (self.tenancy.clone(), self.mcp.clone());
        Arc::new(move |cfg: &mut web::ServiceConfig| {
            cfg.app_data(web::Data::from(tenancy.clone()))
                .app_data(web::Data::from(mcp.clone()));
            crate::mcp::configure(cfg);
        })
    }

    /// The api listener's routes (`/api/v1/...`) with the state they use.
    pub fn api_routes(&self) -> Routes {
        let (tenancy, gateway) = (self.tenancy.clone(), self.gateway.clone());
        let agents = self.agents.clone();
        Arc::new(move |cfg: &mut web::ServiceConfig| {
            cfg.app_data(web::Data::from(tenancy.clone()))
                .app_data(web::Data::from(gateway.clone()))
                .app_data(web::Data::from(agents.clone()));
            crate::api::configure(cfg);
        })
    }
}
