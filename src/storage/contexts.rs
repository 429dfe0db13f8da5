//! Contexts and their ordered items. Appends run in one transaction that starts by bumping
//! the context's row, so concurrent appends to one context queue up behind its row lock
//! (PostgreSQL) or the write lock (SQLite) and each gets its own run of sequence numbers.

use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::schema::{context_items, contexts, tasks};
use super::{Db, StorageError, StorageResult};
use crate::with_conn;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = contexts)]
pub struct ContextRow {
    pub id: String,
    pub organization_id: String,
    pub name: String,
    pub context_type: String,
    pub agent_id: Option<String>,
    pub model_id: Option<String>,
    pub session_id: Option<String>,
    pub metadata: String,
    pub token_budget: Option<i64>,
    pub version: i64,
    pub item_count: i64,
    pub token_total: i64,
    pub next_seq: i64,
    pub created_at: chrono::NaiveDateTime,
    pub updated_at: chrono::NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = context_items)]
pub struct ItemRow {
    pub id: String,
    pub context_id: String,
    pub organization_id: String,
    pub seq: i64,
    pub role: String,
    pub content: String,
    pub token_count: i64,
    pub metadata: String,
    pub created_at: chrono::NaiveDateTime,
}

/// An item to append; its id, sequence number and time are given by [`append`].
#[derive(Debug, Clone)]
pub struct NewItem {
    pub role: String,
    pub content: String,
    pub token_count: i64,
    pub metadata: String,
}

/// Fields of a context to change; `None` leaves one alone, `Some(None)` clears it.
#[derive(Debug, Clone, Default, AsChangeset)]
#[diesel(table_name = contexts)]
pub struct ContextChanges {
    pub name: Option<String>,
    pub context_type: Option<String>,
    pub agent_id: Option<Option<String>>,
    pub model_id: Option<Option<String>>,
    pub session_id: Option<Option<String>>,
    pub metadata: Option<String>,
    pub token_budget: Option<Option<i64>>,
}

#[derive(Debug, Clone, Default)]
pub struct ContextFilter {
    pub agent_id: Option<String>,
    pub session_id: Option<String>,
    pub context_type: Option<String>,
    pub since: Option<chrono::NaiveDateTime>,
    pub until: Option<chrono::NaiveDateTime>,
    /// Only the contexts given to this agent (see [`given_to_agent`]).
    pub given_to: Option<String>,
}

/// The outcome of a conditional write.
#[derive(Debug)]
pub enum Conditional<T> {
    Done(T),
    /// The context is at another version (this one) than the one the caller named.
    Stale(i64),
    Missing,
}

/// Why an append was refused; nothing was written.
#[derive(Debug)]
pub enum AppendRefusal {
    Missing,
    TooManyItems { count: i64, max: i64 },
    OverBudget { tokens: i64, budget: i64 },
    NewItemsOverBudget { tokens: i64, budget: i64 },
}

#[derive(Debug)]
pub struct Appended {
    pub context: ContextRow,
    pub items: Vec<ItemRow>,
    pub dropped_items: i64,
    pub dropped_tokens: i64,
}

#[derive(Debug)]
enum TxError {
    Db(diesel::result::Error),
    Refused(AppendRefusal),
}

impl From<diesel::result::Error> for TxError {
    fn from(e: diesel::result::Error) -> Self {
        TxError::Db(e)
    }
}

pub async fn insert(db: &Db, context: &ContextRow, items: &[ItemRow]) -> StorageResult<()> {
    with_conn!(db, [context, items], |conn| {
        conn.transaction::<_, diesel::result::Error, _>(async move |conn| {
            diesel::insert_into(contexts::table)
                .values(context)
                .execute(conn)
                .await?;
            for item in items {
                diesel::insert_into(context_items::table)
                    .values(item)
                    .execute(conn)
                    .await?;
            }
            Ok(())
        })
        .await?;
        Ok(())
    })
}

