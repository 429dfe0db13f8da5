//! The job queue on Redis Streams: one stream and consumer group per queue, a sorted set
//! of delayed jobs, a sorted set of dead letters, and a hash per job. State changes are
//! Lua scripts (see `redis_scripts`), so a node dying between two commands loses nothing.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};
use fred::prelude::*;

use super::redis_scripts as scripts;
use super::{DeadJob, Delivery, Enqueued, FailOutcome, NewJob, QueueDepth, QueueError, QueueResult, new_job_id, parse_payload};
use crate::bus::redis::RedisConn;

const GROUP: &str = "workers";
/// Entries moved per script call when promoting delayed jobs or reclaiming stalled ones.
const BATCH: &str = "100";

#[derive(Clone)]
pub struct RedisQueue {
    conn: RedisConn,
    dedup_window: Duration,
    poll_interval: Duration,
    groups: Arc<Mutex<HashSet<String>>>,
}

struct Keys {
    stream: String,
    delayed: String,
    dead: String,
    job_prefix: String,
    dedup_prefix: String,
}

impl Keys {
    fn job(&self, id: &str) -> String {
        format!("{}{id}", self.job_prefix)
    }
}

impl RedisQueue {
    pub fn new(conn: RedisConn, dedup_window: Duration, poll_interval: Duration) -> Self {
        Self { conn, dedup_window, poll_interval, groups: Arc::default() }
    }

    fn keys(&self, queue: &str) -> Keys {
        let base = self.conn.key(&format!("q:{{{queue}}}:"));
        Keys {
            stream: format!("{base}stream"),
            delayed: format!("{base}delayed"),
            dead: format!("{base}dead"),
            job_prefix: format!("{base}job:"),
            dedup_prefix: format!("{base}dedup:"),
        }
    }

    fn client(&self) -> &Client {
        self.conn.client()
    }

    async fn ensure_group(&self, keys: &Keys) -> QueueResult<()> {
        if self.groups.lock().expect("group set").contains(&keys.stream) {
            return Ok(());
        }
        match self.client().xgroup_create::<Value, _, _, _>(&keys.stream, GROUP, "0", true).await {
            Ok(_) => {}
            Err(e) if e.details().contains("BUSYGROUP") => {}
            Err(e) => return Err(e.into()),
        }
        self.groups.lock().expect("group set").insert(keys.stream.clone());
        Ok(())
    }

    /// Forgets that the group exists, so that the next call creates it again
    /// (after the stream was deleted, for instance).
    fn forget_group_on(&self, keys: &Keys, e: &fred::error::Error) {
        if e.details().contains("NOGROUP") {
            self.groups.lock().expect("group set").remove(&keys.stream);
        }
    }

    pub async fn enqueue(&self, job: NewJob) -> QueueResult<Enqueued> {
        let keys = self.keys(&job.queue);
        let id = new_job_id();
        let now = now_ms();
        let due = if job.delay.is_zero() { 0 } else { now + job.delay.as_millis() as i64 };
        let dedup = job.dedup_key.as_ref().map(|k| format!("{}{k}", keys.dedup_prefix)).unwrap_or_default();
        let (created, holder): (i64, String) = self
            .client()
            .eval(
                scripts::ENQUEUE,
                vec![keys.stream.clone(), keys.delayed.clone(), keys.job(&id), dedup],
                vec![
                    id.clone(),
                    job.kind,
                    job.payload.to_string(),
                    job.max_attempts.max(1).to_string(),
                    now.to_string(),
                    due.to_string(),
                    self.dedup_window.as_millis().max(1).to_string(),
                ],
            )
            .await?;
        Ok(Enqueued { id: holder, duplicate: created == 0 })
    }

