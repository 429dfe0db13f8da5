//! The MCP endpoint: Streamable HTTP at `/mcp` on the mcp listener, speaking protocol
//! 2026-07-28 (stateless) and 2025-11-25 / 2025-06-18 (sessions) on the same path.
//!
//! - [`protocol`]: versions, JSON-RPC messages and errors.
//! - [`endpoint`]: the HTTP side: eras, sessions, refusals; `respond` runs a request and
//!   answers in JSON or SSE, `stateless` checks a 2026-07-28 request's `_meta` and headers.
//! - [`engine`]: the methods, whatever the transport.
//! - [`catalog`]: tools, resources and prompts from [`providers`], per tenant.
//! - [`call`]: what a provider gets with a request, and its way back to the client.
//! - [`sessions`]: the sessions of the older protocols.
//! - [`request_state`]: sealed state of multi-round requests.
//! - [`tasks`]: tool calls that run as tasks (extension `io.modelcontextprotocol/tasks`).
//! - [`ws`]: the same protocol over WebSocket at `/ws`.

pub mod call;
pub mod catalog;
mod endpoint;
pub mod engine;
pub mod header_value;
mod listen;
mod notices;
mod origin;
pub mod protocol;
pub mod providers;
pub mod request_state;
mod respond;
pub mod sessions;
mod sse;
mod stateless;
pub mod tasks;
pub mod ws;

use std::sync::Arc;

use rmcp::model::RequestStateCodec;
use tokio::sync::OnceCell;

use crate::config::Config;
use crate::service::ServiceResult;
use crate::storage::{Db, settings};
use crate::tenancy::TenancyState;
use crate::tenancy::anonymous::AnonymousTenant;
use catalog::{Catalog, Provider};
use sessions::Sessions;

/// The MCP routes: `/mcp` and `/ws`.
pub fn configure(cfg: &mut actix_web::web::ServiceConfig) {
    endpoint::configure(cfg);
    ws::configure(cfg);
}

/// Told when a principal holds a long-lived connection open on this node (a WebSocket, a
/// `subscriptions/listen` stream, a session's GET stream): the agents capability keeps
/// its agents' presence with it.
pub trait ConnectionObserver: Send + Sync {
    /// The connection opened; what this returns is dropped when it closes.
    fn opened(
        &self,
        node: &crate::context::Context,
        principal: &crate::tenancy::Principal,
    ) -> Option<Box<dyn Send + Sync>>;
}

/// What the observers hold while a connection is open.
pub type Held = Vec<Box<dyn Send + Sync>>;

const REQUEST_STATE_KEY: &str = "mcp.request_state_key";

/// The node's MCP state: the catalog, the sessions and the key that protects
/// `requestState`.
pub struct Mcp {
    /// Who callers are: MCP authenticates with the tenancy's credentials and grants.
    pub tenancy: Arc<TenancyState>,
    pub catalog: Catalog,
    pub sessions: Arc<Sessions>,
    pub page_size: usize,
    pub list_ttl_ms: u64,
    pub anonymous: AnonymousTenant,
    /// The WebSocket connections of this node, and the way to every node's.
    pub hub: Arc<ws::hub::Hub>,
    /// The task rounds running on this node.
    pub tasks: Arc<tasks::Running>,
    observers: Vec<Arc<dyn ConnectionObserver>>,
    state_codec: OnceCell<RequestStateCodec>,
}

impl Mcp {
    /// The MCP of a node, serving the built-in providers and those of the capabilities
    /// that build on it (`more`: the tools gateway's, ...), telling `observers` of the
    /// connections held open.
    pub fn new(
        config: &Config,
        tenancy: Arc<TenancyState>,
        more: Vec<Box<dyn Provider>>,
        observers: Vec<Arc<dyn ConnectionObserver>>,
    ) -> Arc<Self> {
        let mut providers: Vec<Box<dyn Provider>> = vec![
            Box::new(providers::contexts::ContextsProvider::new()),
            Box::new(providers::system::SystemProvider),
        ];
        providers.extend(more);
        if config.mcp.conformance_fixtures {
            providers.push(Box::new(providers::fixtures::FixturesProvider::new()));
        }
        Arc::new(Self {
            tenancy,
            catalog: Catalog::new(providers),
            sessions: Arc::new(Sessions::new(
                config.mcp.session_idle_timeout.get(),
                config.mcp.replay_buffer,
            )),
            page_size: config.mcp.page_size,
            list_ttl_ms: config.mcp.list_cache_ttl.get().as_millis() as u64,
            anonymous: AnonymousTenant::default(),
            hub: Arc::default(),
            tasks: Arc::default(),
            observers,
            state_codec: OnceCell::new(),
        })
    }

    /// Tells the observers that `principal` opened a long-lived connection; dropping
    /// what this returns tells them it closed.
    pub fn connection_opened(
        &self,
        node: &crate::context::Context,
        principal: &crate::tenancy::Principal,
    ) -> Held {
        self.observers
            .iter()
            .filter_map(|o| o.opened(node, principal))
            .collect()
    }

    /// Seals and opens `requestState` (HMAC-SHA256) with a key every node shares: made
    /// once and kept in the database.
    pub async fn state_codec(&self, db: &Db) -> ServiceResult<&RequestStateCodec> {
        self.state_codec
            .get_or_try_init(|| async {
                let candidate = crate::tenancy::secrets::generate_signing_secret();
                let key = settings::get_or_insert(db, REQUEST_STATE_KEY, &candidate).await?;
                RequestStateCodec::try_new(key.into_bytes()).map_err(|e| {
                    crate::service::ServiceError::Internal(format!(
                        "the request-state key is unusable: {e}"
                    ))
                })
            })
            .await
    }
}
