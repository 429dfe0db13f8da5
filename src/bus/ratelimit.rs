//! Rate limits as token buckets, kept with the generic cell rate algorithm (GCRA): one
//! timestamp per bucket, the "theoretical arrival time". In process memory on one node, in
//! Redis (one Lua script, Redis's own clock) when nodes must share the counts.
//!
//! A request can be charged to several buckets at once (its key and its organization): it
//! is allowed only when every bucket has room, and then each is charged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fred::prelude::*;

use super::redis::RedisConn;
use crate::config::Quota;

/// The outcome of a check, from the bucket with the least room left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub quota: Quota,
    /// Requests that could be made right now.
    pub remaining: u32,
    /// Until the bucket is full again.
    pub reset: Duration,
    /// Until the next request would be allowed (zero when allowed).
    pub retry_after: Duration,
}

#[derive(Clone)]
pub enum RateLimiter {
    Memory(Arc<Mutex<MemoryBuckets>>),
    Redis(RedisConn),
}

#[derive(Default)]
pub struct MemoryBuckets {
    tats: HashMap<String, u64>,
    checks: u64,
}

/// One bucket's state after a check, in microseconds.
#[derive(Debug, Clone, Copy)]
struct Outcome {
    remaining: u32,
    retry_after_us: u64,
    reset_us: u64,
}

/// Time between two requests at the quota's rate, in microseconds (at least one: rates
/// above 60 million a minute count as that).
fn interval_us(q: Quota) -> u64 {
    (60_000_000 / u64::from(q.per_minute.max(1))).max(1)
}

/// GCRA for one bucket at time `now`; returns the new arrival time if allowed.
fn gcra(now: u64, stored_tat: Option<u64>, q: Quota) -> (Outcome, Option<u64>) {
    let t = interval_us(q);
    let capacity = t * u64::from(q.burst.max(1));
    let tat = stored_tat.unwrap_or(now).max(now);
    let new_tat = tat + t;
    let allow_at = new_tat.saturating_sub(capacity);
    if now < allow_at {
        let outcome = Outcome {
            remaining: 0,
            retry_after_us: allow_at - now,
            reset_us: tat - now,
        };
        (outcome, None)
    } else {
        let remaining = ((now + capacity - new_tat) / t) as u32;
        let outcome = Outcome {
            remaining,
            retry_after_us: 0,
            reset_us: new_tat - now,
        };
        (outcome, Some(new_tat))
    }
}

fn decide(quotas: &[Quota], outcomes: &[Outcome]) -> Decision {
    let allowed = outcomes.iter().all(|o| o.retry_after_us == 0);
    let (q, o) = quotas
        .iter()
        .zip(outcomes)
        .min_by_key(|(_, o)| (o.remaining, u64::MAX - o.retry_after_us))
        .expect("at least one bucket");
    Decision {
        allowed,
        quota: *q,
        remaining: o.remaining,
        reset: Duration::from_micros(o.reset_us),
        retry_after: Duration::from_micros(
            outcomes.iter().map(|o| o.retry_after_us).max().unwrap_or(0),
        ),
    }
}

const GCRA_SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local out = {}
local new_tats = {}
local allowed = true
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2 * i - 1])
  local capacity = interval * tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then tat = now end
  local new_tat = tat + interval
  local allow_at = new_tat - capacity
  if now < allow_at then
    allowed = false
    out[#out + 1] = 0
    out[#out + 1] = allow_at - now
    out[#out + 1] = tat - now
  else
    new_tats[i] = new_tat
    out[#out + 1] = math.floor((now + capacity - new_tat) / interval)
    out[#out + 1] = 0
    out[#out + 1] = new_tat - now
  end
end
if allowed then
  for i = 1, #KEYS do
    redis.call('SET', KEYS[i], string.format('%.0f', new_tats[i]), 'PX', math.ceil((new_tats[i] - now) / 1000) + 1)
  end
end
return out
"#;

impl RateLimiter {
    pub fn memory() -> Self {
        RateLimiter::Memory(Arc::default())
    }

    /// Charges one request to every bucket named, if all of them have room.
    pub async fn check(&self, buckets: &[(String, Quota)]) -> Result<Decision, String> {
        let quotas: Vec<Quota> = buckets.iter().map(|(_, q)| *q).collect();
        let outcomes = match self {
            RateLimiter::Memory(m) => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_micros() as u64;
                let mut m = m.lock().unwrap_or_else(|p| p.into_inner());
                m.checks += 1;
                if m.checks.is_multiple_of(4096) {
                    m.tats.retain(|_, tat| *tat > now);
                }
                let results: Vec<_> = buckets
                    .iter()
                    .map(|(key, q)| gcra(now, m.tats.get(key).copied(), *q))
                    .collect();
                if results.iter().all(|(_, tat)| tat.is_some()) {
                    for ((key, _), (_, tat)) in buckets.iter().zip(&results) {
                        m.tats.insert(key.clone(), tat.expect("checked above"));
                    }
                }
                results.into_iter().map(|(o, _)| o).collect::<Vec<_>>()
            }
            RateLimiter::Redis(conn) => {
                let keys: Vec<String> = buckets
                    .iter()
                    .map(|(k, _)| conn.key(&format!("ratelimit:{k}")))
                    .collect();
                let args: Vec<String> = quotas
                    .iter()
                    .flat_map(|q| [interval_us(*q).to_string(), q.burst.max(1).to_string()])
                    .collect();
                let flat: Vec<i64> = conn
                    .quick(conn.client().eval(GCRA_SCRIPT, keys, args))
                    .await
                    .map_err(|e| e.to_string())?;
                flat.chunks(3)
                    .map(|c| Outcome {
                        remaining: c[0].max(0) as u32,
                        retry_after_us: c[1].max(0) as u64,
                        reset_us: c[2].max(0) as u64,
                    })
                    .collect()
            }
        };
        if outcomes.len() != buckets.len() || buckets.is_empty() {
            return Err("the rate limiter answered for the wrong number of buckets".into());
        }
        Ok(decide(&quotas, &outcomes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q: Quota = Quota {
        per_minute: 60,
        burst: 3,
    };

    #[test]
    fn a_bucket_allows_its_burst_then_refills_at_its_rate() {
        let mut tat = None;
        let now = 1_000_000_000;
        for expected_remaining in [2, 1, 0] {
            let (o, new) = gcra(now, tat, Q);
            assert_eq!(o.remaining, expected_remaining);
            assert_eq!(o.retry_after_us, 0);
            tat = new;
        }
        let (o, new) = gcra(now, tat, Q);
        assert!(new.is_none());
        assert_eq!(o.retry_after_us, 1_000_000, "one token per second");
        let (o, new) = gcra(now + 1_000_000, tat, Q);
        assert!(new.is_some());
        assert_eq!(o.remaining, 0);
    }

    #[tokio::test]
    async fn every_bucket_must_have_room() {
        let limiter = RateLimiter::memory();
        let small = Quota {
            per_minute: 1,
            burst: 1,
        };
        let both = [("key".to_string(), Q), ("org".to_string(), small)];
        let first = limiter.check(&both).await.unwrap();
        assert!(first.allowed);
        assert_eq!(first.quota, small);
        let second = limiter.check(&both).await.unwrap();
        assert!(!second.allowed);
        assert!(second.retry_after > Duration::from_secs(59));
        // The refused request charged nothing: the key's bucket still has two tokens.
        let key_only = limiter.check(&both[..1]).await.unwrap();
        assert_eq!(key_only.remaining, 1);
    }
}
