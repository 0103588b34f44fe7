//! The watch of one Lease that a waiter subscribes to.
//!
//! It keeps what this process knows of the Lease ([`Known`]) up to date, says while it
//! is *current* (it listed the Lease and has applied every event since), so that a take
//! may trust that view instead of reading the Lease again, and notifies only the changes
//! that can free the lock or hand it to someone else. A renewal changes nothing but
//! `renewTime`: it moves the observed expiry on (through [`Known`]) and wakes nobody, so
//! a waiter sleeps through renewals until the expiry it observed.

use std::sync::Arc;

use futures::{StreamExt, stream::BoxStream};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use kube::{
    Api,
    runtime::{WatchStreamExt, watcher},
};
use lock_core::Changes;

use crate::known::{Current, Known};

/// Watches `name` (re-listing after errors and `410 Gone`, with backoff), after its
/// first list is in: the look a waiter takes after subscribing then needs no read. If
/// that list fails, the stream is returned anyway and becomes current with the first
/// list that succeeds.
pub(crate) async fn lease_changes(api: Api<Lease>, known: Arc<Known>, name: &str) -> Changes {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut watch = LeaseWatch {
        events: watcher(api, config).default_backoff().boxed(),
        known,
        name: name.to_owned(),
        current: None,
        last: None,
        listed: false,
    };
    while watch.current.is_none() {
        let Some(event) = watch.events.next().await else {
            break;
        };
        let failed = event.is_err();
        watch.apply(event);
        if failed {
            break;
        }
    }
    Box::pin(futures::stream::unfold(watch, |mut watch| async move {
        while let Some(event) = watch.events.next().await {
            if watch.apply(event) {
                return Some(((), watch));
            }
        }
        None
    }))
}

struct LeaseWatch {
    events: BoxStream<'static, watcher::Result<watcher::Event<Lease>>>,
    known: Arc<Known>,
    name: String,
    /// Held while the watch is current: from the end of a list, or the first event of a
    /// watch resumed after an error, until the next error.
    current: Option<Current>,
    /// The spec this watch saw last (`None`: absent), to tell a renewal from a change.
    last: Option<LeaseSpec>,
    /// Whether the list in progress found the Lease.
    listed: bool,
}

impl LeaseWatch {
    /// Applies one event to what this process knows; whether a waiter should look again.
    fn apply(&mut self, event: watcher::Result<watcher::Event<Lease>>) -> bool {
        match event {
            Ok(watcher::Event::Init) => {
                self.current = None;
                self.listed = false;
                false
            }
            Ok(watcher::Event::InitApply(lease)) => {
                self.known.saw(&lease);
                self.last = lease.spec;
                self.listed = true;
                false
            }
            Ok(watcher::Event::InitDone) => {
                if !self.listed {
                    // Deleted while the watch was away: what was known is gone.
                    self.known.forget(&self.name);
                    self.last = None;
                }
                self.current = Some(Current::of(&self.known, &self.name));
                true
            }
            Ok(watcher::Event::Apply(lease)) => {
                self.known.saw(&lease);
                self.resumed();
                let renewal = match (&self.last, &lease.spec) {
                    (Some(last), Some(spec)) => is_renewal(last, spec),
                    _ => false,
                };
                self.last = lease.spec;
                !renewal
            }
            Ok(watcher::Event::Delete(_)) => {
                self.known.forget(&self.name);
                self.resumed();
                self.last = None;
                true
            }
            Err(error) => {
                // The watcher watches again from the last version it saw (or lists again
                // if that is too old): until it delivers, what is known may be old.
                tracing::debug!(%error, lease = %self.name, "lease watch failed; it watches again with backoff");
                self.current = None;
                false
            }
        }
    }

    /// An event outside a list: the watch has applied every event up to it (after an
    /// error, kube's watcher resumes from the last version it saw, missing none).
    fn resumed(&mut self) {
        if self.current.is_none() {
            self.current = Some(Current::of(&self.known, &self.name));
        }
    }
}

