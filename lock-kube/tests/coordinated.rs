//! Coordinated leader election's fields (KEP-4355, `coordination.k8s.io` Leases with
//! `strategy` and `preferredHolder`), on a real kube-apiserver. v1.36 runs with the
//! `CoordinatedLeaderElection` gate on; v1.20 has no such fields and drops them.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering::SeqCst},
    },
    time::Duration,
};

use k8s_openapi::api::coordination::v1::Lease;
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use lock_core::{LeaderElector, Lock, Timing, conformance::unique_name};
use lock_kube::KubeBackend;
use lock_tests::{Kube, KubeVersion};
use tokio::time::{Instant, sleep};

const TTL: Duration = Duration::from_secs(3);

async fn leases() -> Api<Lease> {
    let kube = Kube::shared().await;
    Api::namespaced(kube.admin().await, kube.namespace())
}

fn elector(backend: KubeBackend, name: &str, identity: &str) -> Arc<LeaderElector> {
    let lock = Lock::builder(backend, name, identity)
        .timing(Timing::new(TTL))
        .build()
        .expect("a valid lock");
    Arc::new(LeaderElector::new(lock).with_drain_timeout(Duration::from_secs(1)))
}

/// Sets `strategy` and `preferredHolder` on the Lease as the election controller does,
/// by a merge patch (touching nothing else).
async fn prefer(name: &str, preferred: &str) -> Lease {
    let patch = serde_json::json!({
        "spec": { "strategy": "OldestEmulationVersion", "preferredHolder": preferred }
    });
    leases()
        .await
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch the lease")
}

async fn wait_until(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "not {what} within {limit:?}");
        sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preferred_holder_naming_another_candidate_makes_the_leader_hand_over() {
    let kube = Kube::shared().await;
    let backend = KubeBackend::new(kube.admin().await, kube.namespace());
    let name = unique_name("preferred");
    let (a, b) = (
        elector(backend.clone(), &name, "candidate-a"),
        elector(backend, &name, "candidate-b"),
    );
    let drained = Arc::new(AtomicUsize::new(0));
    let run = |elector: &Arc<LeaderElector>| {
        let (elector, drained) = (elector.clone(), drained.clone());
        tokio::spawn(async move {
            elector
                .run(|leadership| {
                    let drained = drained.clone();
                    async move {
                        leadership.stopping().await;
                        drained.fetch_add(1, SeqCst);
                    }
                })
                .await
        })
    };
    let running_a = run(&a);
    wait_until("a leads", TTL, || a.is_leader()).await;
    let running_b = run(&b);
    sleep(Duration::from_millis(200)).await;

    // Naming the leader itself changes nothing, and every write of ours keeps the fields.
    let marked = prefer(&name, "candidate-a").await;
    let renew_interval = Timing::new(TTL).renew_interval();
    sleep(renew_interval * 2).await;
    assert!(
        a.is_leader(),
        "preferredHolder naming the leader changes nothing"
    );
    let spec = leases()
        .await
        .get(&name)
        .await
        .expect("the lease")
        .spec
        .expect("a spec");
    assert!(spec.renew_time > marked.spec.as_ref().and_then(|s| s.renew_time.clone()));
    match kube.version() {
        KubeVersion::V1_20 => {
            // No coordinated election on 1.20: the server dropped both fields.
            assert_eq!((spec.strategy, spec.preferred_holder), (None, None));
            for (elector, running) in [(a, running_a), (b, running_b)] {
                elector.shutdown();
                running.await.expect("ran").expect("returns Ok");
            }
            return;
        }
        KubeVersion::V1_36 => {
            assert_eq!(spec.strategy.as_deref(), Some("OldestEmulationVersion"));
            assert_eq!(spec.preferred_holder.as_deref(), Some("candidate-a"));
        }
    }

    // Naming another candidate: the leader drains and releases within one renew
    // interval, and the preferred candidate leads.
    prefer(&name, "candidate-b").await;
    let asked = Instant::now();
    wait_until(
        "the preferred candidate leads",
        renew_interval + Duration::from_secs(2),
        || b.is_leader(),
    )
    .await;
    assert!(!a.is_leader());
    assert_eq!(drained.load(SeqCst), 1, "the old leader drained first");
    let lease = leases().await.get(&name).await.expect("the lease");
    let spec = lease.spec.expect("a spec");
    assert_eq!(spec.holder_identity.as_deref(), Some("candidate-b"));
    assert_eq!(spec.strategy.as_deref(), Some("OldestEmulationVersion"));
    assert_eq!(spec.preferred_holder.as_deref(), Some("candidate-b"));
    println!(
        "handed over {:?} after preferredHolder changed",
        asked.elapsed()
    );
    sleep(renew_interval * 2).await;
    assert!(
        b.is_leader() && !a.is_leader(),
        "the old leader does not take it back"
    );
    for (elector, running) in [(a, running_a), (b, running_b)] {
        elector.shutdown();
        running.await.expect("ran").expect("returns Ok");
    }
}
