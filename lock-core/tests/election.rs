//! How leader election behaves: state, health, drain, step-down, work that fails, and
//! tasks scoped to a term. On paused time.

mod support;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering::SeqCst},
    },
    time::Duration,
};

use lock_core::{
    Error, Faulty, FencedRegister, FencingToken, LeaderElector, LeaderState, Leadership, Lock,
    MemoryBackend, Timing,
};
use support::Recorder;
use tokio::{
    sync::{mpsc, oneshot},
    time::{Instant, sleep},
};

const TTL: Duration = Duration::from_secs(15);

fn elector(backend: impl lock_core::Backend, identity: &str) -> Arc<LeaderElector> {
    let lock = Lock::builder(backend, "leader", identity)
        .timing(Timing::new(TTL))
        .build()
        .expect("valid lock");
    Arc::new(LeaderElector::new(lock))
}

/// Runs `elector` with work that leads until asked to stop.
fn run(elector: &Arc<LeaderElector>) -> tokio::task::JoinHandle<lock_core::Result<()>> {
    let elector = elector.clone();
    tokio::spawn(async move {
        elector
            .run(|leadership| async move { leadership.stopping().await })
            .await
    })
}

#[tokio::test(start_paused = true)]
async fn the_state_shows_the_leaders_token_and_to_followers_who_leads() {
    let server = MemoryBackend::new();
    let (a, b) = (elector(server.clone(), "a"), elector(server, "b"));
    let mut a_state = a.state();
    assert_eq!(*a_state.borrow(), LeaderState::Following { leader: None });

    let running_a = run(&a);
    a_state.changed().await.expect("state changes");
    let LeaderState::Leading { token } = *a_state.borrow() else {
        panic!("a should lead, is {:?}", *a_state.borrow());
    };
    assert!(a.is_leader());

    let running_b = run(&b);
    sleep(Duration::from_millis(1)).await;
    assert_eq!(
        *b.state().borrow(),
        LeaderState::Following {
            leader: Some("a".into())
        }
    );
    assert!(!b.is_leader());

    a.shutdown();
    running_a.await.expect("a ran").expect("a returns Ok");
    assert_eq!(*a.state().borrow(), LeaderState::Stopped);
    sleep(Duration::from_millis(1)).await;
    assert!(matches!(*b.state().borrow(), LeaderState::Leading { token: next } if next > token));
    b.shutdown();
    running_b.await.expect("b ran").expect("b returns Ok");
}

#[tokio::test(start_paused = true)]
async fn health_turns_false_when_a_leaders_renewals_stall_and_true_again_as_a_follower() {
    let faulty = Faulty::new(MemoryBackend::new());
    let leader = elector(faulty.clone(), "leader");
    let health = leader.health();
    let acquired = Instant::now();
    let running = run(&leader);
    sleep(Duration::from_millis(1)).await;
    assert!(leader.is_leader() && health.is_healthy());

    faulty.partition(true);
    while health.is_healthy() {
        sleep(Duration::from_millis(100)).await;
    }
    // No successful renewal since the acquisition for one renew interval plus half of
    // one (the default grace).
    let unhealthy_after = Instant::now() - acquired;
    assert!(
        unhealthy_after > TTL / 3 + TTL / 6
            && unhealthy_after <= TTL / 3 + TTL / 6 + Duration::from_millis(100)
    );
    assert!(
        leader.is_leader(),
        "unhealthy before the lock is lost: a probe can act in time"
    );

    sleep(TTL).await;
    assert!(!leader.is_leader());
    assert!(health.is_healthy(), "a follower is healthy");
    leader.shutdown();
    running.await.expect("ran").expect("returns Ok");
}

