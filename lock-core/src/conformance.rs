//! The conformance suite: the definition of a backend.
//!
//! Every backend, the in-memory one included, must pass every `pub async fn` here. They
//! check the contracts of the workspace's DESIGN.md through the public API, against
//! whatever server the backend talks to. Each uses fresh lock names, so one server can
//! serve many tests, and panics with a message that names the broken contract.
//!
//! Run them all with [`conformance_tests!`](crate::conformance_tests), which writes one
//! test per function:
//!
//! ```no_run
//! // tests/conformance.rs of a backend crate
//! lock_core::conformance_tests!(
//!     #[tokio::test(start_paused = true)]
//!     backend = lock_core::MemoryBackend::new()
//! );
//! # fn main() {}
//! ```
//!
//! Timings are those of a 3 s TTL (renewal every second), short enough for tests on real
//! servers and long enough for etcd's minimum lease TTL and Kubernetes' whole seconds.
//! On the in-memory backend with paused time the suite runs in well under a second.

use std::{
    panic::resume_unwind,
    pin::pin,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicUsize, Ordering::SeqCst},
    },
    time::Duration,
};

use tokio::{
    task::JoinHandle,
    time::{Instant, sleep},
};

use crate::{
    Backend, Error, Faulty, FencingToken, LeaderElector, LeaderState, Lock, LossReason, Take,
    Timing,
};

/// The TTL every conformance test uses.
pub const TTL: Duration = Duration::from_secs(3);

