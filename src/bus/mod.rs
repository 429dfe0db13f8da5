//! The bus: durable job queue, pub/sub, cache and counters. Without `redis.url` everything
//! stays on the node (queue in the database, the rest in memory); with it, Redis carries
//! them across nodes. The code above this module does not know which.

pub mod cache;
pub mod pubsub;
pub mod queue;
pub mod ratelimit;
pub mod redis;

use std::time::Duration;

use crate::config::Config;
use crate::storage::Db;
use cache::{Cache, MemoryCache, RedisCache};
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
                redis: None,
            }),
            Some(url) => {
                let conn = RedisConn::connect(&config.redis, url.expose())?;
                Ok(Self {
                    queue: JobQueue::Redis(RedisQueue::new(conn.clone(), dedup, poll)),
                    pubsub: PubSub::Redis(RedisPubSub::start(conn.clone())?),
                    cache: Cache::Redis(RedisCache::new(conn.clone())),
                    rate_limiter: RateLimiter::Redis(conn.clone()),
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
