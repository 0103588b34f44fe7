//! Latency and throughput of the etcd lock on a real etcd on loopback (the harness
//! starts one), side by side with etcd's own Lock RPC. Prints a Markdown table.
//!
//! Run: `cargo bench -p lock-etcd --bench etcd`

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use etcd_client::LockOptions;
use lock_core::{Lock, Timing};
use lock_etcd::EtcdBackend;
use lock_tests::{Etcd, bench::Sample};
use tokio::time::{Instant, sleep};

const TTL: Duration = Duration::from_secs(10);
const CONTENDERS: usize = 8;
const THROUGHPUT_RUN: Duration = Duration::from_secs(5);

fn lock(backend: EtcdBackend, name: &str, identity: &str) -> Lock {
    Lock::builder(backend, name, identity)
        .timing(Timing::new(TTL))
        .build()
        .expect("a valid lock")
}

fn fresh_name(scenario: &str) -> String {
    lock_core::conformance::unique_name(scenario)
}

async fn uncontended(etcd: &Etcd) {
    let lock = lock(
        EtcdBackend::new(etcd.client().await),
        &fresh_name("uncontended"),
        "bench",
    );
    let (mut acquires, mut releases) = (Vec::new(), Vec::new());
    for _ in 0..100 {
        let started = Instant::now();
        let guard = lock.acquire().await.expect("acquire");
        acquires.push(started.elapsed());
        let started = Instant::now();
        guard.release().await.expect("release");
        releases.push(started.elapsed());
    }
    Sample(acquires).row("acquire, uncontended", "–");
    Sample(releases).row("release", "–");
}

async fn graceful_handover(etcd: &Etcd) {
    let name = fresh_name("handover");
    let holder = lock(EtcdBackend::new(etcd.client().await), &name, "holder");
    let follower = Arc::new(lock(
        EtcdBackend::new(etcd.client().await),
        &name,
        "follower",
    ));
    let mut latencies = Vec::new();
    for _ in 0..50 {
        let guard = holder.acquire().await.expect("holder acquires");
        let waiting = {
            let follower = follower.clone();
            tokio::spawn(async move {
                let guard = follower.acquire().await.expect("follower acquires");
                (Instant::now(), guard)
            })
        };
        sleep(Duration::from_millis(100)).await; // the follower is watching by now
        let released_at = Instant::now();
        guard.release().await.expect("release");
        let (acquired_at, taken) = waiting.await.expect("follower task");
        latencies.push(acquired_at - released_at);
        taken.release().await.expect("release");
    }
    Sample(latencies).row("graceful hand-over", "–");
}

/// Lock/unlock cycles per second of 8 contenders on one lock, each on its own client.
async fn throughput_ours(etcd: &Etcd) -> f64 {
    let name = fresh_name("throughput");
    let cycles = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + THROUGHPUT_RUN;
    let mut tasks = Vec::new();
    for i in 0..CONTENDERS {
        let lock = lock(
            EtcdBackend::new(etcd.client().await),
            &name,
            &format!("contender-{i}"),
        );
        let cycles = cycles.clone();
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let guard = lock.acquire().await.expect("acquire");
                guard.release().await.expect("release");
                cycles.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for task in tasks {
        task.await.expect("contender");
    }
    cycles.load(Ordering::Relaxed) as f64 / THROUGHPUT_RUN.as_secs_f64()
}

/// The same with etcd's own Lock RPC (etcd-client's lock client), each contender with
/// its own etcd lease.
async fn throughput_etcd_lock(etcd: &Etcd) -> f64 {
    let name = fresh_name("etcd-lock");
    let cycles = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + THROUGHPUT_RUN;
    let mut tasks = Vec::new();
    for _ in 0..CONTENDERS {
        let mut client = etcd.client().await;
        let lease = client
            .lease_grant(TTL.as_secs() as i64 * 3, None)
            .await
            .expect("grant")
            .id();
        let (name, cycles) = (name.clone(), cycles.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let locked = client
                    .lock(name.as_str(), Some(LockOptions::new().with_lease(lease)))
                    .await
                    .expect("lock");
                client.unlock(locked.key()).await.expect("unlock");
                cycles.fetch_add(1, Ordering::Relaxed);
            }
            let _ = client.lease_revoke(lease).await;
        }));
    }
    for task in tasks {
        task.await.expect("contender");
    }
    cycles.load(Ordering::Relaxed) as f64 / THROUGHPUT_RUN.as_secs_f64()
}

#[tokio::main]
async fn main() {
    let etcd = Etcd::start().await;
    println!(
        "lock-etcd on etcd 3.4 (Debian's etcd-server) on 127.0.0.1, {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!();
    Sample::header("note");
    uncontended(&etcd).await;
    graceful_handover(&etcd).await;
    println!();
    let ours = throughput_ours(&etcd).await;
    let theirs = throughput_etcd_lock(&etcd).await;
    println!("| contended throughput, {CONTENDERS} contenders, {THROUGHPUT_RUN:?} | cycles/s |");
    println!("|---|---|");
    println!("| lock-etcd (with fencing tokens) | {ours:.0} |");
    println!("| etcd Lock RPC (etcd-client) | {theirs:.0} |");
    println!("| ratio ours / etcd Lock RPC | {:.2} |", ours / theirs);
}
