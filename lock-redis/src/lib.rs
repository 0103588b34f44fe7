//! Redis as a lock backend for `lock-core`.
//!
//! ```no_run
//! use lock_core::Lock;
//! use lock_redis::RedisBackend;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let backend = RedisBackend::connect("redis://127.0.0.1:6379/0").await?;
//! let lock = Lock::new(backend, "nightly-report", "worker-1")?;
//! let guard = lock.acquire().await?;   // woken by pub/sub on release
//! let token = guard.token();
//! guard.release().await?;
//! # let _ = token; Ok(()) }
//! ```
//!
//! Every operation is one Lua script, atomic on the server: take (`SET … PX` with a new
//! token), renew (compare and `PEXPIRE`), release (compare, `DEL` and `PUBLISH`). The
//! keys of a lock share the hash tag `{name}`, so the scripts run on Redis Cluster. The
//! connection is a `ConnectionManager`, which reconnects. `rediss://` URLs use TLS;
//! user, password and database index go in the URL.
//!
//! # Fencing tokens and durability
//!
//! A token is `max(counter + 1, server time in µs)`, written back to a counter key with
//! no TTL in the same script. So tokens strictly increase as long as either survives:
//!
//! - the counter key: keep it with AOF persistence and `appendfsync always` (a failover or
//!   restart then loses no acknowledged token), and never evict it (`maxmemory-policy
//!   noeviction`, or a `volatile-*` policy, since the counter has no TTL);
//! - or the server's clock: after a restart that lost all data, the time floor still
//!   puts new tokens above every earlier one, unless the clock was set back by more than
//!   the time since the last token. A replica promoted after an asynchronous failover can
//!   lose the last writes; the time floor covers that too, within the same clock caveat.
//!
//! [`fenced_set`] sets a key only if its token is not below the key's high-water mark.

mod backend;
mod error;
mod fenced;
mod scripts;
mod subscriber;

pub use backend::{DEFAULT_PREFIX, RedisBackend};
pub use fenced::{MARK_SUFFIX, fenced_set, mark_key};
