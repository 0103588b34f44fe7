//! Latency and throughput of the Redis lock on a real redis-server on loopback (the
//! harness starts one), side by side with `rslock` (Redlock) in the same run.
//!
//! Run: `cargo bench -p lock-redis --bench redis`

use std::{sync::Arc, time::Duration};

use lock_core::{Lock, Timing};
use lock_redis::RedisBackend;
use lock_tests::{Redis, bench::Sample};
use rslock::LockManager;
use tokio::time::{Instant, sleep};

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

async fn uncontended(redis: &Redis) {
    let lock = lock(redis, &fresh_name("uncontended"), "bench").await;
    let (mut acquires, mut releases) = (Vec::new(), Vec::new());
    for _ in 0..200 {
        let started = Instant::now();
        let guard = lock.acquire().await.expect("acquire");
        acquires.push(started.elapsed());
        let started = Instant::now();
        guard.release().await.expect("release");
        releases.push(started.elapsed());
    }
    Sample(acquires).row("acquire, uncontended (lock-redis)", "1 EVALSHA");
    Sample(releases).row("release (lock-redis)", "1 EVALSHA");

    let manager = LockManager::new(vec![redis.url()]);
    let resource = fresh_name("rslock-uncontended");
    let (mut acquires, mut releases) = (Vec::new(), Vec::new());
    for _ in 0..200 {
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
    Sample(acquires).row("acquire, uncontended (rslock)", "no token");
    Sample(releases).row("release (rslock)", "–");
}

async fn graceful_handover(redis: &Redis) {
    let name = fresh_name("handover");
    let holder = lock(redis, &name, "holder").await;
    let follower = Arc::new(lock(redis, &name, "follower").await);
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
        sleep(Duration::from_millis(100)).await; // the follower is subscribed by now
        let released_at = Instant::now();
        guard.release().await.expect("release");
        let (acquired_at, taken) = waiting.await.expect("follower task");
        latencies.push(acquired_at - released_at);
        taken.release().await.expect("release");
    }
    Sample(latencies).row("graceful hand-over (lock-redis)", "pub/sub");
}

/// Cycles per second of all contenders, and the fewest and most cycles one contender got.
struct Throughput {
    rate: f64,
    fewest: u64,
    most: u64,
}

async fn count(tasks: Vec<tokio::task::JoinHandle<u64>>) -> Throughput {
    let mut per_contender = Vec::new();
    for task in tasks {
        per_contender.push(task.await.expect("contender"));
    }
    Throughput {
        rate: per_contender.iter().sum::<u64>() as f64 / THROUGHPUT_RUN.as_secs_f64(),
        fewest: per_contender.iter().copied().min().unwrap_or(0),
        most: per_contender.iter().copied().max().unwrap_or(0),
    }
}

async fn throughput_ours(redis: &Redis) -> Throughput {
    let name = fresh_name("throughput");
    let deadline = Instant::now() + THROUGHPUT_RUN;
    let mut tasks = Vec::new();
    for i in 0..CONTENDERS {
        let lock = lock(redis, &name, &format!("contender-{i}")).await;
        tasks.push(tokio::spawn(async move {
            let mut cycles = 0;
            while Instant::now() < deadline {
                let guard = lock.acquire().await.expect("acquire");
                guard.release().await.expect("release");
                cycles += 1;
            }
            cycles
        }));
    }
    count(tasks).await
}

async fn throughput_rslock(redis: &Redis) -> Throughput {
    let resource = fresh_name("rslock-throughput");
    let deadline = Instant::now() + THROUGHPUT_RUN;
    let mut tasks = Vec::new();
    for _ in 0..CONTENDERS {
        let manager = LockManager::new(vec![redis.url()]);
        let resource = resource.clone();
        tasks.push(tokio::spawn(async move {
            let mut cycles = 0;
            while Instant::now() < deadline {
                let held = manager
                    .acquire_no_guard(resource.as_bytes(), TTL)
                    .await
                    .expect("rslock acquire");
                manager.unlock(&held).await;
                cycles += 1;
            }
            cycles
        }));
    }
    count(tasks).await
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
    uncontended(&redis).await;
    graceful_handover(&redis).await;
    println!();
    let ours = throughput_ours(&redis).await;
    let theirs = throughput_rslock(&redis).await;
    println!(
        "| contended, {CONTENDERS} contenders, {THROUGHPUT_RUN:?} | cycles/s | fewest by one contender | most by one contender |"
    );
    println!("|---|---|---|---|");
    println!(
        "| lock-redis (with fencing tokens) | {:.0} | {} | {} |",
        ours.rate, ours.fewest, ours.most
    );
    println!(
        "| rslock 0.10 (no tokens) | {:.0} | {} | {} |",
        theirs.rate, theirs.fewest, theirs.most
    );
    println!(
        "| ratio lock-redis / rslock | {:.2} | | |",
        ours.rate / theirs.rate
    );
}