pub async fn get(db: &Db, org: &str, id: &str) -> StorageResult<Option<ContextRow>> {
    with_conn!(db, [org, id], |conn| {
        Ok(contexts::table
            .filter(contexts::organization_id.eq(org).and(contexts::id.eq(id)))
            .select(ContextRow::as_select())
            .first(conn)
            .await
            .optional()?)
    })
}

/// A context and its items (with `last`, only the newest `last`), read together.
///
/// The hottest read of the API. On SQLite both queries run on a reader connection in one
/// trip to the blocking pool ([`super::sqlite_readers`]), with diesel's synchronous API
/// and its cached prepared statements. It finishes even if the caller is dropped, so it
/// may run on an HTTP worker.
pub async fn get_with_items(
    db: &Db,
    org: &str,
    id: &str,
    last: Option<i64>,
) -> StorageResult<Option<(ContextRow, Vec<ItemRow>)>> {
    let (org, id) = (org.to_string(), id.to_string());
    // One body for both: `$first`/`$load` are the sync or the async diesel methods.
    macro_rules! read {
        ($conn:expr, $first:path, $load:path $(, $wait:ident)?) => {{
            let query = contexts::table
                .filter(contexts::organization_id.eq(&org).and(contexts::id.eq(&id)))
                .select(ContextRow::as_select());
            let Some(context) = $first(query, $conn)$(.$wait)?.optional()? else {
                return Ok(None);
            };
            let scoped = context_items::table
                .filter(context_items::context_id.eq(&id))
                .select(ItemRow::as_select());
            let items: Vec<ItemRow> = match last {
                Some(n) => {
                    let newest = scoped.order(context_items::seq.desc()).limit(n);
                    let mut newest: Vec<ItemRow> = $load(newest, $conn)$(.$wait)??;
                    newest.reverse();
                    newest
                }
                None => $load(scoped.order(context_items::seq.asc()), $conn)$(.$wait)??,
            };
            Ok(Some((context, items)))
        }};
    }
    match db {
        Db::Sqlite(sqlite) => {
            sqlite
                .readers
                .read(move |conn| {
                    read!(conn, diesel::RunQueryDsl::first, diesel::RunQueryDsl::load)
                })
                .await
        }
        Db::Postgres(pg) => {
            let pool = (**pg).clone();
            db.run_to_end(async move {
                let mut pooled = pool.get().await.map_err(StorageError::from)?;
                let conn = &mut *pooled;
                let result: Result<_, diesel::result::Error> = async {
                    read!(
                        conn,
                        diesel_async::RunQueryDsl::first,
                        diesel_async::RunQueryDsl::load,
                        await
                    )
                }
                .await;
                result.map_err(StorageError::from)
            })
            .await
        }
    }
}

/// Role, token count and time of every item: what a summary adds up.
pub async fn item_stats(
    db: &Db,
    org: &str,
    id: &str,
) -> StorageResult<Vec<(String, i64, chrono::NaiveDateTime)>> {
    with_conn!(db, [org, id], |conn| {
        Ok(context_items::table
            .filter(
                context_items::organization_id
                    .eq(org)
                    .and(context_items::context_id.eq(id)),
            )
            .select((
                context_items::role,
                context_items::token_count,
                context_items::created_at,
            ))
            .load(conn)
            .await?)
    })
}

