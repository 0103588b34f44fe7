//! What this process knows of each Lease, and when it first saw its current record.
//!
//! Kubernetes never expires a Lease. As in client-go, a contender judges a lease expired
//! when its record has not changed for `leaseDurationSeconds` of the contender's *own*
//! observation time, so skew between node clocks cannot make two holders. Remembering
//! the last version seen also makes steady-state renewals one write and no read, and
//! lets an acquisition after a watch event go straight to the write. While a watch of
//! the Lease is [current](Current), what is known is as fresh as a read would be, but for
//! events still on their way: a take may trust it rather than read the Lease again.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, SystemTime},
};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use tokio::time::Instant;

use crate::record::{Record, system_time};

#[derive(Debug, Default)]
pub(crate) struct Known {
    leases: Mutex<HashMap<String, Seen>>,
    /// Trust the holder's renewTime, within this clock skew, on first sight.
    trust_renew_time: Option<Duration>,
    /// How many current watches each Lease has.
    watched: Mutex<HashMap<String, usize>>,
}

/// A watch of one Lease being current: it listed the Lease and has applied every event
/// since. Dropped when the watch fails (it may miss events until it has listed again)
/// or ends.
#[derive(Debug)]
pub(crate) struct Current {
    known: Arc<Known>,
    name: String,
}

impl Current {
    /// `name`'s watch is current from now on.
    pub fn of(known: &Arc<Known>, name: &str) -> Self {
        let mut watched = known.watched.lock().unwrap_or_else(PoisonError::into_inner);
        *watched.entry(name.to_owned()).or_default() += 1;
        Self {
            known: known.clone(),
            name: name.to_owned(),
        }
    }
}

impl Drop for Current {
    fn drop(&mut self) {
        let mut watched = self
            .known
            .watched
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = watched.get_mut(&self.name) {
            *count -= 1;
            if *count == 0 {
                watched.remove(&self.name);
            }
        }
    }
}

#[derive(Clone, Debug)]
struct Seen {
    lease: Lease,
    /// When this process first saw the current spec.
    observed_at: Instant,
}

fn version(lease: &Lease) -> Option<u64> {
    lease.metadata.resource_version.as_deref()?.parse().ok()
}

impl Known {
    pub fn trusting_renew_time(skew: Duration) -> Self {
        Self {
            trust_renew_time: Some(skew),
            ..Self::default()
        }
    }

    /// Records `lease` as seen now. The observation clock restarts only when the record
    /// (the spec) changed; a version older than the one known is ignored.
    pub fn saw(&self, lease: &Lease) {
        let Some(name) = lease.metadata.name.clone() else {
            return;
        };
        let now = Instant::now();
        let mut leases = self.leases.lock().unwrap_or_else(PoisonError::into_inner);
        let observed_at = match leases.get(&name) {
            Some(seen) if version(&seen.lease) > version(lease) => return,
            Some(seen) if seen.lease.spec == lease.spec => seen.observed_at,
            _ => self.first_sight(lease.spec.as_ref(), now),
        };
        leases.insert(
            name,
            Seen {
                lease: lease.clone(),
                observed_at,
            },
        );
    }

    /// When a record first seen now counts as observed: now, or, when trusting the
    /// holder's renewTime, that time minus the skew allowance.
    fn first_sight(&self, spec: Option<&LeaseSpec>, now: Instant) -> Instant {
        let renewed = spec.and_then(|s| s.renew_time.as_ref()).map(system_time);
        match (self.trust_renew_time, renewed) {
            (Some(skew), Some(renewed)) => {
                let age = SystemTime::now()
                    .duration_since(renewed)
                    .unwrap_or_default();
                now.checked_sub(age.saturating_sub(skew)).unwrap_or(now)
            }
            _ => now,
        }
    }

    pub fn forget(&self, name: &str) {
        self.leases
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name);
    }

    /// Whether a watch of `name` is current, so that what is known of it is what the
    /// apiserver has, but for events on their way (each of which wakes the watch's
    /// waiter).
    pub fn is_watched(&self, name: &str) -> bool {
        self.watched
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(name)
    }

    /// The last version of `name` seen, if any.
    pub fn lease(&self, name: &str) -> Option<Lease> {
        let leases = self.leases.lock().unwrap_or_else(PoisonError::into_inner);
        leases.get(name).map(|seen| seen.lease.clone())
    }

    /// How long until `record` of `name` may be taken, by this process's observation.
    pub fn expires_in(&self, name: &str, record: &Record) -> Duration {
        let leases = self.leases.lock().unwrap_or_else(PoisonError::into_inner);
        let observed_at = leases
            .get(name)
            .map_or_else(Instant::now, |seen| seen.observed_at);
        record.duration.saturating_sub(observed_at.elapsed())
    }
}
