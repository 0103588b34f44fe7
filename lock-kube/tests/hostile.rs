//! Hostile Leases, generated: whatever another writer left in a Lease's spec (any
//! holder, any or no duration, times from year 1 to 9999 or none, any transitions),
//! the lock reports a held Lease (held, or malformed) with a typed error and never
//! takes it over or changes it; a Lease without a holder is free to take. Never a
//! panic.

use std::{cell::Cell, time::Duration};

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::MicroTime,
    jiff::Timestamp,
};
use kube::{
    Api,
    api::{ObjectMeta, PostParams},
};
use lock_core::{Error, Lock, Timing, conformance::unique_name};
use lock_kube::KubeBackend;
use lock_tests::{Hostile, Kube};
use proptest::prelude::*;

fn any_time() -> impl Strategy<Value = Option<MicroTime>> {
    // Year 1 to year 9999, in seconds since the epoch.
    let seconds = -62_135_596_800_i64..253_402_300_799;
    proptest::option::of((seconds, 0_i32..1_000_000).prop_filter_map(
        "a representable time",
        |(second, micros)| {
            let time = Timestamp::from_second(second).ok()?;
            let micros = k8s_openapi::jiff::SignedDuration::from_micros(micros.into());
            Some(MicroTime(time.checked_add(micros).ok()?))
        },
    ))
}

fn any_spec() -> impl Strategy<Value = LeaseSpec> {
    (
        proptest::option::weighted(
            0.9,
            prop_oneof![1 => Just(String::new()), 4 => "\\PC{1,24}"],
        ),
        proptest::option::weighted(0.9, prop_oneof![1_i32..3600, any::<i32>(), -2_i32..20]),
        any_time(),
        any_time(),
        proptest::option::of(prop_oneof![any::<i32>(), Just(i32::MAX), -2_i32..5]),
    )
        .prop_map(
            |(holder, duration, acquire, renew, transitions)| LeaseSpec {
                holder_identity: holder,
                lease_duration_seconds: duration,
                acquire_time: acquire,
                renew_time: renew,
                lease_transitions: transitions,
                ..LeaseSpec::default()
            },
        )
}

#[test]
fn a_held_lease_of_any_shape_is_reported_and_never_taken_and_a_free_one_is_taken() {
    let hostile = Hostile::new(64);
    let (kube, client) = hostile.block_on(async {
        let kube = Kube::start().await;
        let client = kube.admin().await;
        (kube, client)
    });
    let leases: Api<Lease> = Api::namespaced(client.clone(), kube.namespace());
    let backend = KubeBackend::new(client, kube.namespace());
    let (held_seen, free_seen, refused) = (Cell::new(0), Cell::new(0), Cell::new(0));
    hostile.check(any_spec(), async |spec| {
        let name = unique_name("hostile");
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(spec.clone()),
        };
        let Ok(created) = leases.create(&PostParams::default(), &lease).await else {
            refused.set(refused.get() + 1); // the apiserver's own validation
            return Ok(());
        };
        let held = spec
            .holder_identity
            .as_deref()
            .is_some_and(|h| !h.is_empty());
        let seen = if held { &held_seen } else { &free_seen };
        seen.set(seen.get() + 1);
        let lock = Lock::builder(backend.clone(), name.as_str(), "pod")
            .timing(Timing::new(Duration::from_secs(3)))
            .build()
            .expect("a valid lock");
        let taken = lock.try_acquire().await;
        let described = lock.holder().await;
        match taken {
            Err(Error::Held { .. } | Error::Malformed { .. }) => {
                let after = leases.get(&name).await.expect("the lease");
                prop_assert_eq!(
                    after.metadata.resource_version,
                    created.metadata.resource_version,
                    "never changed"
                );
                prop_assert!(
                    matches!(described, Ok(_) | Err(Error::Malformed { .. })),
                    "{spec:?} described as {described:?}"
                );
            }
            Ok(guard) => {
                prop_assert!(!held, "{spec:?} was held, yet taken");
                guard.release().await.expect("release");
            }
            Err(other) => prop_assert!(false, "{spec:?} gave {other:?}"),
        }
        Ok(())
    });
    println!(
        "held Leases: {}, free Leases: {}, refused by the apiserver: {}",
        held_seen.get(),
        free_seen.get(),
        refused.get()
    );
    assert!(
        held_seen.get() > 0 && free_seen.get() > 0,
        "both kinds were tried"
    );
}
