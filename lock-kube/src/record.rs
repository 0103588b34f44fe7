//! The lock record inside a Lease, as client-go's `LeaseLock` reads and writes it.

use std::time::{Duration, SystemTime};

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::MicroTime,
    jiff::Timestamp,
};
use lock_core::{Error, FencingToken};

/// The lock record of a Lease, checked: a holder always comes with a positive duration
/// and a renew time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    /// The holder, `None` when the lease is free (never taken, or released).
    pub holder: Option<String>,
    pub duration: Duration,
    pub acquire_time: Option<MicroTime>,
    pub renew_time: Option<MicroTime>,
    pub transitions: i32,
}

impl Record {
    /// Reads the record of `lease`, or says why it cannot be trusted: data written by
    /// something else is reported, never taken over.
    pub fn read(lease: &Lease) -> Result<Self, Error> {
        let name = lease.metadata.name.clone().unwrap_or_default();
        let malformed = |reason: &str| Error::Malformed {
            name: name.clone(),
            reason: reason.to_owned(),
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.filter(|holder| !holder.is_empty());
        let transitions = spec.lease_transitions.unwrap_or(0);
        if transitions < 0 {
            return Err(malformed("leaseTransitions is negative"));
        }
        let Some(holder) = holder else {
            return Ok(Self {
                holder: None,
                duration: Duration::from_secs(
                    spec.lease_duration_seconds
                        .unwrap_or(1)
                        .max(1)
                        .unsigned_abs()
                        .into(),
                ),
                acquire_time: spec.acquire_time,
                renew_time: spec.renew_time,
                transitions,
            });
        };
        let seconds = match spec.lease_duration_seconds {
            Some(seconds) if seconds > 0 => seconds,
            Some(_) => {
                return Err(malformed(
                    "the lease has a holder but leaseDurationSeconds is not positive",
                ));
            }
            None => {
                return Err(malformed(
                    "the lease has a holder but no leaseDurationSeconds",
                ));
            }
        };
        if spec.renew_time.is_none() {
            return Err(malformed("the lease has a holder but no renewTime"));
        }
        Ok(Self {
            holder: Some(holder),
            duration: Duration::from_secs(seconds.unsigned_abs().into()),
            acquire_time: spec.acquire_time,
            renew_time: spec.renew_time,
            transitions,
        })
    }

    /// Whether this record is the acquisition `holder` made at `acquire_time`.
    pub fn is_acquisition(&self, holder: &str, acquire_time: &MicroTime) -> bool {
        self.holder.as_deref() == Some(holder) && self.acquire_time.as_ref() == Some(acquire_time)
    }
}

/// Whom coordinated leader election prefers over `holder`: `preferredHolder` when it
/// is set with a `strategy` and names someone else.
pub(crate) fn preferred_other(spec: &LeaseSpec, holder: &str) -> Option<String> {
    spec.strategy.as_ref()?;
    spec.preferred_holder
        .clone()
        .filter(|preferred| !preferred.is_empty() && preferred != holder)
}

/// The spec of a new acquisition by `holder`, as client-go writes it: a transition more
/// than the record it replaces (`previous`, `None` for a new Lease). Fields the lock
/// record does not own (coordinated election's `strategy` and `preferredHolder`) are
/// kept as found.
pub(crate) fn acquired(
    holder: &str,
    ttl: Duration,
    previous: Option<&LeaseSpec>,
    now: MicroTime,
) -> LeaseSpec {
    let transitions = previous.map_or(0, |spec| {
        spec.lease_transitions.unwrap_or(0).saturating_add(1)
    });
    LeaseSpec {
        holder_identity: Some(holder.to_owned()),
        lease_duration_seconds: Some(whole_seconds(ttl)),
        acquire_time: Some(now.clone()),
        renew_time: Some(now),
        lease_transitions: Some(transitions),
        ..previous.cloned().unwrap_or_default()
    }
}

/// `spec` renewed at `now`, with our lease duration asserted again: if another writer
/// lowered it, contenders would take over before the holder stops trusting its lock.
pub(crate) fn renewed(mut spec: LeaseSpec, ttl: Duration, now: MicroTime) -> LeaseSpec {
    spec.renew_time = Some(now);
    spec.lease_duration_seconds = Some(whole_seconds(ttl));
    spec
}

/// The spec of a released lease, as client-go's ReleaseOnCancel writes it: no holder,
/// a one-second duration, the transitions and the fields the record does not own kept.
pub(crate) fn released(spec: LeaseSpec, now: MicroTime) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(String::new()),
        lease_duration_seconds: Some(1),
        acquire_time: Some(now.clone()),
        renew_time: Some(now),
        ..spec
    }
}

/// Lease durations are whole seconds: round up, so that others never wait less than
/// the holder trusts its lock.
pub(crate) fn whole_seconds(ttl: Duration) -> i32 {
    let seconds = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    i32::try_from(seconds.max(1)).unwrap_or(i32::MAX)
}

