//! Hostile data at a lock's key, generated: whatever another writer left there (bytes,
//! JSON that looks like ours, with or without an etcd lease), the lock reports it
//! (held, or malformed) with a typed error, never takes it over, never changes it, and
//! never panics.

use std::time::Duration;

use lock_core::{Lock, LockName, Timing, conformance::unique_name};
use lock_etcd::EtcdBackend;
use lock_tests::{Etcd, Hostile, put_foreign, reported_and_not_taken};
use proptest::prelude::*;

fn foreign_value() -> impl Strategy<Value = Vec<u8>> {
    let json = (
        prop_oneof![
            Just("1".to_owned()),
            "-?[0-9]{1,12}",
            Just("\"1\"".to_owned()),
            Just("null".to_owned())
        ],
        prop_oneof![
            "\"\\PC{0,12}\"",
            Just("7".to_owned()),
            Just("null".to_owned())
        ],
        prop_oneof![
            "[0-9]{1,22}",
            "-[0-9]{1,5}",
            Just("1.5".to_owned()),
            Just("\"3000\"".to_owned())
        ],
    )
        .prop_map(|(version, holder, ttl)| {
            format!(r#"{{"lock-etcd":{version},"holder":{holder},"ttl_ms":{ttl}}}"#).into_bytes()
        });
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..48),
        "[ -~]{0,40}".prop_map(String::into_bytes),
        json,
    ]
}

#[test]
fn any_value_at_the_lock_key_is_reported_and_never_taken_or_changed() {
    let hostile = Hostile::new(64);
    let (_etcd, client) = hostile.block_on(async {
        let etcd = Etcd::start().await;
        let client = etcd.client().await;
        (etcd, client)
    });
    let backend = EtcdBackend::new(client.clone());
    hostile.check((foreign_value(), any::<bool>()), async |(value, leased)| {
        let mut client = client.clone();
        let name = unique_name("foreign");
        let key = backend.key(&LockName::new(&name).expect("valid"));
        put_foreign(&mut client, &key, value.clone(), leased).await;

        let lock = Lock::builder(backend.clone(), name.as_str(), "pod")
            .timing(Timing::new(Duration::from_secs(3)))
            .build()
            .expect("a valid lock");
        let what = format!("{:?} (leased: {leased})", String::from_utf8_lossy(&value));
        reported_and_not_taken(&lock, &what).await?;
        let after = client.get(key.as_str(), None).await.expect("get");
        prop_assert_eq!(
            after.kvs().first().map(|kv| kv.value()),
            Some(value.as_slice())
        );
        Ok(())
    });
}
