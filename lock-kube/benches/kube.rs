//! Latency and request cost of the Kubernetes Lease lock on a real kube-apiserver on
//! loopback (the harness starts one). Prints a Markdown table.
//!
//! Run: `cargo bench -p lock-kube --bench kube`

use std::time::Duration;

use lock_core::{Backend, Lock, LockName, Take, Timing};
use lock_kube::{KubeBackend, nodelay_client};
use lock_tests::{
    Kube,
    bench::{Sample, acquire_release, graceful_handover},
};
use tokio::time::{Instant, sleep};

/// Lease requests the apiserver has served, from its own metrics.
async fn lease_requests(kube: &Kube) -> f64 {
    let request = http::Request::get("/metrics")
        .body(Vec::new())
        .expect("a request");
    let metrics = kube
        .admin()
        .await
        .request_text(request)
        .await
        .expect("apiserver metrics");
    metrics
        .lines()
        .filter(|line| {
            line.starts_with("apiserver_request_total{") && line.contains("resource=\"leases\"")
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[derive(Clone, Copy)]
enum ClientKind {
    Default,
    NoDelay,
}

async fn backend(kube: &Kube, kind: ClientKind) -> KubeBackend {
    let config = kube.config(false).await;
    let client = match kind {
        ClientKind::Default => kube::Client::try_from(config).expect("a client"),
        ClientKind::NoDelay => nodelay_client(config).expect("a client"),
    };
    KubeBackend::new(client, kube.namespace())
}

fn lock(backend: KubeBackend, name: &str, identity: &str, ttl: Duration) -> Lock {
    Lock::builder(backend, name, identity)
        .timing(Timing::new(ttl))
        .build()
        .expect("a valid lock")
}

fn fresh_name(scenario: &str) -> String {
    lock_core::conformance::unique_name(scenario)
}

const TTL: Duration = Duration::from_secs(15);

/// The first acquisition of a process: a new connection, a lease never seen.
async fn first_acquire(kube: &Kube, kind: ClientKind, label: &str) {
    let mut latencies = Vec::new();
    let before = lease_requests(kube).await;
    for _ in 0..20 {
        let lock = lock(
            backend(kube, kind).await,
            &fresh_name("first"),
            "bench",
            TTL,
        );
        let started = Instant::now();
        let guard = lock.acquire().await.expect("acquire");
        latencies.push(started.elapsed());
        guard.release().await.expect("release");
    }
    let requests = (lease_requests(kube).await - before) / 20.0 - 1.0; // minus the release
    Sample(latencies).row(
        &format!("first acquire, new connection ({label})"),
        &format!("{requests:.2}"),
    );
}

/// Acquire and release on a warm connection, the lease known from our own last write.
async fn warm_acquire(kube: &Kube, kind: ClientKind, label: &str) {
    let lock = lock(backend(kube, kind).await, &fresh_name("warm"), "bench", TTL);
    lock.acquire()
        .await
        .expect("acquire")
        .release()
        .await
        .expect("release");
    let before = lease_requests(kube).await;
    let (acquires, releases) = acquire_release(&lock, 100).await;
    let per_cycle = (lease_requests(kube).await - before) / 100.0;
    acquires.row(
        &format!("acquire, warm ({label})"),
        &format!("{:.2}", per_cycle - 1.0),
    );
    releases.row(&format!("release, warm ({label})"), "1.00");
}

/// Holder releases → the waiting follower holds, each on its own connection.
async fn handover(kube: &Kube, kind: ClientKind, label: &str) {
    let name = fresh_name("handover");
    let holder = lock(backend(kube, kind).await, &name, "holder", TTL);
    let follower = lock(backend(kube, kind).await, &name, "follower", TTL);
    graceful_handover(&holder, &follower, 50)
        .await
        .row(&format!("graceful hand-over ({label})"), "–");
}

/// Holder crashes (never renews) → the follower holds; reported minus the lease duration.
async fn crash_handover(kube: &Kube, kind: ClientKind, label: &str) {
    let ttl = Duration::from_secs(1);
    let mut latencies = Vec::new();
    for _ in 0..10 {
        let name = fresh_name("crash");
        let crashed = backend(kube, kind).await;
        let taken = crashed
            .take(&LockName::new(&name).expect("valid"), "crashed", ttl)
            .await;
        assert!(matches!(taken, Ok(Take::Acquired(_))), "{taken:?}");
        let last_write = Instant::now();
        let guard = lock(backend(kube, kind).await, &name, "follower", ttl)
            .acquire()
            .await
            .expect("acquire");
        latencies.push(last_write.elapsed().saturating_sub(ttl));
        guard.release().await.expect("release");
    }
    Sample(latencies).row(
        &format!("crash hand-over minus lease duration ({label})"),
        "–",
    );
}

/// Requests per second that one held lock costs with the default timing.
async fn steady_state(kube: &Kube, kind: ClientKind) -> f64 {
    let lock = lock(
        backend(kube, kind).await,
        &fresh_name("steady"),
        "bench",
        TTL,
    );
    let guard = lock.acquire().await.expect("acquire");
    let before = lease_requests(kube).await;
    let held = Duration::from_secs(30);
    sleep(held).await;
    let requests = lease_requests(kube).await - before;
    guard.release().await.expect("release");
    requests / held.as_secs_f64()
}

#[tokio::main]
async fn main() {
    let kube = Kube::start().await;
    println!(
        "lock-kube on a real kube-apiserver v{} on 127.0.0.1, {} cores",
        lock_tests::APISERVER_VERSION,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!();
    Sample::header("lease requests");
    for (kind, label) in [
        (ClientKind::Default, "kube default client"),
        (ClientKind::NoDelay, "nodelay_client"),
    ] {
        first_acquire(&kube, kind, label).await;
        warm_acquire(&kube, kind, label).await;
        handover(&kube, kind, label).await;
        crash_handover(&kube, kind, label).await;
    }
    println!();
    let rate = steady_state(&kube, ClientKind::NoDelay).await;
    println!(
        "steady state: {rate:.3} lease requests per second per held lock (TTL 15 s, renewed every 5 s)"
    );
}
