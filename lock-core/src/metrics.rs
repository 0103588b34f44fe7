//! Metrics, through the `metrics` facade: the application installs the exporter it
//! wants (Prometheus, StatsD, ...); without one, recording costs next to nothing.
//!
//! | metric | kind | labels | meaning |
//! |---|---|---|---|
//! | `lock_acquisitions_total` | counter | `lock` | locks taken |
//! | `lock_acquire_wait_seconds` | histogram | `lock` | time `acquire` waited |
//! | `lock_renew_latency_seconds` | histogram | `lock` | successful renewal round trips |
//! | `lock_renew_failures_total` | counter | `lock`, `kind` (`error`, `timeout`) | renewals retried |
//! | `lock_lost_total` | counter | `lock`, `reason` (`expired`, `taken`, `failed`) | guards that stopped being valid before release |
//! | `leader_is_leading` | gauge | `lock`, `identity` | 1 while this replica leads, else 0 |
//! | `leader_transitions_total` | counter | `lock`, `identity` | times this replica became leader |
//! | `shards_owned` | gauge | `group`, `identity` | shards this member owns |

use std::time::Duration;

use metrics::{counter, gauge, histogram};

use crate::{LockName, LossReason};

pub(crate) fn acquired(lock: &LockName) {
    counter!("lock_acquisitions_total", "lock" => lock.to_string()).increment(1);
}

pub(crate) fn waited(lock: &LockName, waited: Duration) {
    histogram!("lock_acquire_wait_seconds", "lock" => lock.to_string())
        .record(waited.as_secs_f64());
}

pub(crate) fn renewed(lock: &LockName, latency: Duration) {
    histogram!("lock_renew_latency_seconds", "lock" => lock.to_string())
        .record(latency.as_secs_f64());
}

pub(crate) fn renew_failed(lock: &LockName, kind: &'static str) {
    counter!("lock_renew_failures_total", "lock" => lock.to_string(), "kind" => kind).increment(1);
}

pub(crate) fn lost(lock: &LockName, reason: &LossReason) {
    let reason = match reason {
        LossReason::Expired => "expired",
        LossReason::Taken => "taken",
        LossReason::Failed(_) => "failed",
        LossReason::Released => return,
    };
    counter!("lock_lost_total", "lock" => lock.to_string(), "reason" => reason).increment(1);
}

pub(crate) fn leading(lock: &LockName, identity: &str, leading: bool) {
    let labels = [
        ("lock", lock.to_string()),
        ("identity", identity.to_owned()),
    ];
    gauge!("leader_is_leading", &labels).set(if leading { 1.0 } else { 0.0 });
    if leading {
        counter!("leader_transitions_total", &labels).increment(1);
    }
}

pub(crate) fn shards_owned(group: &str, identity: &str, owned: usize) {
    gauge!("shards_owned", "group" => group.to_owned(), "identity" => identity.to_owned())
        .set(owned as f64);
}
