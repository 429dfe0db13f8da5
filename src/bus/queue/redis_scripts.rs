//! Lua scripts for the Redis job queue: each state change is one atomic script.
//!
//! Keys per queue Q (hash-tagged so a queue lives in one cluster slot):
//! - `q:{Q}:stream`: ready and leased jobs (entries carry the job id), read by the
//!   consumer group `workers`, one stable consumer name per node;
//! - `q:{Q}:leases`: zset of `ENTRY|JOB` by lease deadline (ms);
//! - `q:{Q}:delayed`: zset of job ids by due time; `q:{Q}:dead`: zset of job ids by failure time;
//! - `q:{Q}:job:ID`: hash holding the job; `q:{Q}:dedup:KEY`: the id of the job holding a key.

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

/// KEYS: stream, delayed, dead, leases. ARGV: group, consumer, now_ms, visibility_ms,
/// job key prefix, batch.
/// 1. moves due delayed jobs onto the stream;
/// 2. takes back expired leases (their worker died): the job goes back on the stream, or
///    to the dead letters if that was its last attempt;
/// 3. leases the next entry to `consumer`: returns {entry, field, value, ...} or false.
pub const FETCH: &str = r#"
local now = tonumber(ARGV[3])
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, ARGV[6])
for _, id in ipairs(due) do
  redis.call('ZREM', KEYS[2], id)
  redis.call('XADD', KEYS[1], '*', 'id', id)
end

local expired = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now, 'LIMIT', 0, ARGV[6])
for _, lease in ipairs(expired) do
  redis.call('ZREM', KEYS[4], lease)
  local sep = string.find(lease, '|', 1, true)
  local entry, id = string.sub(lease, 1, sep - 1), string.sub(lease, sep + 1)
  redis.call('XACK', KEYS[1], ARGV[1], entry)
  redis.call('XDEL', KEYS[1], entry)
  local job = ARGV[5] .. id
  if redis.call('EXISTS', job) == 1 then
    local attempts = tonumber(redis.call('HGET', job, 'attempts') or '0')
    local max = tonumber(redis.call('HGET', job, 'max_attempts') or '1')
    if attempts >= max then
      redis.call('HSET', job, 'last_error',
        'the worker stopped before finishing its last attempt (lease expired)', 'failed_at', now)
      redis.call('ZADD', KEYS[3], now, id)
    else
      redis.call('HSET', job, 'last_error', 'the worker stopped before finishing (lease expired)')
      redis.call('XADD', KEYS[1], '*', 'id', id)
    end
  end
end

for _ = 1, 10 do
  local read = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', 1, 'STREAMS', KEYS[1], '>')
  if not read then return false end
  local entry = read[1][2][1]
  local id = entry[2][2]
  local job = ARGV[5] .. id
  if redis.call('EXISTS', job) == 1 then
    redis.call('HINCRBY', job, 'attempts', 1)
    redis.call('ZADD', KEYS[4], now + tonumber(ARGV[4]), entry[1] .. '|' .. id)
    local out = {entry[1]}
    for _, v in ipairs(redis.call('HGETALL', job)) do table.insert(out, v) end
    return out
  end
  -- An entry whose job is gone: drop it and read on.
  redis.call('XACK', KEYS[1], ARGV[1], entry[1])
  redis.call('XDEL', KEYS[1], entry[1])
end
return false
"#;

/// KEYS: leases. ARGV: lease member, new deadline ms. Returns 1, or 0 when the lease was lost.
pub const EXTEND: &str = r#"
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
return 1
"#;

/// KEYS: stream, leases, job. ARGV: group, entry, lease member. Returns 1, or 0 when the lease was lost.
pub const ACK: &str = r#"
if redis.call('ZREM', KEYS[2], ARGV[3]) == 0 then return 0 end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('DEL', KEYS[3])
return 1
"#;

/// KEYS: stream, leases, delayed, dead, job. ARGV: group, entry, lease member, id, error,
/// retry_at_ms (-1: dead), now_ms. Returns 1 (retrying), 2 (dead) or 0 (the lease was lost).
pub const FAIL: &str = r#"
if redis.call('ZREM', KEYS[2], ARGV[3]) == 0 then return 0 end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('HSET', KEYS[5], 'last_error', ARGV[5])
if tonumber(ARGV[6]) >= 0 then
  redis.call('ZADD', KEYS[3], ARGV[6], ARGV[4])
  return 1
end
redis.call('HSET', KEYS[5], 'failed_at', ARGV[7])
redis.call('ZADD', KEYS[4], ARGV[7], ARGV[4])
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
