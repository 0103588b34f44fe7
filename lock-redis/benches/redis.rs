//! Latency and throughput of the Redis lock on a real redis-server on loopback (the
//! harness starts one), side by side with `rslock` (Redlock) in the same run.
//!
//! Run: `cargo bench -p lock-redis --bench redis`

use std::time::Duration;

use lock_core::{Lock, Timing};
use lock_redis::RedisBackend;
use lock_tests::{
    Redis,
    bench::{
        Cycle, Sample, acquire_release, graceful_handover, lock_cycle, throughput, throughput_table,
    },
};
use rslock::LockManager;
use tokio::time::Instant;

const TTL: Duration = Duration::from_secs(10);
const CONTENDERS: usize = 8;
const THROUGHPUT_RUN: Duration = Duration::from_secs(5);

fn fresh_name(scenario: &str) -> String {
    lock_core::conformance::unique_name(scenario)
}

async fn lock(redis: &Redis, name: &str, identity: &str) -> Lock {
    let backend = RedisBackend::connect(&redis.url()).await.expect("connect");
    Lock::builder(backend, name, identity)
        .timing(Timing::new(TTL))
        .build()
        .expect("a valid lock")
}

/// A contender on rslock, with a lock manager of its own.
fn rslock_cycle(redis: &Redis, resource: &str) -> Cycle {
    let manager = LockManager::new(vec![redis.url()]);
    let resource = resource.to_owned();
    Box::new(move || {
        let (manager, resource) = (manager.clone(), resource.clone());
        Box::pin(async move {
            let held = manager
                .acquire_no_guard(resource.as_bytes(), TTL)
                .await
                .expect("rslock acquire");
            manager.unlock(&held).await;
        })
    })
}

/// rslock's uncontended acquire and release, `n` times.
async fn rslock_acquire_release(redis: &Redis, n: usize) -> (Sample, Sample) {
    let manager = LockManager::new(vec![redis.url()]);
    let resource = fresh_name("rslock-uncontended");
    let (mut acquires, mut releases) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let started = Instant::now();
        let held = manager
            .acquire_no_guard(resource.as_bytes(), TTL)
            .await
            .expect("rslock acquire");
        acquires.push(started.elapsed());
        let started = Instant::now();
        manager.unlock(&held).await;
        releases.push(started.elapsed());
    }
    (Sample(acquires), Sample(releases))
}

#[tokio::main]
async fn main() {
    let redis = Redis::start().await;
    println!(
        "lock-redis on redis-server 7.0 (Debian) on 127.0.0.1, {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!();
    Sample::header("note");
    let (acquires, releases) = acquire_release(
        &lock(&redis, &fresh_name("uncontended"), "bench").await,
        200,
    )
    .await;
    acquires.row("acquire, uncontended (lock-redis)", "1 EVALSHA");
    releases.row("release (lock-redis)", "1 EVALSHA");
    let (acquires, releases) = rslock_acquire_release(&redis, 200).await;
    acquires.row("acquire, uncontended (rslock)", "no token");
    releases.row("release (rslock)", "–");
    let name = fresh_name("handover");
    let (holder, follower) = (
        lock(&redis, &name, "holder").await,
        lock(&redis, &name, "follower").await,
    );
    graceful_handover(&holder, &follower, 50)
        .await
        .row("graceful hand-over (lock-redis)", "pub/sub");
    println!();

    let name = fresh_name("throughput");
    let mut ours = Vec::new();
    for i in 0..CONTENDERS {
        ours.push(lock_cycle(
            lock(&redis, &name, &format!("contender-{i}")).await,
        ));
    }
    let ours = throughput(ours, THROUGHPUT_RUN).await;
    let resource = fresh_name("rslock-throughput");
    let theirs = throughput(
        (0..CONTENDERS)
            .map(|_| rslock_cycle(&redis, &resource))
            .collect(),
        THROUGHPUT_RUN,
    )
    .await;
    throughput_table(
        CONTENDERS,
        THROUGHPUT_RUN,
        ("lock-redis (with fencing tokens)", ours),
        ("rslock 0.10 (no tokens)", theirs),
    );
}
