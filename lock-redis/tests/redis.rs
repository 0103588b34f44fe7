//! Redis-specific behaviour, on a real redis-server (and a proxy in front of it).

use std::time::Duration;

use lock_core::{
    Error, FencingToken, Lock, LockName, LossReason, Timing, conformance::unique_name,
};
use lock_redis::{RedisBackend, fenced_delete, fenced_set};
use lock_tests::{Proxy, Redis, Served};
use redis::AsyncCommands;
use tokio::time::Instant;

const TTL: Duration = Duration::from_secs(3);

fn lock(backend: RedisBackend, name: &str, identity: &str) -> Lock {
    Lock::builder(backend, name, identity)
        .timing(Timing::new(TTL))
        .build()
        .expect("a valid lock")
}

async fn backend(redis: &Redis) -> RedisBackend {
    RedisBackend::connect(&redis.url()).await.expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_that_lost_all_data_tokens_are_still_larger() {
    let mut redis = Redis::start().await; // no persistence
    let name = unique_name("restart");
    let mut tokens = Vec::new();
    for _ in 0..3 {
        let guard = lock(backend(&redis).await, &name, "a")
            .acquire()
            .await
            .expect("acquire");
        tokens.push(guard.token());
        guard.release().await.expect("release");
    }
    redis.kill();
    redis.restart().await;
    let mut connection = redis.connection().await;
    let keys: Vec<String> = connection.keys("*").await.expect("keys");
    assert!(
        keys.is_empty(),
        "the restart lost every key, the counter too: {keys:?}"
    );

    let after = lock(backend(&redis).await, &name, "a")
        .acquire()
        .await
        .expect("acquire after restart");
    let highest = tokens.iter().max().copied().unwrap_or(FencingToken::new(0));
    assert!(
        after.token() > highest,
        "token {} after {highest}",
        after.token()
    );
    after.release().await.expect("release");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_cut_off_from_redis_reports_lost_before_its_key_expires() {
    let redis = Redis::start().await;
    let proxy = Proxy::to_port(redis.port()).await;
    let name = unique_name("partition");
    let through_proxy = RedisBackend::connect(&format!("redis://127.0.0.1:{}", proxy.port()))
        .await
        .expect("connect");
    let key = through_proxy.lock_key(&LockName::new(&name).expect("valid"));
    let guard = lock(through_proxy, &name, "holder")
        .acquire()
        .await
        .expect("acquire");

    proxy.blackhole();
    assert_eq!(guard.lost().await, LossReason::Expired);
    let mut direct = redis.connection().await;
    let remaining: i64 = direct.pttl(&key).await.expect("pttl");
    assert!(
        remaining > 0,
        "the key must still live on the server when the holder gives up (pttl {remaining})"
    );
    println!("the key outlived the holder's trust by {remaining} ms");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_of_the_wrong_type_at_the_lock_is_a_typed_error_and_left_alone() {
    let redis = Redis::shared().await;
    let backend = backend(redis).await;
    let name = unique_name("wrong-type");
    let key = backend.lock_key(&LockName::new(&name).expect("valid"));
    let mut connection = redis.connection().await;
    let _: () = connection
        .hset(&key, "field", "value")
        .await
        .expect("a foreign hash");

    let lock = lock(backend, &name, "pod");
    for error in [
        lock.try_acquire().await.expect_err("malformed"),
        lock.holder().await.expect_err("malformed"),
    ] {
        match error {
            Error::Malformed { name: at, .. } => assert_eq!(at, name, "names the lock"),
            other => panic!("expected Malformed, got {other:?}"),
        }
    }
    let kind: String = redis::cmd("TYPE")
        .arg(&key)
        .query_async(&mut connection)
        .await
        .expect("type");
    assert_eq!(kind, "hash", "never overwritten");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_value_or_a_non_numeric_token_counter_is_a_typed_error() {
    let redis = Redis::shared().await;
    let backend = backend(redis).await;
    let mut connection = redis.connection().await;

    let foreign = unique_name("foreign");
    let _: () = connection
        .set(
            backend.lock_key(&LockName::new(&foreign).expect("valid")),
            "mine",
        )
        .await
        .expect("set");
    assert!(matches!(
        lock(backend.clone(), &foreign, "pod").try_acquire().await,
        Err(Error::Malformed { .. })
    ));

    let counter = unique_name("counter");
    let counter_key = format!(
        "{}:token",
        backend.lock_key(&LockName::new(&counter).expect("valid"))
    );
    let _: () = connection
        .set(&counter_key, "not-a-number")
        .await
        .expect("set");
    match lock(backend, &counter, "pod").try_acquire().await {
        Err(Error::Malformed { reason, .. }) => {
            assert!(reason.contains("not a number"), "{reason}")
        }
        other => panic!("expected Malformed, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fenced_script_rejects_a_stale_token() {
    let redis = Redis::shared().await;
    let mut connection = redis.connection().await;
    let key = unique_name("store");
    fenced_set(&mut connection, &key, "from 20", FencingToken::new(20))
        .await
        .expect("first write");
    fenced_set(
        &mut connection,
        &key,
        "from 20 again",
        FencingToken::new(20),
    )
    .await
    .expect("same token");
    match fenced_set(&mut connection, &key, "from 9", FencingToken::new(9)).await {
        Err(Error::StaleToken { presented, current }) => {
            assert_eq!((presented.get(), current.get()), (9, 20))
        }
        other => panic!("expected StaleToken, got {other:?}"),
    }
    fenced_set(&mut connection, &key, "from 1000", FencingToken::new(1000))
        .await
        .expect("a newer token");
    let value: String = connection.get(&key).await.expect("get");
    assert_eq!(value, "from 1000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_who_may_not_run_scripts_gets_a_permanent_error_saying_so() {
    let redis = Redis::start().await;
    let mut admin = redis.connection().await;
    let _: () = redis::cmd("ACL")
        .arg(
            &[
                "SETUSER",
                "noscripts",
                "on",
                ">secret",
                "~*",
                "&*",
                "+@all",
                "-@scripting",
            ][..],
        )
        .query_async(&mut admin)
        .await
        .expect("create a user without scripting");
    let url = format!("redis://noscripts:secret@127.0.0.1:{}", redis.port());
    let backend = RedisBackend::connect(&url)
        .await
        .expect("connect as noscripts");
    match lock(backend, &unique_name("acl"), "pod")
        .try_acquire()
        .await
    {
        Err(
            error @ Error::Backend {
                transient: false, ..
            },
        ) => {
            assert!(error.to_string().contains("may not run scripts"), "{error}");
            let source = error
                .client_error::<redis::RedisError>()
                .expect("Redis' error");
            assert_eq!(source.code(), Some("NOPERM"), "{source}");
        }
        other => panic!("expected a permanent backend error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_redis_is_a_transient_error() {
    let mut redis = Redis::start().await;
    let backend = backend(&redis).await;
    redis.kill();
    let started = Instant::now();
    match lock(backend, &unique_name("unreachable"), "pod")
        .try_acquire()
        .await
    {
        Err(error) if error.is_transient() => {
            println!("unreachable after {:?}: {error}", started.elapsed())
        }
        other => panic!("expected a transient error, got {other:?}"),
    }
}

/// A fenced delete is a fenced write: a former holder cannot delete what a newer holder
/// wrote, and once a newer holder deleted the key, the former holder cannot set it
/// again (the mark outlives the key). The recorded mark never goes down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_delete_rejects_a_former_holder_and_keeps_it_from_recreating_the_key() {
    let redis = Redis::shared().await;
    let mut connection = redis.connection().await;
    let key = unique_name("deleted");
    let (stale, newer) = (FencingToken::new(7), FencingToken::new(8));
    fenced_set(&mut connection, &key, "from 7", stale)
        .await
        .expect("first write");
    fenced_set(&mut connection, &key, "from 8", newer)
        .await
        .expect("newer write");
    let stale_delete = fenced_delete(&mut connection, &key, stale).await;
    assert!(
        matches!(stale_delete, Err(Error::StaleToken { presented, current }) if (presented, current) == (stale, newer)),
        "{stale_delete:?}"
    );
    let value: Option<String> = connection.get(&key).await.expect("get");
    assert_eq!(value.as_deref(), Some("from 8"));

    fenced_delete(&mut connection, &key, newer)
        .await
        .expect("the newer holder deletes");
    let recreate = fenced_set(&mut connection, &key, "from 7 again", stale).await;
    assert!(
        matches!(recreate, Err(Error::StaleToken { .. })),
        "{recreate:?}"
    );
    let value: Option<String> = connection.get(&key).await.expect("get");
    assert_eq!(value, None, "the deleted key stays deleted");
    let mark: String = connection
        .get(lock_redis::mark_key(&key).expect("a mark key"))
        .await
        .expect("get the mark");
    assert_eq!(mark.parse::<u64>().ok(), Some(newer.get()));
}

/// `rediss://`: over Redis's own TLS, with a private CA given to `connect_with_tls`, a
/// lock is taken, waited for (pub/sub over TLS too), handed over and fenced; without the
/// CA the connection is refused with an error that says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_works_over_tls_with_a_private_ca() {
    let redis = Redis::start_tls().await;
    let certificates = || redis.tls_certificates().expect("a TLS Redis");
    let url = redis.url();
    assert!(url.starts_with("rediss://"), "{url}");

    // Without the CA the server's certificate is refused (by the client lock-redis
    // builds for a plain URL: the platform's roots). One attempt; lock-redis's own
    // connection manager would try again for seconds before giving up.
    let untrusted = redis::Client::open(url.as_str())
        .expect("a URL")
        .get_multiplexed_async_connection()
        .await;
    let error = untrusted.expect_err("the private CA is not the platform's");
    assert!(
        error.to_string().to_lowercase().contains("certificate"),
        "{error}"
    );

    let name = unique_name("tls-lock");
    let first = lock(
        RedisBackend::connect_with_tls(&url, certificates())
            .await
            .expect("connect over TLS"),
        &name,
        "holder-a",
    );
    let second_backend = RedisBackend::connect_with_tls(&url, certificates())
        .await
        .expect("connect over TLS");
    let mut connection = second_backend.connection();
    let second = lock(second_backend, &name, "holder-b");
    let guard = first.acquire().await.expect("acquired over TLS");
    let waiting =
        tokio::spawn(async move { second.acquire_timeout(Duration::from_secs(10)).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let released = Instant::now();
    let old = guard.token();
    guard.release().await.expect("released");
    let taken = waiting.await.expect("the waiter ran").expect("taken over");
    assert!(
        released.elapsed() < Duration::from_secs(2),
        "woken by the release's notification, not a poll: {:?}",
        released.elapsed()
    );
    let store = unique_name("tls-store");
    fenced_set(&mut connection, &store, "new", taken.token())
        .await
        .expect("the holder's write");
    assert!(matches!(
        fenced_set(&mut connection, &store, "stale", old).await,
        Err(Error::StaleToken { .. })
    ));
    taken.release().await.expect("released");
}
