//! The database job queue (the shape without Redis): one row per job, leased by workers.
//!
//! A row is `queued` (ready at `run_at`), `running` (leased until `locked_until` under
//! `lease_id`) or `dead`. Acknowledged jobs are deleted. A lease that runs out makes the
//! job claimable again, which is how the job of a worker that died reaches another one.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{Text, Timestamp};
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::schema::{job_dedup, jobs};
use super::{Db, StorageError, StorageResult};
use crate::with_conn;

pub const QUEUED: &str = "queued";
pub const RUNNING: &str = "running";
pub const DEAD: &str = "dead";

#[derive(Debug, Clone, Queryable, Selectable, QueryableByName, Insertable)]
#[diesel(table_name = jobs)]
pub struct JobRow {
    pub id: String,
    pub queue: String,
    pub kind: String,
    pub payload: String,
    pub status: String,
    pub attempts: i32,
    pub max_attempts: i32,
    pub run_at: NaiveDateTime,
    pub lease_id: Option<String>,
    pub locked_by: Option<String>,
    pub locked_until: Option<NaiveDateTime>,
    pub last_error: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

/// A deduplication key and when it stops keeping duplicates out.
pub struct DedupKey {
    pub key: String,
    pub expires_at: NaiveDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inserted {
    New,
    /// A job with the same deduplication key is already known: its id.
    Duplicate(String),
}

/// Inserts a job, unless its deduplication key is still held by another one.
pub async fn insert(
    db: &Db,
    row: JobRow,
    dedup: Option<DedupKey>,
    now: NaiveDateTime,
) -> StorageResult<Inserted> {
    with_conn!(db, |conn| {
        let row = row.clone();
        conn.transaction::<_, StorageError, _>(async move |conn| {
            {
                if let Some(dedup) = &dedup {
                    let key = job_dedup::table
                        .filter(job_dedup::queue.eq(&row.queue))
                        .filter(job_dedup::dedup_key.eq(&dedup.key));
                    // A write first, so that SQLite takes the write lock at once.
                    diesel::delete(key.filter(job_dedup::expires_at.le(now)))
                        .execute(conn)
                        .await?;
                    let claimed = diesel::insert_into(job_dedup::table)
                        .values((
                            job_dedup::queue.eq(&row.queue),
                            job_dedup::dedup_key.eq(&dedup.key),
                            job_dedup::job_id.eq(&row.id),
                            job_dedup::expires_at.eq(dedup.expires_at),
                        ))
                        .on_conflict_do_nothing()
                        .execute(conn)
                        .await?;
                    if claimed == 0 {
                        let existing = key.select(job_dedup::job_id).first::<String>(conn).await?;
                        return Ok(Inserted::Duplicate(existing));
                    }
                }
                diesel::insert_into(jobs::table)
                    .values(&row)
                    .execute(conn)
                    .await?;
                Ok(Inserted::New)
            }
        })
        .await
    })
}

const CLAIM_POSTGRES: &str = "UPDATE jobs SET status = 'running', attempts = attempts + 1, \
    lease_id = $1, locked_by = $2, locked_until = $3, updated_at = $4 \
    WHERE id = (SELECT id FROM jobs WHERE queue = $5 AND \
      ((status = 'queued' AND run_at <= $4) OR (status = 'running' AND locked_until < $4)) \
      ORDER BY run_at, id LIMIT 1 FOR UPDATE SKIP LOCKED) \
    RETURNING *";
const CLAIM_SQLITE: &str = "UPDATE jobs SET status = 'running', attempts = attempts + 1, \
    lease_id = ?1, locked_by = ?2, locked_until = ?3, updated_at = ?4 \
    WHERE id = (SELECT id FROM jobs WHERE queue = ?5 AND \
      ((status = 'queued' AND run_at <= ?4) OR (status = 'running' AND locked_until < ?4)) \
      ORDER BY run_at, id LIMIT 1) \
    RETURNING *";

/// Leases the next ready job of `queue` (or one whose lease ran out) to `consumer`.
pub async fn claim(
    db: &Db,
    queue: &str,
    consumer: &str,
    lease_id: &str,
    now: NaiveDateTime,
    until: NaiveDateTime,
) -> StorageResult<Option<JobRow>> {
    let sql = match db {
        Db::Postgres(_) => CLAIM_POSTGRES,
        Db::Sqlite(_) => CLAIM_SQLITE,
    };
    with_conn!(db, [queue, consumer, lease_id], |conn| {
        Ok(diesel::sql_query(sql)
            .bind::<Text, _>(lease_id)
            .bind::<Text, _>(consumer)
            .bind::<Timestamp, _>(until)
            .bind::<Timestamp, _>(now)
            .bind::<Text, _>(queue)
            .get_result::<JobRow>(conn)
            .await
            .optional()?)
    })
}

/// Jobs whose lease ran out on their last allowed attempt go to the dead letters
/// instead of being handed out again; returns how many.
pub async fn bury_expired_final_attempts(
    db: &Db,
    queue: &str,
    now: NaiveDateTime,
) -> StorageResult<usize> {
    with_conn!(db, [queue], |conn| {
        Ok(diesel::update(
            jobs::table
                .filter(jobs::queue.eq(queue))
                .filter(jobs::status.eq(RUNNING))
                .filter(jobs::locked_until.lt(now))
                .filter(jobs::attempts.ge(jobs::max_attempts)),
        )
        .set((
            jobs::status.eq(DEAD),
            jobs::last_error
                .eq("the worker stopped before finishing its last attempt (lease expired)"),
            jobs::lease_id.eq(None::<String>),
            jobs::locked_by.eq(None::<String>),
            jobs::locked_until.eq(None::<NaiveDateTime>),
            jobs::updated_at.eq(now),
        ))
        .execute(conn)
        .await?)
    })
}

/// Deletes a finished job; false when the lease was lost to another worker.
pub async fn complete(db: &Db, id: &str, lease_id: &str) -> StorageResult<bool> {
    with_conn!(db, [id, lease_id], |conn| {
        let n = diesel::delete(jobs::table.find(id).filter(jobs::lease_id.eq(lease_id)))
            .execute(conn)
            .await?;
        Ok(n == 1)
    })
}

/// Keeps a lease alive; false when it was lost.
pub async fn extend(
    db: &Db,
    id: &str,
    lease_id: &str,
    until: NaiveDateTime,
) -> StorageResult<bool> {
    with_conn!(db, [id, lease_id], |conn| {
        let n = diesel::update(jobs::table.find(id).filter(jobs::lease_id.eq(lease_id)))
            .set(jobs::locked_until.eq(until))
            .execute(conn)
            .await?;
        Ok(n == 1)
    })
}

/// Puts a failed job back, to run again at `run_at`; false when the lease was lost.
pub async fn requeue(
    db: &Db,
    id: &str,
    lease_id: &str,
    run_at: NaiveDateTime,
    error: &str,
    now: NaiveDateTime,
) -> StorageResult<bool> {
    with_conn!(db, [id, lease_id, error], |conn| {
        let n = diesel::update(jobs::table.find(id).filter(jobs::lease_id.eq(lease_id)))
            .set((
                jobs::status.eq(QUEUED),
                jobs::run_at.eq(run_at),
                jobs::last_error.eq(error),
                jobs::lease_id.eq(None::<String>),
                jobs::locked_by.eq(None::<String>),
                jobs::locked_until.eq(None::<NaiveDateTime>),
                jobs::updated_at.eq(now),
            ))
            .execute(conn)
            .await?;
        Ok(n == 1)
    })
}

/// Moves a failed job to the dead letters; false when the lease was lost.
pub async fn bury(
    db: &Db,
    id: &str,
    lease_id: &str,
    error: &str,
    now: NaiveDateTime,
) -> StorageResult<bool> {
    with_conn!(db, [id, lease_id, error], |conn| {
        let n = diesel::update(jobs::table.find(id).filter(jobs::lease_id.eq(lease_id)))
            .set((
                jobs::status.eq(DEAD),
                jobs::last_error.eq(error),
                jobs::lease_id.eq(None::<String>),
                jobs::locked_by.eq(None::<String>),
                jobs::locked_until.eq(None::<NaiveDateTime>),
                jobs::updated_at.eq(now),
            ))
            .execute(conn)
            .await?;
        Ok(n == 1)
    })
}

/// Dead letters of a queue, most recent first.
pub async fn list_dead(db: &Db, queue: &str, limit: i64) -> StorageResult<Vec<JobRow>> {
    with_conn!(db, [queue], |conn| {
        Ok(jobs::table
            .filter(jobs::queue.eq(queue))
            .filter(jobs::status.eq(DEAD))
            .order((jobs::updated_at.desc(), jobs::id.desc()))
            .limit(limit)
            .select(JobRow::as_select())
            .load(conn)
            .await?)
    })
}

/// Puts a dead job back in its queue with its attempts reset; false when there is no such dead job.
pub async fn replay_dead(
    db: &Db,
    queue: &str,
    id: &str,
    now: NaiveDateTime,
) -> StorageResult<bool> {
    with_conn!(db, [queue, id], |conn| {
        let n = diesel::update(
            jobs::table
                .find(id)
                .filter(jobs::queue.eq(queue))
                .filter(jobs::status.eq(DEAD)),
        )
        .set((
            jobs::status.eq(QUEUED),
            jobs::attempts.eq(0),
            jobs::run_at.eq(now),
            jobs::updated_at.eq(now),
        ))
        .execute(conn)
        .await?;
        Ok(n == 1)
    })
}

/// Number of jobs per queue and status, with queued jobs split into ready and scheduled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusCounts {
    pub ready: u64,
    pub scheduled: u64,
    pub running: u64,
    pub dead: u64,
}

pub async fn counts(db: &Db, queue: &str, now: NaiveDateTime) -> StorageResult<StatusCounts> {
    with_conn!(db, [queue], |conn| {
        let in_queue = jobs::table.filter(jobs::queue.eq(queue));
        let by_status: Vec<(String, i64)> = in_queue
            .group_by(jobs::status)
            .select((jobs::status, diesel::dsl::count_star()))
            .load(conn)
            .await?;
        let scheduled: i64 = in_queue
            .filter(jobs::status.eq(QUEUED))
            .filter(jobs::run_at.gt(now))
            .count()
            .get_result(conn)
            .await?;
        let mut c = StatusCounts {
            scheduled: scheduled as u64,
            ..Default::default()
        };
        for (status, n) in by_status {
            match status.as_str() {
                QUEUED => c.ready = (n - scheduled).max(0) as u64,
                RUNNING => c.running = n as u64,
                DEAD => c.dead = n as u64,
                _ => {}
            }
        }
        Ok(c)
    })
}

/// Drops deduplication keys whose window has passed.
pub async fn purge_expired_dedup(db: &Db, now: NaiveDateTime) -> StorageResult<usize> {
    with_conn!(db, |conn| {
        Ok(
            diesel::delete(job_dedup::table.filter(job_dedup::expires_at.le(now)))
                .execute(conn)
                .await?,
        )
    })
}
