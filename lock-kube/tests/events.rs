//! Kubernetes Events on the Lease when a replica starts and stops leading, on a real
//! kube-apiserver.

use std::{sync::Arc, time::Duration};

use k8s_openapi::api::events::v1::Event;
use kube::{Api, api::ListParams};
use lock_core::{LeaderElector, Lock, Timing, conformance::unique_name};
use lock_kube::{KubeBackend, LEADER_ELECTION_REASON, record_leadership};
use lock_tests::Kube;

/// The notes of the leader-election Events on Lease `lease`, oldest first.
async fn notes(events: &Api<Event>, lease: &str) -> Vec<String> {
    let listed = events
        .list(&ListParams::default().fields(&format!("regarding.name={lease}")))
        .await
        .expect("list events");
    let mut found: Vec<_> = listed
        .items
        .into_iter()
        .filter(|event| event.reason.as_deref() == Some(LEADER_ELECTION_REASON))
        .map(|event| (event.event_time.clone(), event.note.unwrap_or_default()))
        .collect();
    found.sort_by(|a, b| a.0.as_ref().map(|t| t.0).cmp(&b.0.as_ref().map(|t| t.0)));
    found.into_iter().map(|(_, note)| note).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_records_an_event_when_it_starts_and_when_it_stops_leading() {
    let kube = Kube::shared().await;
    let client = kube.admin().await;
    let lease = unique_name("events");
    let lock = Lock::builder(
        KubeBackend::new(client.clone(), kube.namespace()),
        &lease,
        "pod-a",
    )
    .timing(Timing::new(Duration::from_secs(3)))
    .build()
    .expect("a valid lock");
    let elector = Arc::new(LeaderElector::new(lock));
    let recording = tokio::spawn(record_leadership(
        client.clone(),
        kube.namespace(),
        lease.clone(),
        "pod-a",
        "events-test",
        elector.state(),
    ));
    let running = {
        let elector = elector.clone();
        tokio::spawn(async move {
            elector
                .run(|leadership| async move { leadership.stopping().await })
                .await
        })
    };
    let events: Api<Event> = Api::namespaced(client, kube.namespace());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while notes(&events, &lease).await != ["pod-a became leader"] {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no 'became leader' event: {:?}",
            notes(&events, &lease).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    elector.shutdown();
    running.await.expect("ran").expect("stopped cleanly");
    drop(elector);
    tokio::time::timeout(Duration::from_secs(10), recording)
        .await
        .expect("recording ends with the elector")
        .expect("recorded");
    assert_eq!(
        notes(&events, &lease).await,
        ["pod-a became leader", "pod-a stopped leading"]
    );
}
