//! Read-only SQLite connections for the hottest reads, with diesel's synchronous API.
//!
//! With WAL, readers do not wait for the writer, and a point read takes microseconds: less
//! than handing it to another thread and back. So a read first runs right where it is
//! asked, on a connection that never waits for a lock (busy timeout 0). Only if SQLite is
//! busy (a checkpoint, a recovery) or every reader is taken does it go to the blocking pool,
//! where it waits for up to the busy timeout. Either way it runs to completion even if its
//! caller is dropped, so it is safe on any runtime, unlike the async wrapper, whose
//! cancellation blocks in place.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::result::{DatabaseErrorKind, Error};
use diesel::sqlite::SqliteConnection;
use diesel::{Connection, QueryResult};

use super::{StorageError, StorageResult};

pub struct SqliteReaders {
    path: String,
    max: usize,
    wait: Duration,
    state: Mutex<State>,
    freed: Condvar,
}

struct State {
    idle: Vec<SqliteConnection>,
    open: usize,
}

impl SqliteReaders {
    pub fn new(path: String, busy_timeout: Duration, max: usize) -> Self {
        Self {
            path,
            max: max.max(1),
            wait: busy_timeout,
            state: Mutex::new(State {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
        }
    }

    /// A free reader without waiting: an idle one, a new one, or none.
    fn try_take(&self) -> StorageResult<Option<SqliteConnection>> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(conn) = state.idle.pop() {
            return Ok(Some(conn));
        }
        if state.open >= self.max {
            return Ok(None);
        }
        state.open += 1;
        drop(state);
        self.open().map(Some).inspect_err(|_| {
            self.state.lock().unwrap_or_else(|p| p.into_inner()).open -= 1;
        })
    }

    fn take(&self) -> StorageResult<SqliteConnection> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(conn) = state.idle.pop() {
                return Ok(conn);
            }
            if state.open < self.max {
                state.open += 1;
                drop(state);
                return self.open().inspect_err(|_| {
                    self.state.lock().unwrap_or_else(|p| p.into_inner()).open -= 1;
                });
            }
            let (next, timeout) = self
                .freed
                .wait_timeout(state, self.wait)
                .unwrap_or_else(|p| p.into_inner());
            state = next;
            if timeout.timed_out() && state.idle.is_empty() {
                return Err(StorageError::Unavailable(
                    "no SQLite reader became free in time".into(),
                ));
            }
        }
    }

    fn open(&self) -> StorageResult<SqliteConnection> {
        let mut conn = SqliteConnection::establish(&self.path)
            .map_err(|e| StorageError::Unavailable(e.to_string()))?;
        conn.batch_execute("PRAGMA busy_timeout = 0; PRAGMA query_only = ON;")
            .map_err(|e| StorageError::Unavailable(e.to_string()))?;
        Ok(conn)
    }

    fn give_back(&self, conn: SqliteConnection) {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .idle
            .push(conn);
        self.freed.notify_one();
    }

    /// Runs `read` on a reader connection: here if SQLite lets it through at once, else on
    /// the blocking pool, retrying while the database is busy, up to the busy timeout.
    pub async fn read<R, F>(self: &Arc<Self>, read: F) -> StorageResult<R>
    where
        R: Send + 'static,
        F: Fn(&mut SqliteConnection) -> QueryResult<R> + Send + 'static,
    {
        if let Some(mut conn) = self.try_take()? {
            let result = read(&mut conn);
            self.give_back(conn);
            match result {
                Err(e) if is_busy(&e) => {}
                done => return done.map_err(StorageError::from),
            }
        }
        let readers = self.clone();
        let deadline = Instant::now() + self.wait;
        tokio::task::spawn_blocking(move || {
            loop {
                let mut conn = readers.take()?;
                let result = read(&mut conn);
                readers.give_back(conn);
                match result {
                    Err(e) if is_busy(&e) && Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    done => return done.map_err(StorageError::from),
                }
            }
        })
        .await
        .map_err(|e| StorageError::Unavailable(format!("a read task stopped: {e}")))?
    }

    pub fn close(&self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.open -= state.idle.len();
        state.idle.clear();
    }
}

/// SQLITE_BUSY: another connection holds a lock this read needs.
fn is_busy(e: &Error) -> bool {
    matches!(e, Error::DatabaseError(DatabaseErrorKind::Unknown, info) if info.message().contains("locked") || info.message().contains("busy"))
}
