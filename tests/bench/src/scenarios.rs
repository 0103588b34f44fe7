//! What is measured on each backend, once per repetition.

use std::time::Duration;

use std::sync::Arc;

use lock_core::{Lock, LockName, Take, Timing};
use lock_tests::bench::{Sample, Throughput, lock_cycle, throughput};
use tokio::time::{Instant, sleep};

use crate::{
    subjects::{Served, Subject},
    timed::{Marks, Operation, Timed},
};

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

/// A graceful hand-over and its parts, in milliseconds, one per hand-over.
#[derive(Debug, Default)]
pub struct HandOvers {
    /// From the holder's release call until the follower holds.
    pub total: Sample,
    /// The holder's release write (the backend's release call).
    pub release_write: Vec<f64>,
    /// From the release write's answer until the follower's change notification (less
    /// than zero when the event beat the answer).
    pub event: Vec<f64>,
    /// The follower's take write (the backend's take call that acquired).
    pub take_write: Vec<f64>,
}

/// Holder releases → the waiting follower holds, `n` times: the follower waits (given
/// time to start waiting), the holder releases; timed from the release call until the
/// follower holds, and each part where lock-core calls the backend.
pub async fn graceful(subject: &Subject<'_>, n: usize) -> HandOvers {
    let name = fresh("handover");
    let marks = Marks::default();
    let timed = async |identity: &str| {
        let inner = subject.backend().await;
        let marks = marks.clone();
        Lock::builder(Arc::new(Timed { inner, marks }), &name, identity)
            .timing(Timing::new(TTL))
            .build()
            .expect("a valid lock")
    };
    let (holder, follower) = (timed("holder").await, timed("follower").await);
    let mut hand_overs = HandOvers::default();
    let ms = |duration: Duration| duration.as_secs_f64() * 1e3;
    for _ in 0..n {
        let guard = holder.acquire().await.expect("holder acquires");
        let waiting = {
            let follower = follower.clone();
            tokio::spawn(async move {
                let guard = follower.acquire().await.expect("follower acquires");
                (Instant::now(), guard)
            })
        };
        sleep(Duration::from_millis(150)).await; // the follower is waiting by now
        marks.take();
        let released_at = Instant::now();
        guard.release().await.expect("release");
        let (acquired_at, taken) = waiting.await.expect("follower task");
        let marks = marks.take();
        let find = |operation| marks.iter().find(|mark| mark.operation == operation);
        let release = find(Operation::Release).expect("the holder's release");
        let take = find(Operation::Take { acquired: true }).expect("the follower's take");
        let event = marks
            .iter()
            .find(|mark| mark.operation == Operation::Change && mark.began >= release.began)
            .expect("the follower's change notification");
        let signed = |later: Instant, earlier: Instant| match later.checked_duration_since(earlier)
        {
            Some(after) => ms(after),
            None => -ms(earlier - later),
        };
        hand_overs.total.0.push(acquired_at - released_at);
        hand_overs.release_write.push(ms(release.took()));
        hand_overs.event.push(signed(event.began, release.ended));
        hand_overs.take_write.push(ms(take.took()));
        taken.release().await.expect("release");
    }
    hand_overs
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

/// Server requests and reads per second that one held lock costs, over `hold`, with a
/// `standby` waiting for it (started a second before the count) or without.
pub async fn steady(subject: &Subject<'_>, hold: Duration, standby: bool) -> Served {
    let name = fresh("steady");
    let guard = subject
        .lock(&name, "bench", TTL)
        .await
        .acquire()
        .await
        .expect("acquire");
    let waiting = if standby {
        let follower = subject.lock(&name, "standby", TTL).await;
        let waiting = tokio::spawn(async move { follower.acquire().await });
        sleep(Duration::from_secs(1)).await;
        Some(waiting)
    } else {
        None
    };
    let before = subject.served().await;
    sleep(hold).await;
    let after = subject.served().await;
    if let Some(waiting) = waiting {
        waiting.abort();
        assert!(
            waiting.await.is_err_and(|error| error.is_cancelled()),
            "the standby waited"
        );
    }
    guard.release().await.expect("release");
    after.per_second_since(before, hold)
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
