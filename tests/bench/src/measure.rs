//! One repetition of one scenario for one library: the figures it yields.

use std::time::Duration;

use lock_tests::{Kube, bench::Sample};

use crate::{
    baselines::{self, Settings},
    kle, leases,
    library::Library,
    scenarios::{self, CONTENDERS, THROUGHPUT_RUN},
    subjects::Served,
};

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
                "Steady state: server requests per second for one held lock, alone or with a standby waiting (15 s lease, held 20 s; a 30 s lease 60 s)".to_owned()
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
            Scenario::Graceful => &[
                "p50 ms",
                "p99 ms",
                "release write p50 ms",
                "event p50 ms",
                "take write p50 ms",
                "parts' p50 sum ms",
            ],
            Scenario::Crash => &["p50 ms", "max ms"],
            Scenario::Steady => &["requests/s", "reads/s"],
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

/// The median of values in milliseconds.
fn median(values: &[f64]) -> f64 {
    crate::figures::Figure(values.to_vec()).median()
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
        (Graceful, Ours(subject)) => {
            let hand_overs = scenarios::graceful(subject, 30).await;
            let parts = [
                median(&hand_overs.release_write),
                median(&hand_overs.event),
                median(&hand_overs.take_write),
            ];
            let mut figures = latency(&hand_overs.total, 0.99);
            figures.extend(parts);
            figures.push(parts.iter().sum());
            figures
        }
        (Uncontended | Graceful | Crash, _) => {
            // The crash table shows the worst hand-over, the others the p99.
            let top = if scenario == Crash { 1.0 } else { 0.99 };
            let (sample, requests_per_cycle) = latency_sample(scenario, library, kube).await;
            let mut figures = latency(&sample, top);
            figures.extend(requests_per_cycle);
            figures
        }
        (Steady, _) => steady(library, kube).await.figures(),
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
        (scenario, library) => not_measured(scenario, library),
    }
}

/// The latencies of one repetition of the uncontended, graceful or crash scenario, and in
/// ours' uncontended one its server requests per cycle (`NaN` where the server does not
/// count them).
async fn latency_sample(
    scenario: Scenario,
    library: &Library<'_>,
    kube: &Kube,
) -> (Sample, Option<f64>) {
    use Library::*;
    use Scenario::*;
    // Cycles, hand-overs or crashes per repetition, as the tables' titles say.
    let n = match (scenario, library) {
        (Uncontended, Ours(_)) => 200,
        (Uncontended, KubeLeaderElection(..)) => 10,
        (Uncontended, _) => 50,
        (Graceful, _) => 2,
        (Crash, Ours(_)) => 5,
        (Crash, _) => 3,
        (scenario, library) => not_measured(scenario, library),
    };
    let sample = match (scenario, library) {
        (Uncontended, Ours(subject)) => {
            let (sample, per_cycle) = scenarios::uncontended(subject, n).await;
            return (sample, Some(per_cycle.unwrap_or(f64::NAN)));
        }
        (Uncontended, KubeLeaseManager(settings)) => {
            baselines::kube_lease_manager_uncontended(kube, *settings, n).await
        }
        (Uncontended, Kubert(_)) => baselines::kubert_uncontended(kube, n).await,
        (Uncontended, KubeLeaderElection(binary, _)) => kle::uncontended(binary, kube, n).await,
        (Graceful, KubeLeaseManager(settings)) => {
            baselines::kube_lease_manager_graceful(kube, *settings, n).await
        }
        (Graceful, Kubert(_)) => baselines::kubert_graceful(kube, n).await,
        (Graceful, KubeLeaderElection(binary, _)) => kle::graceful(binary, kube, n).await,
        (Crash, Ours(subject)) => scenarios::crash(subject, n).await,
        (Crash, KubeLeaseManager(Settings::Lease(seconds))) => {
            baselines::kube_lease_manager_crash(kube, *seconds, n).await
        }
        (Crash, Kubert(seconds)) => baselines::kubert_crash(kube, *seconds, n).await,
        (Crash, KubeLeaderElection(binary, seconds)) => kle::crash(binary, kube, *seconds, n).await,
        (scenario, library) => not_measured(scenario, library),
    };
    (sample, None)
}

/// Server requests and reads per second for one lock that `library` holds (`NaN` where
/// the server does not count them): a 15 s lease held 20 s, kube-lease-manager's default
/// 30 s lease 60 s, at least two of its renewals, which come every 25 s.
async fn steady(library: &Library<'_>, kube: &Kube) -> Served {
    use Library::*;
    let hold = match library {
        KubeLeaseManager(Settings::Defaults) => Duration::from_secs(60),
        _ => Duration::from_secs(20),
    };
    match library {
        Ours(subject) => scenarios::steady(subject, hold, false).await,
        OursWithStandby(subject) => scenarios::steady(subject, hold, true).await,
        KubeLeaseManager(settings) => {
            baselines::kube_lease_manager_steady(kube, *settings, hold).await
        }
        Kubert(_) => baselines::kubert_steady(kube, hold).await,
        KubeLeaderElection(binary, _) => kle::steady(binary, kube, hold).await,
        library => not_measured(Scenario::Steady, library),
    }
}

fn not_measured(scenario: Scenario, library: &Library<'_>) -> ! {
    panic!(
        "{} is not measured in the {} scenario",
        library.label(),
        scenario.name()
    )
}

fn throughput(result: lock_tests::bench::Throughput) -> Vec<f64> {
    vec![result.rate, result.fewest as f64, result.most as f64]
}

/// The resident memory of process `pid` (named `name` in a failure), in MiB.
pub fn rss_mib(pid: nix::unistd::Pid, name: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|error| panic!("{name}: no /proc/{pid}/status: {error}"));
    let kb: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{name}: no VmRSS in /proc/{pid}/status"));
    kb / 1024.0
}

/// The apiserver's `/metrics` text.
pub async fn apiserver_metrics(kube: &Kube) -> String {
    let request = http::Request::get("/metrics")
        .body(Vec::new())
        .expect("a request");
    kube.admin()
        .await
        .request_text(request)
        .await
        .expect("apiserver metrics")
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
