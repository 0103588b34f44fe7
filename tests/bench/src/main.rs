//! One benchmark program for every backend, side by side with the libraries users would
//! pick instead, on real servers the harness starts on loopback. Prints Markdown for
//! BENCHMARKS.md; every figure is the median over repetitions with the min–max beside it.
//!
//! Repetitions are the outer loop: repetition 1 of every row of every table, then
//! repetition 2, and so on, so that each figure's min–max spans the drift of the whole
//! run, not only of back-to-back repetitions. Progress goes to stderr, the tables to
//! stdout at the end.
//!
//! Run: `cargo run --release -p lock-bench -- [--repeat N] [SCENARIO ...]`, scenarios:
//! `uncontended graceful crash steady contended many` (default: all; 5 repetitions), and
//! `warm-standby` (only by name; 3 repetitions unless `--repeat`: two controller
//! replicas over 10,000 ConfigMaps, each repetition a few seconds to a minute), and
//! `roster` (only by name; 3 repetitions: elected shards' steady-state Lease requests),
//! and `scaling` (only by name: sharded controllers' caches and watch events, label and
//! filter mode, 1, 2 and 4 members).

mod baselines;
mod cargo;
mod figures;
mod kle;
mod leases;
mod library;
mod measure;
mod roster;
mod scaling;
mod scenarios;
mod standby;
mod subjects;
mod table;
mod timed;

use std::{path::Path, time::Instant};

use baselines::Settings;
use library::Library;
use lock_core::MemoryBackend;
use lock_tests::{Etcd, Kube, Redis};
use measure::Scenario;
use subjects::Subject;
use table::Table;

struct Args {
    /// `--repeat`, if given.
    repeat: Option<usize>,
    scenarios: Vec<Scenario>,
    /// The warm-standby table, asked for by name.
    standby: bool,
    /// The elected shards' roster table, asked for by name.
    roster: bool,
    /// The sharded controllers' scaling table, asked for by name.
    scaling: bool,
}

/// The warm-standby table's name on the command line.
const STANDBY: &str = "warm-standby";
/// The roster table's name on the command line.
const ROSTER: &str = "roster";
/// The scaling table's name on the command line.
const SCALING: &str = "scaling";

fn args() -> Args {
    let mut repeat = None;
    let mut scenarios = Vec::new();
    let (mut standby, mut roster, mut scaling) = (false, false, false);
    let names: Vec<_> = Scenario::ALL.iter().map(|s| s.name()).collect();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--repeat" => {
                repeat = Some(
                    args.next()
                        .and_then(|n| n.parse().ok())
                        .filter(|n| *n > 0)
                        .expect("--repeat takes a positive number"),
                );
            }
            "--help" | "-h" => {
                println!(
                    "usage: lock-bench [--repeat N] [{}|{STANDBY}|{ROSTER}|{SCALING}]...",
                    names.join("|")
                );
                std::process::exit(0);
            }
            STANDBY => standby = true,
            ROSTER => roster = true,
            SCALING => scaling = true,
            name => match Scenario::ALL.iter().find(|s| s.name() == name) {
                Some(scenario) => scenarios.push(*scenario),
                None => panic!("unknown argument {name:?}; scenarios: {names:?}, {STANDBY:?}"),
            },
        }
    }
    if scenarios.is_empty() && !standby && !roster && !scaling {
        scenarios = Scenario::ALL.to_vec();
    }
    Args {
        repeat,
        scenarios,
        standby,
        roster,
        scaling,
    }
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

/// The servers' libraries measured beside ours.
struct Servers<'a> {
    etcd: &'a Etcd,
    redis: &'a Redis,
    /// kube-leader-election's contender binary, where a scenario needs it.
    kle: Option<&'a Path>,
}

