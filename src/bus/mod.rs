//! The bus: durable job queue, pub/sub, cache, counters and generations. Without
//! `redis.url` everything stays on the node (queue in the database, generations in the
//! data directory, the rest in memory); with it, Redis carries them across nodes. The code
//! above this module does not know which.
//!
//! What a Redis outage means, per use: rate limits let requests through, cached
//! credentials are checked in the database (their generation cannot be read), notices to
//! connected clients are lost, login lockout counters and job queues answer 503. Each
//! such miss is counted in `devmesh_bus_unavailable_total{use}` ([`went_without`]).

pub mod cache;
pub mod generation;
pub mod pubsub;
pub mod queue;
pub mod ratelimit;
pub mod redis;

use std::time::Duration;

use crate::config::Config;
use crate::storage::Db;
use cache::{Cache, MemoryCache, RedisCache};
use generation::Generations;
use pubsub::{LocalPubSub, PubSub, RedisPubSub};
use queue::JobQueue;
use queue::database::DbQueue;
use queue::redis::RedisQueue;
use ratelimit::RateLimiter;
use redis::RedisConn;

#[derive(Clone)]
pub struct Bus {
    pub queue: JobQueue,
    pub pubsub: PubSub,
    pub cache: Cache,
    pub rate_limiter: RateLimiter,
    pub generations: Generations,
    redis: Option<RedisConn>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot set up the Redis client: {0}")]
pub struct BusError(#[from] fred::error::Error);

impl Bus {
    /// The bus for this configuration. Connections are made in the background.
    pub fn connect(config: &Config, db: Db) -> Result<Self, BusError> {
        let dedup = config.jobs.dedup_window.get();
        let poll = config.jobs.poll_interval.get();
        match &config.redis.url {
            None => Ok(Self {
                queue: JobQueue::Database(DbQueue::new(db, dedup, poll)),
                pubsub: PubSub::Local(LocalPubSub::default()),
                cache: Cache::Memory(MemoryCache::default()),
                rate_limiter: RateLimiter::memory(),
                generations: Generations::Files(std::sync::Arc::new(config.data_dir.clone())),
                redis: None,
            }),
            Some(url) => {
                let conn = RedisConn::connect(&config.redis, url.expose())?;
                Ok(Self {
                    queue: JobQueue::Redis(RedisQueue::new(conn.clone(), dedup, poll)),
                    pubsub: PubSub::Redis(RedisPubSub::start(conn.clone())?),
                    cache: Cache::Redis(RedisCache::new(conn.clone())),
                    rate_limiter: RateLimiter::Redis(conn.clone()),
                    generations: Generations::Redis(conn.clone()),
                    redis: Some(conn),
                })
            }
        }
    }

    /// Whether the bus reaches across nodes.
    pub fn is_distributed(&self) -> bool {
        self.redis.is_some()
    }

    /// `None` without Redis; otherwise whether Redis answers.
    pub async fn ping(&self, timeout: Duration) -> Option<Result<(), String>> {
        match &self.redis {
            None => None,
            Some(conn) => Some(conn.ping(timeout).await),
        }
    }

    pub async fn close(&self) {
        if let PubSub::Redis(p) = &self.pubsub {
            p.quit().await;
        }
        if let Some(conn) = &self.redis {
            conn.quit().await;
        }
    }
}

/// Counts a bus call that a caller went on without (`use`: `rate_limit`, `generation`,
/// `notice`, ...), and logs it: the first of each use at once, then at most every ten
/// seconds with the number of misses in between, so that an outage does not flood the log.
pub fn went_without(use_: &'static str, error: &dyn std::fmt::Display) {
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::time::Instant;

    static LAST_LOGGED: Mutex<Option<HashMap<&'static str, (Instant, u64)>>> = Mutex::new(None);
    metrics::counter!("devmesh_bus_unavailable_total", "use" => use_).increment(1);
    let mut last = LAST_LOGGED.lock().unwrap_or_else(|p| p.into_inner());
    let entry = last
        .get_or_insert_with(HashMap::new)
        .entry(use_)
        .or_insert((Instant::now() - Duration::from_secs(3600), 0));
    if entry.0.elapsed() >= Duration::from_secs(10) {
        tracing::warn!(
            %error, bus_use = use_, missed_since_last_log = entry.1,
            "the bus is unavailable; going on without it"
        );
        *entry = (Instant::now(), 0);
    } else {
        entry.1 += 1;
    }
}
