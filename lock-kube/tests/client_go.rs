//! A client-go controller and ours, contending for one Lease, never lead at once.
//!
//! The Go side is client-go v1.20.2's leader election (`LeaseLock`, ReleaseOnCancel),
//! built by `scripts/provision`. Both sides use the same 3 s lease duration.

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, SystemTime},
};

use lock_core::{Faulty, LeaderElector, Lock, Timing, conformance::unique_name};
use lock_kube::{KubeBackend, nodelay_client};
use lock_tests::{GoContender, Kube, Term, eventually, waited};
use tokio::{task::JoinHandle, time::sleep};

const LEASE_DURATION: Duration = Duration::from_secs(3);

/// Our replica: an elector whose terms are recorded as the work sees them.
struct RustReplica {
    elector: Arc<LeaderElector>,
    connection: Faulty<KubeBackend>,
    terms: Arc<Mutex<Vec<Term>>>,
    running: JoinHandle<lock_core::Result<()>>,
}

/// Ends the current term when the work stops or is cancelled.
struct EndTerm(Arc<Mutex<Vec<Term>>>);

impl Drop for EndTerm {
    fn drop(&mut self) {
        let mut terms = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(term) = terms.last_mut().filter(|t| t.end.is_none()) {
            term.end = Some(SystemTime::now());
        }
    }
}

impl RustReplica {
    async fn start(kube: &Kube, name: &str, identity: &str) -> Self {
        let client = nodelay_client(kube.config(false).await).expect("a client");
        let connection = Faulty::new(KubeBackend::new(client, kube.namespace()));
        let lock = Lock::builder(connection.clone(), name, identity)
            .timing(Timing::new(LEASE_DURATION))
            .build()
            .expect("a valid lock");
        let elector = Arc::new(LeaderElector::new(lock));
        let terms = Arc::new(Mutex::new(Vec::new()));
        let running = {
            let (elector, terms) = (elector.clone(), terms.clone());
            tokio::spawn(async move {
                elector
                    .run(|leadership| {
                        terms
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push(Term {
                                start: SystemTime::now(),
                                end: None,
                            });
                        let end = EndTerm(terms.clone());
                        async move {
                            let _end = end;
                            leadership.stopping().await;
                        }
                    })
                    .await
            })
        };
        Self {
            elector,
            connection,
            terms,
            running,
        }
    }

    /// Steps down gracefully and returns every term it led.
    async fn stop(self) -> Vec<Term> {
        self.elector.shutdown();
        let stopped = self.running.await.expect("the elector ran");
        stopped.expect("it stops cleanly");
        self.terms
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_go_leader_and_ours_never_lead_at_once() {
    let kube = Kube::shared().await;
    let name = unique_name("client-go");
    let mut go_terms = Vec::new();
    let mut rust_terms = Vec::new();

    // 1. Go leads; ours follows it and takes over at once when Go releases on SIGTERM.
    let go = GoContender::start(kube, &name, "go-1", LEASE_DURATION);
    eventually("client-go leads", Duration::from_secs(10), || {
        go.is_leading()
    })
    .await;
    let rust = RustReplica::start(kube, &name, "rust-1").await;
    sleep(Duration::from_secs(1)).await;
    assert!(
        !rust.elector.is_leader(),
        "ours must not lead while client-go does"
    );
    go.terminate();
    let handover = waited(LEASE_DURATION, || rust.elector.is_leader())
        .await
        .unwrap_or_else(|| {
            panic!(
                "ours did not lead within {LEASE_DURATION:?} after client-go's SIGTERM; client-go's log:\n{}",
                go.log()
            )
        });
    eventually("client-go exits", Duration::from_secs(5), || !go.is_alive()).await;
    go_terms.extend(go.terms());
    println!("client-go released → ours leads: {handover:?}");

    // 2. Ours steps down gracefully; client-go takes over (it polls every retry period).
    let go = GoContender::start(kube, &name, "go-2", LEASE_DURATION);
    sleep(Duration::from_secs(1)).await;
    assert!(
        !go.is_leading(),
        "client-go must not lead while ours does: {}",
        go.log()
    );
    rust_terms.extend(rust.stop().await);
    let handover = eventually(
        "client-go leads after ours released",
        LEASE_DURATION,
        || go.is_leading(),
    )
    .await;
    println!("ours released → client-go leads: {handover:?}");

    // 3. client-go crashes (SIGKILL): ours takes over once the lease is not renewed for a
    //    lease duration of its own observation.
    let rust = RustReplica::start(kube, &name, "rust-2").await;
    sleep(Duration::from_secs(1)).await;
    assert!(!rust.elector.is_leader());
    let mut go = go;
    go.kill();
    go_terms.extend(go.terms());
    let handover = eventually(
        "ours leads after client-go crashed",
        LEASE_DURATION * 3,
        || rust.elector.is_leader(),
    )
    .await;
    println!("client-go crashed → ours leads: {handover:?}");

    // 4. Ours is cut off from the apiserver: it stops leading at its deadline, and
    //    client-go takes over after the lease duration.
    let go = GoContender::start(kube, &name, "go-3", LEASE_DURATION);
    sleep(Duration::from_secs(1)).await;
    rust.connection.partition(true);
    eventually(
        "client-go leads after ours was cut off",
        LEASE_DURATION * 4,
        || go.is_leading(),
    )
    .await;
    assert!(!rust.elector.is_leader());
    go.terminate();
    eventually("client-go exits", Duration::from_secs(5), || !go.is_alive()).await;
    go_terms.extend(go.terms());
    rust_terms.extend(rust.stop().await);

    assert!(
        go_terms.len() >= 2 && rust_terms.len() >= 2,
        "go {go_terms:?}, rust {rust_terms:?}"
    );
    for go in &go_terms {
        for rust in &rust_terms {
            assert!(
                !go.overlaps(rust),
                "client-go led {go:?} while ours led {rust:?}"
            );
        }
    }
}
