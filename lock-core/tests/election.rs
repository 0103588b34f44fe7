//! How leader election behaves: state, health, drain, and step-down. On paused time.

mod support;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering::SeqCst},
    },
    time::Duration,
};

use lock_core::{Faulty, LeaderElector, LeaderState, Lock, MemoryBackend, Timing};
use support::Recorder;
use tokio::{
    sync::oneshot,
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
    sleep(Duration::from_millis(1)).await;
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
