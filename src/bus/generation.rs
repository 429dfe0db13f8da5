//! Generations: how a node learns that what it caches of some truth is stale.
//!
//! The truth lives in the database (a key's `revoked_at`, a user's role). Whoever changes
//! it then *advances* the generation of its name to a fresh random value; a node stores the
//! generation it saw along with each cached copy, and trusts the copy only while the
//! [current](Generations::current) generation is still that value.
//!
//! Values are random, never counters: a store that loses its memory (Redis restarted
//! without persistence) cannot hand out again a value some node saw before, and a missing
//! value is replaced by a fresh one on the first read, so a reset store makes every node
//! re-check. A generation that cannot be read (the store is away) is `None`: trust nothing
//! cached. A failed advance is retried in the background for as long as caches may hold
//! what it invalidates.
//!
//! Where the generations live: in Redis when the bus is distributed; otherwise in a file
//! per name in the data directory (replaced by a rename at each advance, so that every
//! process on that directory, the `devmesh` admin commands too, sees it with one `stat`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fred::prelude::*;

use super::redis::RedisConn;

/// Reads a generation, storing a fresh one when there is none.
const CURRENT_SCRIPT: &str = r#"
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], ARGV[1])
  v = ARGV[1]
end
return v
"#;

/// How often a failed advance is tried again.
const RETRY_EVERY: Duration = Duration::from_millis(250);

#[derive(Clone)]
pub enum Generations {
    Redis(RedisConn),
    /// Files in this directory.
    Files(Arc<PathBuf>),
}

/// 128 random bits, as hex.
fn fresh() -> String {
    format!("{:032x}", rand::random::<u128>())
}

impl Generations {
    /// The current generation of `name`; `None` when it cannot be read.
    pub async fn current(&self, name: &str) -> Option<Arc<str>> {
        match self {
            Generations::Redis(conn) => {
                let key = conn.key(&format!("generation:{name}"));
                let read = conn.quick(conn.client().eval::<String, _, _, _>(
                    CURRENT_SCRIPT,
                    vec![key],
                    vec![fresh()],
                ));
                match read.await {
                    Ok(value) => Some(value.into()),
                    Err(e) => {
                        super::went_without("generation", &e);
                        None
                    }
                }
            }
            Generations::Files(dir) => {
                use std::os::unix::fs::MetadataExt;
                let path = file(dir, name);
                let stat = match std::fs::metadata(&path) {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        advance_file(dir, name).ok()?;
                        std::fs::metadata(&path)
                    }
                    other => other,
                };
                // Each advance replaces the file, so its inode and time name the value.
                stat.ok()
                    .map(|m| format!("{}.{}.{}", m.ino(), m.mtime(), m.mtime_nsec()).into())
            }
        }
    }

    /// Moves `name` to a fresh generation. When the store cannot be reached, it is tried
    /// again in the background for `keep_trying` (the longest a cache may trust a copy),
    /// and the failure is logged.
    pub async fn advance(&self, name: &str, keep_trying: Duration) {
        if self.try_advance(name).await.is_ok() {
            return;
        }
        let (this, name) = (self.clone(), name.to_string());
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + keep_trying;
            loop {
                tokio::time::sleep(RETRY_EVERY).await;
                match this.try_advance(&name).await {
                    Ok(()) => {
                        tracing::info!(generation = %name, "generation advanced after a retry");
                        return;
                    }
                    Err(e) if tokio::time::Instant::now() >= deadline => {
                        tracing::error!(
                            generation = %name, error = %e,
                            "cannot advance a generation; other nodes trust their caches until those expire"
                        );
                        return;
                    }
                    Err(_) => {}
                }
            }
        });
    }

    async fn try_advance(&self, name: &str) -> Result<(), String> {
        match self {
            Generations::Redis(conn) => {
                conn.check_connected().map_err(|e| e.to_string())?;
                let key = conn.key(&format!("generation:{name}"));
                let _: () = conn
                    .client()
                    .set(key, fresh(), None, None, false)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(())
            }
            Generations::Files(dir) => advance_file(dir, name).map_err(|e| e.to_string()),
        }
    }
}

fn file(dir: &std::path::Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.generation"))
}

/// Writes a fresh value beside the file and renames it over the file: readers see the old
/// file or the new one, and two processes advancing at once both change it.
fn advance_file(dir: &std::path::Path, name: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let value = fresh();
    let temp = dir.join(format!("{name}.generation.{value}"));
    std::fs::write(&temp, &value)?;
    std::fs::rename(&temp, file(dir, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_file_generation_changes_at_each_advance_and_survives_deletion() {
        let dir = tempfile::tempdir().unwrap();
        let generations = Generations::Files(Arc::new(dir.path().to_path_buf()));
        let first = generations.current("auth").await.expect("readable");
        assert_eq!(generations.current("auth").await, Some(first.clone()));
        generations.advance("auth", Duration::ZERO).await;
        let second = generations.current("auth").await.expect("readable");
        assert_ne!(first, second);
        // A reset store (the file gone) never gives back a value seen before.
        std::fs::remove_file(file(dir.path(), "auth")).unwrap();
        let third = generations.current("auth").await.expect("readable");
        assert_ne!(third, first);
        assert_ne!(third, second);
        assert_ne!(generations.current("other").await, Some(third));
    }
}
