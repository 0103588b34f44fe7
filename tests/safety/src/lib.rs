//! The safety suite: every backend under the faults that break other lock libraries,
//! with checkers over the recorded history.
//!
//! Five contenders (each on a thread and runtime of its own) loop: acquire → three
//! fenced writes, each after a validity check → release. Each write goes to lock-core's
//! [`FencedRegister`](lock_core::FencedRegister) (a log that keeps every accepted
//! write, in the order applied), to the backend's own fenced-write helper on the server
//! (on Kubernetes `fenced_update` of a ConfigMap, and in rows of their own
//! `fenced_apply` of one and `fenced_status` of a custom resource; `fenced_put`,
//! `fenced_set`), and to a log without
//! fencing. Each contender reaches the server through a TCP proxy of its own (the
//! in-memory backend: through a fault switch), so one holder can be cut off.
//!
//! The [nemeses](Nemesis): holder cut off or blackholed, holder paused past the TTL,
//! server paused past the TTL, server killed and restarted, latency, Redis restarted
//! with all its data lost, and one out-of-bounds pause between a validity check and
//! the write it allows. On the topologies users run (`etcd-cluster`: three etcd
//! members; `kube-ha`: two apiservers over them; `redis-sentinel` and
//! `redis-sentinel-acks`: a primary, a lagging replica and three Sentinels): the etcd
//! leader killed or cut off from its peers, the holder's apiserver killed, paused or
//! slowed on its way to etcd, and the Redis primary killed (Sentinel fails over).
//!
//! The [checkers](check): no fenced store accepts a stale write; no acknowledged
//! write is lost; a later acquisition has a larger token; no two holders act at the
//! same instant while faults stay in bounds; someone holds the lock within TTL + 2 s of
//! every heal. Beyond the backend's assumptions (Redis losing the lock's record), guards
//! may overlap but fencing must hold. In the demonstration (a pause between check and
//! write), the overlap must be caught and the stale write rejected by fencing, while the
//! unfenced log accepted it: proof that the checkers can fail.
//!
//! Run: `cargo run --release -p lock-safety -- [--long] [BACKEND ...]`, with backends of
//! [`BACKENDS`].

pub mod check;
mod contender;
pub mod history;
pub mod nemesis;
pub mod scenario;
pub mod system;
pub mod systems;
pub mod table;

use std::sync::Arc;

pub use nemesis::{Bounds, Nemesis};
pub use scenario::{Plan, Row};
pub use system::System;
use systems::kube::{KubeSystem, Written};

/// The backends, in table order: single servers, then the topologies users run.
pub const BACKENDS: [&str; 10] = [
    "memory",
    "kube",
    "kube-apply",
    "kube-status",
    "etcd",
    "redis",
    "etcd-cluster",
    "kube-ha",
    "redis-sentinel",
    "redis-sentinel-acks",
];

/// Starts `backend`'s server (none for memory).
pub async fn start(backend: &str) -> Arc<dyn System> {
    match backend {
        "memory" => Arc::new(systems::memory::MemorySystem::default()),
        "kube" => Arc::new(KubeSystem::start(Written::Update).await),
        "kube-apply" => Arc::new(KubeSystem::start(Written::Apply).await),
        "kube-status" => Arc::new(KubeSystem::start(Written::Status).await),
        "etcd" => Arc::new(systems::etcd::EtcdSystem::start().await),
        "redis" => Arc::new(systems::redis::RedisSystem::start().await),
        "etcd-cluster" => Arc::new(systems::etcd_cluster::EtcdClusterSystem::start().await),
        "kube-ha" => Arc::new(systems::kube_ha::KubeHaSystem::start().await),
        "redis-sentinel" => {
            Arc::new(systems::redis_sentinel::RedisSentinelSystem::start(false).await)
        }
        "redis-sentinel-acks" => {
            Arc::new(systems::redis_sentinel::RedisSentinelSystem::start(true).await)
        }
        other => panic!("unknown backend {other:?}; pick from {BACKENDS:?}"),
    }
}

/// Runs every nemesis `backend` supports, one after another, calling `each` with each
/// row as it is done.
pub async fn run_backend(backend: &str, plan: &Plan, each: impl FnMut(&Row)) -> Vec<Row> {
    run_nemeses(backend, &Nemesis::ALL, plan, each).await
}

/// Runs those of `nemeses` that `backend` supports, one after another, calling `each`
/// with each row as it is done.
pub async fn run_nemeses(
    backend: &str,
    nemeses: &[Nemesis],
    plan: &Plan,
    mut each: impl FnMut(&Row),
) -> Vec<Row> {
    let system = start(backend).await;
    let mut rows = Vec::new();
    for &nemesis in nemeses {
        if system.supports(nemesis) {
            let row = scenario::run(system.clone(), nemesis, plan).await;
            each(&row);
            rows.push(row);
        }
    }
    rows
}
