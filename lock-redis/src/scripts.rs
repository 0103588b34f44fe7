//! The Lua scripts: each one atomic step on the server.
//!
//! A lock's value is `v1:<token>:<ttl_ms>:<holder>`; a script recognises its own
//! acquisition by the prefix `v1:<token>:`. Keys of one lock share a hash tag, so the
//! scripts also run on Redis Cluster.

use std::sync::LazyLock;

use redis::Script;

/// Takes the lock if it is free. The token is `max(counter + 1, server time in µs)`,
/// stored back in the counter key (which has no TTL), so tokens grow even after a
/// restart that lost the counter, unless the server clock is set back. A counter that
/// is not a plain number below 2^53 (where Lua's doubles stop counting by one) is
/// reported, never used.
///
/// Publishes `taken` on the lock's channel, for the groups watching (waiters ignore it).
///
/// KEYS: lock, counter, channel. ARGV: ttl in ms, holder.
/// Returns `{1, token, 0}` when taken, `{0, value, pttl}` when held.
pub(crate) static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local held = redis.call('GET', KEYS[1])
if held then
  return {0, held, redis.call('PTTL', KEYS[1])}
end
local counter = redis.call('GET', KEYS[2])
-- Digits only, below 2^53: Lua counts in doubles, and above that counter + 1 could
-- round back down to the counter, and a token would repeat.
if counter and not (string.match(counter, '^%d+$') and tonumber(counter) < 9007199254740991) then
  return redis.error_reply('LOCK_MALFORMED the token counter is not a number below 2^53: ' .. counter)
end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local token = math.max(tonumber(counter or '0') + 1, now)
local text = string.format('%.0f', token)
redis.call('SET', KEYS[2], text)
redis.call('SET', KEYS[1], 'v1:' .. text .. ':' .. ARGV[1] .. ':' .. ARGV[2], 'PX', ARGV[1])
redis.call('PUBLISH', KEYS[3], 'taken')
return {1, text, 0}
",
    )
});

/// Extends the lock by its TTL if it is still our acquisition.
///
/// KEYS: lock. ARGV: `v1:<token>:`, ttl in ms. Returns 1 if renewed, 0 if not ours.
pub(crate) static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local held = redis.call('GET', KEYS[1])
if held and string.sub(held, 1, #ARGV[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
",
    )
});

/// Deletes the lock if it is ours, and tells the waiters: ours by acquisition (ARGV
/// `token`, `v1:<token>:`, for a holder's own release) or by holder (ARGV `holder`,
/// the identity, whichever acquisition it is: an operator's release).
///
/// KEYS: lock, channel. ARGV: `token` or `holder`, then what to match. Returns 1 if
/// released, 0 if not ours.
pub(crate) static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local held = redis.call('GET', KEYS[1])
local ours = false
if held and ARGV[1] == 'token' then
  ours = string.sub(held, 1, #ARGV[2]) == ARGV[2]
elseif held and ARGV[1] == 'holder' then
  ours = string.match(held, '^v1:%d+:%d+:(.*)$') == ARGV[2]
end
if ours then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', KEYS[2], 'released')
  return 1
end
return 0
",
    )
});

/// The lock's value and remaining time, read together.
///
/// KEYS: lock. Returns `{1, value, pttl}`, or `{0, '', 0}` if free.
pub(crate) static DESCRIBE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local held = redis.call('GET', KEYS[1])
if not held then
  return {0, '', 0}
end
return {1, held, redis.call('PTTL', KEYS[1])}
",
    )
});

/// Sets (ARGV `set`) or deletes (ARGV `del`) a key only if the presented token is not
/// below the key's high-water mark, and raises the mark in the same step; the mark
/// outlives a deleted key. Tokens are compared as 20 zero-padded digits.
///
/// KEYS: key, mark. ARGV: token (padded), `set` or `del`, value (for `set`). Returns
/// `{1, mark}` when written, `{0, mark}` when the token is stale.
pub(crate) static FENCED_WRITE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local mark = redis.call('GET', KEYS[2])
if mark and ARGV[1] < mark then
  return {0, mark}
end
if ARGV[2] == 'del' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[3])
end
redis.call('SET', KEYS[2], ARGV[1])
return {1, ARGV[1]}
",
    )
});