/// Writes one `async fn` per conformance check, each with the attributes given (such as
/// `#[tokio::test]`) and calling the check with a backend built by the expression after
/// `backend =` (evaluated inside the test, so it may `.await`).
#[macro_export]
macro_rules! conformance_tests {
    ($(#[$meta:meta])* backend = $backend:expr) => {
        $crate::conformance_tests!(@each [$(#[$meta])*] ($backend);
            mutual_exclusion_with_8_contenders,
            tokens_strictly_increase,
            released_lock_is_taken_by_a_waiter_without_waiting_for_the_ttl,
            lost_fires_before_another_holder_can_acquire,
            crashed_holders_lock_is_taken_after_the_ttl,
            dropped_acquire_leaves_nothing_held,
            try_acquire_on_a_held_lock_reports_the_holder,
            release_after_loss_is_an_error_and_leaves_the_new_holder_alone,
            invalid_names_and_timings_are_rejected,
            election_never_has_two_leaders,
            stopping_the_leader_hands_over_without_waiting_for_the_ttl,
            leader_work_is_cancelled_on_loss_and_the_campaign_resumes,
            elected_shards_share_fairly_and_never_overlap,
            a_cut_off_members_published_shards_never_overlap_the_new_owners,
            a_take_that_times_out_leaves_nothing_held,
            an_operator_release_frees_only_the_named_holders_lock,
            list_finds_the_locks_under_a_prefix,
            breaking_a_lock_supersedes_its_holder_and_fencing_rejects_it,
            observe_reports_every_change_of_holder
        );
    };
    (@each $attributes:tt $backend:tt; $($check:ident),*) => {
        $($crate::conformance_tests!(@one $attributes $backend $check);)*
    };
    (@one [$(#[$meta:meta])*] ($backend:expr) $check:ident) => {
        $(#[$meta])*
        async fn $check() {
            $crate::conformance::$check($backend).await;
        }
    };
}

/// The timing every conformance test uses: [`TTL`] with derived defaults.
pub fn timing() -> Timing {
    Timing::new(TTL)
}

/// A lock name no other test (or earlier run against the same server) uses.
pub fn unique_name(test: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{test}-{:x}-{}-{}",
        nanos & 0xffff_ffff_ffff,
        std::process::id(),
        COUNTER.fetch_add(1, SeqCst)
    )
}

fn lock(backend: &Arc<dyn Backend>, name: &str, identity: &str) -> Lock {
    lock_with(backend.clone(), name, identity, timing())
}

fn lock_with(backend: impl Backend, name: &str, identity: &str, timing: Timing) -> Lock {
    Lock::builder(backend, name, identity)
        .timing(timing)
        .build()
        .expect("the conformance suite uses valid names and timings")
}

async fn join<T>(task: JoinHandle<T>) -> T {
    match task.await {
        Ok(value) => value,
        Err(error) if error.is_panic() => resume_unwind(error.into_panic()),
        Err(error) => panic!("task did not finish: {error}"),
    }
}

/// Waits until `condition` holds, checking every 10 ms, and fails after `limit`.
async fn eventually(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting until {what}"
        );
        sleep(Duration::from_millis(10)).await;
    }
}

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
    let backend: Arc<dyn Backend> = Arc::new(backend);
    let name = unique_name("lost");
    let faulty = Faulty::new(backend.clone());
    let holder = lock_with(faulty.clone(), &name, "holder", timing());
    let contender = lock(&backend, &name, "contender");

    let guard = holder.acquire().await.expect("acquire");
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

/// Releasing a guard that was lost is [`Error::Lost`] and does not touch the record of
/// the lock's new holder.
pub async fn release_after_loss_is_an_error_and_leaves_the_new_holder_alone(backend: impl Backend) {
    let backend: Arc<dyn Backend> = Arc::new(backend);
    let name = unique_name("late-release");
    let faulty = Faulty::new(backend.clone());
    let old = lock_with(faulty.clone(), &name, "old-holder", timing());
    let new = lock(&backend, &name, "new-holder");

    let stale = old.acquire().await.expect("acquire");
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

/// Spawns an elector whose work waits for the drain signal.
fn spawn_elector(elector: &Arc<LeaderElector>) -> JoinHandle<crate::Result<()>> {
    let elector = elector.clone();
    tokio::spawn(async move {
        elector
            .run(|leadership| async move { leadership.stopping().await })
            .await
    })
}

/// Counts leaders every 10 ms until stopped; returns (samples, most leaders seen at once).
fn sample_leaders(
    electors: Vec<Arc<LeaderElector>>,
    stop: Arc<tokio::sync::Notify>,
) -> JoinHandle<(usize, usize)> {
    tokio::spawn(async move {
        let (mut samples, mut most) = (0, 0);
        let mut stopped = pin!(stop.notified());
        loop {
            let leaders = electors.iter().filter(|e| e.is_leader()).count();
            (samples, most) = (samples + 1, most.max(leaders));
            tokio::select! {
                () = &mut stopped => return (samples, most),
                () = sleep(Duration::from_millis(10)) => {}
            }
        }
    })
}

/// The elector leading now and its term's token.
fn current_term(electors: &[Arc<LeaderElector>]) -> Option<(usize, FencingToken)> {
    electors
        .iter()
        .enumerate()
        .find_map(|(i, elector)| match *elector.state().borrow() {
            LeaderState::Leading { token } if elector.is_leader() => Some((i, token)),
            _ => None,
        })
}

/// Waits for a term newer than `after` and returns it.
async fn next_term(
    electors: &[Arc<LeaderElector>],
    after: Option<FencingToken>,
    event: &str,
) -> (usize, FencingToken) {
    let mut found = None;
    eventually(&format!("a new term begins after {event}"), TTL * 4, || {
        found = current_term(electors).filter(|(_, token)| Some(*token) > after);
        found.is_some()
    })
    .await;
    found.unwrap_or_else(|| unreachable!("eventually returns only once found"))
}

/// 5 electors, while leaders are partitioned, frozen, fail renewals and shut down:
/// never more than one leader at any sampled instant, and a new term each time.
pub async fn election_never_has_two_leaders(backend: impl Backend) {
    let backend: Arc<dyn Backend> = Arc::new(backend);
    let name = unique_name("election");
    let faults: Vec<_> = (0..5).map(|_| Faulty::new(backend.clone())).collect();
    let electors: Vec<_> = faults
        .iter()
        .enumerate()
        .map(|(i, faulty)| {
            let lock = lock_with(faulty.clone(), &name, &format!("elector-{i}"), timing());
            Arc::new(LeaderElector::new(lock))
        })
        .collect();
    let mut runs: Vec<_> = electors.iter().map(spawn_elector).map(Some).collect();
    let stop = Arc::new(tokio::sync::Notify::new());
    let sampler = sample_leaders(electors.clone(), stop.clone());

    let (mut leader, mut token) = next_term(&electors, None, "start").await;
    type Inject = fn(&Faulty<Arc<dyn Backend>>);
    let faults_to_inject: [(&str, Inject); 3] = [
        ("partition", |f| f.partition(true)),
        ("freeze", |f| f.freeze(true)),
        ("failing renewals", |f| f.fail_renewals(true)),
    ];
    for (fault, inject) in faults_to_inject {
        inject(&faults[leader]);
        let (next, next_token) = next_term(&electors, Some(token), fault).await;
        faults[leader].heal();
        (leader, token) = (next, next_token);
    }
    electors[leader].shutdown();
    let (_, _) = next_term(&electors, Some(token), "shutdown").await;
    if let Some(run) = runs[leader].take() {
        join(run).await.expect("a shut-down elector returns Ok");
    }
    assert_eq!(*electors[leader].state().borrow(), LeaderState::Stopped);

    stop.notify_one();
    let (samples, most) = join(sampler).await;
    assert!(samples > 100, "only {samples} samples taken");
    assert!(most <= 1, "{most} electors led at once");
    for elector in &electors {
        elector.shutdown();
    }
    for run in runs.into_iter().flatten() {
        join(run).await.expect("a shut-down elector returns Ok");
    }
}

/// Shutting the leader down drains its work, releases the lock, and a standby leads at
/// once, not after the TTL.
pub async fn stopping_the_leader_hands_over_without_waiting_for_the_ttl(backend: impl Backend) {
    let backend: Arc<dyn Backend> = Arc::new(backend);
    let name = unique_name("stepdown");
    let long = Timing::new(Duration::from_secs(30));
    let first = Arc::new(LeaderElector::new(lock_with(
        backend.clone(),
        &name,
        "first",
        long,
    )));
    let standby = Arc::new(LeaderElector::new(lock_with(
        backend.clone(),
        &name,
        "standby",
        long,
    )));
    let drained = Arc::new(AtomicUsize::new(0));

    let running = {
        let (first, drained) = (first.clone(), drained.clone());
        tokio::spawn(async move {
            first
                .run(|leadership| {
                    let drained = drained.clone();
                    async move {
                        leadership.stopping().await;
                        sleep(Duration::from_millis(50)).await; // finishing in-flight work
                        drained.fetch_add(1, SeqCst);
                    }
                })
                .await
        })
    };
    eventually("the first elector leads", TTL, || first.is_leader()).await;
    let standing_by = spawn_elector(&standby);
    let mut standby_state = standby.state();
    let sees_first = |s: &LeaderState| {
        *s == LeaderState::Following {
            leader: Some("first".into()),
        }
    };
    // `wait_for` returns a read lock on the state: drop it at once.
    let following = tokio::time::timeout(TTL, standby_state.wait_for(sees_first))
        .await
        .is_ok_and(|seen| seen.is_ok());
    assert!(following, "the standby never saw the first elector lead");

    let stopped_at = Instant::now();
    first.shutdown();
    eventually("the standby leads", long.ttl(), || standby.is_leader()).await;
    let handover = stopped_at.elapsed();
    assert_eq!(
        drained.load(SeqCst),
        1,
        "the leader's work drained before hand-over"
    );
    assert!(
        handover < long.ttl() / 10,
        "hand-over took {handover:?} (TTL {:?})",
        long.ttl()
    );
    join(running).await.expect("the stopped elector returns Ok");
    assert_eq!(*first.state().borrow(), LeaderState::Stopped);

    standby.shutdown();
    join(standing_by).await.expect("the standby returns Ok");
}

/// When the leader is cut off and loses its lock, its work is cancelled at once, and the
/// elector campaigns again in the same process and leads again once the fault heals.
pub async fn leader_work_is_cancelled_on_loss_and_the_campaign_resumes(backend: impl Backend) {
    struct CountDrop(Arc<AtomicUsize>);
    impl Drop for CountDrop {
        fn drop(&mut self) {
            self.0.fetch_add(1, SeqCst);
        }
    }

    let backend: Arc<dyn Backend> = Arc::new(backend);
    let name = unique_name("cancel");
    let faulty = Faulty::new(backend.clone());
    let elector = Arc::new(LeaderElector::new(lock_with(
        faulty.clone(),
        &name,
        "elector",
        timing(),
    )));
    let (started, cancelled) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let running = {
        let (elector, started, cancelled) = (elector.clone(), started.clone(), cancelled.clone());
        tokio::spawn(async move {
            elector
                .run(|leadership| {
                    started.fetch_add(1, SeqCst);
                    let on_drop = CountDrop(cancelled.clone());
                    async move {
                        let _on_drop = on_drop;
                        leadership.stopping().await;
                    }
                })
                .await
        })
    };
    eventually("the elector leads", TTL, || started.load(SeqCst) == 1).await;
    faulty.partition(true);
    eventually("the work is cancelled", TTL * 2, || {
        cancelled.load(SeqCst) == 1
    })
    .await;
    assert!(!elector.is_leader());
    assert!(matches!(
        *elector.state().borrow(),
        LeaderState::Following { .. }
    ));
    faulty.heal();
    eventually("the elector leads again", TTL * 3, || {
        started.load(SeqCst) == 2
    })
    .await;
    assert!(elector.is_leader());
    assert!(
        !running.is_finished(),
        "the campaign resumed without the run ending"
    );

    elector.shutdown();
    join(running).await.expect("the elector returns Ok");
    assert_eq!(cancelled.load(SeqCst), 2);
}

/// Owners of each shard at this instant, by validity.
fn owners(members: &[crate::ElectedShards], shards: u32) -> Vec<usize> {
    (0..shards)
        .map(|shard| {
            members
                .iter()
                .filter(|member| member.owns_shard(shard))
                .count()
        })
        .collect()
}

/// Starts a running member `identity` of `group` over `connection`.
fn start_member(
    connection: Arc<dyn Backend>,
    group: &str,
    identity: &str,
    shards: u32,
    max_members: u32,
) -> (crate::ElectedShards, JoinHandle<crate::Result<()>>) {
    let member = crate::ElectedShards::builder(connection, group, identity, shards)
        .timing(timing())
        .max_members(max_members)
        .build()
        .expect("valid shards");
    let running = {
        let member = member.clone();
        tokio::spawn(async move { member.run().await })
    };
    (member, running)
}

/// Waits until every shard has one owner and shares differ by at most one.
async fn balanced(
    members: &[crate::ElectedShards],
    shards: u32,
    event: &str,
    limit: Duration,
) -> Duration {
    let started = Instant::now();
    eventually(
        &format!("every shard is owned and shares are fair after {event}"),
        limit,
        || {
            let counts = owners(members, shards);
            let shares: Vec<usize> = members
                .iter()
                .map(|m| (0..shards).filter(|s| m.owns_shard(*s)).count())
                .collect();
            let live: Vec<usize> = shares.iter().copied().filter(|n| *n > 0).collect();
            counts.iter().all(|n| *n == 1)
                && live.iter().max().unwrap_or(&0) - live.iter().min().unwrap_or(&0) <= 1
        },
    )
    .await;
    started.elapsed()
}

/// 3 members × 12 shards: no shard ever has two owners; after a graceful join or leave
/// every shard is owned again within 2 s with shares differing by at most one; after a
/// member is cut off, within the lease duration + 2 s.
pub async fn elected_shards_share_fairly_and_never_overlap(backend: impl Backend) {
    const SHARDS: u32 = 12;
    let backend: Arc<dyn Backend> = Arc::new(backend);
    let group = unique_name("shards");
    let start = |identity: &str, connection: Arc<dyn Backend>| {
        start_member(connection, &group, identity, SHARDS, 4)
    };
    let faulty = Faulty::new(backend.clone());
    let (a, run_a) = start("member-a", backend.clone());
    let (b, run_b) = start("member-b", backend.clone());
    let (c, run_c) = start("member-c", Arc::new(faulty.clone()));
    let members = vec![a.clone(), b.clone(), c.clone()];

    // Sample ownership every 10 ms for the whole test.
    let stop = Arc::new(tokio::sync::Notify::new());
    let sampler = {
        let (members, stop) = (members.clone(), stop.clone());
        tokio::spawn(async move {
            let (mut samples, mut most) = (0_usize, 0_usize);
            let mut stopped = pin!(stop.notified());
            loop {
                most = most.max(owners(&members, SHARDS).into_iter().max().unwrap_or(0));
                samples += 1;
                tokio::select! {
                    () = &mut stopped => return (samples, most),
                    () = sleep(Duration::from_millis(10)) => {}
                }
            }
        })
    };

    balanced(
        &members,
        SHARDS,
        "three members joined",
        Duration::from_secs(2) + TTL,
    )
    .await;
    let mut changes = a.owned_changes();
    let current = futures::StreamExt::next(&mut changes)
        .await
        .expect("the current set first");
    assert_eq!(
        current,
        *a.owned().borrow(),
        "the stream starts with the owned set"
    );

    // A graceful leave: b's shards move to a and c.
    b.shutdown();
    join(run_b).await.expect("b leaves cleanly");
    balanced(&members, SHARDS, "a member left", Duration::from_secs(2)).await;

    // A graceful join: a new member takes its share.
    let (d, run_d) = start("member-d", backend.clone());
    let members_now = vec![a.clone(), c.clone(), d.clone()];
    balanced(
        &members_now,
        SHARDS,
        "a member joined",
        Duration::from_secs(2),
    )
    .await;

    // A member cut off from the server: its shards expire and move.
    faulty.partition(true);
    let survivors = vec![a.clone(), d.clone()];
    balanced(
        &survivors,
        SHARDS,
        "a member was cut off",
        TTL + Duration::from_secs(2),
    )
    .await;
    for shard in 0..SHARDS {
        assert!(
            !c.owns_shard(shard),
            "the cut-off member must not own shard {shard}"
        );
    }

    stop.notify_one();
    let (samples, most) = join(sampler).await;
    assert!(samples > 100, "only {samples} samples");
    assert!(most <= 1, "a shard had {most} owners at once");
    for member in [&a, &c, &d] {
        member.shutdown();
    }
    faulty.heal();
    for run in [run_a, run_c, run_d] {
        join(run).await.expect("members stop cleanly");
    }
}

/// Two members share 12 shards; one is cut off from the server (its requests hang, as
/// over a blackholed connection, until they time out). Sampled every 10 ms, the
/// shards it publishes ([`owned`](crate::ElectedShards::owned)) never include one the
/// other member owns with a valid guard: a shard leaves the published set the moment
/// its guard is no longer valid, whatever the network does.
pub async fn a_cut_off_members_published_shards_never_overlap_the_new_owners(
    backend: impl Backend,
) {
    const SHARDS: u32 = 12;
    let backend: Arc<dyn Backend> = Arc::new(backend);
    let group = unique_name("cut-off");
    let faulty = Faulty::new(backend.clone());
    let start = |identity: &str, connection: Arc<dyn Backend>| {
        start_member(connection, &group, identity, SHARDS, 2)
    };
    let (a, run_a) = start("member-a", backend.clone());
    let (b, run_b) = start("member-b", Arc::new(faulty.clone()));
    balanced(
        &[a.clone(), b.clone()],
        SHARDS,
        "two members joined",
        Duration::from_secs(2) + TTL,
    )
    .await;

    faulty.freeze(true);
    let deadline = Instant::now() + TTL + Duration::from_secs(3);
    let mut samples = 0;
    loop {
        // The new owner first: a shard it owns now was owned before b's set is read.
        let owned_by_a: Vec<u32> = (0..SHARDS).filter(|shard| a.owns_shard(*shard)).collect();
        let published = b.owned().borrow().clone();
        let overlap: Vec<u32> = owned_by_a
            .iter()
            .copied()
            .filter(|shard| published.contains(shard))
            .collect();
        assert!(
            overlap.is_empty(),
            "the cut-off member still published shards {overlap:?} that the other member owns"
        );
        samples += 1;
        if (0..SHARDS).all(|shard| a.owns_shard(shard)) && published.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the other member did not take every shard within the TTL + 3 s (it owns {:?}; the cut-off one publishes {published:?})",
            a.owned().borrow()
        );
        sleep(Duration::from_millis(10)).await;
    }
    assert!(samples > 10, "only {samples} samples");
    a.shutdown();
    b.shutdown();
    faulty.heal();
    for run in [run_a, run_b] {
        join(run).await.expect("members stop cleanly");
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

/// `release_holder` frees the lock only for the holder named, wakes the waiters at once,
/// and the holder's guard reports the loss.
pub async fn an_operator_release_frees_only_the_named_holders_lock(backend: impl Backend) {
    let backend: Arc<dyn Backend> = Arc::new(backend);
    let name = unique_name("operator-release");
    let lock_name = crate::LockName::new(&name).expect("valid");
    let stuck = lock(&backend, &name, "stuck-holder")
        .acquire()
        .await
        .expect("acquire");
    let waiter = lock(&backend, &name, "waiter");
    let waiting = tokio::spawn(async move { waiter.acquire().await });

    let wrong = backend.release_holder(&lock_name, "someone-else").await;
    assert_eq!(wrong.expect("release_holder"), crate::Release::NotHeld);
    assert!(stuck.is_valid(), "another holder's name changes nothing");

    let freed = backend.release_holder(&lock_name, "stuck-holder").await;
    assert_eq!(freed.expect("release_holder"), crate::Release::Released);
    let next = tokio::time::timeout(TTL / 2, join(waiting))
        .await
        .expect("the waiter takes over without waiting for the TTL")
        .expect("acquire");
    assert!(next.token() > stuck.token());
    assert_taken_within_one_renew_interval(&stuck, "released by an operator").await;
    next.release().await.expect("release");
}

/// A holder freed by someone else learns it at its next renewal: `Taken` within one
/// renew interval (plus the time a request takes), not at its self-fencing deadline.
async fn assert_taken_within_one_renew_interval(guard: &crate::Guard, what: &str) {
    let bound = timing().renew_interval() + Duration::from_millis(500);
    let reason = tokio::time::timeout(bound, guard.lost())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "a holder {what} still trusted its lock {bound:?} later (is_valid: {})",
                guard.is_valid()
            )
        });
    assert_eq!(reason, LossReason::Taken, "a holder {what}");
}

/// `list` finds every held lock whose name starts with the prefix, with its holder,
/// sorted by name, and nothing else.
pub async fn list_finds_the_locks_under_a_prefix(backend: impl Backend) {
    let backend: Arc<dyn Backend> = Arc::new(backend);
    let prefix = unique_name("listed");
    let first = lock(&backend, &format!("{prefix}-a"), "holder-a")
        .acquire()
        .await
        .expect("acquire");
    let second = lock(&backend, &format!("{prefix}-b"), "holder-b")
        .acquire()
        .await
        .expect("acquire");
    let outside = lock(&backend, &unique_name("elsewhere"), "holder-c")
        .acquire()
        .await
        .expect("acquire");

    let listed = backend.list(&prefix).await.expect("list");
    let found: Vec<(String, Option<String>)> = listed
        .into_iter()
        .map(|lock| {
            let holder = lock.holder.expect("readable").map(|info| info.holder);
            (lock.name, holder)
        })
        .collect();
    assert_eq!(
        found,
        vec![
            (format!("{prefix}-a"), Some("holder-a".to_owned())),
            (format!("{prefix}-b"), Some("holder-b".to_owned())),
        ]
    );

    let literal = backend.list(&format!("{prefix}*")).await.expect("list");
    assert!(
        literal.is_empty(),
        "a prefix is taken literally, never as a pattern: {literal:?}"
    );

    second.release().await.expect("release");
    let after = backend.list(&prefix).await.expect("list");
    let held: Vec<String> = after
        .into_iter()
        .filter(|lock| matches!(lock.holder, Ok(Some(_))))
        .map(|lock| lock.name)
        .collect();
    assert_eq!(
        held,
        vec![format!("{prefix}-a")],
        "a released lock is free or gone"
    );
    first.release().await.expect("release");
    outside.release().await.expect("release");
}

/// Breaking a lock frees it from its holder and takes a larger token: the holder's guard
/// reports the loss, and its fenced writes are rejected once a newer token has written.
pub async fn breaking_a_lock_supersedes_its_holder_and_fencing_rejects_it(backend: impl Backend) {
    let backend: Arc<dyn Backend> = Arc::new(backend);
    let name = unique_name("break");
    let register = crate::FencedRegister::new(0);
    let stuck = lock(&backend, &name, "stuck-holder")
        .acquire()
        .await
        .expect("acquire");
    register.write(stuck.token(), 1).expect("the holder writes");

    let broken = lock(&backend, &name, "operator")
        .break_lock()
        .await
        .expect("break");
    assert_eq!(
        broken.previous.map(|previous| previous.holder).as_deref(),
        Some("stuck-holder")
    );
    let taken = broken.token.expect("nobody else was waiting");
    assert!(taken > stuck.token());
    assert_taken_within_one_renew_interval(&stuck, "whose lock was broken").await;

    let next = lock(&backend, &name, "next")
        .try_acquire()
        .await
        .expect("the lock is free");
    assert!(next.token() > taken);
    register
        .write(next.token(), 2)
        .expect("the next holder writes");
    assert!(matches!(
        register.write(stuck.token(), 3),
        Err(Error::StaleToken { .. })
    ));
    next.release().await.expect("release");
}

/// `observe` yields the current holder first, then each change, within a poll interval.
pub async fn observe_reports_every_change_of_holder(backend: impl Backend) {
    use futures::StreamExt;

    let backend: Arc<dyn Backend> = Arc::new(backend);
    let name = unique_name("observe");
    let mut holders = lock(&backend, &name, "observer").observe();
    let mut next_holder = async || {
        let item = tokio::time::timeout(TTL, holders.next()).await;
        let item = item
            .expect("an item within the poll interval")
            .expect("endless");
        item.expect("describe").map(|info| info.holder)
    };
    assert_eq!(next_holder().await, None, "free at first");
    let guard = lock(&backend, &name, "holder")
        .acquire()
        .await
        .expect("acquire");
    let mut seen = next_holder().await;
    for _ in 0..10 {
        if seen.is_some() {
            break;
        }
        seen = next_holder().await;
    }
    assert_eq!(seen.as_deref(), Some("holder"));
    guard.release().await.expect("release");
    for _ in 0..10 {
        if next_holder().await.is_none() {
            return;
        }
    }
    panic!("the release was not observed within 10 items");
}
