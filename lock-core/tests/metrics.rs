//! Locks, leaders and shard members report their metrics through the `metrics` facade.

use std::time::Duration;

use lock_core::{ElectedShards, Faulty, LeaderElector, Lock, MemoryBackend, Timing};
use metrics_util::{
    CompositeKey,
    debugging::{DebugValue, DebuggingRecorder, Snapshotter},
};
use tokio::time::sleep;

const TTL: Duration = Duration::from_secs(3);

/// Everything recorded since the last look (a look resets counters and gauges).
struct Recorded(Vec<(CompositeKey, DebugValue)>);

fn look(snapshotter: &Snapshotter) -> Recorded {
    let snapshot = snapshotter.snapshot().into_vec();
    Recorded(
        snapshot
            .into_iter()
            .map(|(key, _, _, value)| (key, value))
            .collect(),
    )
}

impl Recorded {
    /// The value of metric `name` whose labels include `label`.
    fn value(&self, name: &str, label: (&str, &str)) -> Option<&DebugValue> {
        self.0.iter().find_map(|(key, value)| {
            let key = key.key();
            let labelled = key
                .labels()
                .any(|l| l.key() == label.0 && l.value() == label.1);
            (key.name() == name && labelled).then_some(value)
        })
    }

    fn counter(&self, name: &str, label: (&str, &str)) -> u64 {
        match self.value(name, label) {
            Some(DebugValue::Counter(count)) => *count,
            other => panic!("{name} {label:?}: expected a counter, got {other:?}"),
        }
    }

    fn gauge(&self, name: &str, label: (&str, &str)) -> f64 {
        match self.value(name, label) {
            Some(DebugValue::Gauge(level)) => level.into_inner(),
            other => panic!("{name} {label:?}: expected a gauge, got {other:?}"),
        }
    }

    fn observations(&self, name: &str, label: (&str, &str)) -> usize {
        match self.value(name, label) {
            Some(DebugValue::Histogram(values)) => values.len(),
            other => panic!("{name} {label:?}: expected a histogram, got {other:?}"),
        }
    }
}

fn lock(backend: impl lock_core::Backend, name: &str, identity: &str) -> Lock {
    Lock::builder(backend, name, identity)
        .timing(Timing::new(TTL))
        .build()
        .expect("valid")
}

#[tokio::test(start_paused = true)]
async fn locks_leaders_and_shard_members_report_their_metrics() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this test binary");
    let server = MemoryBackend::new();

    // A lock: acquired, renewed, then lost when its renewals fail.
    let faulty = Faulty::new(server.clone());
    let guard = lock(faulty.clone(), "metered", "a")
        .acquire()
        .await
        .expect("acquire");
    sleep(TTL / 2).await;
    faulty.fail_renewals(true);
    guard.lost().await;
    let recorded = look(&snapshotter);
    let metered = ("lock", "metered");
    assert_eq!(recorded.counter("lock_acquisitions_total", metered), 1);
    assert_eq!(
        recorded.observations("lock_acquire_wait_seconds", metered),
        1
    );
    assert_eq!(
        recorded.observations("lock_renew_latency_seconds", metered),
        1
    );
    assert!(recorded.counter("lock_renew_failures_total", metered) >= 1);
    assert_eq!(
        recorded.counter("lock_lost_total", ("reason", "expired")),
        1
    );
    drop(guard);

    // A leader leads; another leads and steps down. (Each is looked at once: a look
    // resets gauges, so a stepped-down leader's gauge reads 0 only if it was set so.)
    let run_leader = |name: &'static str| {
        let elector = LeaderElector::new(lock(server.clone(), name, "leader"));
        let shutdown = elector.shutdown_handle();
        let running =
            tokio::spawn(async move { elector.run(|l| async move { l.stopping().await }).await });
        (shutdown, running)
    };
    let (leading, leading_run) = run_leader("leads");
    let (stepping_down, stepping_down_run) = run_leader("steps-down");
    sleep(Duration::from_millis(10)).await;
    stepping_down.shutdown();
    stepping_down_run
        .await
        .expect("ran")
        .expect("stopped cleanly");
    let recorded = look(&snapshotter);
    assert_eq!(recorded.gauge("leader_is_leading", ("lock", "leads")), 1.0);
    assert_eq!(
        recorded.counter("leader_transitions_total", ("lock", "leads")),
        1
    );
    assert_eq!(
        recorded.gauge("leader_is_leading", ("lock", "steps-down")),
        0.0
    );
    assert_eq!(
        recorded.counter("leader_transitions_total", ("lock", "steps-down")),
        1
    );
    leading.shutdown();
    leading_run.await.expect("ran").expect("stopped cleanly");

    // A shard member alone owns every shard; another owned them all and left.
    let run_member = |group: &'static str| {
        let shards = ElectedShards::builder(server.clone(), group, "member", 4)
            .timing(Timing::new(TTL))
            .build()
            .expect("valid");
        let member = shards.clone();
        (shards, tokio::spawn(async move { member.run().await }))
    };
    let (staying, staying_run) = run_member("stays");
    let (leaving, leaving_run) = run_member("leaves");
    sleep(Duration::from_secs(1)).await;
    leaving.shutdown();
    leaving_run.await.expect("ran").expect("stopped cleanly");
    let recorded = look(&snapshotter);
    assert_eq!(recorded.gauge("shards_owned", ("group", "stays")), 4.0);
    assert_eq!(recorded.gauge("shards_owned", ("group", "leaves")), 0.0);
    staying.shutdown();
    staying_run.await.expect("ran").expect("stopped cleanly");
}