/// The tables of the scenarios asked for, each row a library. `subjects` are ours:
/// memory, Kubernetes, etcd, Redis, then Kubernetes with kube's default client.
fn plan<'a>(
    scenarios: &[Scenario],
    subjects: &'a [Subject<'a>; 5],
    servers: &Servers<'a>,
) -> Vec<Table<'a>> {
    let [memory, kube, etcd, redis, kube_default_client] = subjects;
    let ours = |table: &mut Table<'a>, subjects: &[&'a Subject<'a>]| {
        subjects
            .iter()
            .map(|subject| table.row(Library::Ours(subject)))
            .collect::<Vec<_>>()
    };
    let kube_baselines = |table: &mut Table<'a>, versus: usize, seconds: Option<u64>| {
        let (manager, lease) = match seconds {
            Some(seconds) => (vec![Settings::Lease(seconds)], seconds),
            None => (vec![Settings::Defaults, Settings::Lease(15)], 15),
        };
        for settings in manager {
            table.versus(Library::KubeLeaseManager(settings), versus);
        }
        table.versus(Library::Kubert(lease), versus);
        if let Some(binary) = servers.kle {
            table.versus(Library::KubeLeaderElection(binary, lease), versus);
        }
    };
    let crash_seconds = scenarios::CRASH_TTL.as_secs();
    scenarios
        .iter()
        .map(|&scenario| {
            let mut table = Table::new(scenario);
            match scenario {
                Scenario::Uncontended | Scenario::Graceful => {
                    let rows = ours(
                        &mut table,
                        &[memory, kube, etcd, redis, kube_default_client],
                    );
                    kube_baselines(&mut table, rows[1], None);
                }
                Scenario::Crash => {
                    let rows = ours(&mut table, &[memory, kube, etcd, redis]);
                    kube_baselines(&mut table, rows[1], Some(crash_seconds));
                }
                Scenario::Steady => {
                    let rows = ours(&mut table, &[kube, etcd, redis]);
                    for subject in [kube, etcd, redis] {
                        table.row(Library::OursWithStandby(subject));
                    }
                    kube_baselines(&mut table, rows[0], None);
                    table.footer(
                        "Counted: apiserver lease requests; etcd gRPC calls (a keep-alive stream \
                         message counts once per stream); Redis scripts and (un)subscriptions. \
                         Reads: lease GETs and LISTs (a watch is neither); etcd Range calls; \
                         Redis scripts read and write alike. A standby subscribes a second \
                         before the count.",
                    );
                }
                Scenario::Contended => {
                    let rows = ours(&mut table, &[memory, kube, etcd]);
                    table.versus(Library::EtcdLockRpc(servers.etcd), rows[2]);
                    let redis_row = table.row(Library::Ours(redis));
                    table.versus(Library::Rslock(servers.redis), redis_row);
                }
                Scenario::Many => {
                    table.row(Library::Ours(kube));
                }
            }
            table
        })
        .collect()
}

#[tokio::main]
async fn main() {
    let args = args();
    let (kube, etcd, redis) = (
        Kube::start().await,
        Etcd::start().await,
        Redis::start().await,
    );
    // Alone, the warm-standby table's default.
    let repeat = args
        .repeat
        .unwrap_or(if args.scenarios.is_empty() { 3 } else { 5 });
    println!("Machine: {}.", machine());
    println!(
        "Servers on 127.0.0.1: kube-apiserver v{}, {}, {}. Each figure: median over {repeat} \
         repetitions (min–max); repetition 1 of every row, then repetition 2, and so on.",
        kube.version().apiserver(),
        version("etcd", "--version"),
        version("redis-server", "--version"),
    );
    let subjects = [
        Subject::Memory(MemoryBackend::new()),
        Subject::Kube(&kube),
        Subject::Etcd(&etcd),
        Subject::Redis(&redis),
        // Kubernetes with kube's default client too, where latency shows Nagle's algorithm.
        Subject::KubeDefaultClient(&kube),
    ];
    let needs_kle = args.scenarios.iter().any(|scenario| {
        matches!(
            scenario,
            Scenario::Uncontended | Scenario::Graceful | Scenario::Crash | Scenario::Steady
        )
    });
    let kle = needs_kle.then(kle::build);
    let servers = Servers {
        etcd: &etcd,
        redis: &redis,
        kle: kle.as_deref(),
    };
    let mut tables = plan(&args.scenarios, &subjects, &servers);

    // Not counted: the first requests on fresh servers are slower.
    for subject in subjects.iter().filter(|_| !tables.is_empty()) {
        measure::once(Scenario::Uncontended, &Library::Ours(subject), &kube).await;
    }
    let started = Instant::now();
    for repetition in 1..=repeat {
        for table in &mut tables {
            for row in 0..table.rows.len() {
                eprintln!(
                    "[{:>5.0} s] repetition {repetition} of {repeat}: {}, {}",
                    started.elapsed().as_secs_f64(),
                    table.scenario.name(),
                    table.rows[row].library.label()
                );
                let values = measure::once(table.scenario, &table.rows[row].library, &kube).await;
                table.record(row, &values);
            }
        }
    }
    for table in &tables {
        print!("{}", table.markdown());
    }
    if args.standby {
        warm_standby(&kube, args.repeat.unwrap_or(3)).await;
    }
    if args.roster {
        roster_table(&kube, args.repeat.unwrap_or(3)).await;
    }
    if args.scaling {
        scaling_table(&kube, args.repeat.unwrap_or(3)).await;
    }
}

