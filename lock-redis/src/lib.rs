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
//! connection is a `ConnectionManager`, which reconnects. User, password and database
//! index go in the URL.
//!
//! # TLS
//!
//! `rediss://` URLs use TLS with the feature `tls-rustls` (the default: rustls, the
//! platform's root certificates) or `tls-native-tls` (the platform's TLS library). For a
//! server whose certificate a private CA signed, or that asks for a client certificate,
//! give them to [`RedisBackend::connect_with_tls`] (`tls-rustls`).
//!
//! # Sentinel
//!
//! [`RedisBackend::connect_sentinel`] takes the Sentinels' URLs and the name they monitor
//! the primary by, and follows a failover: after a command fails in a way that says the
//! server may no longer be the primary, it asks the Sentinels again. Redis replicates
//! asynchronously, so a failover can lose the last takes and renewals: then a holder
//! whose take was lost still trusts its guard while another takes the lock.
//! [`RedisBackend::with_replica_acks`] counts a take or a renewal only once that many
//! replicas have it (`WAIT` in the same pipeline), which closes that window when every
//! replica Sentinel may promote is counted. Fenced writes of your own (`fenced_set`) are
//! not covered: a failover can lose them and their high-water mark, so keep the store you
//! fence somewhere that does not fail over asynchronously, or accept that window.
//! SAFETY.md has the measured rows (`redis-sentinel`, `redis-sentinel-acks`).
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
//! # Expiry and the server's wall clock
//!
//! Redis expires a key at an absolute time on its own wall clock (the `PX` of the take,
//! the `PEXPIRE` of a renewal, turned into "now + TTL" by the server's clock when they
//! run). A forward step of the server's clock (an NTP correction, a VM restored from a
//! snapshot) therefore expires a lock early, as soon as the step is larger than what is
//! left of the TTL, and another contender may then take it while the holder still
//! trusts its guard: the holder's validity is measured on its own monotonic clock and
//! cannot see the server's step. The drift margin ([`Timing`](lock_core::Timing),
//! default TTL / 100 + 2 ms) covers the rate drift between the two clocks over one TTL,
//! not steps. So run Redis with a clock that slews rather than steps (chrony or
//! `ntpd -x`), raise the drift margin to the largest step you expect, and keep fencing
//! every protected write: a write by a holder whose lock expired early is still rejected
//! once its successor has written. Kubernetes judges expiry by each contender's own
//! observation and etcd by its leader's monotonic lease clock, so neither has this
//! caveat.
//!
//! TTLs are sent in whole milliseconds, rounded up, so the server never holds a lock for
//! less than the guard trusts it.
//!
//! [`fenced_set`] sets a key, and [`fenced_delete`] deletes one, only if its token is not
//! below the key's high-water mark; the mark outlives a deleted key, so a former holder
//! cannot create it again.

mod backend;
mod error;
mod fenced;
mod primary;
mod scripts;
mod subscriber;

pub use backend::{DEFAULT_PREFIX, RedisBackend};
pub use fenced::{MARK_SUFFIX, fenced_delete, fenced_set, mark_key};

/// This crate's README's example, compiled as a doctest so that it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
