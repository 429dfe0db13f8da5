//! The Redis connection shared by the queue, pub/sub, cache and counters.
//!
//! Commands share one multiplexed client (nothing devmesh sends to Redis blocks).

use std::sync::Arc;
use std::time::Duration;

use fred::prelude::*;
use fred::types::Builder;
use fred::types::config::ReconnectPolicy;

use crate::config::RedisConfig;

/// How long closing a connection may take.
pub(crate) const QUIT_TIMEOUT: Duration = Duration::from_millis(500);

#[derive(Clone)]
pub struct RedisConn {
    client: Client,
    builder: Arc<Builder>,
    prefix: Arc<str>,
}

impl RedisConn {
    /// Starts connecting in the background; commands wait (up to the command timeout)
    /// while Redis is unreachable, and readiness reports it.
    pub fn connect(config: &RedisConfig, url: &str) -> Result<Self, fred::error::Error> {
        let mut fred_config = Config::from_url(url)?;
        fred_config.fail_fast = false;
        let timeout = config.command_timeout.get();
        let mut builder = Builder::from_config(fred_config);
        builder
            .with_performance_config(|p| p.default_command_timeout = timeout)
            .with_connection_config(|c| {
                c.connection_timeout = timeout;
                c.internal_command_timeout = timeout;
                c.max_command_attempts = 3;
            })
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 5_000, 2));
        let client = builder.build()?;
        client.connect();
        Ok(Self {
            client,
            builder: Arc::new(builder),
            prefix: config.key_prefix.clone().into(),
        })
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub(crate) fn builder(&self) -> &Builder {
        &self.builder
    }

    /// A key or channel name under this deployment's prefix.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub async fn ping(&self, timeout: Duration) -> Result<(), String> {
        match tokio::time::timeout(timeout, self.client.ping::<String>(None)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
        }
    }

    /// Closes the connection; shutdown does not wait long on a Redis that is slow or gone.
    pub async fn quit(&self) {
        let _ = tokio::time::timeout(QUIT_TIMEOUT, self.client.quit()).await;
    }
}
