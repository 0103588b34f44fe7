//! Latency and throughput of the etcd lock on a real etcd on loopback (the harness
//! starts one), side by side with etcd's own Lock RPC. Prints Markdown tables.
//!
//! Run: `cargo bench -p lock-etcd --bench etcd`

use std::time::Duration;

use etcd_client::LockOptions;
use lock_core::{Lock, Timing};
use lock_etcd::EtcdBackend;
use lock_tests::{
    Etcd,
    bench::{
        Cycle, Sample, acquire_release, graceful_handover, lock_cycle, throughput, throughput_table,
    },
};

const TTL: Duration = Duration::from_secs(10);
const CONTENDERS: usize = 8;
const THROUGHPUT_RUN: Duration = Duration::from_secs(5);

async fn lock(etcd: &Etcd, name: &str, identity: &str) -> Lock {
    let backend = EtcdBackend::new(etcd.client().await);
    Lock::builder(backend, name, identity)
        .timing(Timing::new(TTL))
        .build()
        .expect("a valid lock")
}

fn fresh_name(scenario: &str) -> String {
    lock_core::conformance::unique_name(scenario)
}

/// A contender on etcd's own Lock RPC, with an etcd lease of its own.
async fn etcd_lock_cycle(etcd: &Etcd, name: &str) -> Cycle {
    let mut client = etcd.client().await;
    let lease = client.lease_grant(60, None).await.expect("grant").id();
    let name = name.to_owned();
    Box::new(move || {
        let (mut client, name) = (client.clone(), name.clone());
        Box::pin(async move {
            let locked = client
                .lock(name.as_str(), Some(LockOptions::new().with_lease(lease)))
                .await
                .expect("lock");
            client.unlock(locked.key()).await.expect("unlock");
        })
    })
}

#[tokio::main]
async fn main() {
    let etcd = Etcd::start().await;
    println!(
        "lock-etcd on etcd 3.4 (Debian's etcd-server) on 127.0.0.1, {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!();
    Sample::header("note");
    let (acquires, releases) =
        acquire_release(&lock(&etcd, &fresh_name("uncontended"), "bench").await, 100).await;
    acquires.row("acquire, uncontended", "lease grant + txn");
    releases.row("release", "txn + lease revoke");
    let name = fresh_name("handover");
    let (holder, follower) = (
        lock(&etcd, &name, "holder").await,
        lock(&etcd, &name, "follower").await,
    );
    graceful_handover(&holder, &follower, 50)
        .await
        .row("graceful hand-over", "watch");
    println!();

    let name = fresh_name("throughput");
    let mut ours = Vec::new();
    for i in 0..CONTENDERS {
        ours.push(lock_cycle(
            lock(&etcd, &name, &format!("contender-{i}")).await,
        ));
    }
    let ours = throughput(ours, THROUGHPUT_RUN).await;
    let name = fresh_name("etcd-lock");
    let mut theirs = Vec::new();
    for _ in 0..CONTENDERS {
        theirs.push(etcd_lock_cycle(&etcd, &name).await);
    }
    let theirs = throughput(theirs, THROUGHPUT_RUN).await;
    throughput_table(
        CONTENDERS,
        THROUGHPUT_RUN,
        ("lock-etcd (with fencing tokens)", ours),
        ("etcd Lock RPC", theirs),
    );
}
