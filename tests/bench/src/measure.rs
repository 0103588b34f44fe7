//! One repetition of one scenario for one library: the figures it yields.

use std::time::Duration;

use lock_tests::{Kube, bench::Sample};

use crate::{
    baselines::{self, Settings},
    kle, leases,
    library::Library,
    scenarios::{self, CONTENDERS, THROUGHPUT_RUN},
};

/// How long the steady-state scenario holds a 15 s lease.
const STEADY_HOLD: Duration = Duration::from_secs(20);

/// How long it holds kube-lease-manager's default 30 s lease: at least two of its
/// renewals, which come every 25 s.
const STEADY_HOLD_30_S: Duration = Duration::from_secs(60);

/// What is measured: one table each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// Acquire + release of a free lock, over and over.
    Uncontended,
    /// The holder releases → the waiter holds.
    Graceful,
    /// The holder stops renewing → the waiter holds, minus the lease duration.
    Crash,
    /// Server requests per second for one held lock.
    Steady,
    /// Eight contenders on one lock.
    Contended,
    /// 1,000 Kubernetes leases held by one process.
    Many,
}

impl Scenario {
    /// Every scenario, in the order of the tables.
    pub const ALL: [Scenario; 6] = [
        Scenario::Uncontended,
        Scenario::Graceful,
        Scenario::Crash,
        Scenario::Steady,
        Scenario::Contended,
        Scenario::Many,
    ];

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Uncontended => "uncontended",
            Scenario::Graceful => "graceful",
            Scenario::Crash => "crash",
            Scenario::Steady => "steady",
            Scenario::Contended => "contended",
            Scenario::Many => "many",
        }
    }

    /// Its table's title.
    pub fn title(self) -> String {
        match self {
            Scenario::Uncontended => {
                "Uncontended acquire + release (200 cycles, one warm connection; baselines 50, kube-leader-election 10)".to_owned()
            }
            Scenario::Graceful => {
                "Graceful hand-over: the holder releases → the waiter holds (30 hand-overs; baselines 2)".to_owned()
            }
            Scenario::Crash => {
                "Crash hand-over: the holder stops renewing → the waiter holds, minus the 2 s lease (5 crashes; baselines 3)".to_owned()
            }
            Scenario::Steady => {
                "Steady state: server requests per second for one held lock (15 s lease, held 20 s; a 30 s lease 60 s)".to_owned()
            }
            Scenario::Contended => format!(
                "Contended: {CONTENDERS} contenders on one lock for {THROUGHPUT_RUN:?}, cycles per second"
            ),
            Scenario::Many => {
                "1,000 Kubernetes leases held by one process (15 s leases, measured over 30 s)"
                    .to_owned()
            }
        }
    }

    /// The headings of the figures [`once`] yields, in order.
    pub fn columns(self) -> &'static [&'static str] {
        match self {
            Scenario::Uncontended => &["p50 ms", "p99 ms", "server requests per cycle"],
            Scenario::Graceful => &["p50 ms", "p99 ms"],
            Scenario::Crash => &["p50 ms", "max ms"],
            Scenario::Steady => &["requests/s"],
            Scenario::Contended => &[
                "cycles/s",
                "fewest cycles by one contender",
                "most cycles by one contender",
            ],
            Scenario::Many => &[
                "acquire all, s",
                "CPU, % of one core",
                "resident memory growth MiB",
                "apiserver lease requests/s",
            ],
        }
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// The p50 and the `top` percentile of a sample, in milliseconds.
fn latency(sample: &Sample, top: f64) -> Vec<f64> {
    vec![ms(sample.percentile(0.5)), ms(sample.percentile(top))]
}

/// Measures `scenario` once for `library`, on the servers the harness started; `NaN`
/// where a figure does not exist (requests on the in-memory backend).
///
/// # Panics
///
/// On a scenario the library is not measured in, and on any failure of the library
/// under test.
pub async fn once(scenario: Scenario, library: &Library<'_>, kube: &Kube) -> Vec<f64> {
    use Library::*;
    use Scenario::*;
    match (scenario, library) {
        (Uncontended, Ours(subject)) => {
            let (sample, per_cycle) = scenarios::uncontended(subject, 200).await;
            let mut figures = latency(&sample, 0.99);
            figures.push(per_cycle.unwrap_or(f64::NAN));
            figures
        }
        (Uncontended, KubeLeaseManager(settings)) => latency(
            &baselines::kube_lease_manager_uncontended(kube, *settings, 50).await,
            0.99,
        ),
        (Uncontended, Kubert(_)) => latency(&baselines::kubert_uncontended(kube, 50).await, 0.99),
        (Uncontended, KubeLeaderElection(binary, _)) => {
            latency(&kle::uncontended(binary, kube, 10).await, 0.99)
        }
        (Graceful, Ours(subject)) => latency(&scenarios::graceful(subject, 30).await, 0.99),
        (Graceful, KubeLeaseManager(settings)) => latency(
            &baselines::kube_lease_manager_graceful(kube, *settings, 2).await,
            0.99,
        ),
        (Graceful, Kubert(_)) => latency(&baselines::kubert_graceful(kube, 2).await, 0.99),
        (Graceful, KubeLeaderElection(binary, _)) => {
            latency(&kle::graceful(binary, kube, 2).await, 0.99)
        }
        (Crash, Ours(subject)) => latency(&scenarios::crash(subject, 5).await, 1.0),
        (Crash, KubeLeaseManager(Settings::Lease(seconds))) => latency(
            &baselines::kube_lease_manager_crash(kube, *seconds, 3).await,
            1.0,
        ),
        (Crash, Kubert(seconds)) => latency(&baselines::kubert_crash(kube, *seconds, 3).await, 1.0),
        (Crash, KubeLeaderElection(binary, seconds)) => {
            latency(&kle::crash(binary, kube, *seconds, 3).await, 1.0)
        }
        (Steady, Ours(subject)) => vec![
            scenarios::steady(subject, STEADY_HOLD)
                .await
                .unwrap_or(f64::NAN),
        ],
        (Steady, KubeLeaseManager(settings)) => {
            let hold = match settings {
                Settings::Defaults => STEADY_HOLD_30_S,
                Settings::Lease(_) => STEADY_HOLD,
            };
            vec![baselines::kube_lease_manager_steady(kube, *settings, hold).await]
        }
        (Steady, Kubert(_)) => vec![baselines::kubert_steady(kube, STEADY_HOLD).await],
        (Steady, KubeLeaderElection(binary, _)) => {
            vec![kle::steady(binary, kube, STEADY_HOLD).await]
        }
        (Contended, Ours(subject)) => throughput(scenarios::contended(subject).await),
        (Contended, EtcdLockRpc(etcd)) => {
            let name = lock_core::conformance::unique_name("etcd-lock-rpc");
            let mut cycles = Vec::with_capacity(CONTENDERS);
            for _ in 0..CONTENDERS {
                cycles.push(baselines::etcd_lock_cycle(etcd, &name).await);
            }
            throughput(lock_tests::bench::throughput(cycles, THROUGHPUT_RUN).await)
        }
        (Contended, Rslock(redis)) => {
            let name = lock_core::conformance::unique_name("rslock");
            let cycles = (0..CONTENDERS)
                .map(|_| baselines::rslock_cycle(redis, &name))
                .collect();
            throughput(lock_tests::bench::throughput(cycles, THROUGHPUT_RUN).await)
        }
        (Many, Ours(_)) => {
            let cost = leases::hold_many(kube, 1_000, Duration::from_secs(30)).await;
            vec![
                cost.acquire_all.as_secs_f64(),
                cost.cpu_percent,
                cost.memory_mib,
                cost.requests_per_second,
            ]
        }
        (scenario, library) => panic!(
            "{} is not measured in the {} scenario",
            library.label(),
            scenario.name()
        ),
    }
}

fn throughput(result: lock_tests::bench::Throughput) -> Vec<f64> {
    vec![result.rate, result.fewest as f64, result.most as f64]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenarios_are_named_as_on_the_command_line() {
        let names: Vec<_> = Scenario::ALL.iter().map(|s| s.name()).collect();
        assert_eq!(
            names,
            [
                "uncontended",
                "graceful",
                "crash",
                "steady",
                "contended",
                "many"
            ]
        );
    }
}