#[tokio::test(start_paused = true)]
async fn work_that_ignores_the_drain_signal_is_cancelled_after_the_drain_timeout_before_release() {
    struct OnDrop(Option<oneshot::Sender<Instant>>);
    impl Drop for OnDrop {
        fn drop(&mut self) {
            if let Some(tx) = self.0.take() {
                let _ = tx.send(Instant::now());
            }
        }
    }

    let server = MemoryBackend::new();
    let drain = Duration::from_secs(2);
    let lock = Lock::builder(server.clone(), "leader", "stubborn")
        .timing(Timing::new(TTL))
        .build()
        .expect("valid");
    let leader = Arc::new(LeaderElector::new(lock).with_drain_timeout(drain));
    let (dropped_tx, dropped_rx) = oneshot::channel();
    let mut dropped_tx = Some(dropped_tx);
    let running = {
        let leader = leader.clone();
        tokio::spawn(async move {
            leader
                .run(move |_leadership| {
                    let on_drop = OnDrop(dropped_tx.take());
                    async move {
                        let _on_drop = on_drop;
                        std::future::pending::<()>().await;
                    }
                })
                .await
        })
    };
    sleep(Duration::from_millis(1)).await;
    assert!(leader.is_leader());

    let shutdown_at = Instant::now();
    leader.shutdown();
    let cancelled_at = dropped_rx.await.expect("the work is dropped");
    assert_eq!(cancelled_at - shutdown_at, drain);
    running.await.expect("ran").expect("returns Ok");
    let next = Lock::new(server, "leader", "next")
        .expect("valid")
        .try_acquire()
        .await;
    assert!(
        next.is_ok(),
        "the lock was released after the work was cancelled"
    );
}

#[tokio::test(start_paused = true)]
async fn run_until_steps_down_gracefully_when_the_signal_fires() {
    let server = MemoryBackend::new();
    let leader = elector(server.clone(), "leader");
    let drained = Arc::new(AtomicUsize::new(0));
    let (signal_tx, signal_rx) = oneshot::channel::<()>();
    let running = {
        let (leader, drained) = (leader.clone(), drained.clone());
        tokio::spawn(async move {
            let work = |leadership: lock_core::Leadership| {
                let drained = drained.clone();
                async move {
                    leadership.stopping().await;
                    drained.fetch_add(1, SeqCst);
                }
            };
            leader
                .run_until(work, async {
                    let _ = signal_rx.await;
                })
                .await
        })
    };
    sleep(Duration::from_millis(1)).await;
    assert!(leader.is_leader());

    signal_tx.send(()).expect("the elector listens");
    running.await.expect("ran").expect("returns Ok");
    assert_eq!(drained.load(SeqCst), 1);
    assert_eq!(*leader.state().borrow(), LeaderState::Stopped);
    assert!(
        Lock::new(server, "leader", "next")
            .expect("valid")
            .try_acquire()
            .await
            .is_ok()
    );
}

#[tokio::test(start_paused = true)]
async fn work_that_returns_steps_down_and_the_campaign_continues() {
    let leader = elector(MemoryBackend::new(), "leader");
    let terms = Arc::new(AtomicUsize::new(0));
    let running = {
        let (leader, terms) = (leader.clone(), terms.clone());
        tokio::spawn(async move {
            leader
                .run(|leadership| {
                    let term = terms.fetch_add(1, SeqCst);
                    async move {
                        if term >= 2 {
                            leadership.stopping().await;
                        }
                    }
                })
                .await
        })
    };
    // Each return is followed by a pause before the next campaign (100-200 ms, then
    // 200-400 ms): within a second the third term runs.
    sleep(Duration::from_secs(1)).await;
    assert_eq!(
        terms.load(SeqCst),
        3,
        "two terms ended by their work, a third runs"
    );
    assert!(leader.is_leader());
    leader.shutdown();
    running.await.expect("ran").expect("returns Ok");
}

#[tokio::test(start_paused = true)]
async fn dropping_a_leading_run_future_leaves_it_stopped_healthy_and_released() {
    let server = MemoryBackend::new();
    let leader = elector(server.clone(), "leader");
    let health = leader.health();
    let running = run(&leader);
    sleep(Duration::from_millis(1)).await;
    assert!(leader.is_leader());

    running.abort();
    let _ = running.await;
    assert_eq!(*leader.state().borrow(), LeaderState::Stopped);
    assert!(!leader.is_leader());
    sleep(TTL).await;
    assert!(health.is_healthy(), "a stopped elector is healthy");
    let next = Lock::builder(server, "leader", "next")
        .timing(Timing::new(TTL))
        .build()
        .expect("valid lock")
        .acquire_timeout(Duration::from_millis(10))
        .await
        .expect("released in the background, not after the TTL");
    assert!(next.is_valid());
}

