//! Hostile data at a lock's keys, generated: whatever another writer left there, the
//! lock reports it (held, or malformed) with a typed error, never takes it over, never
//! changes it, and never panics. A token counter it cannot count on is reported, never
//! used.

use std::time::Duration;

use lock_core::{Error, Lock, LockName, Timing, conformance::unique_name};
use lock_redis::RedisBackend;
use lock_tests::{Hostile, Redis, reported_and_not_taken};
use proptest::prelude::*;
use redis::AsyncCommands;

fn lock(backend: &RedisBackend, name: &str) -> Lock {
    Lock::builder(backend.clone(), name, "pod")
        .timing(Timing::new(Duration::from_secs(3)))
        .build()
        .expect("a valid lock")
}

fn foreign_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..48),
        "[ -~]{0,40}".prop_map(String::into_bytes),
        "v1:[0-9]{0,22}:[0-9-]{0,22}:\\PC{0,12}".prop_map(String::into_bytes),
        "v1:[0-9a-z:]{0,30}".prop_map(String::into_bytes),
    ]
}

#[test]
fn any_value_at_the_lock_key_is_reported_and_never_taken_or_changed() {
    let hostile = Hostile::new(64);
    let (redis, backend) = hostile.block_on(async {
        let redis = Redis::start().await;
        let backend = RedisBackend::connect(&redis.url()).await.expect("connect");
        (redis, backend)
    });
    let strategy = (foreign_value(), any::<bool>());
    hostile.check(strategy, async |(value, expires)| {
        let name = unique_name("foreign");
        let key = backend.lock_key(&LockName::new(&name).expect("valid"));
        let mut connection = redis.connection().await;
        let mut set = redis::cmd("SET");
        set.arg(&key).arg(&value);
        if expires {
            set.arg("PX").arg(60_000);
        }
        let () = set.query_async(&mut connection).await.expect("set");

        let what = format!("{:?}", String::from_utf8_lossy(&value));
        reported_and_not_taken(&lock(&backend, &name), &what).await?;
        let after: Vec<u8> = connection.get(&key).await.expect("get");
        prop_assert_eq!(after, value, "never changed");
        Ok(())
    });
}

/// What the scripts can count on: digits only, below 2^53.
fn countable(counter: &str) -> Option<u64> {
    let digits = !counter.is_empty() && counter.bytes().all(|b| b.is_ascii_digit());
    let value = counter.trim_start_matches('0');
    let value = if value.is_empty() { "0" } else { value };
    (digits && value.len() <= 16)
        .then(|| value.parse::<u64>().ok())
        .flatten()
        .filter(|n| *n < (1 << 53) - 1)
}

#[test]
fn a_token_counter_is_used_only_if_it_counts_and_then_the_token_is_larger() {
    let hostile = Hostile::new(64);
    let (redis, backend) = hostile.block_on(async {
        let redis = Redis::start().await;
        let backend = RedisBackend::connect(&redis.url()).await.expect("connect");
        (redis, backend)
    });
    let strategy = prop_oneof![
        any::<u64>().prop_map(|n| n.to_string()),
        (0_u64..(1 << 54)).prop_map(|n| n.to_string()),
        "[0-9]{0,20}",
        "[ -~]{0,24}",
        Just("inf".to_owned()),
        Just("nan".to_owned()),
        Just("1e300".to_owned()),
        Just("-5".to_owned()),
        Just("0x10".to_owned()),
        Just(" 12".to_owned()),
        Just("9007199254740993".to_owned()),
    ];
    hostile.check(strategy, async |counter| {
        let name = unique_name("counter");
        let key = backend.lock_key(&LockName::new(&name).expect("valid"));
        let mut connection = redis.connection().await;
        let () = connection
            .set(format!("{key}:token"), &counter)
            .await
            .expect("set");
        match (
            lock(&backend, &name).try_acquire().await,
            countable(&counter),
        ) {
            (Ok(guard), Some(before)) => {
                prop_assert!(guard.token().get() > before, "{counter:?}");
                guard.release().await.expect("release");
            }
            (Err(Error::Malformed { .. }), None) => {
                let free: Option<String> = connection.get(&key).await.expect("get");
                prop_assert_eq!(free, None, "nothing taken on a malformed counter");
            }
            (other, countable) => prop_assert!(
                false,
                "counter {counter:?} (countable: {countable:?}) gave {:?}",
                other.map(|guard| guard.token())
            ),
        }
        Ok(())
    });
}

/// Regression: Lua counts in doubles, so a counter of 2^53 + 1 read as 2^53, plus one,
/// rounded back to 2^53: a token below the counter. Such a counter is now reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counter_beyond_two_to_the_53_is_reported_because_lua_would_repeat_tokens() {
    let redis = Redis::shared().await;
    let backend = RedisBackend::connect(&redis.url()).await.expect("connect");
    let name = unique_name("beyond-2-53");
    let key = backend.lock_key(&LockName::new(&name).expect("valid"));
    let mut connection = redis.connection().await;
    let () = connection
        .set(format!("{key}:token"), "9007199254740993")
        .await
        .expect("set");
    match lock(&backend, &name).try_acquire().await {
        Err(Error::Malformed { reason, .. }) => assert!(reason.contains("below 2^53"), "{reason}"),
        other => panic!(
            "expected Malformed, got {:?}",
            other.map(|guard| guard.token())
        ),
    }
}

/// Regression: bytes that are not UTF-8 at the lock's key gave an untyped backend
/// error; they are another writer's data, so the error is `Malformed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_that_are_not_utf8_at_the_lock_key_are_reported_as_malformed() {
    let redis = Redis::shared().await;
    let backend = RedisBackend::connect(&redis.url()).await.expect("connect");
    let name = unique_name("not-utf8");
    let key = backend.lock_key(&LockName::new(&name).expect("valid"));
    let mut connection = redis.connection().await;
    let () = connection.set(&key, &[0x80_u8][..]).await.expect("set");
    let lock = lock(&backend, &name);
    assert!(matches!(
        lock.try_acquire().await,
        Err(Error::Malformed { .. })
    ));
    assert!(matches!(lock.holder().await, Err(Error::Malformed { .. })));
}