    pub async fn fetch(
        &self,
        queue: &str,
        consumer: &str,
        visibility: Duration,
        wait: Duration,
    ) -> QueueResult<Option<Delivery>> {
        let keys = self.keys(queue);
        self.ensure_group(&keys).await?;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let now = now_ms();
            let _: i64 = self
                .client()
                .eval(scripts::PROMOTE, vec![keys.delayed.clone(), keys.stream.clone()], vec![now.to_string(), BATCH.into()])
                .await?;
            let reclaimed: Result<i64, _> = self
                .client()
                .eval(
                    scripts::RECLAIM,
                    vec![keys.stream.clone(), keys.dead.clone()],
                    vec![
                        GROUP.to_string(),
                        consumer.to_string(),
                        visibility.as_millis().to_string(),
                        keys.job_prefix.clone(),
                        now.to_string(),
                        BATCH.into(),
                    ],
                )
                .await;
            if let Err(e) = reclaimed {
                self.forget_group_on(&keys, &e);
                return Err(e.into());
            }

            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            let block_ms = remaining.min(self.poll_interval).as_millis().max(1) as u64;
            let client = self.conn.take_blocking().await?;
            let read = client
                .xreadgroup::<Value, _, _, _, _>(GROUP, consumer, Some(1), Some(block_ms), false, &keys.stream, ">")
                .await;
            let value = match read {
                Ok(v) => {
                    self.conn.release_blocking(client);
                    v
                }
                Err(e) => {
                    self.forget_group_on(&keys, &e);
                    return Err(e.into());
                }
            };
            if let Some((entry, id)) = first_entry(value) {
                if let Some(delivery) = self.start(&keys, queue, entry, id).await? {
                    return Ok(Some(delivery));
                }
                continue;
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(None);
            }
        }
    }

    /// Counts the attempt and loads the job; an entry whose job is gone is dropped.
    async fn start(&self, keys: &Keys, queue: &str, entry: String, id: String) -> QueueResult<Option<Delivery>> {
        let fields: Value = self.client().eval(scripts::START, vec![keys.job(&id)], Vec::<String>::new()).await?;
        let fields = pairs(fields);
        if fields.is_empty() {
            let _: Value = self.client().eval(scripts::ACK, vec![keys.stream.clone(), keys.job(&id)], vec![GROUP.to_string(), entry]).await?;
            return Ok(None);
        }
        Ok(Some(Delivery {
            id,
            queue: queue.to_string(),
            kind: fields.get("kind").cloned().unwrap_or_default(),
            payload: parse_payload(fields.get("payload").map(String::as_str).unwrap_or("null"))?,
            attempt: number(&fields, "attempts") as u32,
            max_attempts: number(&fields, "max_attempts").max(1) as u32,
            lease: entry,
        }))
    }

    pub async fn extend(&self, d: &Delivery, consumer: &str, _visibility: Duration) -> QueueResult<()> {
        // XCLAIM resets the entry's idle time; an entry that was reclaimed no longer exists.
        let keys = self.keys(&d.queue);
        let claimed: Value = self
            .client()
            .xclaim(&keys.stream, GROUP, consumer, 0, d.lease.as_str(), None, None, None, false, true)
            .await?;
        if claimed.into_array().iter().any(|v| !v.is_null()) { Ok(()) } else { Err(QueueError::LeaseLost) }
    }

    pub async fn ack(&self, d: &Delivery) -> QueueResult<()> {
        let keys = self.keys(&d.queue);
        let done: i64 = self
            .client()
            .eval(scripts::ACK, vec![keys.stream.clone(), keys.job(&d.id)], vec![GROUP.to_string(), d.lease.clone()])
            .await?;
        if done == 1 { Ok(()) } else { Err(QueueError::LeaseLost) }
    }

    pub async fn fail(&self, d: &Delivery, error: &str, outcome: FailOutcome) -> QueueResult<()> {
        let keys = self.keys(&d.queue);
        let now = now_ms();
        let retry_at = match outcome {
            FailOutcome::Retrying(after) => now + after.as_millis() as i64,
            FailOutcome::Dead => -1,
        };
        let result: i64 = self
            .client()
            .eval(
                scripts::FAIL,
                vec![keys.stream.clone(), keys.delayed.clone(), keys.dead.clone(), keys.job(&d.id)],
                vec![
                    GROUP.to_string(),
                    d.lease.clone(),
                    d.id.clone(),
                    error.to_string(),
                    retry_at.to_string(),
                    now.to_string(),
                ],
            )
            .await?;
        if result == 0 { Err(QueueError::LeaseLost) } else { Ok(()) }
    }

    pub async fn dead_letters(&self, queue: &str, limit: usize) -> QueueResult<Vec<DeadJob>> {
        let keys = self.keys(queue);
        let stop = limit.clamp(1, 10_000) as i64 - 1;
        let ids: Vec<String> = self.client().zrange(&keys.dead, 0, stop, None, true, None, false).await?;
        let mut dead = Vec::with_capacity(ids.len());
        for id in ids {
            let fields: HashMap<String, String> = self.client().hgetall(keys.job(&id)).await?;
            if fields.is_empty() {
                continue;
            }
            dead.push(DeadJob {
                payload: parse_payload(fields.get("payload").map(String::as_str).unwrap_or("null"))?,
                queue: queue.to_string(),
                kind: fields.get("kind").cloned().unwrap_or_default(),
                attempts: number(&fields, "attempts") as u32,
                last_error: fields.get("last_error").cloned(),
                created_at: time(number(&fields, "created_at")),
                failed_at: time(number(&fields, "failed_at")),
                id,
            });
        }
        Ok(dead)
    }

    pub async fn replay(&self, queue: &str, id: &str) -> QueueResult<bool> {
        let keys = self.keys(queue);
        let replayed: i64 = self
            .client()
            .eval(scripts::REPLAY, vec![keys.stream.clone(), keys.dead.clone(), keys.job(id)], vec![id.to_string()])
            .await?;
        Ok(replayed == 1)
    }

    pub async fn depth(&self, queue: &str) -> QueueResult<QueueDepth> {
        let keys = self.keys(queue);
        let length: u64 = self.client().xlen(&keys.stream).await?;
        let pending = match self.client().xpending::<Value, _, _, _>(&keys.stream, GROUP, ()).await {
            Ok(summary) => summary.into_array().first().and_then(Value::as_i64).unwrap_or(0).max(0) as u64,
            Err(e) if e.details().contains("NOGROUP") => 0,
            Err(e) => return Err(e.into()),
        };
        let scheduled: u64 = self.client().zcard(&keys.delayed).await?;
        let dead: u64 = self.client().zcard(&keys.dead).await?;
        Ok(QueueDepth { ready: length.saturating_sub(pending), scheduled, running: pending, dead })
    }
}

/// The first entry of an `XREADGROUP` reply: its stream entry id and the job id it carries.
fn first_entry(reply: Value) -> Option<(String, String)> {
    let entries = match reply {
        Value::Map(map) => map.inner().into_values().next()?,
        Value::Array(streams) => streams.into_iter().next()?.into_array().into_iter().nth(1)?,
        _ => return None,
    };
    let mut entry = entries.into_array().into_iter().next()?.into_array().into_iter();
    let entry_id = entry.next()?.as_string()?;
    let fields = entry.next()?.into_array();
    let job_id = fields.get(1)?.as_string()?;
    Some((entry_id, job_id))
}

/// A flat `[field, value, ...]` reply as a map.
fn pairs(reply: Value) -> HashMap<String, String> {
    if reply.is_null() {
        return HashMap::new();
    }
    let flat = reply.into_array();
    flat.chunks(2)
        .filter_map(|kv| Some((kv.first()?.as_string()?, kv.get(1)?.as_string()?)))
        .collect()
}

fn number(fields: &HashMap<String, String>, key: &str) -> i64 {
    fields.get(key).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