/// Newest first.
pub async fn list(
    db: &Db,
    org: &str,
    filter: &ContextFilter,
    after: Option<&str>,
    limit: i64,
) -> StorageResult<Vec<ContextRow>> {
    with_conn!(db, [org, filter, after], |conn| {
        let mut q = contexts::table
            .filter(contexts::organization_id.eq(org))
            .select(ContextRow::as_select())
            .order(contexts::id.desc())
            .limit(limit)
            .into_boxed();
        if let Some(after) = after {
            q = q.filter(contexts::id.lt(after.to_string()));
        }
        if let Some(v) = &filter.agent_id {
            q = q.filter(contexts::agent_id.eq(v.clone()));
        }
        if let Some(v) = &filter.session_id {
            q = q.filter(contexts::session_id.eq(v.clone()));
        }
        if let Some(v) = &filter.context_type {
            q = q.filter(contexts::context_type.eq(v.clone()));
        }
        if let Some(v) = filter.since {
            q = q.filter(contexts::updated_at.ge(v));
        }
        if let Some(v) = filter.until {
            q = q.filter(contexts::updated_at.lt(v));
        }
        if let Some(agent) = &filter.given_to {
            let of_its_tasks = tasks::table
                .filter(tasks::organization_id.eq(org.clone()))
                .filter(tasks::agent_id.eq(agent.clone()))
                .select(tasks::context_id);
            q = q.filter(
                contexts::agent_id
                    .eq(agent.clone())
                    .or(contexts::id.nullable().eq_any(of_its_tasks)),
            );
        }
        Ok(q.load(conn).await?)
    })
}

/// Whether a context is given to an agent: it names the agent (`agent_id`), or a task
/// assigned to or running on the agent names the context (`context_id`).
pub async fn given_to_agent(db: &Db, org: &str, id: &str, agent: &str) -> StorageResult<bool> {
    with_conn!(db, [org, id, agent], |conn| {
        let named: i64 = contexts::table
            .filter(contexts::organization_id.eq(org))
            .filter(contexts::id.eq(id))
            .filter(contexts::agent_id.eq(agent))
            .count()
            .get_result(conn)
            .await?;
        if named > 0 {
            return Ok(true);
        }
        let by_task: i64 = tasks::table
            .filter(tasks::organization_id.eq(org))
            .filter(tasks::agent_id.eq(agent))
            .filter(tasks::context_id.eq(id))
            .count()
            .get_result(conn)
            .await?;
        Ok(by_task > 0)
    })
}

/// Applies `changes` if the context is at `version`.
pub async fn update(
    db: &Db,
    org: &str,
    id: &str,
    version: i64,
    changes: &ContextChanges,
) -> StorageResult<Conditional<ContextRow>> {
    let updated = with_conn!(db, [org, id, changes], |conn| {
        diesel::update(
            contexts::table.filter(
                contexts::organization_id
                    .eq(org)
                    .and(contexts::id.eq(id))
                    .and(contexts::version.eq(version)),
            ),
        )
        .set((
            changes,
            contexts::version.eq(contexts::version + 1),
            contexts::updated_at.eq(super::now()),
        ))
        .returning(ContextRow::as_returning())
        .get_result(conn)
        .await
        .optional()
        .map_err(StorageError::from)
    })?;
    match updated {
        Some(row) => Ok(Conditional::Done(row)),
        None => Ok(match get(db, org, id).await? {
            Some(current) => Conditional::Stale(current.version),
            None => Conditional::Missing,
        }),
    }
}

/// Deletes the context and its items; with `version`, only if it is at that version.
pub async fn delete(
    db: &Db,
    org: &str,
    id: &str,
    version: Option<i64>,
) -> StorageResult<Conditional<()>> {
    let deleted = with_conn!(db, [org, id], |conn| {
        let mut q = diesel::delete(contexts::table)
            .filter(contexts::organization_id.eq(org).and(contexts::id.eq(id)))
            .into_boxed();
        if let Some(v) = version {
            q = q.filter(contexts::version.eq(v));
        }
        q.execute(conn).await.map_err(StorageError::from)
    })?;
    if deleted == 1 {
        return Ok(Conditional::Done(()));
    }
    Ok(match get(db, org, id).await? {
        Some(current) => Conditional::Stale(current.version),
        None => Conditional::Missing,
    })
}

