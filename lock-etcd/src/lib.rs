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
//! on its data.
//!
//! # In production
//!
//! For a cluster, [`EtcdBackend::connect`] takes every member's URL and makes a client
//! per member, one in use: a request the member in use cannot answer (down, hanging
//! past the lock's request timeout, or without a leader) goes to the next member. (A
//! single etcd-client `Client` of several endpoints balances over all of them and keeps
//! sending part of the requests to a member that is down; measured on a three-member
//! cluster, half of the renewals failed after one member died.) Every read and
//! ownership check lock-etcd makes is linearizable, so a member cut off from its peers
//! confirms nothing from its own state. TLS, user/password authentication and timeouts
//! are options of the connection:
//!
//! ```no_run
//! use std::time::Duration;
//! use etcd_client::{Certificate, ConnectOptions, TlsOptions};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let options = ConnectOptions::new()
//!     .with_user("controller", std::env::var("ETCD_PASSWORD")?)
//!     .with_tls(TlsOptions::new().ca_certificate(Certificate::from_pem(std::fs::read("ca.pem")?)))
//!     .with_connect_timeout(Duration::from_secs(2))
//!     .with_timeout(Duration::from_secs(5));
//! let members = ["https://etcd-0:2379", "https://etcd-1:2379", "https://etcd-2:2379"];
//! let backend = lock_etcd::EtcdBackend::connect(members, Some(options))
//!     .await?
//!     .prefixed("my-app/locks/");
//! # drop(backend); Ok(()) }
//! ```
//!
//! Run etcd with `--pre-vote` (the default from etcd 3.5): without it, a member that was
//! cut off deposes the leader when it comes back, and locks wait out the election. The
//! safety suite's `etcd-cluster` rows (SAFETY.md) kill the leader and cut it off from its
//! peers while locks are held.
//!
//! The lock's TTL must be at least etcd's minimum lease TTL (2 s with etcd's default
//! heartbeat and election timeout); a shorter one is an [`Unsupported`] error rather
//! than a silently longer lease.
//!
//! # Fenced writes
//!
//! [`fenced_txn`] runs your operations in a transaction guarded by the lock key's
//! `create_revision`, atomic with ownership. [`fenced_put`] and [`fenced_delete`]
//! compare and raise a per-key high-water mark, for stores written outside the lock's
//! lifetime; the mark outlives a deleted key, so a former holder cannot create it again.
//! A stale token gets [`StaleToken`].
//!
//! [`Unsupported`]: lock_core::Error::Unsupported
//! [`StaleToken`]: lock_core::Error::StaleToken

mod backend;
mod error;
mod fenced;
mod members;
mod record;

pub use backend::{DEFAULT_PREFIX, EtcdBackend};
pub use fenced::{MARK_SUFFIX, fenced_delete, fenced_put, fenced_txn};

/// This crate's README's example, compiled as a doctest so that it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
