//! etcd-specific behaviour, on a real etcd (and a proxy in front of it).

use std::time::Duration;

use etcd_client::{GetOptions, TxnOp};
use lock_core::{
    Error, FencingToken, Lock, LockName, LossReason, Timing, conformance::unique_name,
};
use lock_etcd::{EtcdBackend, fenced_delete, fenced_put, fenced_txn};
use lock_tests::{Etcd, Proxy, Served, put_foreign};
use tokio::time::{Instant, sleep};

const TTL: Duration = Duration::from_secs(3);

fn lock(backend: EtcdBackend, name: &str, identity: &str) -> Lock {
    Lock::builder(backend, name, identity)
        .timing(Timing::new(TTL))
        .build()
        .expect("a valid lock")
}

async fn connect(port: u16) -> etcd_client::Client {
    etcd_client::Client::connect([format!("http://127.0.0.1:{port}")], None)
        .await
        .expect("connect to etcd")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_keep_growing_when_etcd_restarts_on_its_data() {
    let mut etcd = Etcd::start().await;
    let name = unique_name("restart");
    let before = lock(EtcdBackend::new(etcd.client().await), &name, "a")
        .acquire()
        .await
        .expect("acquire");
    let t1 = before.token();
    before.release().await.expect("release");

    etcd.kill();
    etcd.restart().await;
    let after = lock(EtcdBackend::new(etcd.client().await), &name, "a")
        .acquire()
        .await
        .expect("acquire after restart");
    assert!(after.token() > t1, "token {} after {t1}", after.token());
    after.release().await.expect("release");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_cut_off_from_etcd_reports_lost_before_its_key_expires() {
    let etcd = Etcd::start().await;
    let proxy = Proxy::to_port(etcd.port()).await;
    let name = unique_name("partition");
    let holder = lock(
        EtcdBackend::new(connect(proxy.port()).await),
        &name,
        "holder",
    );
    let observer = EtcdBackend::new(etcd.client().await);
    let key = observer.key(&LockName::new(&name).expect("valid"));

    let guard = holder.acquire().await.expect("acquire");
    proxy.blackhole();
    assert_eq!(guard.lost().await, LossReason::Expired);
    let still_there = etcd
        .client()
        .await
        .get(key.as_str(), None)
        .await
        .expect("get")
        .kvs()
        .len();
    assert_eq!(
        still_there, 1,
        "the key must still exist on the server when the holder gives up"
    );

    let lost_at = Instant::now();
    let mut client = etcd.client().await;
    while !client
        .get(key.as_str(), None)
        .await
        .expect("get")
        .kvs()
        .is_empty()
    {
        assert!(lost_at.elapsed() < TTL * 2, "the key never expired");
        sleep(Duration::from_millis(20)).await;
    }
    println!(
        "the key expired {:?} after the holder reported the loss",
        lost_at.elapsed()
    );
}

/// `etcdctl lease revoke` of the holder's lease: the key is gone, and the holder learns
/// it at its next renewal as `Taken`, not as a transient error retried until `Expired`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_etcd_lease_is_not_ours_at_the_next_renewal() {
    let etcd = Etcd::start().await;
    let name = unique_name("revoked");
    let backend = EtcdBackend::new(etcd.client().await);
    let key = backend.key(&LockName::new(&name).expect("valid"));
    let guard = lock(backend, &name, "holder")
        .acquire()
        .await
        .expect("acquire");
    let mut operator = etcd.client().await;
    let held = operator.get(key.as_str(), None).await.expect("get");
    let lease = held.kvs().first().expect("the lock key").lease();
    operator
        .lease_revoke(lease)
        .await
        .expect("revoke the lease");
    let revoked = Instant::now();

    let bound = Timing::new(TTL).renew_interval() + Duration::from_millis(500);
    let reason = tokio::time::timeout(bound, guard.lost())
        .await
        .expect("the holder learns of the revoke at its next renewal");
    assert_eq!(reason, LossReason::Taken);
    assert!(revoked.elapsed() < bound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_acquires_leave_no_keys_or_leases() {
    let etcd = Etcd::start().await;
    let name = unique_name("dropped");
    let backend = EtcdBackend::new(etcd.client().await);
    let holder = lock(backend.clone(), &name, "holder");
    let dropper = lock(backend.clone(), &name, "dropper");

    let guard = holder.acquire().await.expect("acquire");
    for steps in 0..12 {
        let mut acquiring = std::pin::pin!(dropper.acquire());
        for _ in 0..steps {
            let _ = futures::poll!(&mut acquiring);
            tokio::task::yield_now().await;
        }
    }
    guard.release().await.expect("release");
    for steps in 0..12 {
        // On a free lock, dropped at every step, including after success.
        let mut acquiring = std::pin::pin!(dropper.acquire());
        for _ in 0..steps {
            if futures::poll!(&mut acquiring).is_ready() {
                break;
            }
            tokio::task::yield_now().await;
        }
    }

    let mut client = etcd.client().await;
    let started = Instant::now();
    loop {
        let keys = client
            .get("", Some(GetOptions::new().with_all_keys()))
            .await
            .expect("list keys")
            .kvs()
            .len();
        let leases = client.leases().await.expect("list leases").leases().len();
        if keys == 0 && leases == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{keys} keys and {leases} leases left behind"
        );
        sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_transaction_rejects_a_former_holders_write() {
    let etcd = Etcd::shared().await;
    let name = unique_name("fenced");
    let backend = EtcdBackend::new(etcd.client().await);
    let lock_name = LockName::new(&name).expect("valid");

    let former = lock(backend.clone(), &name, "former")
        .acquire()
        .await
        .expect("acquire");
    let stale_token = former.token();
    former.release().await.expect("release");
    let current = lock(backend.clone(), &name, "current")
        .acquire()
        .await
        .expect("acquire");

    let write = |value: &'static str| vec![TxnOp::put(format!("{name}/data"), value, None)];
    match fenced_txn(&backend, &lock_name, stale_token, write("stale")).await {
        Err(Error::StaleToken {
            presented,
            current: now,
        }) => {
            assert_eq!((presented, now), (stale_token, current.token()));
        }
        other => panic!("expected StaleToken, got {other:?}"),
    }
    fenced_txn(&backend, &lock_name, current.token(), write("fresh"))
        .await
        .expect("the holder writes");
    let data = etcd
        .client()
        .await
        .get(format!("{name}/data"), None)
        .await
        .expect("get");
    assert_eq!(data.kvs().first().map(|kv| kv.value()), Some(&b"fresh"[..]));
    current.release().await.expect("release");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_put_compares_and_raises_a_high_water_mark() {
    let mut client = Etcd::shared().await.client().await;
    let key = unique_name("store");
    fenced_put(&client, &key, "from 20", FencingToken::new(20))
        .await
        .expect("first write");
    fenced_put(&client, &key, "from 20 again", FencingToken::new(20))
        .await
        .expect("same token again");
    match fenced_put(&client, &key, "from 9", FencingToken::new(9)).await {
        Err(Error::StaleToken { presented, current }) => {
            assert_eq!((presented.get(), current.get()), (9, 20))
        }
        other => panic!("expected StaleToken, got {other:?}"),
    }
    fenced_put(&client, &key, "from 100", FencingToken::new(100))
        .await
        .expect("a newer token");
    let value = client.get(key.as_str(), None).await.expect("get");
    assert_eq!(
        value.kvs().first().map(|kv| kv.value()),
        Some(&b"from 100"[..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_not_written_by_us_at_the_lock_key_is_reported_and_never_taken() {
    let mut client = Etcd::shared().await.client().await;
    let backend = EtcdBackend::new(client.clone());
    for (case, leased) in [("foreign-value", true), ("no-lease", false)] {
        let name = unique_name(case);
        let key = backend.key(&LockName::new(&name).expect("valid"));
        let value = if leased {
            "not a lock".to_owned()
        } else {
            r#"{"lock-etcd":1,"holder":"x","ttl_ms":3000}"#.to_owned()
        };
        put_foreign(&mut client, &key, value.as_str(), leased).await;
        let lock = lock(backend.clone(), &name, "pod");
        assert!(
            matches!(lock.try_acquire().await, Err(Error::Malformed { .. })),
            "{case}"
        );
        let after = client.get(key.as_str(), None).await.expect("get");
        assert_eq!(
            after.kvs().first().map(|kv| kv.value()),
            Some(value.as_bytes()),
            "{case}: never overwritten"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ttl_below_etcds_minimum_lease_ttl_is_a_typed_error() {
    let backend = EtcdBackend::new(Etcd::shared().await.client().await);
    let lock = Lock::builder(backend, unique_name("short"), "pod")
        .timing(Timing::new(Duration::from_secs(1)))
        .build()
        .expect("valid for lock-core");
    match lock.try_acquire().await {
        Err(Error::Unsupported { reason }) => {
            assert!(reason.contains("minimum lease TTL"), "{reason}")
        }
        other => panic!("expected Unsupported, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_and_password_authentication_works_and_no_credentials_is_a_permanent_error() {
    let etcd = Etcd::start().await;
    let mut admin = etcd.client().await;
    admin
        .user_add("root", "secret", None)
        .await
        .expect("add root");
    admin
        .user_grant_role("root", "root")
        .await
        .expect("grant root");
    admin.auth_enable().await.expect("enable auth");

    let options = etcd_client::ConnectOptions::new().with_user("root", "secret");
    let authenticated = etcd_client::Client::connect([etcd.url()], Some(options))
        .await
        .expect("connect as root");
    let guard = lock(EtcdBackend::new(authenticated), &unique_name("auth"), "pod")
        .acquire()
        .await
        .expect("acquire");
    guard.release().await.expect("release");

    let anonymous = etcd.client().await;
    match lock(
        EtcdBackend::new(anonymous),
        &unique_name("anonymous"),
        "pod",
    )
    .try_acquire()
    .await
    {
        Err(
            error @ Error::Backend {
                transient: false, ..
            },
        ) => {
            // The client's own error is kept: its gRPC status tells why.
            match error.client_error::<etcd_client::Error>() {
                Some(etcd_client::Error::GRpcStatus(status)) => {
                    println!(
                        "without credentials: {:?} {}",
                        status.code(),
                        status.message()
                    )
                }
                other => panic!("expected etcd's gRPC status as the source, got {other:?}"),
            }
        }
        other => panic!("expected a permanent backend error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_etcd_is_a_transient_error() {
    let mut etcd = Etcd::start().await;
    let backend = EtcdBackend::new(etcd.client().await);
    etcd.kill();
    match lock(backend, &unique_name("unreachable"), "pod")
        .try_acquire()
        .await
    {
        Err(
            error @ Error::Backend {
                transient: true, ..
            },
        ) => {
            assert!(
                error.client_error::<etcd_client::Error>().is_some(),
                "{error:?}"
            );
            println!("unreachable: {error}");
        }
        other => panic!("expected a transient backend error, got {other:?}"),
    }
}

/// A fenced delete is a fenced write: a former holder cannot delete what a newer holder
/// wrote, and once a newer holder deleted the key, the former holder cannot create it
/// again (the mark outlives the key). The recorded mark never goes down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_delete_rejects_a_former_holder_and_keeps_it_from_recreating_the_key() {
    let mut client = Etcd::shared().await.client().await;
    let key = unique_name("deleted");
    let (stale, newer) = (FencingToken::new(7), FencingToken::new(8));
    fenced_put(&client, &key, "from 7", stale)
        .await
        .expect("first write");
    fenced_put(&client, &key, "from 8", newer)
        .await
        .expect("newer write");
    let stale_delete = fenced_delete(&client, &key, stale).await;
    assert!(
        matches!(stale_delete, Err(Error::StaleToken { presented, current }) if (presented, current) == (stale, newer)),
        "{stale_delete:?}"
    );
    let value = client.get(key.as_str(), None).await.expect("get");
    assert_eq!(
        value.kvs().first().map(|kv| kv.value()),
        Some(&b"from 8"[..])
    );

    fenced_delete(&client, &key, newer)
        .await
        .expect("the newer holder deletes");
    let recreate = fenced_put(&client, &key, "from 7 again", stale).await;
    assert!(
        matches!(recreate, Err(Error::StaleToken { .. })),
        "{recreate:?}"
    );
    let value = client.get(key.as_str(), None).await.expect("get");
    assert!(value.kvs().is_empty(), "the deleted key stays deleted");
}
