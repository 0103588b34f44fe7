//! Coordinated leader election's fields (KEP-4355, `coordination.k8s.io` Leases with
//! `strategy` and `preferredHolder`), on a real kube-apiserver. v1.36 runs with the
//! `CoordinatedLeaderElection` gate on; v1.20 has no such fields and drops them.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst},
    },
    time::{Duration, SystemTime},
};

use k8s_openapi::api::coordination::{v1::Lease, v1beta1::LeaseCandidate};
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use lock_core::{LeaderElector, Lock, Timing, conformance::unique_name};
use lock_kube::{Candidate, KubeBackend, OLDEST_EMULATION_VERSION};
use lock_tests::{GoContender, Kube, KubeVersion};
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

/// The emulation versions of the three candidates, oldest first; binary versions equal.
const EMULATION_VERSIONS: [&str; 3] = ["1.34.0", "1.35.0", "1.36.0"];

fn candidate(
    client: kube::Client,
    namespace: &str,
    name: &str,
    identity: &str,
    emulation: &str,
) -> Candidate {
    Candidate::builder(client, namespace, name, identity)
        .binary_version("1.36.0")
        .emulation_version(emulation)
        .build()
        .expect("a valid candidate")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn coordinated_election_elects_the_oldest_emulation_version_and_the_next_on_shutdown() {
    let kube = Kube::shared().await;
    let client = kube.admin().await;
    let namespace = kube.namespace();
    let name = unique_name("coordinated");
    let identities: Vec<String> = EMULATION_VERSIONS
        .iter()
        .map(|version| format!("candidate-{}", version.replace('.', "-")))
        .collect();

    if kube.version() == KubeVersion::V1_20 {
        // Kubernetes 1.20 has no coordinated leader election: it does not serve
        // LeaseCandidates, and the announcer says so with a typed error, at once.
        let announcer = candidate(client.clone(), namespace, &name, &identities[0], "1.34.0");
        let result = tokio::time::timeout(Duration::from_secs(10), announcer.run())
            .await
            .expect("the announcer gives up at once");
        assert!(
            matches!(result, Err(lock_core::Error::Unsupported { .. })),
            "{result:?}"
        );
        let withdrawn = announcer.withdraw().await;
        assert!(
            matches!(withdrawn, Err(lock_core::Error::Unsupported { .. })),
            "{withdrawn:?}"
        );
        // A coordinated lock never takes a Lease by itself: nobody elects on 1.20.
        let lock = Lock::builder(
            KubeBackend::coordinated(client, namespace),
            &name,
            &identities[0],
        )
        .timing(Timing::new(TTL))
        .build()
        .expect("a valid lock");
        assert!(matches!(
            lock.try_acquire().await,
            Err(lock_core::Error::Held { .. })
        ));
        assert!(leases().await.get_opt(&name).await.expect("read").is_none());
        return;
    }

    let electors: Vec<Arc<LeaderElector>> = identities
        .iter()
        .map(|identity| {
            elector(
                KubeBackend::coordinated(client.clone(), namespace),
                &name,
                identity,
            )
        })
        .collect();
    // Not oldest first, so that the first election may pick a younger candidate and hand
    // over to the oldest.
    let mut announcers = Vec::new();
    let mut running = Vec::new();
    for index in [1, 2, 0] {
        let announcer = candidate(
            client.clone(),
            namespace,
            &name,
            &identities[index],
            EMULATION_VERSIONS[index],
        );
        announcers.push((
            index,
            tokio::spawn(async move {
                let result = announcer.run().await;
                panic!("announcer ended: {result:?}");
            }),
        ));
        let elector = electors[index].clone();
        running.push((
            index,
            tokio::spawn(async move {
                elector
                    .run(|leadership| async move { leadership.stopping().await })
                    .await
            }),
        ));
    }

    // Never two leaders, sampled every 10 ms for the whole test.
    let sampling = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let (electors, most) = (electors.clone(), sampling.clone());
        tokio::spawn(async move {
            loop {
                let leaders = electors.iter().filter(|e| e.is_leader()).count();
                most.fetch_max(leaders, SeqCst);
                assert!(leaders <= 1, "{leaders} leaders at once");
                sleep(Duration::from_millis(10)).await;
            }
        })
    };

    let holder = || async {
        leases()
            .await
            .get_opt(&name)
            .await
            .expect("read the lease")
            .and_then(|lease| lease.spec)
            .and_then(|spec| spec.holder_identity)
    };
    let started = Instant::now();
    wait_until(
        "the oldest emulation version leads",
        Duration::from_secs(60),
        || electors[0].is_leader(),
    )
    .await;
    println!("1.34 leads after {:?}", started.elapsed());
    sleep(Duration::from_secs(2)).await;
    assert!(electors[0].is_leader(), "it keeps leading");
    assert_eq!(holder().await.as_deref(), Some(identities[0].as_str()));
    let spec = leases()
        .await
        .get(&name)
        .await
        .expect("the lease")
        .spec
        .expect("a spec");
    assert_eq!(spec.strategy.as_deref(), Some(OLDEST_EMULATION_VERSION));

    // Stop the oldest: first its announcer, then withdraw its candidacy (so that the
    // controller elects it no more), then a graceful shutdown of its elector, which
    // releases the Lease.
    let (_, oldest) = announcers.remove(
        announcers
            .iter()
            .position(|(index, _)| *index == 0)
            .expect("the oldest announcer"),
    );
    oldest.abort();
    assert!(oldest.await.is_err_and(|error| error.is_cancelled()));
    candidate(
        client.clone(),
        namespace,
        &name,
        &identities[0],
        EMULATION_VERSIONS[0],
    )
    .withdraw()
    .await
    .expect("withdraw the oldest candidate");
    electors[0].shutdown();
    let stopped = Instant::now();
    wait_until("the next oldest leads", Duration::from_secs(60), || {
        electors[1].is_leader()
    })
    .await;
    println!("1.35 leads {:?} after the shutdown", stopped.elapsed());
    sleep(Duration::from_secs(2)).await;
    assert!(electors[1].is_leader() && !electors[0].is_leader() && !electors[2].is_leader());
    assert_eq!(holder().await.as_deref(), Some(identities[1].as_str()));

    assert!(!sampler.is_finished(), "never two leaders");
    for (index, task) in &announcers {
        assert!(
            *index == 0 || !task.is_finished(),
            "announcer {index} ended"
        );
    }
    sampler.abort();
    for (_, task) in announcers {
        task.abort();
    }
    for elector in &electors {
        elector.shutdown();
    }
    for (index, task) in running {
        task.await
            .unwrap_or_else(|error| panic!("elector {index} panicked: {error}"))
            .expect("returns Ok");
    }
    assert_eq!(sampling.load(SeqCst), 1, "exactly one leader at a time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_go_coordinated_candidate_and_ours_never_lead_at_once() {
    let kube = Kube::shared().await;
    let client = kube.admin().await;
    let namespace = kube.namespace();
    let name = unique_name("coordinated-go");
    let (ours_id, go_id) = ("candidate-ours-1-35-0", "candidate-go-1-34-0");

    if kube.version() == KubeVersion::V1_20 {
        // Kubernetes 1.20 has no coordinated leader election: it does not serve the
        // LeaseCandidate API, so there is no election to share with client-go (and
        // scripts/provision builds no coordinated client-go candidate for it).
        let candidates: Api<LeaseCandidate> = Api::namespaced(client, namespace);
        let error = candidates
            .list(&Default::default())
            .await
            .expect_err("1.20 serves no LeaseCandidates");
        assert!(
            matches!(&error, kube::Error::Api(response) if response.code == 404),
            "{error:?}"
        );
        return;
    }

    // client-go first, with the oldest emulation version: the controller elects it.
    let go = Arc::new(GoContender::start_coordinated(
        kube, &name, go_id, TTL, "1.36.0", "1.34.0",
    ));
    let ours = elector(
        KubeBackend::coordinated(client.clone(), namespace),
        &name,
        ours_id,
    );
    let announcing = {
        let announcer = candidate(client.clone(), namespace, &name, ours_id, "1.35.0");
        tokio::spawn(async move {
            let result = announcer.run().await;
            panic!("announcer ended: {result:?}");
        })
    };
    let running = {
        let ours = ours.clone();
        tokio::spawn(async move {
            ours.run(|leadership| async move { leadership.stopping().await })
                .await
        })
    };

    // Never both, sampled every 10 ms for the whole test: our elector's view and
    // client-go's reports (it reports leading after it starts, and stopping before it
    // releases on SIGTERM). Beside it, as fast as the apiserver answers, the Lease's
    // holder, read between two samples of each: whoever leads across a read holds it.
    let holder = |name: String| async move {
        leases()
            .await
            .get_opt(&name)
            .await
            .expect("read the lease")
            .and_then(|lease| lease.spec)
            .and_then(|spec| spec.holder_identity)
    };
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (ours, go, stop) = (ours.clone(), go.clone(), stop.clone());
        tokio::spawn(async move {
            let mut samples = 0usize;
            while !stop.load(SeqCst) {
                assert!(
                    !(ours.is_leader() && go.is_leading()),
                    "ours and client-go lead at once"
                );
                samples += 1;
                sleep(Duration::from_millis(10)).await;
            }
            samples
        })
    };
    let holder_checker = {
        let (ours, go, stop, name) = (ours.clone(), go.clone(), stop.clone(), name.clone());
        tokio::spawn(async move {
            let mut reads = 0usize;
            while !stop.load(SeqCst) {
                let (ours_before, go_before) = (ours.is_leader(), go.is_leading());
                let holder = holder(name.clone()).await;
                let (ours_after, go_after) = (ours.is_leader(), go.is_leading());
                if ours_before && ours_after {
                    assert_eq!(holder.as_deref(), Some(ours_id), "ours leads, not holding");
                }
                if go_before && go_after {
                    assert_eq!(
                        holder.as_deref(),
                        Some(go_id),
                        "client-go leads, not holding"
                    );
                }
                reads += 1;
                sleep(Duration::from_millis(10)).await;
            }
            reads
        })
    };

    let started = Instant::now();
    while !go.is_leading() {
        assert!(
            started.elapsed() < Duration::from_secs(60) && go.is_alive(),
            "client-go does not lead:\n{}",
            go.log()
        );
        sleep(Duration::from_millis(10)).await;
    }
    println!("client-go (1.34) leads after {:?}", started.elapsed());
    sleep(Duration::from_secs(2)).await;
    assert!(
        go.is_leading() && !ours.is_leader(),
        "client-go keeps leading"
    );
    let spec = leases()
        .await
        .get(&name)
        .await
        .expect("the lease")
        .spec
        .expect("a spec");
    assert_eq!(spec.holder_identity.as_deref(), Some(go_id));
    assert_eq!(spec.strategy.as_deref(), Some(OLDEST_EMULATION_VERSION));

    // A graceful stop: client-go withdraws its LeaseCandidate and releases the Lease
    // (ReleaseOnCancel); the controller elects ours.
    go.terminate();
    let stopped = Instant::now();
    wait_until("ours leads", Duration::from_secs(20), || ours.is_leader()).await;
    let ours_led = SystemTime::now();
    println!("ours (1.35) leads {:?} after SIGTERM", stopped.elapsed());
    wait_until("client-go exits", Duration::from_secs(10), || {
        !go.is_alive()
    })
    .await;
    assert!(
        go.log().contains("EXITED"),
        "client-go exits by itself:\n{}",
        go.log()
    );
    let terms = go.terms();
    assert_eq!(terms.len(), 1, "client-go led once: {terms:?}");
    assert!(
        terms[0].end.is_some_and(|end| end <= ours_led),
        "client-go stopped before ours led: {terms:?}"
    );
    sleep(Duration::from_secs(2)).await;
    assert!(ours.is_leader(), "ours keeps leading");
    assert_eq!(holder(name.clone()).await.as_deref(), Some(ours_id));

    stop.store(true, SeqCst);
    let samples = sampler.await.expect("never both leading");
    let reads = holder_checker.await.expect("the leader holds the Lease");
    println!("{samples} samples, {reads} reads of the Lease");
    assert!(
        samples > 200 && reads > 10,
        "{samples} samples, {reads} reads"
    );
    assert!(!announcing.is_finished(), "our announcer ended");
    announcing.abort();
    candidate(client.clone(), namespace, &name, ours_id, "1.35.0")
        .withdraw()
        .await
        .expect("withdraw our candidate");
    ours.shutdown();
    running.await.expect("ran").expect("returns Ok");
}
