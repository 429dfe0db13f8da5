//! The Redis connection shared by the queue, pub/sub, cache and counters.
//!
//! Commands share one multiplexed client (nothing devmesh sends to Redis blocks). While
//! Redis is away the client reconnects every few hundred milliseconds, so that the node is
//! back to normal within a second of Redis returning; meanwhile commands on a request's path
//! ([`RedisConn::quick`]) fail at once instead of waiting for the reconnection, and each
//! caller takes its fallback (see the callers), counted in `devmesh_bus_unavailable_total`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fred::prelude::*;
use fred::types::Builder;
use fred::types::ClientState;
use fred::types::config::ReconnectPolicy;

use crate::config::RedisConfig;

/// How long closing a connection may take.
pub(crate) const QUIT_TIMEOUT: Duration = Duration::from_millis(500);

/// The longest pause between two reconnection attempts.
const RECONNECT_MAX_DELAY_MS: u32 = 400;

#[derive(Clone)]
pub struct RedisConn {
    client: Client,
    builder: Arc<Builder>,
    prefix: Arc<str>,
    request_timeout: Duration,
    /// Until the first connection, or the end of this window after the client was made
    /// (a node starting), commands wait for Redis, within their timeout; after it, a
    /// disconnected client refuses them at once.
    patient_until: tokio::time::Instant,
    was_connected: Arc<AtomicBool>,
    /// Set when a command on a request's path timed out: Redis is connected but not
    /// answering (a hung server). Until then, such commands fail at once, one probe at a
    /// time excepted, so that no request pays the timeout more than once in a while.
    stalled: Arc<std::sync::Mutex<Stall>>,
}

#[derive(Default)]
struct Stall {
    until: Option<tokio::time::Instant>,
    probing: bool,
}

struct ProbeGuard<'a>(Option<&'a std::sync::Mutex<Stall>>);

impl Drop for ProbeGuard<'_> {
    fn drop(&mut self) {
        if let Some(stall) = self.0 {
            stall.lock().unwrap_or_else(|p| p.into_inner()).probing = false;
        }
    }
}

/// How long commands fail at once after one timed out, before the next probe.
const STALL_BACKOFF: Duration = Duration::from_secs(1);

impl RedisConn {
    /// Starts connecting in the background; readiness reports Redis until it answers.
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
            .set_policy(ReconnectPolicy::new_exponential(
                0,
                50,
                RECONNECT_MAX_DELAY_MS,
                2,
            ));
        let client = builder.build()?;
        client.connect();
        Ok(Self {
            client,
            builder: Arc::new(builder),
            prefix: config.key_prefix.clone().into(),
            request_timeout: config.request_timeout.get(),
            patient_until: tokio::time::Instant::now() + timeout,
            was_connected: Arc::default(),
            stalled: Arc::default(),
        })
    }

    /// An error at once when the client is not connected: a command sent now would wait
    /// for the reconnection, up to the command timeout. A node that has just started may
    /// wait for its first connection.
    pub fn check_connected(&self) -> Result<(), fred::error::Error> {
        match self.client.state() {
            ClientState::Connected => {
                self.was_connected.store(true, Ordering::Relaxed);
                Ok(())
            }
            _ if !self.was_connected.load(Ordering::Relaxed)
                && tokio::time::Instant::now() < self.patient_until =>
            {
                Ok(())
            }
            state => Err(fred::error::Error::new(
                fred::error::ErrorKind::Canceled,
                format!("Redis is not connected ({state:?})"),
            )),
        }
    }

    /// Runs a command on a request's path: refused at once while Redis is disconnected,
    /// and given up after `redis.request_timeout`. After a command timed out (Redis
    /// connected but hung), commands are refused at once for a while, and then one at a
    /// time probes whether Redis answers again.
    pub async fn quick<T>(
        &self,
        command: impl Future<Output = Result<T, fred::error::Error>>,
    ) -> Result<T, fred::error::Error> {
        self.check_connected()?;
        let probe = self.enter()?;
        // Ends the probe however this call ends (a request dropped mid-way included).
        let _probe = ProbeGuard(probe.then_some(&*self.stalled));
        let outcome = tokio::time::timeout(self.request_timeout, command).await;
        let mut stall = self.stalled.lock().unwrap_or_else(|p| p.into_inner());
        match outcome {
            Ok(result) => {
                stall.until = None;
                result
            }
            Err(_) => {
                stall.until = Some(tokio::time::Instant::now() + STALL_BACKOFF);
                Err(fred::error::Error::new(
                    fred::error::ErrorKind::Timeout,
                    format!(
                        "Redis did not answer within {} ms (redis.request_timeout)",
                        self.request_timeout.as_millis()
                    ),
                ))
            }
        }
    }

    /// Whether a command may go to Redis now (`Ok(true)` when it is the probe after a
    /// stall), or an error at once while Redis is stalled.
    fn enter(&self) -> Result<bool, fred::error::Error> {
        let mut stall = self.stalled.lock().unwrap_or_else(|p| p.into_inner());
        let Some(until) = stall.until else {
            return Ok(false);
        };
        if tokio::time::Instant::now() >= until && !stall.probing {
            stall.probing = true;
            return Ok(true);
        }
        Err(fred::error::Error::new(
            fred::error::ErrorKind::Timeout,
            "Redis stopped answering; not waiting for it (redis.request_timeout)",
        ))
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
        self.check_connected().map_err(|e| e.to_string())?;
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