/// Now, at the microsecond precision the apiserver stores, so that what we write and
/// what we remember compare equal.
pub(crate) fn now() -> MicroTime {
    let now = Timestamp::now();
    MicroTime(Timestamp::from_microsecond(now.as_microsecond()).unwrap_or(now))
}

/// A MicroTime as a SystemTime.
pub(crate) fn system_time(time: &MicroTime) -> SystemTime {
    SystemTime::from(time.0)
}

/// The fencing token of the write that produced `lease`: its resourceVersion.
pub(crate) fn token(lease: &Lease) -> Result<FencingToken, Error> {
    let version = lease
        .metadata
        .resource_version
        .as_deref()
        .unwrap_or_default();
    version.parse::<u64>().map(FencingToken::new).map_err(|_| Error::Unsupported {
        reason: format!(
            "the apiserver's resourceVersion {version:?} is not a number, so it cannot be a fencing token \
             (every etcd-backed apiserver uses numbers)"
        ),
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn lease(spec: LeaseSpec) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some("l".into()),
                resource_version: Some("42".into()),
                ..ObjectMeta::default()
            },
            spec: Some(spec),
        }
    }

    #[test]
    fn an_empty_or_released_lease_is_free() {
        for spec in [LeaseSpec::default(), released(LeaseSpec::default(), now())] {
            assert_eq!(Record::read(&lease(spec)).expect("valid").holder, None);
        }
        assert_eq!(
            Record::read(&Lease::default())
                .expect("no spec at all")
                .holder,
            None
        );
    }

    #[test]
    fn a_holder_without_duration_or_renew_time_is_malformed_not_free() {
        let held = acquired("a", Duration::from_secs(15), None, now());
        let mut no_duration = held.clone();
        no_duration.lease_duration_seconds = None;
        let mut zero_duration = held.clone();
        zero_duration.lease_duration_seconds = Some(0);
        let mut no_renew = held.clone();
        no_renew.renew_time = None;
        let mut negative_transitions = held;
        negative_transitions.lease_transitions = Some(-1);
        for spec in [no_duration, zero_duration, no_renew, negative_transitions] {
            assert!(matches!(
                Record::read(&lease(spec)),
                Err(Error::Malformed { .. })
            ));
        }
    }

    #[test]
    fn fields_the_record_does_not_own_are_kept_by_every_write() {
        let coordinated = LeaseSpec {
            holder_identity: Some("old".into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(now()),
            strategy: Some("OldestEmulationVersion".into()),
            preferred_holder: Some("someone".into()),
            ..LeaseSpec::default()
        };
        let taken = acquired("pod-a", Duration::from_secs(3), Some(&coordinated), now());
        let renewed = renewed(taken.clone(), Duration::from_secs(3), now());
        let free = released(renewed.clone(), now());
        for spec in [taken, renewed, free] {
            assert_eq!(spec.strategy.as_deref(), Some("OldestEmulationVersion"));
            assert_eq!(spec.preferred_holder.as_deref(), Some("someone"));
        }
    }

    #[test]
    fn records_are_written_as_client_go_writes_them() {
        let at = now();
        let before = LeaseSpec {
            lease_transitions: Some(4),
            ..LeaseSpec::default()
        };
        let taken = acquired(
            "pod-a",
            Duration::from_millis(2500),
            Some(&before),
            at.clone(),
        );
        assert_eq!(taken.holder_identity.as_deref(), Some("pod-a"));
        assert_eq!(
            taken.lease_duration_seconds,
            Some(3),
            "rounded up to whole seconds"
        );
        assert_eq!(
            (taken.acquire_time.as_ref(), taken.renew_time.as_ref()),
            (Some(&at), Some(&at))
        );
        assert_eq!(taken.lease_transitions, Some(5));
        assert_eq!(
            acquired("a", Duration::from_secs(1), None, now()).lease_transitions,
            Some(0)
        );

        let free = released(taken, now());
        assert_eq!(free.holder_identity.as_deref(), Some(""));
        assert_eq!(free.lease_duration_seconds, Some(1));
        assert_eq!(
            free.lease_transitions,
            Some(5),
            "release keeps the transitions"
        );
    }

    #[test]
    fn micro_times_have_six_fractional_digits() {
        let json = serde_json::to_string(&now()).expect("serializes");
        let fraction = json
            .trim_matches('"')
            .rsplit('.')
            .next()
            .expect("a fraction");
        assert_eq!(fraction.len(), "123456Z".len(), "{json}");
    }

    #[test]
    fn the_token_is_the_numeric_resource_version() {
        assert_eq!(
            token(&lease(LeaseSpec::default())).expect("numeric"),
            FencingToken::new(42)
        );
        let mut odd = lease(LeaseSpec::default());
        odd.metadata.resource_version = Some("abc".into());
        assert!(matches!(token(&odd), Err(Error::Unsupported { .. })));
    }
}
