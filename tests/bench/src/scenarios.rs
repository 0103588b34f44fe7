//! What is measured on each backend, once per repetition.

use std::time::Duration;

use lock_core::{LockName, Take};
use lock_tests::bench::{Sample, Throughput, graceful_handover, lock_cycle, throughput};
use tokio::time::{Instant, sleep};

use crate::subjects::Subject;

/// The lease duration of the latency, hand-over and steady-state scenarios.
pub const TTL: Duration = Duration::from_secs(15);

/// The lease duration of the crash scenario (etcd's minimum is 2 s).
pub const CRASH_TTL: Duration = Duration::from_secs(2);

/// Contenders in the throughput scenario.
pub const CONTENDERS: usize = 8;

/// How long the throughput scenario runs.
pub const THROUGHPUT_RUN: Duration = Duration::from_secs(5);

fn fresh(scenario: &str) -> String {
    lock_core::conformance::unique_name(scenario)
}

/// Uncontended acquire + release cycles on one warm connection: their latency, and the
/// server requests per cycle where the server counts them.
pub async fn uncontended(subject: &Subject<'_>, n: usize) -> (Sample, Option<f64>) {
    let lock = subject.lock(&fresh("uncontended"), "bench", TTL).await;
    lock.acquire()
        .await
        .expect("acquire")
        .release()
        .await
        .expect("release");
    let before = subject.requests().await;
    let mut cycles = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let guard = lock.acquire().await.expect("acquire");
        guard.release().await.expect("release");
        cycles.push(started.elapsed());
    }
    let after = subject.requests().await;
    let per_cycle = before
        .zip(after)
        .map(|(before, after)| (after - before) / n as f64);
    (Sample(cycles), per_cycle)
}

/// Holder releases → the waiting follower holds.
pub async fn graceful(subject: &Subject<'_>, n: usize) -> Sample {
    let name = fresh("handover");
    let holder = subject.lock(&name, "holder", TTL).await;
    let follower = subject.lock(&name, "follower", TTL).await;
    graceful_handover(&holder, &follower, n).await
}

/// A holder that never renews again (a crash) → the follower holds; minus the lease
/// duration.
pub async fn crash(subject: &Subject<'_>, n: usize) -> Sample {
    let mut latencies = Vec::with_capacity(n);
    for _ in 0..n {
        let name = fresh("crash");
        let crashed = subject.backend().await;
        let taken = crashed
            .take(&LockName::new(&name).expect("valid"), "crashed", CRASH_TTL)
            .await;
        assert!(matches!(taken, Ok(Take::Acquired(_))), "{taken:?}");
        let last_write = Instant::now();
        let follower = subject.lock(&name, "follower", CRASH_TTL).await;
        let guard = follower.acquire().await.expect("acquire");
        latencies.push(last_write.elapsed().saturating_sub(CRASH_TTL));
        guard.release().await.expect("release");
    }
    Sample(latencies)
}

/// Server requests per second that one held lock costs, over `hold`.
pub async fn steady(subject: &Subject<'_>, hold: Duration) -> Option<f64> {
    let guard = subject
        .lock(&fresh("steady"), "bench", TTL)
        .await
        .acquire()
        .await
        .expect("acquire");
    let before = subject.requests().await;
    sleep(hold).await;
    let after = subject.requests().await;
    guard.release().await.expect("release");
    before
        .zip(after)
        .map(|(before, after)| (after - before) / hold.as_secs_f64())
}

/// Eight contenders on one lock, each on its own connection.
pub async fn contended(subject: &Subject<'_>) -> Throughput {
    let name = fresh("throughput");
    let mut cycles = Vec::with_capacity(CONTENDERS);
    for i in 0..CONTENDERS {
        cycles.push(lock_cycle(
            subject.lock(&name, &format!("contender-{i}"), TTL).await,
        ));
    }
    throughput(cycles, THROUGHPUT_RUN).await
}
