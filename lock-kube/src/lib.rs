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
//!         // reconcile, writing with leadership.token() (see Fenced writes)
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
//!   on its event with one write. Renewing costs one write and no read; waiting costs
//!   no request while the holder renews: the waiter's watch applies each renewal to its
//!   observation and wakes it for none, and while that watch is current a take trusts
//!   it instead of reading the Lease (a standby costs one read, one list and one open
//!   watch in all; after a watch error it reads on each look until the watch, resumed,
//!   delivers again).
//! - **client-go compatible** records (`holderIdentity`, `leaseDurationSeconds`,
//!   `acquireTime`, `renewTime` with six fractional digits, `leaseTransitions` bumped on
//!   every acquisition; release writes an empty holder, like ReleaseOnCancel). Give Go
//!   and Rust replicas the same lease duration: client-go judges expiry by its own.
//!
//! # Which servers the token is guaranteed on
//!
//! The token needs two things of the apiserver: resourceVersions of Leases are integers
//! that compare in write order, and they keep growing when a Lease is deleted and
//! recreated. Kubernetes promises both since 1.35 (KEP-5504, comparable resourceVersions);
//! every etcd-backed apiserver has always given them, since a resourceVersion is the
//! etcd revision of the write, one counter for the whole store. Tested here on
//! kube-apiserver v1.20.2 over etcd 3.4 and v1.36.3 over etcd 3.6, including delete and
//! recreate (`the_token_keeps_growing_when_the_lease_is_deleted_and_recreated`).
//!
//! - **Managed control planes** (EKS, GKE, AKS, OpenShift) run etcd-backed apiservers:
//!   guaranteed.
//! - **kine** (k3s with SQLite, MySQL or PostgreSQL) numbers revisions with the
//!   database's ever-growing row id: the token grows as long as the database is not
//!   restored from a backup or rebuilt, which resets nothing on etcd but can on kine.
//! - **Other storage** (aggregated API servers, storage without a global revision) may
//!   give resourceVersions that are not numbers: every acquisition then fails with
//!   [`lock_core::Error::Unsupported`] ("the apiserver's resourceVersion … is not a
//!   number, so it cannot be a fencing token"), never a guessed token.
//!
//! # Fenced writes
//!
//! A leader writes Kubernetes objects with its term's token
//! ([`Leadership::token`](lock_core::Leadership::token),
//! [`Guard::token`](lock_core::Guard::token)), and a former leader that wakes up late
//! has its writes rejected. Every kind of write has its function, for typed objects and
//! [`DynamicObject`](kube::api::DynamicObject)s (custom resources), namespaced or
//! cluster-scoped:
//!
//! ```no_run
//! use k8s_openapi::api::{apps::v1::{Deployment, DeploymentStatus}, core::v1::ConfigMap};
//! use kube::{Api, api::{ObjectMeta, PatchParams}};
//! use lock_kube::{
//!     FencedPatch, fenced_apply, fenced_create, fenced_delete, fenced_patch, fenced_status,
//!     fenced_update,
//! };
//! use serde_json::json;
//!
//! # async fn run(client: kube::Client, leadership: lock_core::Leadership) -> lock_core::Result<()> {
//! let token = leadership.token();
//! let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "my-namespace");
//!
//! // Update: read, change, replace.
//! fenced_update(&maps, "state", token, |map| {
//!     map.data.get_or_insert_with(Default::default).insert("phase".into(), "done".into());
//! })
//! .await?;
//!
//! // Server-side apply of the fields this manager owns; creates the object if absent.
//! let config = json!({ "apiVersion": "v1", "kind": "ConfigMap", "data": { "phase": "done" } });
//! let params = PatchParams::apply("my-controller").force();
//! fenced_apply(&maps, "state", token, &params, &config).await?;
//!
//! // The /status subresource.
//! let deployments: Api<Deployment> = Api::namespaced(client, "my-namespace");
//! let status = DeploymentStatus { observed_generation: Some(3), ..DeploymentStatus::default() };
//! fenced_status(&deployments, "web", token, &status).await?;
//!
//! // Merge patch (RFC 7386) or JSON patch (RFC 6902), for large objects.
//! let merge = FencedPatch::Merge(json!({ "data": { "step": "2" } }));
//! fenced_patch(&maps, "state", token, &merge).await?;
//! let operations = FencedPatch::Json(json!([{ "op": "remove", "path": "/data/step" }]));
//! fenced_patch(&maps, "state", token, &operations).await?;
//!
//! // Delete, with the resourceVersion and uid checked as its preconditions.
//! fenced_delete(&maps, "state", token).await?;
//!
//! // Create, recording the token on the new object (see below for what it cannot promise).
//! let child = ConfigMap {
//!     metadata: ObjectMeta { name: Some("child".into()), ..ObjectMeta::default() },
//!     ..ConfigMap::default()
//! };
//! fenced_create(&maps, token, &child).await?;
//! # Ok(()) }
//! ```
//!
//! What they promise, whatever the kind of write:
//!
//! - **One check.** A write reads the object and checks `token` against the token the
//!   object records (its [`FENCING_TOKEN_ANNOTATION`] annotation, read by
//!   [`recorded_token`]): a lower one is stale.
//! - **Conditional on what was checked.** The write is sent conditional on the
//!   resourceVersion it checked (a replace's, a patch's or an apply's
//!   `metadata.resourceVersion`, a delete's preconditions) and records `token` in the same
//!   write, so the recorded token never goes down. A status write ignores metadata: the
//!   first one of a term raises the token on the object (conditional the same way), then
//!   writes `/status` conditional on the version that returned.
//! - **A newer writer makes a stale one conflict, then be rejected.** Any write to the
//!   object between our check and our send changes its resourceVersion, so our write
//!   conflicts (409) and the object is read and checked again. If that write was a newer
//!   leader's, the object now records its larger token, and ours is rejected without
//!   writing anything, however long we were paused between the check and the send.
//!
//! **A create cannot be fenced**: it is conditional only on the name being free, so a
//! former leader can still create an object that a newer leader deleted or never made.
//! [`fenced_create`] records the creator's token (later stale writes to the object are
//! rejected) and never overwrites; create only through it or [`fenced_apply`], and let
//! the leader's reconcile delete with [`fenced_delete`] what it does not want (stamp and
//! sweep: [`fenced_create`]'s docs say how).
//!
//! Errors:
//!
//! - [`StaleToken`](lock_core::Error::StaleToken) `{ presented, current }`: a newer token
//!   (`current`) has written the object, and this write was not made. The term is over:
//!   stop writing.
//! - An apiserver error, whose HTTP status [`api_status`] reads: **404** the object (or
//!   its namespace) does not exist (an apply creates an absent object instead); **403**
//!   RBAC forbids the request (the message names the verbs that kind of write needs);
//!   **409** other writers kept changing the object between our read and our write more
//!   times in a row than the write retries (transient: try again later), or a server-side
//!   apply conflicts with another field manager's fields (not transient: apply with
//!   `force()` or leave those fields out).
//!
//! ```no_run
//! use k8s_openapi::api::core::v1::ConfigMap;
//! use lock_core::Error;
//! use lock_kube::{api_status, fenced_delete};
//!
//! # async fn run(maps: kube::Api<ConfigMap>, token: lock_core::FencingToken) -> lock_core::Result<()> {
//! match fenced_delete(&maps, "state", token).await {
//!     Ok(_) => {}
//!     Err(Error::StaleToken { current, .. }) => {
//!         println!("a newer leader (token {current}) wrote it: this term is over");
//!     }
//!     Err(error) if api_status(&error) == Some(404) => {} // already gone
//!     Err(error) => return Err(error),
//! }
//! # Ok(()) }
//! ```
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
//!             // The reconciler makes fenced writes with this term's token.
//!             .run(reconcile, error_policy, Arc::new(leadership.token()))
//!             .for_each(|_| futures::future::ready(()))
//!     })
//!     .await
//! # }
//! ```
//!
//! If the Lease is lost, the controller is dropped at once and the replica campaigns
//! again. `cargo run --example leader-election` shows a SIGTERM hand-over between two
//! replicas of a controller over a custom resource, whose reconcile applies each
//! object's child ConfigMap with [`fenced_apply`] and writes its status with
//! [`fenced_status`].
//!
//! # Sharded controllers
//!
//! [`lock_core::ElectedShards`] splits numbered shards, each a Lease with its own token,
//! fairly among the live replicas. An object's shard never changes; only who holds the
//! shard does. Each replica then restricts its *watch* to its own shards, so its cache,
//! its watch traffic and its reconciles all shrink with the number of replicas, and
//! moving a shard writes no object. One of three modes:
//!
//! | mode | watch | an object's shard | costs |
//! |---|---|---|---|
//! | label | [`shard_watch`]: `<prefix>/shard in (…)` | the label, from [`shard_label_value`]`(&`[`shard_key`]`(&object), n)`, given when the object is created or by [`label_shards`] (one leader's work) | one write per object, once |
//! | server-side | [`server_shard_watch`]: a KEP-5866 shard selector of the owned hash ranges | [`ShardField::shard_of`] (FNV-1a-64 of the uid or the namespace) | nothing written; needs `ShardedListAndWatch` (alpha in 1.36), else the stream filters on the client |
//! | filter | an unrestricted watch and [`ElectedShards::owns`](lock_core::ElectedShards::owns) | [`ElectedShards::shard_of`](lock_core::ElectedShards::shard_of) | every replica still lists, watches and caches every object: only reconciles scale |
//!
//! Both watches start again with each new set of owned shards (a reflector's store then
//! holds exactly those shards' objects) and announce each list's objects again once the
//! store holds them, so that kube-runtime's controller reconciles every object of a
//! shard just taken. In the reconcile, start the work with
//! [`ElectedShards::work_on`](lock_core::ElectedShards::work_on) (or `work_on_shard`):
//! a shard given up is released only when its work has ended, and the work's writes
//! carry the shard's token.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use k8s_openapi::api::core::v1::ConfigMap;
//! # use kube::{Api, runtime::controller::Action};
//! # use lock_core::ElectedShards;
//! use lock_kube::{FencedPatch, fenced_patch, shard_key};
//!
//! async fn reconcile(map: Arc<ConfigMap>, shards: &ElectedShards, api: &Api<ConfigMap>)
//!     -> lock_core::Result<Action> {
//!     let Some(work) = shards.work_on(&shard_key(map.as_ref())) else {
//!         return Ok(Action::await_change()); // its shard moved: the new owner has it
//!     };
//!     let name = map.metadata.name.as_deref().unwrap_or_default();
//!     let done = FencedPatch::Merge(serde_json::json!({ "data": { "phase": "done" } }));
//!     fenced_patch(api, name, work.token(), &done).await?;
//!     Ok(Action::await_change())
//! }
//! ```
//!
//! `cargo run --example sharded-controller` runs three replicas in label mode; the
//! history test (`tests/shard_history.rs`) checks over 1,000 objects that no object is
//! reconciled by two replicas at once while replicas join, leave, crash and are cut off.
//!
//! # Coordinated leader election
//!
//! With Kubernetes' coordinated leader election (KEP-4355: kube-apiserver 1.33 or newer
//! with the `CoordinatedLeaderElection` feature gate and
//! `--runtime-config=coordination.k8s.io/v1beta1=true`), the election controller inside
//! kube-apiserver picks the leader: among the replicas announced by a `LeaseCandidate`
//! that answer its ping, the one with the oldest emulation version (then binary
//! version). Each replica runs a [`Candidate`] beside an elector on a
//! [`KubeBackend::coordinated`] lock with the same identity:
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use lock_core::{LeaderElector, Lock, Timing};
//! use lock_kube::{Candidate, KubeBackend};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = kube::Client::try_default().await?;
//! let identity = std::env::var("POD_NAME")?; // a Kubernetes object name
//! let candidate = Candidate::builder(client.clone(), "my-namespace", "my-controller", &identity)
//!     .binary_version("1.36.0")
//!     .emulation_version("1.35.0")
//!     .build()?;
//! let lock = Lock::builder(KubeBackend::coordinated(client, "my-namespace"), "my-controller", &identity)
//!     // At most the lease duration the controller writes (5 s).
//!     .timing(Timing::new(Duration::from_secs(5)))
//!     .build()?;
//! let elector = LeaderElector::new(lock);
//! let campaign = elector.run_until(
//!     |leadership| async move { leadership.stopping().await },
//!     async { tokio::signal::ctrl_c().await.unwrap_or(()) },
//! );
//! tokio::select! {
//!     result = candidate.run() => result?, // returns only on a permanent error
//!     result = campaign => result?,
//! }
//! # Ok(()) }
//! ```
//!
//! For a quick hand-over at shutdown, stop the candidate first, then
//! [`withdraw`](Candidate::withdraw) it, then shut the elector down; otherwise the
//! controller may elect the departing replica again as it releases, and the next one
//! leads only after that term expires and another election (about 10 s).
//!
//! What it promises:
//!
//! - **It never takes the Lease by itself.** `take` never writes a Lease that does not
//!   name this identity: it acquires only when the Lease names it (confirmed by a fresh
//!   read) and has not expired by this process's own observation for at least the TTL,
//!   and then renews it at once, as client-go's candidates do, so every other observer
//!   sees it fresh from after the guard's validity began, however late our watch saw
//!   the controller's write. A Lease given for less than the TTL is
//!   [`InvalidOption`](lock_core::Error::InvalidOption). The controller's write naming
//!   us wakes a waiting elector through the watch.
//! - **It leads exactly while the Lease names it and it can renew**: renewals and
//!   releases are the usual compare-and-sets on our own acquisition (holder and
//!   `acquireTime`; the controller writes none, so a term it hands out is told from our
//!   own later acquisitions, not from a later term it hands the same identity). When the
//!   controller names another `preferredHolder`, the renewal answers
//!   [`Renew::HandOver`](lock_core::Renew::HandOver): the leader drains, releases, and
//!   the controller elects the preferred candidate.
//! - **Fencing tokens still grow**: the token is the resourceVersion of the Lease as
//!   found naming us, i.e. of the controller's write, larger than every earlier token.
//! - The [`Candidate`] answers every ping (`pingTime` later than `renewTime`) with a
//!   new `renewTime` and renews every 5 minutes otherwise, as client-go's does. On an
//!   apiserver without LeaseCandidates it fails with
//!   [`Unsupported`](lock_core::Error::Unsupported).
//!
//! The candidate needs `get`, `list`, `watch`, `create`, `update` (and `delete` for
//! `withdraw`) on `leasecandidates.coordination.k8s.io`.
//!
//! # Errors
//!
//! Every apiserver error is a [`lock_core::Error::Backend`] whose
//! [`source`](std::error::Error::source) is the `kube::Error` itself (also
//! [`Error::client_error`](lock_core::Error::client_error)), with a context that says what
//! failed and what to do about it (for a 403 the RBAC verbs needed, for a 404 the missing
//! namespace or object). [`api_status`] reads the HTTP status, to tell a 404 from a 403
//! or a 409 without matching text. Whether it is transient: 429, 5xx and no answer at all
//! are; other answers are not, except a compare-and-set that lost the race to other writers
//! too many times in a row, which is transient and keeps the last 409 as its source.
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
//! Fenced writes need, on the objects they write: `get` and `update` ([`fenced_update`]);
//! `get`, `create` and `patch` ([`fenced_apply`]); `get` and `patch`, and `update` on the
//! status subresource ([`fenced_status`]); `get` and `patch` ([`fenced_patch`]); `get`
//! and `delete` ([`fenced_delete`]); `create` ([`fenced_create`]).
//!
//! # Timing
//!
//! The defaults are lock-core's: a 15 s TTL (client-go's default lease duration),
//! renewed every 5 s, so two renewals may fail before the guard gives up; the guard stops
//! trusting the lease 152 ms before the TTL (1% + 2 ms for clock-rate drift). Lease
//! durations are whole seconds; a TTL with a fraction is rounded up in the record, so
//! others wait at least as long as the holder trusts it.
//!
//! client-go's `LeaderElectionConfig` in terms of [`Timing`](lock_core::Timing):
//!
//! | client-go | its default | `Timing` | ours by default |
//! |---|---|---|---|
//! | `LeaseDuration`: how long others wait after the last renewal | 15 s | `Timing::new(lease_duration)` | 15 s |
//! | `RenewDeadline`: how long the leader keeps trying to renew before it stops leading | 10 s | `with_drift_margin(lease_duration - renew_deadline)`: how long before the TTL the guard stops trusting the lease | 152 ms (it leads until 14.85 s after its last renewal was sent) |
//! | `RetryPeriod`: how often the leader renews and followers try | 2 s | `with_renew_interval(retry_period)`; followers do not retry: they watch the Lease (`with_poll_interval` applies only without a watch) | renew every 5 s |
//!
//! So client-go's defaults, exactly:
//!
//! ```
//! use std::time::Duration;
//! let client_go = lock_core::Timing::new(Duration::from_secs(15))
//!     .with_drift_margin(Duration::from_secs(15 - 10))
//!     .with_renew_interval(Duration::from_secs(2));
//! assert!(client_go.validate().is_ok());
//! assert_eq!(client_go.validity(), Duration::from_secs(10));
//! ```
//!
//! # Choosing TLS
//!
//! lock-kube turns on no TLS implementation of kube's by itself beyond its default
//! feature, `rustls-tls` (rustls with the ring provider, as kube's default). A binary that
//! chose another takes lock-kube with `default-features = false` and one of
//! `features = ["rustls-tls"]`, `["aws-lc-rs"]` (rustls with aws-lc-rs) or
//! `["openssl-tls"]` (add `"warm"` for [`WarmCache`]); [`nodelay_client`] uses the same.
//! With several on, rustls wins, as in kube. `openssl-tls` needs Rust 1.95 (kube's
//! hyper-openssl 0.10.3 depends on parking_lot 0.13); the others build with 1.89.
//!
//! Pick a `k8s-openapi` version feature in your binary as usual (e.g. `latest`).
//!
//! # Proxies and compression
//!
//! As kube's, off by default: `http-proxy` (a kubeconfig's `proxy-url` of `http://` or
//! `https://`, with Basic credentials from the URL), `socks5`, `proxy` (both) and `gzip`
//! (compressed answers). Each turns on kube's feature of the same name and the same layer
//! in [`nodelay_client`], which otherwise refuses a proxy URL
//! (`kube::Error::ProxyProtocolDisabled`, naming the feature) rather than ignore it.

mod backend;
mod candidate;
mod client;
mod error;
mod events;
mod fenced;
mod identity;
mod known;
mod record;
mod sharded;
#[cfg(feature = "warm")]
mod warm;
mod watch;

pub use backend::KubeBackend;
pub use candidate::{
    Candidate, CandidateBuilder, DEFAULT_CANDIDATE_RENEW_INTERVAL, OLDEST_EMULATION_VERSION,
};
pub use client::nodelay_client;
pub use error::{REQUIRED_VERBS, api_status};
pub use events::{LEADER_ELECTION_REASON, record_leadership};
pub use fenced::{
    FENCING_TOKEN_ANNOTATION, Fenceable, FencedPatch, fenced_apply, fenced_create, fenced_delete,
    fenced_patch, fenced_status, fenced_update, recorded_token,
};
pub use identity::default_identity;
pub use sharded::{
    ShardField, hash_range_of, label_shards, server_shard_watch, shard_key, shard_label,
    shard_label_value, shard_selector, shard_selector_supported, shard_watch,
};
#[cfg(feature = "warm")]
pub use warm::WarmCache;

/// This crate's README's example, compiled as a doctest so that it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
