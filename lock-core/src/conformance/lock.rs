//! Checks of the lock itself: mutual exclusion, growing fencing tokens, taking a crashed
//! holder's lock after its TTL, waiting and giving up without leaving anything held,
//! reporting the holder, and rejecting bad names and timings (docs/design.md, Contracts: "Lock
//! names and options", "Fencing tokens", "Waiting"; and the first of the "Rules every
//! future and every published state keeps").

use super::*;

/// 8 contenders × 100 acquire/release cycles: never two valid guards at once, and each
/// acquisition's token is larger than the one before.
pub async fn mutual_exclusion_with_8_contenders(backend: impl Backend) {
    let backend: Arc<dyn Backend> = Arc::new(backend);
    let name = unique_name("mutex");
    let inside = Arc::new(AtomicUsize::new(0));
    let last_token = Arc::new(Mutex::new(None::<FencingToken>));
    let contenders: Vec<_> = (0..8)
        .map(|i| {
            let lock = lock(&backend, &name, &format!("contender-{i}"));
            let (inside, last_token) = (inside.clone(), last_token.clone());
            tokio::spawn(async move {
                for cycle in 0..100 {
                    let guard = lock.acquire_timeout(TTL * 20).await.unwrap_or_else(|e| {
                        panic!("contender {i}, cycle {cycle}: acquire failed: {e}")
                    });
                    assert_eq!(
                        inside.fetch_add(1, SeqCst),
                        0,
                        "two contenders hold the lock at once"
                    );
                    {
                        let mut last = last_token.lock().unwrap_or_else(PoisonError::into_inner);
                        if let Some(previous) = *last {
                            assert!(
                                guard.token() > previous,
                                "token {} after {previous}",
                                guard.token()
                            );
                        }
                        *last = Some(guard.token());
                    }
                    tokio::task::yield_now().await;
                    assert!(guard.is_valid(), "a guard became invalid without faults");
                    inside.fetch_sub(1, SeqCst);
                    guard
                        .release()
                        .await
                        .expect("release of a valid guard succeeds");
                }
            })
        })
        .collect();
    for contender in contenders {
        join(contender).await;
    }
}

/// Tokens grow across re-acquisition by the same identity after release and after
/// expiry, and across identities.
pub async fn tokens_strictly_increase(backend: impl Backend) {
    let backend: Arc<dyn Backend> = Arc::new(backend);
    let name = unique_name("tokens");
    let same = lock(&backend, &name, "same-identity");

    let first = same.acquire().await.expect("acquire");
    let t1 = first.token();
    first.release().await.expect("release");

    let second = same.acquire().await.expect("re-acquire after release");
    let t2 = second.token();
    assert!(
        t2 > t1,
        "re-acquiring after release gave token {t2} after {t1}"
    );
    second.release().await.expect("release");

    // The same identity takes it and crashes (never renews); it re-acquires after expiry.
    let crashed = match backend.take(same.name(), "same-identity", TTL).await {
        Ok(Take::Acquired(lease)) => lease,
        other => panic!("take of a free lock gave {other:?}"),
    };
    assert!(crashed.token > t2, "token {} after {t2}", crashed.token);
    let after_expiry = same
        .acquire_timeout(TTL * 3)
        .await
        .expect("re-acquire after expiry");
    let t4 = after_expiry.token();
    assert!(
        t4 > crashed.token,
        "re-acquiring after expiry gave token {t4} after {}",
        crashed.token
    );
    after_expiry.release().await.expect("release");

    let other = lock(&backend, &name, "other-identity")
        .acquire()
        .await
        .expect("acquire");
    assert!(
        other.token() > t4,
        "another identity got token {} after {t4}",
        other.token()
    );
    other.release().await.expect("release");
}

/// Bad names, identities and timings are rejected when the lock is built.
pub async fn invalid_names_and_timings_are_rejected(backend: impl Backend) {
    let backend: Arc<dyn Backend> = Arc::new(backend);
    let build = |name: &str, identity: &str, timing: Timing| {
        Lock::builder(backend.clone(), name, identity)
            .timing(timing)
            .build()
    };
    let too_long = "a".repeat(254);
    for name in [
        "",
        "Upper",
        "under_score",
        "-dash",
        "dot.",
        too_long.as_str(),
    ] {
        let result = build(name, "id", timing());
        assert!(
            matches!(result, Err(Error::InvalidName { .. })),
            "{name:?} gave {result:?}"
        );
    }
    let result = build("ok", "", timing());
    assert!(
        matches!(result, Err(Error::InvalidIdentity { .. })),
        "empty identity gave {result:?}"
    );
    for bad in [
        Timing::new(Duration::ZERO),
        Timing::new(TTL).with_renew_interval(TTL),
        Timing::new(TTL).with_drift_margin(TTL),
        Timing::new(TTL).with_request_timeout(Duration::ZERO),
    ] {
        let result = build("ok", "id", bad);
        assert!(
            matches!(result, Err(Error::InvalidTiming { .. })),
            "{bad:?} gave {result:?}"
        );
    }
}

