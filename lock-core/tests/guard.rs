//! How a held lock behaves: renewal, self-fencing, release and drop. On paused time, so
//! every instant below is exact.

mod support;

use std::time::Duration;

use lock_core::{Error, Faulty, Guard, Lock, LossReason, MemoryBackend, Release, Timing};
use support::Recorder;
use tokio::time::{Instant, sleep};

const TTL: Duration = Duration::from_secs(15);
const SECOND: Duration = Duration::from_secs(1);

fn lock(backend: impl lock_core::Backend, identity: &str) -> Lock {
    Lock::builder(backend, "spec", identity)
        .timing(Timing::new(TTL))
        .build()
        .expect("valid lock")
}

/// A guard held through a connection whose faults the test controls.
async fn held_through_faults() -> (Faulty<MemoryBackend>, Guard) {
    let faulty = Faulty::new(MemoryBackend::new());
    let guard = lock(faulty.clone(), "holder")
        .acquire()
        .await
        .expect("acquire");
    (faulty, guard)
}

#[tokio::test(start_paused = true)]
async fn renews_every_third_of_the_ttl_counted_from_each_request_sent() {
    let recorder = Recorder::new(MemoryBackend::new());
    let guard = lock(recorder.clone(), "holder")
        .acquire()
        .await
        .expect("acquire");
    let acquired = Instant::now();
    sleep(TTL * 2 + Duration::from_millis(1)).await;

    let sent: Vec<_> = recorder
        .renewals()
        .iter()
        .map(|r| r.sent - acquired)
        .collect();
    assert_eq!(sent, (1..=6).map(|i| TTL / 3 * i).collect::<Vec<_>>());
    assert!(guard.is_valid());
}

#[tokio::test(start_paused = true)]
async fn validity_runs_from_when_the_request_was_sent_minus_the_drift_margin() {
    let faulty = Faulty::new(MemoryBackend::new());
    faulty.delay(SECOND);
    let sent = Instant::now();
    let guard = lock(faulty, "holder").acquire().await.expect("acquire");
    let timing = Timing::new(TTL);

    assert_eq!(Instant::now() - sent, SECOND, "the take took one second");
    assert_eq!(
        guard.valid_until(),
        Some(sent + TTL - timing.drift_margin())
    );
}

#[tokio::test(start_paused = true)]
async fn transient_renewal_errors_are_retried_until_the_deadline_not_treated_as_loss() {
    let (faulty, guard) = held_through_faults().await;
    faulty.fail_renewals(true);
    sleep(TTL / 2).await;
    assert!(
        guard.is_valid(),
        "a few failed renewals do not end the guard"
    );

    faulty.heal();
    sleep(TTL).await;
    assert!(
        guard.is_valid(),
        "a later renewal succeeded and extended the guard"
    );
    guard.release().await.expect("release");
}

#[tokio::test(start_paused = true)]
async fn without_a_successful_renewal_lost_fires_exactly_at_the_deadline() {
    let (faulty, guard) = held_through_faults().await;
    let deadline = guard.valid_until().expect("valid");
    faulty.partition(true);

    assert_eq!(guard.lost().await, LossReason::Expired);
    assert_eq!(Instant::now(), deadline);
    assert!(!guard.is_valid());
    assert_eq!(guard.valid_until(), None);
}

#[tokio::test(start_paused = true)]
async fn a_renewal_request_never_outlives_the_remaining_validity() {
    let faulty = Faulty::new(MemoryBackend::new());
    let recorder = Recorder::new(faulty.clone());
    // A request timeout far beyond the TTL: the remaining validity must bound it.
    let timing = Timing::new(TTL).with_request_timeout(TTL * 10);
    let lock = Lock::builder(recorder.clone(), "spec", "holder")
        .timing(timing)
        .build()
        .expect("valid");
    let guard = lock.acquire().await.expect("acquire");
    let deadline = guard.valid_until().expect("valid");
    // Every renewal from now on hangs.
    faulty.freeze(true);

    guard.lost().await;
    sleep(SECOND).await;
    let renewals = recorder.renewals();
    assert!(!renewals.is_empty());
    for request in renewals {
        let ended = request.ended.expect("every hanging renewal was abandoned");
        assert!(
            ended <= deadline,
            "a renewal ran {:?} past the deadline",
            ended - deadline
        );
    }
}

#[tokio::test(start_paused = true)]
async fn when_the_server_says_the_lock_is_not_ours_the_guard_ends_at_the_next_renewal() {
    let server = MemoryBackend::new();
    let guard = lock(server.clone(), "holder")
        .acquire()
        .await
        .expect("acquire");
    // Someone breaks the lock on the server (e.g. an operator).
    let lease = lock_core::Lease::new(
        guard.name().clone(),
        "holder",
        guard.token(),
        TTL,
        guard.token().get(),
    );
    let broken_at = Instant::now();
    assert_eq!(
        lock_core::Backend::release(&server, &lease)
            .await
            .expect("release"),
        Release::Released
    );

    assert_eq!(guard.lost().await, LossReason::Taken);
    assert_eq!(
        Instant::now() - broken_at,
        TTL / 3,
        "noticed at the next renewal"
    );
}

