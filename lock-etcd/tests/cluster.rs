//! lock-etcd on a three-member etcd cluster: a client of every member keeps its lock
//! when the member it talks to dies, and a member cut off from its peers confirms
//! nothing: it never answers from its own, possibly stale, state.

use std::time::Duration;

use etcd_client::Client;
use lock_core::{Lock, Locks, Timing, conformance::unique_name};
use lock_etcd::{EtcdBackend, fenced_put};
use lock_tests::{EtcdCluster, MEMBERS};

/// Longer than an election (about 1 s) and its retries, on a loaded machine too (a
/// leader's kill once cost a 6 s lock its renewals beside the rest of the suite).
const TTL: Duration = Duration::from_secs(10);

fn lock(backend: EtcdBackend, name: &str, identity: &str) -> Lock {
    Lock::builder(backend, name, identity)
        .timing(Timing::new(TTL))
        .build()
        .expect("a valid lock")
}

/// A backend on these members (`EtcdBackend::connect`: a client of each, failing over).
/// One cluster at a time: two of them at once (six members electing leaders) on a
/// loaded two-core machine starve each other's elections.
static ONE_CLUSTER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn connect(urls: Vec<String>) -> EtcdBackend {
    EtcdBackend::connect(urls, None).await.expect("connected")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_on_every_member_survives_each_member_dying_in_turn() {
    let _alone = ONE_CLUSTER.lock().await;
    let mut cluster = EtcdCluster::start().await;
    let backend = connect(cluster.urls()).await;
    let name = unique_name("cluster");
    let guard = lock(backend.clone(), &name, "holder")
        .acquire()
        .await
        .expect("acquired");
    // The leader first: keep-alives go to it.
    let leader = cluster.leader().await;
    let order = (0..MEMBERS).map(|i| (leader + i) % MEMBERS);
    for member in order {
        cluster.kill(member);
        let killed = std::time::Instant::now();
        // Past the TTL with one member down: renewed through the others.
        tokio::select! {
            _ = tokio::time::sleep(TTL + Duration::from_secs(1)) => {}
            reason = guard.lost() => panic!("lost {:?} after killing member {member}: {reason:?}", killed.elapsed()),
        }
        assert!(
            guard.is_valid(),
            "the lock was renewed through the other members while member {member} was down"
        );
        cluster.restart(member).await;
    }
    let token = guard.token();
    guard.release().await.expect("released");
    let again = lock(backend, &name, "next")
        .try_acquire()
        .await
        .expect("free after the release");
    assert!(again.token() > token, "tokens still grow");
    again.release().await.expect("released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_cut_off_from_its_peers_confirms_nothing() {
    let _alone = ONE_CLUSTER.lock().await;
    let cluster = EtcdCluster::start().await;
    let leader = cluster.leader().await;
    // The holder talks only to the leader, which is then cut off: a minority of one.
    let cut_off = leader;
    let majority: Vec<String> = (0..MEMBERS)
        .filter(|&m| m != cut_off)
        .map(|m| cluster.url(m))
        .collect();
    let on_cut_off = connect(vec![cluster.url(cut_off)]).await;
    let on_majority = connect(majority).await;
    let name = unique_name("minority");
    let store = format!("store/{name}");
    let holder = lock(on_cut_off.clone(), &name, "holder")
        .acquire()
        .await
        .expect("acquired");
    let stale = holder.token();
    fenced_put(on_cut_off.client(), &store, "holder", stale)
        .await
        .expect("a fenced write while connected");

    cluster.isolate(cut_off);
    // The holder cannot renew through a member that commits nothing, and fences itself
    // within its validity; the majority's contender takes the lock once it expires.
    let taken = lock(on_majority.clone(), &name, "successor")
        .acquire_timeout(Duration::from_secs(30))
        .await
        .expect("the majority's contender took over");
    assert!(!holder.is_valid(), "the cut-off holder fenced itself");
    assert!(taken.token() > stale);
    fenced_put(on_majority.client(), &store, "successor", taken.token())
        .await
        .expect("the successor writes");

    // Reads through the cut-off member are linearizable: they fail, never answer with
    // the old holder.
    let described = tokio::time::timeout(
        Duration::from_secs(10),
        Locks::new(on_cut_off.clone()).holder(&name),
    )
    .await;
    assert!(
        !matches!(described, Ok(Ok(_))),
        "the cut-off member answered a read: {described:?}"
    );

    cluster.heal();
    // Healed, the old holder's write is rejected by fencing.
    let late = tokio::time::timeout(
        Duration::from_secs(20),
        retry_fenced_put(on_cut_off.client(), &store, stale),
    )
    .await
    .expect("the healed member answers");
    assert!(
        matches!(late, Err(lock_core::Error::StaleToken { .. })),
        "the stale write was rejected: {late:?}"
    );
    taken.release().await.expect("released");
}

/// A fenced write of `token`, retried while the member is not yet back in the cluster.
async fn retry_fenced_put(
    client: &Client,
    key: &str,
    token: lock_core::FencingToken,
) -> lock_core::Result<()> {
    loop {
        match fenced_put(client, key, "late", token).await {
            Err(error) if error.is_transient() => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
}