/// Whether `spec` differs from `last` in nothing but `renewTime`: the same acquisition,
/// still held by the same holder for the same duration.
fn is_renewal(last: &LeaseSpec, spec: &LeaseSpec) -> bool {
    let unrenewed = |spec: &LeaseSpec| LeaseSpec {
        renew_time: None,
        ..spec.clone()
    };
    unrenewed(last) == unrenewed(spec)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::{
        apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
        jiff::Timestamp,
    };

    use super::*;

    fn watch(known: &Arc<Known>) -> LeaseWatch {
        LeaseWatch {
            events: futures::stream::empty().boxed(),
            known: known.clone(),
            name: "lock".to_owned(),
            current: None,
            last: None,
            listed: false,
        }
    }

    /// A watch whose first list held the Lease, held by `a`.
    fn listed(known: &Arc<Known>) -> LeaseWatch {
        let mut watch = watch(known);
        watch.apply(Ok(watcher::Event::Init));
        watch.apply(Ok(watcher::Event::InitApply(lease(held("a", 10), 1))));
        watch.apply(Ok(watcher::Event::InitDone));
        watch
    }

    fn lease(spec: LeaseSpec, version: u32) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some("lock".to_owned()),
                resource_version: Some(version.to_string()),
                ..ObjectMeta::default()
            },
            spec: Some(spec),
        }
    }

    #[test]
    fn a_watch_is_current_from_a_list_or_a_resumed_event_until_an_error_or_its_end() {
        let known = Arc::new(Known::default());
        let mut watch = watch(&known);
        assert!(!watch.apply(Ok(watcher::Event::Init)));
        assert!(!watch.apply(Ok(watcher::Event::InitApply(lease(held("a", 10), 1)))));
        assert!(!known.is_watched("lock"), "not before the list is in");
        assert!(
            watch.apply(Ok(watcher::Event::InitDone)),
            "a list wakes the waiter"
        );
        assert!(known.is_watched("lock"));
        assert!(!watch.apply(Err(watcher::Error::NoResourceVersion)));
        assert!(!known.is_watched("lock"), "what is known may be old");
        assert!(!watch.apply(Ok(watcher::Event::Apply(lease(held("a", 11), 2)))));
        assert!(
            known.is_watched("lock"),
            "resumed from the last version seen"
        );
        watch.apply(Err(watcher::Error::NoResourceVersion));
        watch.apply(Ok(watcher::Event::Init));
        assert!(!known.is_watched("lock"), "listing again");
        watch.apply(Ok(watcher::Event::InitApply(lease(held("a", 12), 3))));
        watch.apply(Ok(watcher::Event::InitDone));
        assert!(known.is_watched("lock"));
        drop(watch);
        assert!(!known.is_watched("lock"), "nor once it has ended");
    }

    #[test]
    fn renewals_wake_nobody_and_every_other_change_does() {
        let known = Arc::new(Known::default());
        let mut watch = listed(&known);
        assert!(!watch.apply(Ok(watcher::Event::Apply(lease(held("a", 12), 2)))));
        assert_eq!(
            known.lease("lock"),
            Some(lease(held("a", 12), 2)),
            "yet it is known"
        );
        assert!(watch.apply(Ok(watcher::Event::Apply(lease(held("b", 13), 3)))));
        assert!(watch.apply(Ok(watcher::Event::Delete(lease(held("b", 13), 3)))));
        assert_eq!(known.lease("lock"), None);
        assert!(watch.apply(Ok(watcher::Event::Apply(lease(held("c", 14), 4)))));
    }

    #[test]
    fn a_lease_deleted_while_the_watch_was_away_is_forgotten_by_the_next_list() {
        let known = Arc::new(Known::default());
        let mut watch = listed(&known);
        watch.apply(Err(watcher::Error::NoResourceVersion));
        watch.apply(Ok(watcher::Event::Init));
        assert!(watch.apply(Ok(watcher::Event::InitDone)));
        assert_eq!(known.lease("lock"), None);
        assert!(
            known.is_watched("lock"),
            "current: it is known to be absent"
        );
    }

    fn held(holder: &str, renewed_at: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.to_owned()),
            lease_duration_seconds: Some(15),
            acquire_time: Some(MicroTime(Timestamp::from_second(1).expect("a time"))),
            renew_time: Some(MicroTime(
                Timestamp::from_second(renewed_at).expect("a time"),
            )),
            lease_transitions: Some(3),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn a_renewal_changes_only_the_renew_time() {
        assert!(is_renewal(&held("a", 10), &held("a", 12)));
        assert!(is_renewal(&held("a", 10), &held("a", 10)));
    }

    #[test]
    fn a_new_holder_a_release_or_a_new_duration_is_no_renewal() {
        assert!(!is_renewal(&held("a", 10), &held("b", 12)));
        let released = LeaseSpec {
            holder_identity: None,
            ..held("a", 12)
        };
        assert!(!is_renewal(&held("a", 10), &released));
        let longer = LeaseSpec {
            lease_duration_seconds: Some(30),
            ..held("a", 12)
        };
        assert!(!is_renewal(&held("a", 10), &longer));
        let reacquired = LeaseSpec {
            acquire_time: Some(MicroTime(Timestamp::from_second(11).expect("a time"))),
            ..held("a", 12)
        };
        assert!(!is_renewal(&held("a", 10), &reacquired));
        let preferred = LeaseSpec {
            preferred_holder: Some("b".to_owned()),
            ..held("a", 12)
        };
        assert!(!is_renewal(&held("a", 10), &preferred));
    }
}
