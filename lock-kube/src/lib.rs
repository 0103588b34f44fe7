//! Kubernetes Leases as a lock backend: fencing tokens, watch-driven hand-over, records
//! compatible with client-go, and fenced writes to Kubernetes objects.
//!
//! ```no_run
//! use lock_core::{LeaderElector, Lock};
//! use lock_kube::KubeBackend;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = kube::Client::try_default().await?;
//! let lock = Lock::new(KubeBackend::new(client, "my-namespace"), "my-controller", "pod-a")?;
//! LeaderElector::new(lock)
//!     .run(|leadership| async move {
//!         // reconcile, writing with leadership.token() through fenced_update
//!         leadership.stopping().await;
//!     })
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! # How it works
//!
//! - **Compare-and-set only.** Acquiring creates the Lease (POST) or replaces it (PUT)
//!   with the resourceVersion it decided on; renewing and releasing replace our own
//!   record the same way. A Lease changed by another writer is read again and checked
//!   (still our acquisition: same holder, same `acquireTime`), never overwritten blindly.
//! - **Fencing token**: the resourceVersion of the write that acquired the Lease. Every
//!   write to a resource type gets a larger one (the etcd revision), also across deleting
//!   and recreating the Lease. A process restarted with the same identity does not
//!   inherit its old lease: it waits for it like anyone else and gets a new token.
//! - **Expiry by observation.** A Lease is never expired by the server: a contender
//!   takes it over once its record has not changed for `leaseDurationSeconds` of the
//!   contender's own clock, as client-go does, so node clock skew cannot produce two
//!   holders ([`KubeBackend::trusting_renew_time`] opts into trusting `renewTime`).
//! - **Watching, not polling.** A waiter watches its Lease, so a release is taken over
//!   at once. Renewing costs one write and no read.
//! - **client-go compatible** records (`holderIdentity`, `leaseDurationSeconds`,
//!   `acquireTime`, `renewTime` with six fractional digits, `leaseTransitions` bumped on
//!   every acquisition; release writes an empty holder, like ReleaseOnCancel). Give Go
//!   and Rust replicas the same lease duration: client-go judges expiry by its own.
//!
//! # Leader-gated controllers
//!
//! Run a kube-runtime `Controller` only while leading, and let it drain on step-down:
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use futures::StreamExt;
//! # use k8s_openapi::api::core::v1::ConfigMap;
//! # use kube::runtime::{Controller, controller::Action, watcher};
//! # async fn reconcile(_: Arc<ConfigMap>, _: Arc<lock_core::FencingToken>) -> Result<Action, lock_core::Error> { Ok(Action::await_change()) }
//! # fn error_policy(_: Arc<ConfigMap>, _: &lock_core::Error, _: Arc<lock_core::FencingToken>) -> Action { Action::await_change() }
//! # async fn run(elector: lock_core::LeaderElector, api: kube::Api<ConfigMap>) -> lock_core::Result<()> {
//! elector
//!     .run(|leadership| {
//!         Controller::new(api.clone(), watcher::Config::default())
//!             // On step-down: stop taking work and finish the reconciles in flight;
//!             // the Lease is released after that.
//!             .graceful_shutdown_on(leadership.stopped())
//!             // The reconciler writes through fenced_update with this term's token.
//!             .run(reconcile, error_policy, Arc::new(leadership.token()))
//!             .for_each(|_| futures::future::ready(()))
//!     })
//!     .await
//! # }
//! ```
//!
//! If the Lease is lost, the controller is dropped at once and the replica campaigns
//! again. `cargo run --example leader-election` shows a SIGTERM hand-over.
//!
//! # RBAC
//!
//! The controller's service account needs, in its namespace:
//!
//! ```yaml
//! - apiGroups: ["coordination.k8s.io"]
//!   resources: ["leases"]
//!   verbs: ["get", "list", "watch", "create", "update"]
//! ```
//!
//! # Timing
//!
//! The defaults are lock-core's: a 15 s TTL (client-go's default lease duration),
//! renewed every 5 s, so two renewals may fail before the guard gives up; the guard stops
//! trusting the lease 152 ms before the TTL (1% + 2 ms for clock-rate drift). Lease
//! durations are whole seconds; a TTL with a fraction is rounded up in the record, so
//! others wait at least as long as the holder trusts it.
//!
//! Pick a `k8s-openapi` version feature in your binary as usual (e.g. `latest`).

mod backend;
mod candidate;
mod client;
mod error;
mod fenced;
mod known;
mod record;

pub use backend::KubeBackend;
pub use candidate::{
    Candidate, CandidateBuilder, DEFAULT_CANDIDATE_RENEW_INTERVAL, OLDEST_EMULATION_VERSION,
};
pub use client::nodelay_client;
pub use error::REQUIRED_VERBS;
pub use fenced::{FENCING_TOKEN_ANNOTATION, fenced_update, recorded_token};

/// The README's examples, compiled as doctests so that they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
