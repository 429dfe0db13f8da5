//! Lua scripts for the Redis job queue: each state change is one atomic script.
//!
//! Keys per queue Q (hash-tagged so a queue lives in one cluster slot):
//! `q:{Q}:stream` (ready and leased jobs, by id, in a consumer group),
//! `q:{Q}:delayed` (zset: id by due time), `q:{Q}:dead` (zset: id by failure time),
//! `q:{Q}:job:ID` (hash: the job), `q:{Q}:dedup:KEY` (string: the job id holding the key).

/// KEYS: stream, delayed, job, dedup (or ""). ARGV: id, kind, payload, max_attempts,
/// created_ms, due_ms (0 = now), dedup_ttl_ms. Returns {1, id} or {0, existing id}.
pub const ENQUEUE: &str = r#"
if KEYS[4] ~= '' then
  if not redis.call('SET', KEYS[4], ARGV[1], 'NX', 'PX', ARGV[7]) then
    return {0, redis.call('GET', KEYS[4])}
  end
end
redis.call('HSET', KEYS[3], 'id', ARGV[1], 'kind', ARGV[2], 'payload', ARGV[3],
  'attempts', 0, 'max_attempts', ARGV[4], 'created_at', ARGV[5])
if tonumber(ARGV[6]) > 0 then
  redis.call('ZADD', KEYS[2], ARGV[6], ARGV[1])
else
  redis.call('XADD', KEYS[1], '*', 'id', ARGV[1])
end
return {1, ARGV[1]}
"#;

/// KEYS: delayed, stream. ARGV: now_ms, limit. Moves due jobs onto the stream.
pub const PROMOTE: &str = r#"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, id in ipairs(due) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('XADD', KEYS[2], '*', 'id', id)
end
return #due
"#;

/// KEYS: stream, dead. ARGV: group, consumer, min_idle_ms, job key prefix, now_ms, count.
/// Entries leased longer than the visibility timeout (their worker died) are put back on
/// the stream, or in the dead letters if that was their last attempt.
pub const RECLAIM: &str = r#"
local claimed = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], '0-0', 'COUNT', ARGV[6])
local n = 0
for _, e in ipairs(claimed[2]) do
  local entry, fields = e[1], e[2]
  redis.call('XACK', KEYS[1], ARGV[1], entry)
  redis.call('XDEL', KEYS[1], entry)
  if fields then
    local id = fields[2]
    local job = ARGV[4] .. id
    if redis.call('EXISTS', job) == 1 then
      local attempts = tonumber(redis.call('HGET', job, 'attempts') or '0')
      local max = tonumber(redis.call('HGET', job, 'max_attempts') or '1')
      if attempts >= max then
        redis.call('HSET', job, 'last_error',
          'the worker stopped before finishing its last attempt (lease expired)', 'failed_at', ARGV[5])
        redis.call('ZADD', KEYS[2], ARGV[5], id)
      else
        redis.call('HSET', job, 'last_error', 'the worker stopped before finishing (lease expired)')
        redis.call('XADD', KEYS[1], '*', 'id', id)
      end
      n = n + 1
    end
  end
end
return n
"#;

/// KEYS: job. Counts the attempt that starts now; returns the job's fields, or nil if it is gone.
pub const START: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
return redis.call('HGETALL', KEYS[1])
"#;

/// KEYS: stream, job. ARGV: group, entry. Returns 1, or 0 when the lease was lost.
pub const ACK: &str = r#"
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('DEL', KEYS[2])
return 1
"#;

/// KEYS: stream, delayed, dead, job. ARGV: group, entry, id, error, retry_at_ms (-1: dead), now_ms.
/// Returns 1 (retrying), 2 (dead) or 0 (the lease was lost).
pub const FAIL: &str = r#"
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('HSET', KEYS[4], 'last_error', ARGV[4])
if tonumber(ARGV[5]) >= 0 then
  redis.call('ZADD', KEYS[2], ARGV[5], ARGV[3])
  return 1
end
redis.call('HSET', KEYS[4], 'failed_at', ARGV[6])
redis.call('ZADD', KEYS[3], ARGV[6], ARGV[3])
return 2
"#;

/// KEYS: stream, dead, job. ARGV: id. Returns 1, or 0 when there is no such dead job.
pub const REPLAY: &str = r#"
if redis.call('ZREM', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[3], 'attempts', 0)
redis.call('HDEL', KEYS[3], 'failed_at')
redis.call('XADD', KEYS[1], '*', 'id', ARGV[1])
return 1
"#;
