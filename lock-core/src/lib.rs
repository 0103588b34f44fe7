//! Distributed locks and leader election with fencing tokens, on any backend.
//!
//! ```
//! use lock_core::{Lock, MemoryBackend};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> lock_core::Result<()> {
//! // In production: lock_kube's backend over your kube::Client. In tests: this one.
//! let backend = MemoryBackend::new();
//! let lock = Lock::new(backend, "my-controller", "pod-a")?;
//!
//! let guard = lock.acquire().await?;          // waits; wakes at once on release
//! let token = guard.token();                  // pass it to every protected write
//! assert!(guard.is_valid());                  // false once the lock can't be trusted
//! guard.release().await?;                     // the next waiter takes over at once
//! # let _ = token; Ok(()) }
//! ```
//!
//! # What it guarantees
//!
//! - **Fencing tokens** ([`FencingToken`]) strictly increase per lock name across every
//!   acquisition by anyone. Present one with each write to a resource that rejects lower
//!   tokens ([`FencedRegister`], or the fenced writes of each backend crate) and a paused
//!   or partitioned former holder cannot overwrite its successor.
//! - **Self-fencing.** A [`Guard`] renews its lock in the background and stops trusting
//!   it at a deadline measured from when its last successful request was *sent*, minus a
//!   drift margin: [`Guard::lost`] resolves and [`Guard::is_valid`] turns false strictly
//!   before any other contender can acquire.
//! - **Fast hand-over.** Waiting follows the backend's change notifications, so a
//!   released lock is taken in one notification plus one request; a crashed holder's
//!   lock after its TTL.
//! - **Nothing orphaned.** Dropping an [`acquire`](Lock::acquire) future at any point
//!   leaves nothing held; dropping a guard releases in the background.
//!
//! # Layout
//!
//! | concept | where |
//! |---|---|
//! | the primitives a backend implements | [`Backend`] (`backend.rs`) |
//! | the lock, acquiring and waiting | [`Lock`] (`lock.rs`) |
//! | one bounded request, the one bound of every request | `request.rs`, [`RequestTimeout`] |
//! | operators: reading, listing, releasing a holder, breaking | [`Locks`] (`operator.rs`), [`Lock::break_lock`] (`breaking.rs`) |
//! | a held lock, its validity, its renewal | [`Guard`], [`Validity`] (`guard.rs`, `validity.rs`, `renewal.rs`) |
//! | leader election | [`LeaderElector`] (`election.rs`) |
//! | elected shards | [`ElectedShards`] (`shards.rs`) |
//! | fenced writes in memory | [`FencedRegister`] (`register.rs`) |
//! | the in-memory backend | [`MemoryBackend`] (`memory.rs`) |
//! | injected client faults | [`Faulty`] (`faults.rs`) |
//! | timing rules and defaults | [`Timing`] (`timing.rs`) |
//! | metrics (through the `metrics` facade) | `metrics.rs`, names listed below |
//! | the conformance suite | `conformance` (feature `conformance`) |
//!
//! # Metrics
//!
//! Recorded through the [`metrics`](https://docs.rs/metrics) facade; install any
//! exporter. `lock_acquisitions_total`, `lock_acquire_wait_seconds`,
//! `lock_renew_latency_seconds`, `lock_renew_failures_total{kind}`,
//! `lock_lost_total{reason}` (label `lock`); `leader_is_leading`,
//! `leader_transitions_total` (labels `lock`, `identity`); `shards_owned` (labels
//! `group`, `identity`). Tracing spans `acquire` and `renew` carry the lock name,
//! holder and token.
//!
//! # Conformance
//!
//! With the `conformance` feature, the `conformance` module holds one `pub async fn` per
//! contract, and `conformance_tests!` turns them into tests for a backend. Every backend
//! runs all of them; a new contract is specified there once.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

mod backend;
mod backoff;
mod breaking;
mod election;
mod error;
mod faults;
mod guard;
mod lock;
mod memory;
mod metrics;
mod name;
mod observe;
mod operator;
mod register;
mod release;
mod renewal;
mod request;
mod shards;
mod take;
mod term;
mod timing;
mod token;
mod validity;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use backend::{Backend, Changes, Lease, Listed, LockInfo, Release, Renew, Take};
pub use backoff::retry_delays;
pub use breaking::Broken;
pub use election::{
    DEFAULT_DRAIN_TIMEOUT, Health, LeaderElector, LeaderState, Leadership, ShutdownHandle,
    WorkOutput,
};
pub use error::{BoxError, Error, Result};
pub use faults::Faulty;
pub use guard::Guard;
pub use lock::{Lock, LockBuilder};
pub use memory::MemoryBackend;
pub use name::{LockName, MAX_IDENTITY_LEN, MAX_NAME_LEN};
pub use operator::Locks;
pub use register::FencedRegister;
pub use request::RequestTimeout;
pub use shards::{DEFAULT_MAX_MEMBERS, ElectedShards, ElectedShardsBuilder, ShardWork, shard_of};
pub use timing::{DEFAULT_TTL, Timing};
pub use token::FencingToken;
pub use validity::{LossReason, Validity};

/// This crate's README's example, compiled as a doctest so that it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
