//! How elected shards behave when a member is cut off, heals, or stops running. On
//! paused time.

use std::{collections::BTreeSet, time::Duration};

use lock_core::{ElectedShards, Faulty, MemoryBackend, Timing};
use tokio::time::{Instant, sleep};

const TTL: Duration = Duration::from_secs(3);
const SHARDS: u32 = 6;

fn member(backend: impl lock_core::Backend, identity: &str) -> ElectedShards {
    ElectedShards::builder(backend, "group", identity, SHARDS)
        .timing(Timing::new(TTL))
        .max_members(2)
        .build()
        .expect("valid shards")
}

fn run(member: &ElectedShards) -> tokio::task::JoinHandle<lock_core::Result<()>> {
    let member = member.clone();
    tokio::spawn(async move { member.run().await })
}

async fn until(what: &str, limit: Duration, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "not {what} within {limit:?}");
        sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_member_cut_off_past_its_ttl_rejoins_after_the_partition_heals() {
    let server = MemoryBackend::new();
    let faulty = Faulty::new(server.clone());
    let (a, b) = (member(server, "a"), member(faulty.clone(), "b"));
    let (run_a, run_b) = (run(&a), run(&b));
    let half = |m: &ElectedShards| m.owned().borrow().len() == SHARDS as usize / 2;
    until("balanced", TTL, || half(&a) && half(&b)).await;

    faulty.partition(true);
    until("a owns everything", TTL * 2, || {
        a.owned().borrow().len() == SHARDS as usize
    })
    .await;
    assert!(b.owned().borrow().is_empty());
    sleep(TTL).await;
    assert!(
        !run_b.is_finished(),
        "a member that lost its slot does not leave for good"
    );

    faulty.heal();
    until("balanced again after the heal", TTL * 2, || {
        half(&a) && half(&b)
    })
    .await;
    for m in [&a, &b] {
        m.shutdown();
    }
    run_a.await.expect("a ran").expect("a stops cleanly");
    run_b.await.expect("b ran").expect("b stops cleanly");
}

#[tokio::test(start_paused = true)]
async fn dropping_the_run_future_gives_up_every_shard_at_once() {
    let server = MemoryBackend::new();
    let (a, b) = (member(server.clone(), "a"), member(server, "b"));
    let run_a = run(&a);
    until("a owns everything", TTL, || {
        a.owned().borrow().len() == SHARDS as usize
    })
    .await;
    let run_b = run(&b);

    run_a.abort();
    let _ = run_a.await;
    assert_eq!(
        *a.owned().borrow(),
        BTreeSet::new(),
        "nothing is owned once run is gone"
    );
    assert!((0..SHARDS).all(|shard| !a.owns_shard(shard)));
    // Released in the background, so b takes them without waiting for the TTL.
    until("b owns everything", TTL / 2, || {
        b.owned().borrow().len() == SHARDS as usize
    })
    .await;
    b.shutdown();
    run_b.await.expect("b ran").expect("b stops cleanly");
}
