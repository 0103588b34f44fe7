//! One benchmark program for every backend, side by side with the libraries users would
//! pick instead, on real servers the harness starts on loopback. Prints Markdown for
//! BENCHMARKS.md; every figure is the median over repetitions with the min–max beside it.
//!
//! Run: `cargo run --release -p lock-bench -- [--repeat N] [SCENARIO ...]`, scenarios:
//! `uncontended graceful crash steady contended many` (default: all).

mod baselines;
mod figures;
mod kle;
mod leases;
mod scenarios;
mod subjects;

use std::time::Duration;

use figures::{Figure, Table};
use lock_core::MemoryBackend;
use lock_tests::{Etcd, Kube, Redis, bench::throughput};
use subjects::Subject;

/// kube-leader-election has no default lease either: its README's.
const KLE: &str =
    "kube-leader-election 0.44, 15 s lease polled every 5 s (its README's; no defaults)";

/// kubert has no default lease settings: both of its runs use a 15 s lease.
const KUBERT: &str = "kubert 0.25 lease, 15 s lease (it has no defaults)";

const SCENARIOS: [&str; 6] = [
    "uncontended",
    "graceful",
    "crash",
    "steady",
    "contended",
    "many",
];

struct Args {
    repeat: usize,
    scenarios: Vec<String>,
}

fn args() -> Args {
    let mut repeat = 3;
    let mut scenarios = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--repeat" => {
                repeat = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|n| *n > 0)
                    .expect("--repeat takes a positive number");
            }
            "--help" | "-h" => {
                println!(
                    "usage: lock-bench [--repeat N] [{}]...",
                    SCENARIOS.join("|")
                );
                std::process::exit(0);
            }
            scenario if SCENARIOS.contains(&scenario) => scenarios.push(arg),
            other => panic!("unknown argument {other:?}; scenarios: {SCENARIOS:?}"),
        }
    }
    if scenarios.is_empty() {
        scenarios = SCENARIOS.iter().map(|s| (*s).to_owned()).collect();
    }
    Args { repeat, scenarios }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

fn version(program: &str, flag: &str) -> String {
    std::process::Command::new(program)
        .arg(flag)
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.lines().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines().find_map(|line| {
                line.strip_prefix("model name")
                    .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("MemTotal:"))
                .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} cores ({cpu}), {memory:.0} GiB")
}

