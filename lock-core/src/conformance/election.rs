//! Checks of leader election: never two leaders under faults, a prompt hand-over on
//! shutdown, and work cancelled on loss with the campaign resumed (docs/design.md, Contracts:
//! "Leader election").

use super::*;

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

// This file's part of `conformance_tests!`: a test for each check above.
checks! {
    $ __conformance_election_checks:
    election_never_has_two_leaders,
    stopping_the_leader_hands_over_without_waiting_for_the_ttl,
    leader_work_is_cancelled_on_loss_and_the_campaign_resumes,
}
