//! Checks of elected shards: fair shares that never overlap as members join, leave and
//! are cut off, and a cut-off member that never publishes a shard someone else owns
//! (docs/design.md, Contracts: "Elected shards"; and the second of the "Rules every future
//! and every published state keeps").

use super::*;

/// Owners of each shard at this instant, by validity.
fn owners(members: &[crate::ElectedShards], shards: u32) -> Vec<usize> {
    (0..shards)
        .map(|shard| {
            members
                .iter()
                .filter(|member| member.owns_shard(shard))
                .count()
        })
        .collect()
}

/// Starts a running member `identity` of `group` over `connection`.
fn start_member(
    connection: Arc<dyn Backend>,
    group: &str,
    identity: &str,
    shards: u32,
    max_members: u32,
) -> (crate::ElectedShards, JoinHandle<crate::Result<()>>) {
    let member = crate::ElectedShards::builder(connection, group, identity, shards)
        .timing(timing())
        .max_members(max_members)
        .build()
        .expect("valid shards");
    let running = {
        let member = member.clone();
        tokio::spawn(async move { member.run().await })
    };
    (member, running)
}

/// Waits until every shard has one owner and the shares of `members` (every member
/// expected to share, each with a share of its own) differ by at most one.
async fn balanced(
    members: &[crate::ElectedShards],
    shards: u32,
    event: &str,
    limit: Duration,
) -> Duration {
    let started = Instant::now();
    eventually(
        &format!("every shard is owned and shares are fair after {event}"),
        limit,
        || {
            let counts = owners(members, shards);
            let shares: Vec<usize> = members
                .iter()
                .map(|m| (0..shards).filter(|s| m.owns_shard(*s)).count())
                .collect();
            counts.iter().all(|n| *n == 1)
                && shares.iter().max().unwrap_or(&0) - shares.iter().min().unwrap_or(&0) <= 1
        },
    )
    .await;
    started.elapsed()
}

/// 3 members × 12 shards: no shard ever has two owners; after a graceful join or leave
/// every shard is owned again within 2 s with shares differing by at most one; after a
/// member is cut off, within the lease duration + 2 s.
pub async fn elected_shards_share_fairly_and_never_overlap(backend: impl Backend) {
    const SHARDS: u32 = 12;
    let backend: Arc<dyn Backend> = Arc::new(backend);
    let group = unique_name("shards");
    let start = |identity: &str, connection: Arc<dyn Backend>| {
        start_member(connection, &group, identity, SHARDS, 4)
    };
    let faulty = Faulty::new(backend.clone());
    let (a, run_a) = start("member-a", backend.clone());
    let (b, run_b) = start("member-b", backend.clone());
    let (c, run_c) = start("member-c", Arc::new(faulty.clone()));
    let members = vec![a.clone(), b.clone(), c.clone()];

    // Sample ownership every 10 ms for the whole test.
    let stop = Arc::new(tokio::sync::Notify::new());
    let sampler = {
        let (members, stop) = (members.clone(), stop.clone());
        tokio::spawn(async move {
            let (mut samples, mut most) = (0_usize, 0_usize);
            let mut stopped = pin!(stop.notified());
            loop {
                most = most.max(owners(&members, SHARDS).into_iter().max().unwrap_or(0));
                samples += 1;
                tokio::select! {
                    () = &mut stopped => return (samples, most),
                    () = sleep(Duration::from_millis(10)) => {}
                }
            }
        })
    };

    balanced(
        &members,
        SHARDS,
        "three members joined",
        Duration::from_secs(2) + TTL,
    )
    .await;
    let mut changes = a.owned_changes();
    let current = futures::StreamExt::next(&mut changes)
        .await
        .expect("the current set first");
    assert_eq!(
        current,
        *a.owned().borrow(),
        "the stream starts with the owned set"
    );

    // A graceful leave: b's shards move to a and c.
    b.shutdown();
    join(run_b).await.expect("b leaves cleanly");
    let remaining = vec![a.clone(), c.clone()];
    balanced(&remaining, SHARDS, "a member left", Duration::from_secs(2)).await;

    // A graceful join: a new member takes its share.
    let (d, run_d) = start("member-d", backend.clone());
    let members_now = vec![a.clone(), c.clone(), d.clone()];
    balanced(
        &members_now,
        SHARDS,
        "a member joined",
        Duration::from_secs(2),
    )
    .await;

    // A member cut off from the server: its shards expire and move.
    faulty.partition(true);
    let survivors = vec![a.clone(), d.clone()];
    balanced(
        &survivors,
        SHARDS,
        "a member was cut off",
        TTL + Duration::from_secs(2),
    )
    .await;
    for shard in 0..SHARDS {
        assert!(
            !c.owns_shard(shard),
            "the cut-off member must not own shard {shard}"
        );
    }

    stop.notify_one();
    let (samples, most) = join(sampler).await;
    assert!(samples > 100, "only {samples} samples");
    assert!(most <= 1, "a shard had {most} owners at once");
    for member in [&a, &c, &d] {
        member.shutdown();
    }
    faulty.heal();
    for run in [run_a, run_c, run_d] {
        join(run).await.expect("members stop cleanly");
    }
}