#[tokio::test(start_paused = true)]
async fn a_permanent_renewal_error_ends_the_guard_at_once() {
    let (faulty, guard) = held_through_faults().await;
    let acquired = Instant::now();
    faulty.fail_permanently(true);

    match guard.lost().await {
        LossReason::Failed(message) => assert!(message.contains("forbidden"), "{message}"),
        other => panic!("expected a failure, got {other:?}"),
    }
    assert_eq!(Instant::now() - acquired, TTL / 3);
}

#[tokio::test(start_paused = true)]
async fn release_frees_the_lock_for_the_next_holder_at_once() {
    let server = MemoryBackend::new();
    let guard = lock(server.clone(), "a").acquire().await.expect("acquire");
    guard.release().await.expect("release");
    let next = lock(server, "b").try_acquire().await.expect("free at once");
    assert!(next.is_valid());
}

#[tokio::test(start_paused = true)]
async fn release_after_the_deadline_is_lost_even_if_nobody_took_the_lock() {
    let (faulty, guard) = held_through_faults().await;
    faulty.fail_renewals(true);
    guard.lost().await;

    match guard.release().await {
        Err(Error::Lost {
            reason: LossReason::Expired,
            ..
        }) => {}
        other => panic!("expected Lost, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn dropping_a_guard_releases_in_the_background_and_ends_every_view_of_it() {
    let server = MemoryBackend::new();
    let holder = lock(server.clone(), "holder");
    let guard = holder.acquire().await.expect("acquire");
    let view = guard.validity();
    drop(guard);

    assert!(
        !view.is_valid(),
        "a view of a dropped guard is invalid at once"
    );
    assert_eq!(view.lost().await, LossReason::Released);
    let next = lock(server, "next")
        .acquire_timeout(SECOND)
        .await
        .expect("released in the background");
    assert!(next.is_valid());
}

#[tokio::test(start_paused = true)]
async fn a_dropped_release_still_releases_the_lock_in_the_background() {
    let (faulty, guard) = held_through_faults().await;
    let server = faulty.inner().clone();
    let view = guard.validity();
    // The release request hangs; the caller gives up first.
    faulty.freeze(true);
    let released = tokio::time::timeout(Duration::from_millis(10), guard.release()).await;
    assert!(released.is_err(), "the release was cut short");
    assert!(
        !view.is_valid(),
        "the guard is invalid once its release began"
    );
    faulty.freeze(false);
    let next = lock(server, "next")
        .try_acquire()
        .await
        .expect("free without waiting for the TTL");
    assert!(next.token() > view.token());
}

#[tokio::test(start_paused = true)]
async fn a_release_whose_answer_was_lost_is_unconfirmed_not_lost() {
    let (faulty, guard) = held_through_faults().await;
    let server = faulty.inner().clone();
    let token = guard.token();
    // The release lands, but its answer comes after the request timeout (the renew
    // interval); the retry then finds the lock free.
    faulty.answer_late(TTL / 3 + SECOND);
    let answers_again = {
        let faulty = faulty.clone();
        tokio::spawn(async move {
            sleep(TTL / 3 + Duration::from_millis(100)).await;
            faulty.heal();
        })
    };
    let outcome = guard.release().await;
    answers_again.await.expect("healed");
    match outcome {
        Err(Error::ReleaseUnconfirmed {
            token: unconfirmed, ..
        }) => assert_eq!(unconfirmed, token),
        other => panic!("expected ReleaseUnconfirmed, got {other:?}"),
    }
    lock(server, "next")
        .try_acquire()
        .await
        .expect("the first attempt released it");
}

#[tokio::test(start_paused = true)]
async fn acquire_timeout_gives_up_with_a_typed_error() {
    let server = MemoryBackend::new();
    let _held = lock(server.clone(), "holder")
        .acquire()
        .await
        .expect("acquire");
    let started = Instant::now();
    match lock(server, "waiter").acquire_timeout(SECOND).await {
        Err(Error::Timeout { waited, .. }) => assert_eq!(waited, SECOND),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_eq!(Instant::now() - started, SECOND);
}

#[tokio::test(start_paused = true)]
async fn a_waiter_without_notifications_polls_and_still_takes_over() {
    use lock_core::{Backend, Lease, LockInfo, LockName, Renew, Result, Take};

    /// The memory backend without change notifications: `changes` keeps its default.
    struct Polling(MemoryBackend);
    #[async_trait::async_trait]
    impl Backend for Polling {
        async fn take(&self, name: &LockName, holder: &str, ttl: Duration) -> Result<Take> {
            self.0.take(name, holder, ttl).await
        }
        async fn renew(&self, lease: &Lease) -> Result<Renew> {
            self.0.renew(lease).await
        }
        async fn release(&self, lease: &Lease) -> Result<Release> {
            self.0.release(lease).await
        }
        async fn describe(&self, name: &LockName) -> Result<Option<LockInfo>> {
            self.0.describe(name).await
        }
    }

    let server = MemoryBackend::new();
    let holder = lock(server.clone(), "holder")
        .acquire()
        .await
        .expect("acquire");
    let waiter = lock(Polling(server), "waiter");
    let waiting = tokio::spawn(async move { (waiter.acquire().await, Instant::now()) });
    sleep(SECOND).await;
    let released = Instant::now();
    holder.release().await.expect("release");

    let (guard, acquired) = waiting.await.expect("waiter");
    assert!(guard.is_ok());
    assert!(
        acquired - released <= TTL / 3,
        "took over within one poll interval"
    );
}