/// The scaling table, `repeat` repetitions of every mode and group size (interleaved).
async fn scaling_table(kube: &Kube, repeat: usize) {
    let binary = scaling::build();
    let objects = scaling::Objects::create(kube).await;
    let mut table = scaling::Table::new(format!("kube-apiserver {}", kube.version().apiserver()));
    let started = Instant::now();
    for repetition in 1..=repeat {
        let fixed = scaling::fixed_cost(kube, &binary).await;
        table.record_fixed(fixed, scaling::idle_lease_rate(kube).await);
        for mode in scaling::MODES {
            for members in scaling::MEMBERS {
                eprintln!(
                    "[{:>5.0} s] repetition {repetition} of {repeat}: {SCALING}, {mode:?}, {members}",
                    started.elapsed().as_secs_f64()
                );
                let values = scaling::once(kube, &binary, &objects, mode, members).await;
                eprintln!("  {values:.1?}");
                table.record((mode, members), values);
            }
        }
    }
    objects.delete().await;
    print!("{}", table.markdown());
}

/// The roster table, `repeat` repetitions of every group (interleaved).
async fn roster_table(kube: &Kube, repeat: usize) {
    let mut table = roster::Table::new();
    let started = Instant::now();
    for repetition in 1..=repeat {
        for (members, shards) in roster::GROUPS {
            eprintln!(
                "[{:>5.0} s] repetition {repetition} of {repeat}: {ROSTER}, {members} × {shards}",
                started.elapsed().as_secs_f64()
            );
            let values = roster::once(kube, members, shards).await;
            eprintln!("  {values:.2?}");
            table.record((members, shards), values);
        }
    }
    print!("{}", table.markdown());
}

/// The warm-standby table, `repeat` repetitions of every mode (interleaved).
async fn warm_standby(kube: &Kube, repeat: usize) {
    let binaries = standby::build();
    let objects = standby::Objects::create(kube).await;
    // LOCK_BENCH_STANDBY_MODES=cold,warm,klm,kle picks rows (default: all).
    let modes: Vec<standby::Mode> = match std::env::var("LOCK_BENCH_STANDBY_MODES") {
        Ok(names) => names.split(',').map(standby::Mode::named).collect(),
        Err(_) => standby::Mode::ALL.to_vec(),
    };
    let mut table = standby::Table::new(&modes);
    let started = Instant::now();
    for repetition in 1..=repeat {
        for mode in table.modes() {
            eprintln!(
                "[{:>5.0} s] repetition {repetition} of {repeat}: {STANDBY}, {mode:?}",
                started.elapsed().as_secs_f64()
            );
            let values = standby::once(&binaries, kube, &objects, mode).await;
            eprintln!("  {values:.1?}");
            table.record(mode, &values);
        }
    }
    objects.delete().await;
    print!("{}", table.markdown());
}