/// After a holder crashes (no release, no renewals), a waiter acquires no earlier than
/// the TTL and no later than the TTL plus one renew interval.
pub async fn crashed_holders_lock_is_taken_after_the_ttl(backend: impl Backend) {
    let backend: Arc<dyn Backend> = Arc::new(backend);
    let name = unique_name("crash");
    let waiter = lock(&backend, &name, "waiter");

    let sent = Instant::now();
    match backend.take(waiter.name(), "crashed-holder", TTL).await {
        Ok(Take::Acquired(_)) => {}
        other => panic!("take of a free lock gave {other:?}"),
    }
    let taken_at = Instant::now();
    let guard = waiter
        .acquire_timeout(TTL * 3)
        .await
        .expect("waiter acquires after the TTL");
    let acquired_at = Instant::now();
    assert!(
        acquired_at - sent >= TTL,
        "the waiter acquired {:?} after the crash, before the TTL of {TTL:?}",
        acquired_at - sent
    );
    let limit = TTL + timing().renew_interval();
    assert!(
        acquired_at - taken_at <= limit,
        "the waiter acquired {:?} after the crash, later than TTL + renew interval ({limit:?})",
        acquired_at - taken_at
    );
    guard.release().await.expect("release");
}

/// `try_acquire` on a held lock fails with [`Error::Held`] naming the holder, and
/// `holder()` describes it.
pub async fn try_acquire_on_a_held_lock_reports_the_holder(backend: impl Backend) {
    let backend: Arc<dyn Backend> = Arc::new(backend);
    let name = unique_name("held");
    let holder = lock(&backend, &name, "the-holder");
    let other = lock(&backend, &name, "other");

    assert_eq!(
        other.holder().await.expect("describe"),
        None,
        "a new lock is free"
    );
    let guard = holder
        .try_acquire()
        .await
        .expect("try_acquire of a free lock");
    match other.try_acquire().await {
        Err(Error::Held(info)) => {
            assert_eq!(info.holder, "the-holder");
            if let Some(token) = info.token {
                assert_eq!(token, guard.token());
            }
            assert_eq!(info.ttl, TTL);
        }
        other => panic!("try_acquire of a held lock gave {other:?}"),
    }
    let described = other
        .holder()
        .await
        .expect("describe")
        .expect("the lock is held");
    assert_eq!(described.holder, "the-holder");
    guard.release().await.expect("release");
    assert_eq!(
        other.holder().await.expect("describe"),
        None,
        "a released lock is free"
    );
}

/// Dropping an `acquire` future, while it waits or at any step of taking a free lock,
/// leaves nothing held: someone else gets the lock long before the TTL.
pub async fn dropped_acquire_leaves_nothing_held(backend: impl Backend) {
    let backend: Arc<dyn Backend> = Arc::new(backend);
    let name = unique_name("dropped");
    let holder = lock(&backend, &name, "holder");
    let dropper = lock(&backend, &name, "dropper");
    let other = lock(&backend, &name, "other");
    let soon = TTL / 2;

    // Dropped while waiting.
    let guard = holder.acquire().await.expect("acquire");
    let gave_up = dropper.acquire_timeout(TTL / 3).await;
    assert!(
        matches!(gave_up, Err(Error::Timeout { .. })),
        "expected a timeout, got {gave_up:?}"
    );
    guard.release().await.expect("release");
    let taken = other
        .acquire_timeout(soon)
        .await
        .expect("the lock is free after a dropped wait");
    taken.release().await.expect("release");

    // Dropped after 0, 1, 2, ... steps of taking a free lock, including after success.
    for steps in 0..8 {
        {
            let mut acquiring = pin!(dropper.acquire());
            for _ in 0..steps {
                if futures::poll!(&mut acquiring).is_ready() {
                    break;
                }
                tokio::task::yield_now().await;
            }
        }
        let taken = other
            .acquire_timeout(soon)
            .await
            .unwrap_or_else(|e| panic!("dropped after {steps} steps, the lock stayed held: {e}"));
        taken.release().await.expect("release");
    }
}

/// A take whose answer comes back after the request timeout is reported to the caller
/// as a timeout, but what it took on the server is released at once: a contender takes
/// the lock soon after, not after the TTL.
pub async fn a_take_that_times_out_leaves_nothing_held(backend: impl Backend) {
    let backend: Arc<dyn Backend> = Arc::new(backend);
    let name = unique_name("late-take");
    let faulty = Faulty::new(backend.clone());
    let impatient = lock_with(
        faulty.clone(),
        &name,
        "impatient",
        timing().with_request_timeout(Duration::from_millis(300)),
    );
    faulty.answer_late(Duration::from_millis(600));
    let started = Instant::now();
    match impatient.try_acquire().await {
        Err(error) if error.is_transient() => {}
        other => panic!("a take answered after the request timeout gave {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_millis(550),
        "the caller waited {:?}, past its request timeout",
        started.elapsed()
    );
    faulty.heal();
    sleep(Duration::from_millis(700)).await;
    // Well before the TTL (3 s) a take that landed would have run out.
    let contender = lock(&backend, &name, "contender")
        .acquire_timeout(Duration::from_millis(800))
        .await
        .unwrap_or_else(|error| {
            panic!("the lock taken by the timed-out take was not released: {error}")
        });
    contender.release().await.expect("release");
}

// This file's part of `conformance_tests!`: a test for each check above.
checks! {
    $ __conformance_lock_checks:
    mutual_exclusion_with_8_contenders,
    tokens_strictly_increase,
    invalid_names_and_timings_are_rejected,
    crashed_holders_lock_is_taken_after_the_ttl,
    try_acquire_on_a_held_lock_reports_the_holder,
    dropped_acquire_leaves_nothing_held,
    a_take_that_times_out_leaves_nothing_held,
}