/// Appends `items` at the end of the context, in one transaction. With `drop_oldest`, the
/// oldest items make room when the token budget would be exceeded; without it, the
/// append is refused.
pub async fn append(
    db: &Db,
    org: &str,
    id: &str,
    items: &[NewItem],
    max_items: i64,
    drop_oldest: bool,
) -> StorageResult<Result<Appended, AppendRefusal>> {
    let n = items.len() as i64;
    let tokens: i64 = items.iter().map(|i| i.token_count).sum();
    with_conn!(db, [org, id, items], |conn| {
        let result = conn
            .transaction::<_, TxError, _>(async move |conn| {
                {
                    let now = super::now();
                    let scoped = contexts::table
                        .filter(contexts::organization_id.eq(org).and(contexts::id.eq(id)));
                    // The first statement writes: it takes the lock that orders appends.
                    let mut row: ContextRow = diesel::update(scoped)
                        .set((
                            contexts::version.eq(contexts::version + 1),
                            contexts::item_count.eq(contexts::item_count + n),
                            contexts::token_total.eq(contexts::token_total + tokens),
                            contexts::next_seq.eq(contexts::next_seq + n),
                            contexts::updated_at.eq(now),
                        ))
                        .returning(ContextRow::as_returning())
                        .get_result(conn)
                        .await
                        .optional()?
                        .ok_or(TxError::Refused(AppendRefusal::Missing))?;
                    if row.item_count > max_items {
                        return Err(TxError::Refused(AppendRefusal::TooManyItems {
                            count: row.item_count,
                            max: max_items,
                        }));
                    }
                    let (mut dropped_items, mut dropped_tokens) = (0, 0);
                    if let Some(budget) = row.token_budget.filter(|b| row.token_total > *b) {
                        if !drop_oldest {
                            return Err(TxError::Refused(AppendRefusal::OverBudget {
                                tokens: row.token_total,
                                budget,
                            }));
                        }
                        if tokens > budget {
                            return Err(TxError::Refused(AppendRefusal::NewItemsOverBudget {
                                tokens,
                                budget,
                            }));
                        }
                        let excess = row.token_total - budget;
                        let oldest: Vec<(i64, i64)> = context_items::table
                            .filter(context_items::context_id.eq(id))
                            .select((context_items::seq, context_items::token_count))
                            .order(context_items::seq.asc())
                            .load(conn)
                            .await?;
                        let mut cutoff = None;
                        for (seq, count) in oldest {
                            if dropped_tokens >= excess {
                                break;
                            }
                            dropped_tokens += count;
                            dropped_items += 1;
                            cutoff = Some(seq);
                        }
                        if let Some(cutoff) = cutoff {
                            diesel::delete(
                                context_items::table.filter(
                                    context_items::context_id
                                        .eq(id)
                                        .and(context_items::seq.le(cutoff)),
                                ),
                            )
                            .execute(conn)
                            .await?;
                            row = diesel::update(contexts::table.find(id))
                                .set((
                                    contexts::item_count.eq(contexts::item_count - dropped_items),
                                    contexts::token_total
                                        .eq(contexts::token_total - dropped_tokens),
                                ))
                                .returning(ContextRow::as_returning())
                                .get_result(conn)
                                .await?;
                        }
                    }
                    let first_seq = row.next_seq - n;
                    let rows: Vec<ItemRow> = items
                        .iter()
                        .zip(first_seq..)
                        .map(|(item, seq)| ItemRow {
                            id: uuid::Uuid::now_v7().to_string(),
                            context_id: id.to_string(),
                            organization_id: org.to_string(),
                            seq,
                            role: item.role.clone(),
                            content: item.content.clone(),
                            token_count: item.token_count,
                            metadata: item.metadata.clone(),
                            created_at: now,
                        })
                        .collect();
                    for item in &rows {
                        diesel::insert_into(context_items::table)
                            .values(item)
                            .execute(conn)
                            .await?;
                    }
                    Ok(Appended {
                        context: row,
                        items: rows,
                        dropped_items,
                        dropped_tokens,
                    })
                }
            })
            .await;
        match result {
            Ok(appended) => Ok(Ok(appended)),
            Err(TxError::Refused(why)) => Ok(Err(why)),
            Err(TxError::Db(e)) => Err(e.into()),
        }
    })
}