#[tokio::test(start_paused = true)]
async fn health_stays_true_while_renewals_are_slow_but_succeed() {
    let faulty = Faulty::new(MemoryBackend::new());
    let recorder = Recorder::new(faulty.clone());
    let leader = elector(recorder.clone(), "leader");
    let health = leader.health();
    let running = run(&leader);
    sleep(Duration::from_millis(1)).await;
    // Each renewal takes 4 s of the 5 s renew interval (the request timeout) to reach
    // the server: slow, but every one succeeds and the lock is never at risk.
    faulty.delay(Duration::from_secs(4));
    let until = Instant::now() + TTL * 3;
    while Instant::now() < until {
        assert!(leader.is_leader(), "slow renewals keep the lock");
        assert!(
            health.is_healthy(),
            "slow but successful renewals are healthy"
        );
        sleep(Duration::from_millis(100)).await;
    }
    assert!(recorder.renewals().len() >= 8);
    leader.shutdown();
    running.await.expect("ran").expect("returns Ok");
}

#[tokio::test(start_paused = true)]
async fn a_leader_asked_to_hand_over_drains_releases_and_campaigns_again() {
    let server = MemoryBackend::new();
    let asking = Recorder::new(server.clone());
    let (a, b) = (elector(asking.clone(), "a"), elector(server, "b"));
    let drained = Arc::new(AtomicUsize::new(0));
    let running_a = {
        let (a, drained) = (a.clone(), drained.clone());
        tokio::spawn(async move {
            a.run(|leadership| {
                let drained = drained.clone();
                async move {
                    leadership.stopping().await;
                    drained.fetch_add(1, SeqCst);
                }
            })
            .await
        })
    };
    sleep(Duration::from_millis(1)).await;
    assert!(a.is_leader());
    let running_b = run(&b);
    sleep(Duration::from_millis(1)).await;

    asking.ask_for_hand_over();
    let asked = Instant::now();
    while !b.is_leader() {
        assert!(
            asked.elapsed() <= TTL / 3,
            "handed over within one renew interval"
        );
        sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        drained.load(SeqCst),
        1,
        "the work drained before the release"
    );
    assert!(!a.is_leader());
    assert!(
        matches!(*a.state().borrow(), LeaderState::Following { .. }),
        "a hand-over is not a shutdown: the campaign goes on"
    );
    for (elector, running) in [(a, running_a), (b, running_b)] {
        elector.shutdown();
        running.await.expect("ran").expect("returns Ok");
    }
}

#[tokio::test(start_paused = true)]
async fn health_turns_false_when_a_renewal_hangs_until_its_timeout_before_the_lock_is_lost() {
    let faulty = Faulty::new(MemoryBackend::new());
    let leader = elector(faulty.clone(), "leader");
    let health = leader.health();
    let acquired = Instant::now();
    let running = run(&leader);
    sleep(Duration::from_millis(1)).await;
    faulty.freeze(true);
    while health.is_healthy() {
        sleep(Duration::from_millis(100)).await;
    }
    // The renewal sent at one renew interval hangs until its timeout (another renew
    // interval): only then is the lock known at risk, with a third of the TTL left.
    let unhealthy_after = Instant::now() - acquired;
    assert!(
        unhealthy_after >= TTL / 3 * 2
            && unhealthy_after <= TTL / 3 * 2 + Duration::from_millis(100),
        "{unhealthy_after:?}"
    );
    assert!(
        leader.is_leader(),
        "unhealthy before the lock is lost: a probe can act in time"
    );
    faulty.heal();
    leader.shutdown();
    running.await.expect("ran").expect("returns Ok");
}

// Leader work that can fail, and tasks scoped to a term.

/// The error of a leader's work in these tests.
#[derive(Debug)]
struct ReconcileFailed;

impl std::fmt::Display for ReconcileFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("reconcile failed")
    }
}

impl std::error::Error for ReconcileFailed {}

