//! Checks of a held lock's guard: a release hands the lock to a waiter at once, a guard
//! whose renewals fail reports the loss before anyone else can hold the lock, and
//! releasing a lost guard fails without touching the new holder (docs/design.md, Contracts:
//! "Guard and self-fencing", "Release").

use super::*;
use crate::Guard;

/// A graceful release wakes a waiter at once, not after the TTL.
pub async fn released_lock_is_taken_by_a_waiter_without_waiting_for_the_ttl(backend: impl Backend) {
    let backend: Arc<dyn Backend> = Arc::new(backend);
    let name = unique_name("handover");
    let long = Timing::new(Duration::from_secs(30));
    let holder = lock_with(backend.clone(), &name, "holder", long);
    let waiter = lock_with(backend.clone(), &name, "waiter", long);

    let guard = holder.acquire().await.expect("acquire");
    let waiting = tokio::spawn(async move {
        let guard = waiter.acquire().await.expect("waiter acquires");
        (Instant::now(), guard)
    });
    // Let the waiter start waiting; if it has not yet, it takes the free lock anyway.
    sleep(Duration::from_millis(200)).await;
    let released_at = Instant::now();
    guard.release().await.expect("release");
    let (acquired_at, taken) = join(waiting).await;
    let handover = acquired_at - released_at;
    assert!(
        handover < long.ttl() / 10,
        "the waiter took {handover:?} to take a released lock (TTL {:?})",
        long.ttl()
    );
    taken.release().await.expect("release");
}

/// A holder whose renewals fail observes `lost()` strictly before a contender holds the
/// lock, and its guard is invalid by then.
pub async fn lost_fires_before_another_holder_can_acquire(backend: impl Backend) {
    let (faulty, guard, contender) = faulty_holder(backend, "lost", "holder", "contender").await;
    let validity = guard.validity();
    let contending = tokio::spawn(async move {
        let taken = contender
            .acquire_timeout(TTL * 3)
            .await
            .expect("contender acquires after expiry");
        let holder_valid = validity.is_valid();
        (Instant::now(), holder_valid, taken)
    });
    faulty.fail_renewals(true);
    let reason = guard.lost().await;
    let lost_at = Instant::now();
    assert_eq!(reason, LossReason::Expired);
    assert!(!guard.is_valid() && guard.valid_until().is_none());

    let (acquired_at, holder_valid_then, taken) = join(contending).await;
    assert!(
        lost_at < acquired_at,
        "lost() fired {:?} after the contender acquired",
        lost_at - acquired_at
    );
    assert!(
        !holder_valid_then,
        "the old guard was valid while the contender held the lock"
    );
    taken.release().await.expect("release");
}

/// Releasing a guard that was lost is [`Error::Lost`] and does not touch the record of
/// the lock's new holder.
pub async fn release_after_loss_is_an_error_and_leaves_the_new_holder_alone(backend: impl Backend) {
    let (faulty, stale, new) =
        faulty_holder(backend, "late-release", "old-holder", "new-holder").await;
    faulty.fail_renewals(true);
    stale.lost().await;
    let current = new
        .acquire_timeout(TTL * 3)
        .await
        .expect("new holder acquires");

    match stale.release().await {
        Err(Error::Lost { reason, .. }) => assert_eq!(reason, LossReason::Expired),
        other => panic!("release after loss gave {other:?}"),
    }
    let described = new.holder().await.expect("describe").expect("still held");
    assert_eq!(described.holder, "new-holder");
    if let Some(token) = described.token {
        assert_eq!(token, current.token());
    }
    assert!(current.is_valid());
    current
        .release()
        .await
        .expect("the new holder's release succeeds");
}

/// How the checks of a lost guard open: `holder` holds a fresh lock named after `test`,
/// reaching `backend` through a fault switch (for the check to fail its renewals), and
/// `contender` gets a lock on the same name straight on `backend`. Returns the switch,
/// the holder's guard and the contender's lock.
async fn faulty_holder(
    backend: impl Backend,
    test: &str,
    holder: &str,
    contender: &str,
) -> (Faulty<Arc<dyn Backend>>, Guard, Lock) {
    let backend: Arc<dyn Backend> = Arc::new(backend);
    let name = unique_name(test);
    let faulty = Faulty::new(backend.clone());
    let holder = lock_with(faulty.clone(), &name, holder, timing());
    let contender = lock(&backend, &name, contender);
    let guard = holder.acquire().await.expect("acquire");
    (faulty, guard, contender)
}

// This file's part of `conformance_tests!`: a test for each check above.
checks! {
    $ __conformance_guard_checks:
    released_lock_is_taken_by_a_waiter_without_waiting_for_the_ttl,
    lost_fires_before_another_holder_can_acquire,
    release_after_loss_is_an_error_and_leaves_the_new_holder_alone,
}
