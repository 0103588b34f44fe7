//! Hostile input: whatever a user or a configuration file passes as a name, an identity
//! or a timing is either accepted and keeps the lock's invariants, or rejected with a
//! typed error. Never a panic.

use std::time::Duration;

use lock_core::{Error, Lock, LockName, MemoryBackend, Timing};
use proptest::prelude::*;

/// The rule, written out as the specification: a Kubernetes object name (DNS
/// subdomain): 1 to 253 of `a-z 0-9 - .`, each `.`-separated part starting and ending
/// with a letter or digit.
fn is_valid_name(name: &str) -> bool {
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    (1..=253).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name
            .split('.')
            .all(|part| alnum(part.chars().next()) && alnum(part.chars().last()))
}

fn any_name() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-z0-9.-]{0,12}",
        "[a-zA-Z0-9._-]{250,256}",
        "[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?){0,3}",
    ]
}

fn any_duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        (0_u64..100_000).prop_map(Duration::from_millis),
        any::<u64>().prop_map(Duration::from_nanos),
        any::<u64>().prop_map(Duration::from_secs),
        Just(Duration::MAX),
    ]
}

proptest! {
    #[test]
    fn a_name_is_accepted_exactly_when_it_is_a_kubernetes_object_name(name in any_name()) {
        match LockName::new(&name) {
            Ok(accepted) => {
                prop_assert!(is_valid_name(&name), "accepted {name:?}");
                prop_assert_eq!(accepted.as_str(), name.as_str());
            }
            Err(Error::InvalidName { name: reported, reason }) => {
                prop_assert!(!is_valid_name(&name), "rejected {name:?}: {reason}");
                prop_assert_eq!(reported, name);
            }
            Err(other) => prop_assert!(false, "{name:?} gave {other:?}"),
        }
    }

    #[test]
    fn an_identity_is_accepted_exactly_when_it_is_printable_and_not_too_long(
        identity in prop_oneof![any::<String>(), "\\PC{1020,1030}", Just(String::new())]
    ) {
        let valid = !identity.is_empty()
            && identity.len() <= 1024
            && !identity.chars().any(char::is_control);
        match Lock::new(MemoryBackend::new(), "lock", identity.clone()) {
            Ok(lock) => {
                prop_assert!(valid, "accepted {identity:?}");
                prop_assert_eq!(lock.identity(), identity.as_str());
            }
            Err(Error::InvalidIdentity { .. }) => prop_assert!(!valid, "rejected {identity:?}"),
            Err(other) => prop_assert!(false, "{identity:?} gave {other:?}"),
        }
    }

    #[test]
    fn any_timing_is_either_rejected_or_renews_in_time_and_trusts_less_than_the_ttl(
        ttl in any_duration(),
        renew in proptest::option::of(any_duration()),
        drift in proptest::option::of(any_duration()),
        request in proptest::option::of(any_duration()),
        poll in proptest::option::of(any_duration()),
    ) {
        let mut timing = Timing::new(ttl);
        if let Some(renew) = renew {
            timing = timing.with_renew_interval(renew);
        }
        if let Some(drift) = drift {
            timing = timing.with_drift_margin(drift);
        }
        if let Some(request) = request {
            timing = timing.with_request_timeout(request);
        }
        if let Some(poll) = poll {
            timing = timing.with_poll_interval(poll);
        }
        let built = Lock::builder(MemoryBackend::new(), "lock", "me").timing(timing).build();
        match timing.validate() {
            Ok(()) => {
                prop_assert!(built.is_ok());
                prop_assert!(!timing.ttl().is_zero());
                prop_assert!(timing.drift_margin() < timing.ttl());
                prop_assert!(!timing.renew_interval().is_zero());
                prop_assert!(timing.renew_interval() < timing.validity());
                prop_assert!(timing.validity() < timing.ttl());
                prop_assert!(timing.ttl() <= Duration::from_secs(i32::MAX as u64));
            }
            Err(Error::InvalidTiming { .. }) => {
                let rejected = matches!(built, Err(Error::InvalidTiming { .. }));
                prop_assert!(rejected, "validate said no, the builder said {:?}", built.map(drop));
            }
            Err(other) => prop_assert!(false, "{timing:?} gave {other:?}"),
        }
    }
}
