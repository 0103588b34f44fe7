//! A client-go leader-election contender, for interoperability tests.

use std::{
    ffi::OsString,
    path::PathBuf,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use crate::{Kube, KubeVersion, process::Server};

/// A Go process running client-go's leader election (`LeaseLock`, ReleaseOnCancel) on a
/// Lease: `tests/go/lease-contender`, built by `scripts/provision` twice, with the
/// client-go of Kubernetes v1.20.2 and with client-go v0.36.3; each runs against the
/// apiserver of its release ([`Kube::version`]). Stopped on drop.
#[derive(Debug)]
pub struct GoContender {
    server: Server,
    /// When it was killed: a killed process leads no more, though it could not say so.
    killed_at: Option<SystemTime>,
}

/// When a contender led: from `start` until `end` (`None`: still leading).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Term {
    /// When it started leading.
    pub start: SystemTime,
    /// When it stopped, if it did.
    pub end: Option<SystemTime>,
}

impl Term {
    /// Whether two terms share an instant.
    pub fn overlaps(&self, other: &Term) -> bool {
        let ends_after =
            |term: &Term, instant: SystemTime| term.end.is_none_or(|end| end > instant);
        ends_after(self, other.start) && ends_after(other, self.start)
    }
}

impl GoContender {
    /// Starts campaigning for Lease `name` as `identity`, with client-go's lease duration
    /// `lease_duration`, a renew deadline of two thirds of it and a retry period of a
    /// sixth.
    pub fn start(kube: &Kube, name: &str, identity: &str, lease_duration: Duration) -> Self {
        Self::spawn(
            kube,
            "lease-contender",
            binary(kube.version()),
            [name, identity],
            lease_duration,
            Vec::new(),
        )
    }

    /// Starts a client-go v0.36 candidate in coordinated leader election (KEP-4355) for
    /// Lease `name` as `identity`: `tests/go/coordinated-candidate`, built by
    /// `scripts/provision` for Kubernetes 1.36 only. It announces a LeaseCandidate with
    /// `binary_version` and `emulation_version` (strategy OldestEmulationVersion) and leads
    /// only when the election controller names it, with client-go's lease duration
    /// `lease_duration`, a renew deadline of two thirds of it and a retry period of a
    /// sixth. On [`terminate`](GoContender::terminate) it reports that it stops, deletes
    /// its LeaseCandidate, then releases the Lease (ReleaseOnCancel).
    pub fn start_coordinated(
        kube: &Kube,
        name: &str,
        identity: &str,
        lease_duration: Duration,
        binary_version: &str,
        emulation_version: &str,
    ) -> Self {
        assert_eq!(
            kube.version(),
            KubeVersion::V1_36,
            "coordinated leader election needs Kubernetes 1.36"
        );
        Self::spawn(
            kube,
            "coordinated-candidate",
            coordinated_candidate_binary(),
            [name, identity],
            lease_duration,
            vec![
                format!("-binary-version={binary_version}"),
                format!("-emulation-version={emulation_version}"),
            ],
        )
    }

    /// Runs `program` for Lease `name` as `identity` in the test cluster, with client-go's
    /// timing derived from `lease_duration`, and `extra` arguments.
    fn spawn(
        kube: &Kube,
        program: &str,
        binary: PathBuf,
        [name, identity]: [&str; 2],
        lease_duration: Duration,
        extra: Vec<String>,
    ) -> Self {
        let kubeconfig = kube
            .kubeconfig()
            .unwrap_or_else(|| panic!("the test cluster has no kubeconfig"));
        let args = [
            format!("-kubeconfig={}", kubeconfig.display()),
            format!("-namespace={}", kube.namespace()),
            format!("-name={name}"),
            format!("-identity={identity}"),
            format!("-lease-duration={}ms", lease_duration.as_millis()),
            format!("-renew-deadline={}ms", (lease_duration * 2 / 3).as_millis()),
            format!("-retry-period={}ms", (lease_duration / 6).as_millis()),
        ]
        .into_iter()
        .chain(extra);
        let server = Server::spawn(
            program,
            binary,
            args.map(OsString::from).collect(),
            Server::make_dir(program),
        );
        Self {
            server,
            killed_at: None,
        }
    }

    /// The terms it has led so far, from its own reports.
    pub fn terms(&self) -> Vec<Term> {
        let mut terms: Vec<Term> = Vec::new();
        for line in self.server.log().lines() {
            let mut words = line.split_whitespace();
            let (Some(event), Some(nanos)) = (
                words.next(),
                words.next().and_then(|n| n.parse::<u64>().ok()),
            ) else {
                continue;
            };
            let at = UNIX_EPOCH + Duration::from_nanos(nanos);
            match event {
                "LEADING" => terms.push(Term {
                    start: at,
                    end: None,
                }),
                "STOPPED" | "EXITED" => {
                    if let Some(open) = terms.last_mut().filter(|t| t.end.is_none()) {
                        open.end = Some(at);
                    }
                }
                _ => {}
            }
        }
        if let (Some(killed_at), Some(open)) =
            (self.killed_at, terms.last_mut().filter(|t| t.end.is_none()))
        {
            open.end = Some(killed_at);
        }
        terms
    }

    /// Whether it reports leading now.
    pub fn is_leading(&self) -> bool {
        self.server.is_alive() && self.terms().last().is_some_and(|t| t.end.is_none())
    }

    /// SIGTERM: client-go stops leading and releases the Lease (ReleaseOnCancel).
    pub fn terminate(&self) {
        self.server.terminate();
    }

    /// SIGKILL: a crash, no release.
    pub fn kill(&mut self) {
        self.server.kill();
        self.killed_at = Some(SystemTime::now());
    }

    /// Whether the process still runs.
    pub fn is_alive(&self) -> bool {
        self.server.is_alive()
    }

    /// Its output, for failure messages.
    pub fn log(&self) -> String {
        self.server.log()
    }
}

fn binary(version: KubeVersion) -> PathBuf {
    let binary = version.contender();
    assert!(
        binary.is_file(),
        "no client-go contender for the {version} at {}: run scripts/provision (it builds \
         tests/go/lease-contender)",
        binary.display()
    );
    binary
}

/// `tests/go/coordinated-candidate`, as `scripts/provision` caches it in `$LOCKS_CACHE`
/// (default `~/.cache/locks`).
fn coordinated_candidate_binary() -> PathBuf {
    let binary = crate::kube::cache().join("coordinated-candidate-v0.36/coordinated-candidate");
    assert!(
        binary.is_file(),
        "no client-go coordinated candidate at {}: run scripts/provision (it builds \
         tests/go/coordinated-candidate for Kubernetes 1.36)",
        binary.display()
    );
    binary
}
