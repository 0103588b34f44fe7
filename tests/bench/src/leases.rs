//! 1,000 Kubernetes leases held by one process: its CPU and memory, and the request rate
//! the apiserver sees.

use std::{sync::Arc, time::Duration};

use futures::future::join_all;
use lock_core::{Backend, Lock, Timing};
use lock_tests::Kube;
use tokio::time::{Instant, sleep};

use crate::subjects::kube_lease_requests;

/// What holding many leases costs.
#[derive(Clone, Copy, Debug)]
pub struct Cost {
    /// How long acquiring them all took.
    pub acquire_all: Duration,
    /// This process's CPU while holding them, in percent of one core.
    pub cpu_percent: f64,
    /// This process's resident memory growth from acquiring them, in MiB.
    pub memory_mib: f64,
    /// Lease requests per second the apiserver served meanwhile.
    pub requests_per_second: f64,
}

/// This process's CPU time so far (user + system), from `/proc/self/stat` (in clock
/// ticks of 10 ms, Linux's USER_HZ).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // After the command name: state is field 0, utime field 11, stime field 12.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// This process's resident memory, from `/proc/self/status`, in KiB.
fn resident_kib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .expect("/proc/self/status")
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0)
}

/// Acquires `leases` leases with the default timing (15 s) on one client, holds them for
/// `hold`, and releases them.
pub async fn hold_many(kube: &Kube, leases: usize, hold: Duration) -> Cost {
    let client = lock_kube::nodelay_client(kube.config(false).await).expect("a client");
    let backend: Arc<dyn Backend> = Arc::new(lock_kube::KubeBackend::new(client, kube.namespace()));
    let prefix = lock_core::conformance::unique_name("many");
    let memory_before = resident_kib();
    let started = Instant::now();
    let guards = join_all((0..leases).map(|i| {
        let lock = Lock::builder(backend.clone(), format!("{prefix}-{i}"), "bench")
            .timing(Timing::default())
            .build()
            .expect("a valid lock");
        async move { lock.acquire().await.expect("acquire") }
    }))
    .await;
    let acquire_all = started.elapsed();
    sleep(Duration::from_secs(5)).await; // settle into the renewal rhythm
    let (cpu_before, requests_before) = (cpu_time(), kube_lease_requests(kube).await);
    sleep(hold).await;
    let (cpu_after, requests_after) = (cpu_time(), kube_lease_requests(kube).await);
    let memory_after = resident_kib();
    let cost = Cost {
        acquire_all,
        cpu_percent: (cpu_after - cpu_before).as_secs_f64() / hold.as_secs_f64() * 100.0,
        memory_mib: (memory_after - memory_before) / 1024.0,
        requests_per_second: (requests_after - requests_before) / hold.as_secs_f64(),
    };
    assert!(
        guards.iter().all(lock_core::Guard::is_valid),
        "every lease was kept"
    );
    join_all(guards.into_iter().map(lock_core::Guard::release)).await;
    cost
}
