//! etcd as a lock backend for `lock-core`.
//!
//! ```no_run
//! use lock_core::Lock;
//! use lock_etcd::EtcdBackend;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = etcd_client::Client::connect(["http://127.0.0.1:2379"], None).await?;
//! let lock = Lock::new(EtcdBackend::new(client), "nightly-report", "worker-1")?;
//! let guard = lock.acquire().await?;   // waits on an etcd watch
//! let token = guard.token();           // the revision that created the lock's key
//! guard.release().await?;
//! # let _ = token; Ok(()) }
//! ```
//!
//! A lock is the key `<prefix><name>` attached to an etcd lease with the lock's TTL
//! (whole seconds, rounded up). etcd deletes the key when the lease expires. The fencing
//! token is the key's `create_revision`: etcd's one global, Raft-ordered revision
//! counter, so tokens grow across every acquisition and survive a restart of the server
//! on its data. TLS, authentication, several endpoints and timeouts are options of
//! `etcd_client::ConnectOptions`.

mod backend;
mod error;
mod fenced;
mod record;

pub use backend::{DEFAULT_PREFIX, EtcdBackend};
pub use fenced::{MARK_SUFFIX, fenced_put, fenced_txn};