/// What happened, in order: who led with which token, and every write attempted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Event {
    Leads(&'static str, FencingToken),
    Wrote(&'static str, FencingToken),
}

#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<Event>>>);

impl Log {
    fn push(&self, event: Event) {
        self.0.lock().expect("log").push(event);
    }

    fn events(&self) -> Vec<Event> {
        self.0.lock().expect("log").clone()
    }

    /// The writes of `who`'s term `token` that came after `later` was logged.
    fn writes_after(&self, who: &'static str, token: FencingToken, later: Event) -> usize {
        let events = self.events();
        let Some(at) = events.iter().position(|event| *event == later) else {
            return 0;
        };
        events[at..]
            .iter()
            .filter(|event| **event == Event::Wrote(who, token))
            .count()
    }
}

/// How a writer task spawned through the term reacts to the drain signal.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Writer {
    /// Writes every 100 ms until told to stop, then flushes for 500 ms, writes once more
    /// and returns.
    Cooperative,
    /// Writes every 100 ms and ignores the drain signal.
    Stubborn,
}

type Handles = mpsc::UnboundedSender<tokio::task::JoinHandle<()>>;

/// A writer of `who`'s term: each write goes to `register` with the term's token and
/// is logged.
async fn write(
    who: &'static str,
    leadership: Leadership,
    register: Arc<FencedRegister<&'static str>>,
    log: Log,
    writer: Writer,
) {
    let token = leadership.token();
    loop {
        log.push(Event::Wrote(who, token));
        let _ = register.write(token, who);
        match writer {
            Writer::Cooperative => tokio::select! {
                () = leadership.stopping() => {
                    sleep(Duration::from_millis(500)).await;
                    log.push(Event::Wrote(who, token));
                    let _ = register.write(token, who);
                    return;
                }
                () = sleep(Duration::from_millis(100)) => {}
            },
            Writer::Stubborn => sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Runs `elector` with work that logs its term, spawns `writers` through the term
/// (sending their handles to `handles`), and waits for the drain signal.
fn run_writing(
    elector: &Arc<LeaderElector>,
    who: &'static str,
    register: &Arc<FencedRegister<&'static str>>,
    log: &Log,
    writers: &'static [Writer],
    handles: Handles,
) -> tokio::task::JoinHandle<lock_core::Result<()>> {
    let (elector, register, log) = (elector.clone(), register.clone(), log.clone());
    tokio::spawn(async move {
        elector
            .run(|leadership| {
                let (register, log, handles) = (register.clone(), log.clone(), handles.clone());
                async move {
                    log.push(Event::Leads(who, leadership.token()));
                    for writer in writers {
                        let task = write(
                            who,
                            leadership.clone(),
                            register.clone(),
                            log.clone(),
                            *writer,
                        );
                        let _ = handles.send(leadership.spawn(task));
                    }
                    leadership.stopping().await;
                }
            })
            .await
    })
}

fn leader_token(elector: &LeaderElector) -> Option<FencingToken> {
    match *elector.state().borrow() {
        LeaderState::Leading { token } => Some(token),
        _ => None,
    }
}

#[tokio::test(start_paused = true)]
async fn work_that_fails_ends_run_with_its_error_after_stepping_down_and_releasing() {
    let server = MemoryBackend::new();
    let (a, b) = (elector(server.clone(), "a"), elector(server, "b"));
    let running_a = {
        let a = a.clone();
        tokio::spawn(async move {
            a.run(|_leadership| async {
                sleep(Duration::from_secs(1)).await;
                Err::<(), _>(ReconcileFailed)
            })
            .await
        })
    };
    sleep(Duration::from_millis(1)).await;
    let a_token = leader_token(&a).expect("a leads");
    // b's work notes, as it starts, whether a still claimed to lead.
    let a_led_when_b_started = Arc::new(Mutex::new(None));
    let running_b = {
        let (a, b, seen) = (a.clone(), b.clone(), a_led_when_b_started.clone());
        tokio::spawn(async move {
            b.run(|leadership| {
                *seen.lock().expect("seen") = Some(a.is_leader() || leader_token(&a).is_some());
                async move { leadership.stopping().await }
            })
            .await
        })
    };

    let error = running_a
        .await
        .expect("a ran")
        .expect_err("the work's error ends the run");
    let failed_at = Instant::now();
    let Error::Work {
        ref name, token, ..
    } = error
    else {
        panic!("expected Error::Work, got {error:?}");
    };
    assert_eq!((name.as_str(), token), ("leader", a_token));
    let source = std::error::Error::source(&error).expect("the error keeps a source");
    assert!(
        source.downcast_ref::<ReconcileFailed>().is_some(),
        "the source is the work's own error: {source:?}"
    );
    assert_eq!(
        error.to_string(),
        format!("the leader's work on lock leader (token {a_token}) failed: reconcile failed")
    );
    assert_eq!(*a.state().borrow(), LeaderState::Stopped);
    assert!(!a.is_leader());

    while !b.is_leader() {
        assert!(
            failed_at.elapsed() < Duration::from_millis(10),
            "the lock was released: b takes over at once, not after the TTL"
        );
        sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(
        *a_led_when_b_started.lock().expect("seen"),
        Some(false),
        "a left Leading before its lock went to b"
    );
    b.shutdown();
    running_b.await.expect("b ran").expect("b returns Ok");
}

#[tokio::test(start_paused = true)]
async fn an_error_the_work_returns_while_draining_is_returned_by_run() {
    let server = MemoryBackend::new();
    let leader = elector(server.clone(), "leader");
    let running = {
        let leader = leader.clone();
        tokio::spawn(async move {
            leader
                .run(|leadership| async move {
                    leadership.stopping().await;
                    Err::<(), _>(ReconcileFailed)
                })
                .await
        })
    };
    sleep(Duration::from_millis(1)).await;
    leader.shutdown();
    let error = running.await.expect("ran").expect_err("the drain failed");
    assert!(matches!(error, Error::Work { .. }), "{error:?}");
    assert!(
        Lock::new(server, "leader", "next")
            .expect("valid")
            .try_acquire()
            .await
            .is_ok(),
        "released"
    );
}

/// The bound on how often work that returns `Ok` at once retakes the lock. The pauses
/// between terms follow `retry_delays(renew interval)`: at least 100 ms, 200 ms,
/// 400 ms, ... doubling up to the renew interval (5 s for this TTL of 15 s), jitter
/// only lengthening them. Terms start at t >= 0, 0.1, 0.3, 0.7, 1.5, 3.1, 6.3 and
/// 11.3 s: at most 7 acquisitions in the first 10 s, and then at most one per renew
/// interval.
const MAX_TERMS_IN_10_S: usize = 7;

#[tokio::test(start_paused = true)]
async fn work_that_returns_at_once_retakes_the_lock_at_most_7_times_in_10_seconds() {
    let leader = elector(MemoryBackend::new(), "leader");
    let renew_interval = leader.lock().timing().renew_interval();
    let terms = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let running = {
        let (leader, terms) = (leader.clone(), terms.clone());
        tokio::spawn(async move {
            leader
                .run(|_leadership| {
                    terms.lock().expect("terms").push(started.elapsed());
                    async { Ok::<(), ReconcileFailed>(()) }
                })
                .await
        })
    };

    sleep(Duration::from_secs(10)).await;
    let in_10_s = terms.lock().expect("terms").len();
    println!("terms in 10 s: {in_10_s}");
    assert!(
        (2..=MAX_TERMS_IN_10_S).contains(&in_10_s),
        "{in_10_s} terms in 10 s"
    );

    sleep(Duration::from_secs(20)).await;
    let terms = terms.lock().expect("terms").clone();
    let gaps: Vec<_> = terms.windows(2).map(|pair| pair[1] - pair[0]).collect();
    assert!(
        gaps.iter().all(|gap| *gap >= Duration::from_millis(100)),
        "never a tight loop: {gaps:?}"
    );
    assert!(
        gaps[6..].iter().all(|gap| *gap >= renew_interval),
        "backed off to the renew interval: {gaps:?}"
    );
    leader.shutdown();
    running
        .await
        .expect("ran")
        .expect("a shutdown during the pause returns Ok");
    assert_eq!(*leader.state().borrow(), LeaderState::Stopped);
}

#[tokio::test(start_paused = true)]
async fn a_task_spawned_through_the_term_is_aborted_when_the_lock_is_lost_and_never_writes_after() {
    let server = MemoryBackend::new();
    let faulty = Faulty::new(server.clone());
    let (a, b) = (elector(faulty.clone(), "a"), elector(server, "b"));
    let (register, log) = (Arc::new(FencedRegister::new("")), Log::default());
    let (handles, mut a_tasks) = mpsc::unbounded_channel();
    let acquired = Instant::now();
    let running_a = run_writing(&a, "a", &register, &log, &[Writer::Stubborn], handles);
    sleep(Duration::from_millis(1)).await;
    let a_token = leader_token(&a).expect("a leads");
    let (handles, _b_tasks) = mpsc::unbounded_channel();
    let running_b = run_writing(&b, "b", &register, &log, &[Writer::Stubborn], handles);

    faulty.fail_renewals(true);
    // The writer's handle resolves once the term has ended and the writer was aborted.
    let writer = a_tasks.recv().await.expect("a spawned its writer");
    let ended = writer.await.expect_err("the writer was aborted");
    assert!(ended.is_cancelled());
    let lost = Event::Leads("a's writer ended", a_token);
    log.push(lost);
    assert_ne!(
        leader_token(&a),
        Some(a_token),
        "the term ended with the loss"
    );
    assert!(
        acquired.elapsed() < TTL,
        "aborted at the self-fencing deadline, before the lock could expire on the server"
    );
    // b takes over once a stops campaigning (with its renewals failing, a would take
    // the lock again after each loss).
    a.shutdown();
    running_a.await.expect("a ran").expect("a returns Ok");
    let b_token = loop {
        if let Some(token) = leader_token(&b) {
            break token;
        }
        sleep(Duration::from_millis(10)).await;
    };
    sleep(Duration::from_secs(2)).await;

    assert_eq!(
        log.writes_after("a", a_token, lost),
        0,
        "{:?}",
        log.events()
    );
    assert_eq!(
        log.writes_after("a", a_token, Event::Leads("b", b_token)),
        0,
        "a's writer never wrote once b led"
    );
    assert!(log.events().contains(&Event::Wrote("b", b_token)));
    assert_eq!(register.highest_token(), Some(b_token));
    b.shutdown();
    running_b.await.expect("b ran").expect("b returns Ok");
}

#[tokio::test(start_paused = true)]
async fn a_step_down_drains_the_terms_tasks_and_aborts_those_that_outlast_the_drain_before_releasing()
 {
    let server = MemoryBackend::new();
    let drain = Duration::from_secs(2);
    let a = Arc::new(
        LeaderElector::new(
            Lock::builder(server.clone(), "leader", "a")
                .timing(Timing::new(TTL))
                .build()
                .expect("valid lock"),
        )
        .with_drain_timeout(drain),
    );
    let b = elector(server, "b");
    let (register, log) = (Arc::new(FencedRegister::new("")), Log::default());
    let (handles, mut a_tasks) = mpsc::unbounded_channel();
    let writers = &[Writer::Cooperative, Writer::Stubborn];
    let running_a = run_writing(&a, "a", &register, &log, writers, handles);
    sleep(Duration::from_millis(1)).await;
    let a_token = leader_token(&a).expect("a leads");
    let (handles, _b_tasks) = mpsc::unbounded_channel();
    let running_b = run_writing(&b, "b", &register, &log, &[], handles);
    sleep(Duration::from_secs(1)).await;

    let shutdown_at = Instant::now();
    a.shutdown();
    running_a.await.expect("a ran").expect("a returns Ok");
    assert_eq!(
        shutdown_at.elapsed(),
        drain,
        "the stubborn task held the step-down for the drain timeout"
    );
    let (cooperative, stubborn) = (
        a_tasks.recv().await.expect("spawned"),
        a_tasks.recv().await.expect("spawned"),
    );
    cooperative
        .await
        .expect("the cooperative task finished its flush");
    assert!(stubborn.await.expect_err("aborted").is_cancelled());
    sleep(Duration::from_millis(1)).await;
    let b_token = leader_token(&b).expect("b leads at once after the release");

    let events = log.events();
    let b_leads = events
        .iter()
        .position(|event| *event == Event::Leads("b", b_token))
        .expect("b's term is logged");
    let a_writes: Vec<_> = events
        .iter()
        .enumerate()
        .filter(|(_, event)| **event == Event::Wrote("a", a_token))
        .map(|(at, _)| at)
        .collect();
    assert!(
        a_writes.len() > 10 + 20,
        "both writers wrote during the term and the stubborn one during the drain: {events:?}"
    );
    assert!(
        a_writes.iter().all(|at| *at < b_leads),
        "no write of a's term after its lock was released: {events:?}"
    );
    sleep(Duration::from_secs(1)).await;
    assert_eq!(
        log.writes_after("a", a_token, Event::Leads("b", b_token)),
        0
    );
    b.shutdown();
    running_b.await.expect("b ran").expect("b returns Ok");
}

#[tokio::test(start_paused = true)]
async fn a_step_down_waits_for_the_terms_tasks_to_finish_before_releasing() {
    let server = MemoryBackend::new();
    let a = elector(server.clone(), "a");
    let b = elector(server, "b");
    let (register, log) = (Arc::new(FencedRegister::new("")), Log::default());
    let (handles, _a_tasks) = mpsc::unbounded_channel();
    let running_a = run_writing(&a, "a", &register, &log, &[Writer::Cooperative], handles);
    sleep(Duration::from_millis(1)).await;
    let a_token = leader_token(&a).expect("a leads");
    let (handles, _b_tasks) = mpsc::unbounded_channel();
    let running_b = run_writing(&b, "b", &register, &log, &[], handles);
    sleep(Duration::from_millis(1)).await;

    let shutdown_at = Instant::now();
    a.shutdown();
    running_a.await.expect("a ran").expect("a returns Ok");
    assert_eq!(
        shutdown_at.elapsed(),
        Duration::from_millis(500),
        "the work returned at once; the step-down waited for its task's flush"
    );
    sleep(Duration::from_millis(1)).await;
    let b_token = leader_token(&b).expect("b leads");
    let events = log.events();
    assert_eq!(
        events[events.len() - 2..],
        [Event::Wrote("a", a_token), Event::Leads("b", b_token)],
        "the task's last write came before b's term"
    );
    b.shutdown();
    running_b.await.expect("b ran").expect("b returns Ok");
}

#[tokio::test(start_paused = true)]
async fn dropping_the_run_future_aborts_the_terms_tasks() {
    let leader = elector(MemoryBackend::new(), "leader");
    let writes = Arc::new(AtomicUsize::new(0));
    let running = {
        let (leader, writes) = (leader.clone(), writes.clone());
        tokio::spawn(async move {
            leader
                .run(|leadership| {
                    let writes = writes.clone();
                    async move {
                        leadership.spawn(async move {
                            loop {
                                writes.fetch_add(1, SeqCst);
                                sleep(Duration::from_millis(100)).await;
                            }
                        });
                        leadership.stopping().await;
                    }
                })
                .await
        })
    };
    sleep(Duration::from_secs(1)).await;
    assert!(writes.load(SeqCst) >= 10);

    running.abort();
    let _ = running.await;
    let after_drop = writes.load(SeqCst);
    sleep(Duration::from_secs(1)).await;
    assert_eq!(
        writes.load(SeqCst),
        after_drop,
        "the task died with the run"
    );
}

#[tokio::test(start_paused = true)]
async fn a_task_spawned_after_its_term_ended_never_runs() {
    let leader = elector(MemoryBackend::new(), "leader");
    let kept = Arc::new(Mutex::new(None));
    let running = {
        let (leader, kept) = (leader.clone(), kept.clone());
        tokio::spawn(async move {
            leader
                .run(|leadership| {
                    *kept.lock().expect("kept") = Some(leadership.clone());
                    async move { leadership.stopping().await }
                })
                .await
        })
    };
    sleep(Duration::from_millis(1)).await;
    leader.shutdown();
    running.await.expect("ran").expect("returns Ok");

    let leadership = kept
        .lock()
        .expect("kept")
        .take()
        .expect("the term was kept");
    let ran = Arc::new(AtomicUsize::new(0));
    let task = {
        let ran = ran.clone();
        leadership.spawn(async move {
            ran.fetch_add(1, SeqCst);
        })
    };
    assert!(task.await.expect_err("aborted").is_cancelled());
    assert_eq!(ran.load(SeqCst), 0);
}
