//! A cache with time-to-live and atomic counters (for rate limits): in process memory on
//! one node, in Redis when nodes must agree.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fred::prelude::*;
use fred::types::Expiration;

use super::redis::RedisConn;

#[derive(Clone)]
pub enum Cache {
    Memory(MemoryCache),
    Redis(RedisCache),
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("redis: {0}")]
    Redis(#[from] fred::error::Error),
}

impl Cache {
    pub async fn get(&self, key: &str) -> Result<Option<String>, CacheError> {
        match self {
            Cache::Memory(m) => Ok(m.get(key)),
            Cache::Redis(r) => Ok(r.conn.quick(r.conn.client().get(r.key(key))).await?),
        }
    }

    pub async fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<(), CacheError> {
        match self {
            Cache::Memory(m) => {
                m.set(key, Slot::Text(value.to_string()), ttl);
                Ok(())
            }
            Cache::Redis(r) => {
                let ms = ttl.as_millis().max(1) as i64;
                let _: Value = r
                    .conn
                    .quick(r.conn.client().set(
                        r.key(key),
                        value,
                        Some(Expiration::PX(ms)),
                        None,
                        false,
                    ))
                    .await?;
                Ok(())
            }
        }
    }

    /// Removes a key; true when it was there.
    pub async fn delete(&self, key: &str) -> Result<bool, CacheError> {
        match self {
            Cache::Memory(m) => Ok(m.delete(key)),
            Cache::Redis(r) => Ok(r
                .conn
                .quick(r.conn.client().del::<i64, _>(r.key(key)))
                .await?
                > 0),
        }
    }

    /// Adds `delta` to a counter and returns the new value. A counter that did not exist
    /// starts at zero and lives for `ttl` from then (a fixed window).
    pub async fn incr(&self, key: &str, delta: i64, ttl: Duration) -> Result<i64, CacheError> {
        match self {
            Cache::Memory(m) => Ok(m.incr(key, delta, ttl)),
            Cache::Redis(r) => {
                const INCR: &str = r#"
local v = redis.call('INCRBY', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) == -1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return v
"#;
                let ms = ttl.as_millis().max(1).to_string();
                Ok(r.conn
                    .quick(r.conn.client().eval(
                        INCR,
                        vec![r.key(key)],
                        vec![delta.to_string(), ms],
                    ))
                    .await?)
            }
        }
    }

    /// Time left before a key expires; `None` when it does not exist.
    pub async fn ttl(&self, key: &str) -> Result<Option<Duration>, CacheError> {
        match self {
            Cache::Memory(m) => Ok(m.ttl(key)),
            Cache::Redis(r) => {
                let ms: i64 = r.conn.quick(r.conn.client().pttl(r.key(key))).await?;
                Ok((ms >= 0).then(|| Duration::from_millis(ms as u64)))
            }
        }
    }
}

#[derive(Clone)]
pub struct RedisCache {
    conn: RedisConn,
}

impl RedisCache {
    pub fn new(conn: RedisConn) -> Self {
        Self { conn }
    }
    fn key(&self, key: &str) -> String {
        self.conn.key(&format!("cache:{key}"))
    }
}

enum Slot {
    Text(String),
    Counter(i64),
}

struct Entry {
    slot: Slot,
    expires: Instant,
}

/// Entries live until they expire; expired ones are swept every so many writes.
#[derive(Clone, Default)]
pub struct MemoryCache {
    inner: Arc<Mutex<MemoryInner>>,
}

#[derive(Default)]
struct MemoryInner {
    entries: HashMap<String, Entry>,
    writes: u64,
}

const SWEEP_EVERY: u64 = 1024;

impl MemoryInner {
    fn live(&mut self, key: &str, now: Instant) -> Option<&mut Entry> {
        if self.entries.get(key).is_some_and(|e| e.expires <= now) {
            self.entries.remove(key);
        }
        self.entries.get_mut(key)
    }

    fn wrote(&mut self, now: Instant) {
        self.writes += 1;
        if self.writes.is_multiple_of(SWEEP_EVERY) {
            self.entries.retain(|_, e| e.expires > now);
        }
    }
}

impl MemoryCache {
    fn get(&self, key: &str) -> Option<String> {
        let mut inner = self.inner.lock().expect("cache");
        match &inner.live(key, Instant::now())?.slot {
            Slot::Text(t) => Some(t.clone()),
            Slot::Counter(n) => Some(n.to_string()),
        }
    }

    fn set(&self, key: &str, slot: Slot, ttl: Duration) {
        let now = Instant::now();
        let mut inner = self.inner.lock().expect("cache");
        inner.entries.insert(
            key.to_string(),
            Entry {
                slot,
                expires: now + ttl,
            },
        );
        inner.wrote(now);
    }

    fn delete(&self, key: &str) -> bool {
        let mut inner = self.inner.lock().expect("cache");
        let was_live = inner.live(key, Instant::now()).is_some();
        inner.entries.remove(key);
        was_live
    }

    fn incr(&self, key: &str, delta: i64, ttl: Duration) -> i64 {
        let now = Instant::now();
        let mut inner = self.inner.lock().expect("cache");
        let value = match inner.live(key, now) {
            Some(Entry {
                slot: Slot::Counter(n),
                ..
            }) => {
                *n += delta;
                *n
            }
            Some(entry) => {
                // Like Redis INCRBY on a number stored as text.
                let base = match &entry.slot {
                    Slot::Text(t) => t.parse::<i64>().unwrap_or(0),
                    Slot::Counter(n) => *n,
                };
                entry.slot = Slot::Counter(base + delta);
                base + delta
            }
            None => {
                inner.entries.insert(
                    key.to_string(),
                    Entry {
                        slot: Slot::Counter(delta),
                        expires: now + ttl,
                    },
                );
                delta
            }
        };
        inner.wrote(now);
        value
    }

    fn ttl(&self, key: &str) -> Option<Duration> {
        let now = Instant::now();
        let mut inner = self.inner.lock().expect("cache");
        inner.live(key, now).map(|e| e.expires - now)
    }
}
