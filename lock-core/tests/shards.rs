//! How elected shards behave when a member is cut off, heals, or stops running, and
//! what a group costs the server. On paused time.

mod support;

use std::{collections::BTreeSet, time::Duration};

use lock_core::{ElectedShards, Faulty, MemoryBackend, Timing};
use support::Recorder;
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

/// A member of a two-member group that polls the group only once an hour.
fn polling_hourly(backend: impl lock_core::Backend, identity: &str) -> ElectedShards {
    ElectedShards::builder(backend, "group", identity, SHARDS)
        .timing(Timing::new(TTL))
        .max_members(2)
        .rebalance_every(Duration::from_secs(3600))
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

/// The roster is driven by the group's change notifications: a settled group sends its
/// renewals, and only a list now and then to see a silent member's locks expire (at the
/// first of the others' expiries), never a read per lock.
#[tokio::test(start_paused = true)]
async fn a_settled_group_costs_its_renewals_and_a_list_per_member_per_expiry() {
    let server = Recorder::new(MemoryBackend::new());
    let members: Vec<ElectedShards> = ["a", "b", "c"]
        .into_iter()
        .map(|identity| {
            ElectedShards::builder(server.clone(), "group", identity, 12)
                .timing(Timing::new(TTL))
                .build()
                .expect("valid shards")
        })
        .collect();
    let running: Vec<_> = members.iter().map(run).collect();
    until("balanced", TTL * 2, || {
        members.iter().all(|m| m.owned().borrow().len() == 4)
    })
    .await;
    sleep(TTL).await;

    let before = |kind| server.sent(kind);
    let (renewals, lists, others) = (
        before("renew"),
        before("list"),
        before("take") + before("describe"),
    );
    let steady = Duration::from_secs(30);
    sleep(steady).await;
    let renewals = server.sent("renew") - renewals;
    let lists = server.sent("list") - lists;
    let others = server.sent("take") + server.sent("describe") - others;
    // 3 members, each renewing 1 slot and 4 shards every renew interval (1 s).
    assert!(renewals >= 3 * 5 * 29, "{renewals} renewals");
    assert_eq!(others, 0, "no takes or per-lock reads once settled");
    // Each member looks when the first of the others' records could have expired: at
    // least TTL - the renew interval (2 s) apart.
    assert!(
        lists <= 3 * 16,
        "{lists} lists in {steady:?}: more than one per member per 2 s"
    );
    assert!(
        (renewals + lists) as f64 <= 1.2 * renewals as f64,
        "{renewals} renewals and {lists} lists"
    );
    for m in &members {
        m.shutdown();
    }
    for r in running {
        r.await.expect("ran").expect("stops cleanly");
    }
}

/// Joins and graceful leaves move shards at once, on the group's notifications: with
/// polling an hour apart, a join and a leave each settle within a second.
#[tokio::test(start_paused = true)]
async fn joins_and_leaves_rebalance_on_notifications_not_on_polls() {
    let server = MemoryBackend::new();
    let (a, b) = (
        polling_hourly(server.clone(), "a"),
        polling_hourly(server, "b"),
    );
    let run_a = run(&a);
    until("a owns every shard", Duration::from_secs(1), || {
        a.owned().borrow().len() == SHARDS as usize
    })
    .await;
    let run_b = run(&b);
    let half = |m: &ElectedShards| m.owned().borrow().len() == SHARDS as usize / 2;
    until("balanced after b joined", Duration::from_secs(1), || {
        half(&a) && half(&b)
    })
    .await;
    b.shutdown();
    run_b.await.expect("b ran").expect("b stops cleanly");
    until(
        "a owns every shard after b left",
        Duration::from_secs(1),
        || a.owned().borrow().len() == SHARDS as usize,
    )
    .await;
    a.shutdown();
    run_a.await.expect("a ran").expect("a stops cleanly");
}

/// A crashed member sends no notification: its shards are taken when its records expire,
/// on the timer the roster set from the others' expiries, not on a poll.
#[tokio::test(start_paused = true)]
async fn a_crashed_members_shards_are_taken_when_its_records_expire() {
    let server = MemoryBackend::new();
    let faulty = Faulty::new(server.clone());
    let (a, b) = (
        polling_hourly(server, "a"),
        polling_hourly(faulty.clone(), "b"),
    );
    let (run_a, run_b) = (run(&a), run(&b));
    let half = |m: &ElectedShards| m.owned().borrow().len() == SHARDS as usize / 2;
    until("balanced", Duration::from_secs(1), || half(&a) && half(&b)).await;
    faulty.partition(true); // b's records are no longer renewed
    let crashed = Instant::now();
    until("a owns every shard", TTL * 2, || {
        a.owned().borrow().len() == SHARDS as usize
    })
    .await;
    assert!(
        crashed.elapsed() <= TTL + Duration::from_millis(500),
        "taken {:?} after the crash, more than the TTL ({TTL:?}) after it",
        crashed.elapsed()
    );
    a.shutdown();
    b.shutdown();
    run_a.await.expect("a ran").expect("a stops cleanly");
    run_b.abort();
}

/// A shard given up is released when the work on it ends, not before: the next owner
/// starts only after it. Work that never ends holds it up to the drain timeout.
#[tokio::test(start_paused = true)]
async fn a_shard_given_up_is_released_when_its_work_ends_bounded_by_the_drain() {
    let server = MemoryBackend::new();
    let drain = Duration::from_secs(10);
    let member = |identity| {
        ElectedShards::builder(server.clone(), "group", identity, SHARDS)
            .timing(Timing::new(TTL))
            .max_members(2)
            .drain(drain)
            .build()
            .expect("valid shards")
    };
    let (a, b) = (member("a"), member("b"));
    let run_a = run(&a);
    until("a owns every shard", TTL, || {
        a.owned().borrow().len() == SHARDS as usize
    })
    .await;
    // a gives up its highest shards when b joins; work is in flight on two of them.
    let (last, before_last) = (SHARDS - 1, SHARDS - 2);
    let work = a.work_on_shard(last).expect("a owns the last shard");
    let endless = a.work_on_shard(before_last).expect("a owns the one before");
    assert_eq!(work.token(), a.token(last).expect("a token"));
    let run_b = run(&b);
    until("a gave the last shard up", TTL, || {
        !a.owned().borrow().contains(&last)
    })
    .await;
    assert!(
        a.work_on_shard(last).is_none(),
        "no new work on a shard given up"
    );
    sleep(Duration::from_secs(2)).await;
    assert!(
        !b.owns_shard(last),
        "b must not own a shard whose work is in flight"
    );
    drop(work);
    let ended = Instant::now();
    until("b owns the last shard", TTL, || b.owns_shard(last)).await;
    assert!(
        ended.elapsed() < Duration::from_millis(500),
        "released {:?} after its work ended",
        ended.elapsed()
    );
    until("b owns the shard whose work never ended", drain, || {
        b.owns_shard(before_last)
    })
    .await;
    drop(endless);
    for m in [&a, &b] {
        m.shutdown();
    }
    run_a.await.expect("a ran").expect("a stops cleanly");
    run_b.await.expect("b ran").expect("b stops cleanly");
}
