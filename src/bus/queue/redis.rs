//! The job queue on Redis Streams: one stream and consumer group per queue, sorted sets of
//! leases, delayed jobs and dead letters, and a hash per job. State changes are Lua scripts
//! (see `redis_scripts`), so a node dying between two commands loses nothing.
//!
//! A waiting consumer asks again every poll interval, and at once when this node enqueues.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;

use chrono::{DateTime, Utc};
use fred::prelude::*;

use super::redis_scripts as scripts;
use super::{
    DeadJob, Delivery, Enqueued, FailOutcome, NewJob, QueueDepth, QueueError, QueueResult,
    new_job_id, parse_payload,
};
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
    enqueued: Arc<Notify>,
}

struct Keys {
    stream: String,
    leases: String,
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
        Self {
            conn,
            dedup_window,
            poll_interval,
            groups: Arc::default(),
            enqueued: Arc::default(),
        }
    }

    fn keys(&self, queue: &str) -> Keys {
        let base = self.conn.key(&format!("q:{{{queue}}}:"));
        Keys {
            stream: format!("{base}stream"),
            leases: format!("{base}leases"),
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
        if self
            .groups
            .lock()
            .expect("group set")
            .contains(&keys.stream)
        {
            return Ok(());
        }
        match self
            .client()
            .xgroup_create::<Value, _, _, _>(&keys.stream, GROUP, "0", true)
            .await
        {
            Ok(_) => {}
            Err(e) if e.details().contains("BUSYGROUP") => {}
            Err(e) => return Err(e.into()),
        }
        self.groups
            .lock()
            .expect("group set")
            .insert(keys.stream.clone());
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
        let due = if job.delay.is_zero() {
            0
        } else {
            now + job.delay.as_millis() as i64
        };
        let dedup = job
            .dedup_key
            .as_ref()
            .map(|k| format!("{}{k}", keys.dedup_prefix))
            .unwrap_or_default();
        let (created, holder): (i64, String) = self
            .client()
            .eval(
                scripts::ENQUEUE,
                vec![
                    keys.stream.clone(),
                    keys.delayed.clone(),
                    keys.job(&id),
                    dedup,
                ],
                vec![
                    id.clone(),
                    job.kind,
                    job.payload.to_string(),
                    job.max_attempts.max(1).to_string(),
                    now.to_string(),
                    due.to_string(),
                    job.dedup_window
                        .unwrap_or(self.dedup_window)
                        .as_millis()
                        .max(1)
                        .to_string(),
                ],
            )
            .await?;
        self.enqueued.notify_waiters();
        Ok(Enqueued {
            id: holder,
            duplicate: created == 0,
        })
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
            let notified = self.enqueued.notified();
            let taken: Result<Value, _> = self
                .client()
                .eval(
                    scripts::FETCH,
                    vec![
                        keys.stream.clone(),
                        keys.delayed.clone(),
                        keys.dead.clone(),
                        keys.leases.clone(),
                    ],
                    vec![
                        GROUP.to_string(),
                        consumer.to_string(),
                        now_ms().to_string(),
                        visibility.as_millis().to_string(),
                        keys.job_prefix.clone(),
                        BATCH.into(),
                    ],
                )
                .await;
            let taken = taken.inspect_err(|e| self.forget_group_on(&keys, e))?;
            if !taken.is_null() {
                return delivery(queue, taken).map(Some);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let _ = tokio::time::timeout(self.poll_interval.min(deadline - now), notified).await;
        }
    }

    pub async fn extend(
        &self,
        d: &Delivery,
        _consumer: &str,
        visibility: Duration,
    ) -> QueueResult<()> {
        let keys = self.keys(&d.queue);
        let until = now_ms() + visibility.as_millis() as i64;
        let kept: i64 = self
            .client()
            .eval(
                scripts::EXTEND,
                vec![keys.leases.clone()],
                vec![lease_member(d), until.to_string()],
            )
            .await?;
        if kept == 1 {
            Ok(())
        } else {
            Err(QueueError::LeaseLost)
        }
    }

    pub async fn ack(&self, d: &Delivery) -> QueueResult<()> {
        let keys = self.keys(&d.queue);
        let done: i64 = self
            .client()
            .eval(
                scripts::ACK,
                vec![keys.stream.clone(), keys.leases.clone(), keys.job(&d.id)],
                vec![GROUP.to_string(), d.lease.clone(), lease_member(d)],
            )
            .await?;
        if done == 1 {
            Ok(())
        } else {
            Err(QueueError::LeaseLost)
        }
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
                vec![
                    keys.stream.clone(),
                    keys.leases.clone(),
                    keys.delayed.clone(),
                    keys.dead.clone(),
                    keys.job(&d.id),
                ],
                vec![
                    GROUP.to_string(),
                    d.lease.clone(),
                    lease_member(d),
                    d.id.clone(),
                    error.to_string(),
                    retry_at.to_string(),
                    now.to_string(),
                ],
            )
            .await?;
        if result == 0 {
            Err(QueueError::LeaseLost)
        } else {
            Ok(())
        }
    }

    pub async fn dead_letters(&self, queue: &str, limit: usize) -> QueueResult<Vec<DeadJob>> {
        let keys = self.keys(queue);
        let stop = limit.clamp(1, 10_000) as i64 - 1;
        let ids: Vec<String> = self
            .client()
            .zrange(&keys.dead, 0, stop, None, true, None, false)
            .await?;
        let mut dead = Vec::with_capacity(ids.len());
        for id in ids {
            let fields: HashMap<String, String> = self.client().hgetall(keys.job(&id)).await?;
            if fields.is_empty() {
                continue;
            }
            dead.push(DeadJob {
                payload: parse_payload(
                    fields.get("payload").map(String::as_str).unwrap_or("null"),
                )?,
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
            .eval(
                scripts::REPLAY,
                vec![keys.stream.clone(), keys.dead.clone(), keys.job(id)],
                vec![id.to_string()],
            )
            .await?;
        Ok(replayed == 1)
    }

    pub async fn depth(&self, queue: &str) -> QueueResult<QueueDepth> {
        let keys = self.keys(queue);
        let length: u64 = self.client().xlen(&keys.stream).await?;
        let running: u64 = self.client().zcard(&keys.leases).await?;
        let scheduled: u64 = self.client().zcard(&keys.delayed).await?;
        let dead: u64 = self.client().zcard(&keys.dead).await?;
        Ok(QueueDepth {
            ready: length.saturating_sub(running),
            scheduled,
            running,
            dead,
        })
    }
}

/// A `FETCH` reply, `[entry, field, value, ...]`, as a delivery.
fn delivery(queue: &str, reply: Value) -> QueueResult<Delivery> {
    let mut flat = reply.into_array().into_iter().filter_map(|v| v.as_string());
    let entry = flat
        .next()
        .ok_or_else(|| QueueError::Redis("empty fetch reply".into()))?;
    let rest: Vec<String> = flat.collect();
    let fields: HashMap<String, String> = rest
        .chunks(2)
        .filter_map(|kv| Some((kv.first()?.clone(), kv.get(1)?.clone())))
        .collect();
    Ok(Delivery {
        id: fields.get("id").cloned().unwrap_or_default(),
        queue: queue.to_string(),
        kind: fields.get("kind").cloned().unwrap_or_default(),
        payload: parse_payload(fields.get("payload").map(String::as_str).unwrap_or("null"))?,
        attempt: number(&fields, "attempts") as u32,
        max_attempts: number(&fields, "max_attempts").max(1) as u32,
        lease: entry,
    })
}

/// The lease's member in the leases zset.
fn lease_member(d: &Delivery) -> String {
    format!("{}|{}", d.lease, d.id)
}

fn number(fields: &HashMap<String, String>, key: &str) -> i64 {
    fields.get(key).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
