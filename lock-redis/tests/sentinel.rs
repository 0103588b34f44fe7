//! lock-redis with Redis Sentinel: a lock follows a failover to the promoted replica, and
//! with replica acknowledgements a take counts only once the replica has it.

use std::time::Duration;

use tokio::time::{Instant, timeout};

use lock_core::{Lock, Locks, Timing, conformance::unique_name};
use lock_redis::RedisBackend;
use lock_tests::{RedisSentinel, SERVICE};

async fn backend(redis: &RedisSentinel) -> RedisBackend {
    let urls = redis.sentinel_urls();
    let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
    RedisBackend::connect_sentinel(&urls, SERVICE)
        .await
        .expect("connected through Sentinel")
}

fn lock(backend: RedisBackend, name: &str, identity: &str, ttl: Duration) -> Lock {
    Lock::builder(backend, name, identity)
        .timing(Timing::new(ttl))
        .build()
        .expect("a valid lock")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_follows_a_failover_to_the_promoted_replica() {
    let mut redis = RedisSentinel::start().await;
    // No replica acknowledgement: once the replica is promoted there is no replica left
    // to acknowledge the renewals.
    let backend = backend(&redis).await;
    let name = unique_name("sentinel");
    // Longer than a failover: 0.5 s to declare the primary down, then an election that
    // Sentinel tries again 8 s later if its votes split.
    let ttl = Duration::from_secs(15);
    let guard = lock(backend.clone(), &name, "holder", ttl)
        .acquire()
        .await
        .expect("acquired on the primary");
    // The replica has the take before the primary dies.
    let replicas: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(400)
        .query_async(&mut backend.connection())
        .await
        .expect("WAIT on the primary");
    assert_eq!(replicas, 1, "the replica has the take");
    let old = redis.primary().await;
    let killed = Instant::now();
    redis.kill(old);
    let promoted = redis.failed_over_from(old).await;
    let failed_over = Instant::now();
    assert_ne!(promoted, old);
    // A renewal sent after the failover succeeds: on the promoted replica. Renewals
    // come every TTL / 3, retried sooner while they fail.
    let renewed = timeout(ttl, async {
        while guard.validity().last_renewed() < failed_over && guard.is_valid() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        renewed.is_ok() && guard.is_valid(),
        "renewed on the promoted replica (the failover took {:?}, {:?} ago): lost {:?}",
        failed_over - killed,
        failed_over.elapsed(),
        guard.validity().loss()
    );
    let held = Locks::new(backend.clone())
        .holder(&name)
        .await
        .expect("read on the new primary")
        .expect("still held");
    assert_eq!(held.holder, "holder");
    let token = guard.token();
    guard.release().await.expect("released on the new primary");
    redis.restart(old).await;
    let next = lock(backend, &name, "next", ttl)
        .try_acquire()
        .await
        .expect("free");
    assert!(next.token() > token, "tokens still grow after the failover");
    next.release().await.expect("released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_replica_acks_a_take_the_replica_did_not_get_is_refused_and_undone() {
    let mut redis = RedisSentinel::start().await;
    let backend = backend(&redis)
        .await
        .with_replica_acks(1, Duration::from_secs(1));
    let ttl = Duration::from_secs(15);
    let first = lock(backend.clone(), &unique_name("acked"), "holder", ttl)
        .try_acquire()
        .await
        .expect("the replica acknowledged it");
    first.release().await.expect("released");

    let primary = redis.primary().await;
    redis.kill(1 - primary);
    let name = unique_name("unacked");
    let refused = lock(backend.clone(), &name, "holder", ttl)
        .try_acquire()
        .await
        .expect_err("no replica to acknowledge it");
    let message = refused.to_string();
    assert!(
        message.contains("0 of the 1 replicas"),
        "says why: {message}"
    );
    assert!(refused.is_transient(), "{message}");
    let left = Locks::new(backend).holder(&name).await.expect("read");
    assert!(
        left.is_none(),
        "the unacknowledged take was undone: {left:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_replica_acks_writes_do_not_wait_for_each_others_replicas() {
    // Each acknowledged write costs a round trip to the replica: 0.5 s.
    let redis = RedisSentinel::start_lagging(Duration::from_millis(250)).await;
    let backend = backend(&redis)
        .await
        .with_replica_acks(1, Duration::from_secs(1));
    // Four takes at once on one backend, each bounded by 1.2 s: one after another they
    // would need 2 s.
    let timing =
        Timing::new(Duration::from_secs(15)).with_request_timeout(Duration::from_millis(1200));
    let takes = (0..4).map(|index| {
        let lock = Lock::builder(
            backend.clone(),
            unique_name(&format!("acked-{index}")),
            "holder",
        )
        .timing(timing)
        .build()
        .expect("a valid lock");
        async move { lock.try_acquire().await }
    });
    let guards = futures::future::join_all(takes).await;
    assert!(redis.lags().await, "the replica lagged throughout");
    for guard in guards {
        guard
            .expect("acknowledged within its bound")
            .release()
            .await
            .expect("released");
    }
}