/// Two members share 12 shards; one is cut off from the server (its requests hang, as
/// over a blackholed connection, until they time out). Sampled every 10 ms, the
/// shards it publishes ([`owned`](crate::ElectedShards::owned)) never include one the
/// other member owns with a valid guard: a shard leaves the published set the moment
/// its guard is no longer valid, whatever the network does.
pub async fn a_cut_off_members_published_shards_never_overlap_the_new_owners(
    backend: impl Backend,
) {
    const SHARDS: u32 = 12;
    let backend: Arc<dyn Backend> = Arc::new(backend);
    let group = unique_name("cut-off");
    let faulty = Faulty::new(backend.clone());
    let start = |identity: &str, connection: Arc<dyn Backend>| {
        start_member(connection, &group, identity, SHARDS, 2)
    };
    let (a, run_a) = start("member-a", backend.clone());
    let (b, run_b) = start("member-b", Arc::new(faulty.clone()));
    balanced(
        &[a.clone(), b.clone()],
        SHARDS,
        "two members joined",
        Duration::from_secs(2) + TTL,
    )
    .await;

    faulty.freeze(true);
    let deadline = Instant::now() + TTL + Duration::from_secs(3);
    let mut samples = 0;
    loop {
        // The new owner first: a shard it owns now was owned before b's set is read.
        let owned_by_a: Vec<u32> = (0..SHARDS).filter(|shard| a.owns_shard(*shard)).collect();
        let published = b.owned().borrow().clone();
        let overlap: Vec<u32> = owned_by_a
            .iter()
            .copied()
            .filter(|shard| published.contains(shard))
            .collect();
        assert!(
            overlap.is_empty(),
            "the cut-off member still published shards {overlap:?} that the other member owns"
        );
        samples += 1;
        if (0..SHARDS).all(|shard| a.owns_shard(shard)) && published.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the other member did not take every shard within the TTL + 3 s (it owns {:?}; the cut-off one publishes {published:?})",
            a.owned().borrow()
        );
        sleep(Duration::from_millis(10)).await;
    }
    assert!(samples > 10, "only {samples} samples");
    a.shutdown();
    b.shutdown();
    faulty.heal();
    for run in [run_a, run_b] {
        join(run).await.expect("members stop cleanly");
    }
}

// This file's part of `conformance_tests!`: a test for each check above.
/// The group's change notifications ([`Backend::group_changes`], which the roster of
/// elected shards rides on): a take and a release of a lock under the prefix each
/// notify, within a second.
pub async fn a_take_and_a_release_under_a_prefix_notify_the_group(backend: impl Backend) {
    use futures::StreamExt;
    let backend: Arc<dyn Backend> = Arc::new(backend);
    let group = unique_name("group-changes");
    let mut changes = crate::Locks::new(backend.clone())
        .group_changes(&format!("{group}."))
        .await
        .expect("the backend watches a group")
        .expect("notifications now");
    // What the subscription itself announces (a Kubernetes watch's first list).
    drain_notifications(&mut changes).await;
    let guard = lock(&backend, &format!("{group}.member-0"), "member")
        .acquire()
        .await
        .expect("acquire");
    let notified = tokio::time::timeout(Duration::from_secs(1), changes.next()).await;
    assert!(
        matches!(notified, Ok(Some(()))),
        "a take under the prefix notifies"
    );
    drain_notifications(&mut changes).await;
    guard.release().await.expect("release");
    let notified = tokio::time::timeout(Duration::from_secs(1), changes.next()).await;
    assert!(
        matches!(notified, Ok(Some(()))),
        "a release under the prefix notifies"
    );
}

/// Reads notifications until none came for 300 ms (at most 20).
async fn drain_notifications(changes: &mut crate::backend::Changes) {
    use futures::StreamExt;
    for _ in 0..20 {
        if !matches!(
            tokio::time::timeout(Duration::from_millis(300), changes.next()).await,
            Ok(Some(()))
        ) {
            return;
        }
    }
}

checks! {
    $ __conformance_shards_checks:
    elected_shards_share_fairly_and_never_overlap,
    a_cut_off_members_published_shards_never_overlap_the_new_owners,
    a_take_and_a_release_under_a_prefix_notify_the_group,
}
