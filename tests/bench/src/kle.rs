//! kube-leader-election as a baseline. It is built on kube 4, which cannot share a build
//! with this workspace's kube 5, so each contender is a process of its own
//! (`kube-leader-election/`, a crate with its own lock file), driven on stdin: `acquire`,
//! `release`, `crash`. It has no default lease; its README's 15 s lease renewed every
//! 5 s is what it runs with.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use lock_tests::{Kube, bench::Sample};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines},
    process::{Child, ChildStdin, ChildStdout, Command},
    time::{Instant, sleep, timeout},
};

/// How long one command may take: a poll every third of a 15 s lease, plus the lease.
const COMMAND_LIMIT: Duration = Duration::from_secs(40);

/// Builds the contender once (release profile, in `target/kle`) and returns its path.
pub fn build() -> PathBuf {
    built("kle-contender")
}

/// Builds the controller replica of the warm-standby table (`kle-replica`, same crate)
/// and returns its path.
pub fn build_replica() -> PathBuf {
    built("kle-replica")
}

fn built(binary: &str) -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let target = here.join("../../target/kle");
    let status = crate::cargo::cargo()
        .args(["build", "--release", "--quiet", "--manifest-path"])
        .arg(here.join("kube-leader-election/Cargo.toml"))
        .args(["--bin", binary, "--target-dir"])
        .arg(&target)
        .status()
        .expect("cargo runs");
    assert!(
        status.success(),
        "the kube-leader-election {binary} did not build"
    );
    target.join("release").join(binary)
}

/// One contender process.
pub struct Contender {
    _child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Contender {
    /// Starts a contender for `lease` as `holder` with a lease of `seconds`.
    pub fn start(binary: &Path, kube: &Kube, lease: &str, holder: &str, seconds: u64) -> Self {
        let kubeconfig = kube.kubeconfig().expect("a kubeconfig");
        let mut child = Command::new(binary)
            .arg(kubeconfig)
            .args([kube.namespace(), lease, holder, &seconds.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the contender starts");
        let stdin = child.stdin.take().expect("piped");
        let lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        Self {
            _child: child,
            stdin,
            lines,
        }
    }

    /// Sends a command.
    pub async fn send(&mut self, command: &str) {
        self.stdin
            .write_all(format!("{command}\n").as_bytes())
            .await
            .expect("the contender reads");
    }

    /// Waits for the contender to print `line`.
    pub async fn expect(&mut self, line: &str) {
        let got = timeout(COMMAND_LIMIT, self.lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("no {line:?} within {COMMAND_LIMIT:?}"))
            .expect("readable")
            .expect("a line");
        assert_eq!(got, line);
    }

    /// Sends `command` and waits for `reply`.
    pub async fn run(&mut self, command: &str, reply: &str) {
        self.send(command).await;
        self.expect(reply).await;
    }
}

fn fresh(scenario: &str) -> String {
    lock_core::conformance::unique_name(scenario)
}

/// Uncontended: acquire a free lease, step down. A fresh lease each time (a process of
/// its own): after a step-down it waits out the 1 s lease its step-down writes.
pub async fn uncontended(binary: &Path, kube: &Kube, n: usize) -> Sample {
    let mut cycles = Vec::with_capacity(n);
    for _ in 0..n {
        let mut contender = Contender::start(binary, kube, &fresh("kle-uncontended"), "bench", 15);
        let started = Instant::now();
        contender.run("acquire", "acquired").await;
        contender.run("release", "released").await;
        cycles.push(started.elapsed());
    }
    Sample(cycles)
}

/// The holder steps down → the polling follower holds.
pub async fn graceful(binary: &Path, kube: &Kube, n: usize) -> Sample {
    let mut latencies = Vec::with_capacity(n);
    for i in 0..n {
        let lease = fresh("kle-handover");
        let mut holder = Contender::start(binary, kube, &lease, &format!("holder-{i}"), 15);
        holder.run("acquire", "acquired").await;
        let mut follower = Contender::start(binary, kube, &lease, &format!("follower-{i}"), 15);
        follower.send("acquire").await;
        sleep(Duration::from_millis(150)).await;
        let released_at = Instant::now();
        holder.run("release", "released").await;
        follower.expect("acquired").await;
        latencies.push(released_at.elapsed());
        follower.run("release", "released").await;
    }
    Sample(latencies)
}

/// The holder stops renewing right after acquiring → the follower holds; minus the
/// lease duration.
pub async fn crash(binary: &Path, kube: &Kube, seconds: u64, n: usize) -> Sample {
    let mut latencies = Vec::with_capacity(n);
    for _ in 0..n {
        let lease = fresh("kle-crash");
        let mut crashed = Contender::start(binary, kube, &lease, "crashed", seconds);
        crashed.run("acquire", "acquired").await;
        let last_write = Instant::now();
        crashed.run("crash", "stopped").await;
        let mut follower = Contender::start(binary, kube, &lease, "follower", seconds);
        follower.run("acquire", "acquired").await;
        latencies.push(
            last_write
                .elapsed()
                .saturating_sub(Duration::from_secs(seconds)),
        );
        follower.run("release", "released").await;
    }
    Sample(latencies)
}

/// Lease requests (and reads) per second that one held lease costs.
pub async fn steady(binary: &Path, kube: &Kube, hold: Duration) -> crate::subjects::Served {
    let mut holder = Contender::start(binary, kube, &fresh("kle-steady"), "bench", 15);
    holder.run("acquire", "acquired").await;
    let before = crate::subjects::kube_served(kube).await;
    sleep(hold).await;
    let after = crate::subjects::kube_served(kube).await;
    holder.run("release", "released").await;
    after.per_second_since(before, hold)
}