#[tokio::main]
async fn main() {
    let args = args();
    let (kube, etcd, redis) = (
        Kube::start().await,
        Etcd::start().await,
        Redis::start().await,
    );
    println!("Machine: {}.", machine());
    println!(
        "Servers on 127.0.0.1: kube-apiserver v{}, {}, {}. Each figure: median over {} repetitions (min–max).",
        lock_tests::APISERVER_VERSION,
        version("etcd", "--version"),
        version("redis-server", "--version"),
        args.repeat
    );
    let kube_default_client = Subject::KubeDefaultClient(&kube);
    let subjects = [
        Subject::Memory(MemoryBackend::new()),
        Subject::Kube(&kube),
        Subject::Etcd(&etcd),
        Subject::Redis(&redis),
    ];
    // Kubernetes with kube's default client too, where latency shows Nagle's algorithm.
    let with_default_client = || subjects.iter().chain(std::iter::once(&kube_default_client));
    let wants = |scenario: &str| args.scenarios.iter().any(|s| s == scenario);
    let repeat = args.repeat;
    let kle = ["uncontended", "graceful", "crash", "steady"]
        .iter()
        .any(|scenario| wants(scenario))
        .then(kle::build);

    if wants("uncontended") {
        Table::start(
            "Uncontended acquire + release (200 cycles, one warm connection)",
            &["library", "p50 ms", "p99 ms", "server requests per cycle"],
        );
        for subject in with_default_client() {
            let (mut p50, mut p99, mut requests) =
                (Figure::default(), Figure::default(), Figure::default());
            for _ in 0..repeat {
                let (sample, per_cycle) = scenarios::uncontended(subject, 200).await;
                p50.push(ms(sample.percentile(0.5)));
                p99.push(ms(sample.percentile(0.99)));
                if let Some(per_cycle) = per_cycle {
                    requests.push(per_cycle);
                }
            }
            Table::row(&[
                format!("lock-{}", subject.name()),
                p50.show(2),
                p99.show(2),
                requests.show(2),
            ]);
        }
        for settings in [
            baselines::Settings::Defaults,
            baselines::Settings::Lease(15),
        ] {
            let (mut p50, mut p99) = (Figure::default(), Figure::default());
            for _ in 0..repeat {
                let sample = baselines::kube_lease_manager_uncontended(&kube, settings, 50).await;
                p50.push(ms(sample.percentile(0.5)));
                p99.push(ms(sample.percentile(0.99)));
            }
            Table::row(&[settings.label(), p50.show(2), p99.show(2), "–".to_owned()]);
        }
        let (mut p50, mut p99) = (Figure::default(), Figure::default());
        for _ in 0..repeat {
            let sample = baselines::kubert_uncontended(&kube, 50).await;
            p50.push(ms(sample.percentile(0.5)));
            p99.push(ms(sample.percentile(0.99)));
        }
        Table::row(&[KUBERT.to_owned(), p50.show(2), p99.show(2), "–".to_owned()]);
        if let Some(binary) = &kle {
            let (mut p50, mut p99) = (Figure::default(), Figure::default());
            for _ in 0..repeat {
                let sample = kle::uncontended(binary, &kube, 10).await;
                p50.push(ms(sample.percentile(0.5)));
                p99.push(ms(sample.percentile(0.99)));
            }
            Table::row(&[
                format!("{KLE}, another process"),
                p50.show(2),
                p99.show(2),
                "–".to_owned(),
            ]);
        }
    }

    if wants("graceful") {
        Table::start(
            "Graceful hand-over: the holder releases → the waiter holds (30 hand-overs)",
            &["library", "p50 ms", "p99 ms"],
        );
        let mut ours_kube = Figure::default();
        for subject in with_default_client() {
            let (mut p50, mut p99) = (Figure::default(), Figure::default());
            for _ in 0..repeat {
                let sample = scenarios::graceful(subject, 30).await;
                p50.push(ms(sample.percentile(0.5)));
                p99.push(ms(sample.percentile(0.99)));
            }
            if subject.name() == "kube" {
                ours_kube = p50.clone();
            }
            Table::row(&[format!("lock-{}", subject.name()), p50.show(2), p99.show(2)]);
        }
        for settings in [
            baselines::Settings::Defaults,
            baselines::Settings::Lease(15),
        ] {
            let (mut p50, mut p99) = (Figure::default(), Figure::default());
            for _ in 0..repeat {
                let sample = baselines::kube_lease_manager_graceful(&kube, settings, 2).await;
                p50.push(ms(sample.percentile(0.5)));
                p99.push(ms(sample.percentile(0.99)));
            }
            Table::row(&[
                format!(
                    "{} (×{:.0} lock-kube's p50)",
                    settings.label(),
                    p50.median() / ours_kube.median()
                ),
                p50.show(0),
                p99.show(0),
            ]);
        }
        let (mut p50, mut p99) = (Figure::default(), Figure::default());
        for _ in 0..repeat {
            let sample = baselines::kubert_graceful(&kube, 2).await;
            p50.push(ms(sample.percentile(0.5)));
            p99.push(ms(sample.percentile(0.99)));
        }
        Table::row(&[
            format!(
                "{KUBERT} (×{:.0} lock-kube's p50)",
                p50.median() / ours_kube.median()
            ),
            p50.show(0),
            p99.show(0),
        ]);
        if let Some(binary) = &kle {
            let (mut p50, mut p99) = (Figure::default(), Figure::default());
            for _ in 0..repeat {
                let sample = kle::graceful(binary, &kube, 2).await;
                p50.push(ms(sample.percentile(0.5)));
                p99.push(ms(sample.percentile(0.99)));
            }
            Table::row(&[
                format!(
                    "{KLE} (×{:.0} lock-kube's p50)",
                    p50.median() / ours_kube.median()
                ),
                p50.show(0),
                p99.show(0),
            ]);
        }
    }

    if wants("crash") {
        Table::start(
            "Crash hand-over: the holder stops renewing → the waiter holds, minus the 2 s lease (5 crashes)",
            &["library", "p50 ms", "max ms"],
        );
        for subject in &subjects {
            let (mut p50, mut max) = (Figure::default(), Figure::default());
            for _ in 0..repeat {
                let sample = scenarios::crash(subject, 5).await;
                p50.push(ms(sample.percentile(0.5)));
                max.push(ms(sample.percentile(1.0)));
            }
            Table::row(&[format!("lock-{}", subject.name()), p50.show(1), max.show(1)]);
        }
        let (mut p50, mut max) = (Figure::default(), Figure::default());
        for _ in 0..repeat {
            let sample = baselines::kube_lease_manager_crash(&kube, 2, 3).await;
            p50.push(ms(sample.percentile(0.5)));
            max.push(ms(sample.percentile(1.0)));
        }
        Table::row(&[
            "kube-lease-manager 0.13, 2 s lease".to_owned(),
            p50.show(1),
            max.show(1),
        ]);
        let (mut p50, mut max) = (Figure::default(), Figure::default());
        for _ in 0..repeat {
            let sample = baselines::kubert_crash(&kube, 2, 3).await;
            p50.push(ms(sample.percentile(0.5)));
            max.push(ms(sample.percentile(1.0)));
        }
        Table::row(&[
            "kubert 0.25 lease, 2 s lease".to_owned(),
            p50.show(1),
            max.show(1),
        ]);
        if let Some(binary) = &kle {
            let (mut p50, mut max) = (Figure::default(), Figure::default());
            for _ in 0..repeat {
                let sample = kle::crash(binary, &kube, 2, 3).await;
                p50.push(ms(sample.percentile(0.5)));
                max.push(ms(sample.percentile(1.0)));
            }
            Table::row(&[
                "kube-leader-election 0.44, 2 s lease".to_owned(),
                p50.show(1),
                max.show(1),
            ]);
        }
    }

    if wants("steady") {
        let hold = Duration::from_secs(20);
        Table::start(
            "Steady state: server requests per second for one held lock (15 s lease, held 20 s; a 30 s lease 60 s)",
            &["library", "requests/s", "what is counted"],
        );
        for subject in subjects.iter().skip(1) {
            let mut rate = Figure::default();
            for _ in 0..repeat {
                rate.push(scenarios::steady(subject, hold).await.unwrap_or(f64::NAN));
            }
            let counted = match subject.name() {
                "kube" => "apiserver lease requests",
                "etcd" => "gRPC calls (a keep-alive stream message counts once per stream)",
                _ => "scripts and (un)subscriptions",
            };
            Table::row(&[
                format!("lock-{}", subject.name()),
                rate.show(3),
                counted.to_owned(),
            ]);
        }
        for settings in [
            baselines::Settings::Defaults,
            baselines::Settings::Lease(15),
        ] {
            let mut rate = Figure::default();
            for _ in 0..repeat {
                // At least two of its renewals in the window: a 30 s lease renews every 25 s.
                let hold = match settings {
                    baselines::Settings::Defaults => Duration::from_secs(60),
                    baselines::Settings::Lease(_) => hold,
                };
                rate.push(baselines::kube_lease_manager_steady(&kube, settings, hold).await);
            }
            Table::row(&[
                settings.label(),
                rate.show(3),
                "apiserver lease requests".to_owned(),
            ]);
        }
        let mut rate = Figure::default();
        for _ in 0..repeat {
            rate.push(baselines::kubert_steady(&kube, hold).await);
        }
        Table::row(&[
            KUBERT.to_owned(),
            rate.show(3),
            "apiserver lease requests".to_owned(),
        ]);
        if let Some(binary) = &kle {
            let mut rate = Figure::default();
            for _ in 0..repeat {
                rate.push(kle::steady(binary, &kube, hold).await);
            }
            Table::row(&[
                KLE.to_owned(),
                rate.show(3),
                "apiserver lease requests".to_owned(),
            ]);
        }
    }

    if wants("contended") {
        Table::start(
            &format!(
                "Contended: {} contenders on one lock for {:?}, cycles per second (fewest–most cycles by one contender)",
                scenarios::CONTENDERS,
                scenarios::THROUGHPUT_RUN
            ),
            &[
                "library",
                "cycles/s",
                "fairness",
                "baseline",
                "baseline cycles/s",
                "ratio",
            ],
        );
        for subject in &subjects {
            let (mut ours, mut theirs) = (Figure::default(), Figure::default());
            let mut spread = String::new();
            for _ in 0..repeat {
                let result = scenarios::contended(subject).await;
                ours.push(result.rate);
                spread = format!("{}–{}", result.fewest, result.most);
                let baseline = match subject {
                    Subject::Etcd(etcd) => {
                        let name = lock_core::conformance::unique_name("etcd-lock-rpc");
                        let mut cycles = Vec::new();
                        for _ in 0..scenarios::CONTENDERS {
                            cycles.push(baselines::etcd_lock_cycle(etcd, &name).await);
                        }
                        Some(throughput(cycles, scenarios::THROUGHPUT_RUN).await.rate)
                    }
                    Subject::Redis(redis) => {
                        let name = lock_core::conformance::unique_name("rslock");
                        let cycles = (0..scenarios::CONTENDERS)
                            .map(|_| baselines::rslock_cycle(redis, &name))
                            .collect();
                        Some(throughput(cycles, scenarios::THROUGHPUT_RUN).await.rate)
                    }
                    _ => None,
                };
                if let Some(rate) = baseline {
                    theirs.push(rate);
                }
            }
            let (baseline, ratio) = match subject.name() {
                "etcd" => (
                    "etcd Lock RPC",
                    format!("{:.2}", ours.median() / theirs.median()),
                ),
                "redis" => (
                    "rslock 0.10",
                    format!("{:.2}", ours.median() / theirs.median()),
                ),
                _ => ("–", "–".to_owned()),
            };
            Table::row(&[
                format!("lock-{}", subject.name()),
                ours.show(0),
                spread,
                baseline.to_owned(),
                theirs.show(0),
                ratio,
            ]);
        }
    }

    if wants("many") {
        Table::start(
            "1,000 Kubernetes leases held by one process (15 s leases, measured over 30 s)",
            &[
                "acquire all",
                "CPU, % of one core",
                "resident memory growth MiB",
                "apiserver lease requests/s",
            ],
        );
        let (mut acquire, mut cpu, mut memory, mut requests) = (
            Figure::default(),
            Figure::default(),
            Figure::default(),
            Figure::default(),
        );
        for _ in 0..repeat {
            let cost = leases::hold_many(&kube, 1_000, Duration::from_secs(30)).await;
            acquire.push(cost.acquire_all.as_secs_f64());
            cpu.push(cost.cpu_percent);
            memory.push(cost.memory_mib);
            requests.push(cost.requests_per_second);
        }
        Table::row(&[
            format!("{} s", acquire.show(2)),
            cpu.show(1),
            memory.show(1),
            requests.show(1),
        ]);
    }
}
