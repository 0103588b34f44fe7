//! A `LeaseCandidate` (coordination.k8s.io/v1beta1) announcing one replica to Kubernetes'
//! coordinated leader election (KEP-4355), as client-go's `LeaseCandidate` does.
//!
//! The election controller (in kube-apiserver, behind the `CoordinatedLeaderElection`
//! gate) elects among the candidates of a Lease: it pings them (sets `spec.pingTime`),
//! elects, among those that answered (a `spec.renewTime` after the ping) within its
//! election duration, the one with the oldest emulation version (then the oldest binary
//! version), and names it in the Lease. This announcer keeps the candidate: it creates
//! it, answers every ping and renews it periodically so that it is never collected.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1beta1::{LeaseCandidate, LeaseCandidateSpec};
use kube::{
    Api, Client,
    api::{ObjectMeta, PostParams},
    runtime::watcher,
};
use lock_core::{Error, LockName, Result};

use crate::{
    error::{Access, kube_error, status},
    record,
};

/// The only strategy the election controller implements.
pub const OLDEST_EMULATION_VERSION: &str = "OldestEmulationVersion";

/// How often a candidate is renewed without being pinged, as in client-go: well within
/// the 15 minutes after which the controller forces a new election and the 30 after
/// which it collects a candidate.
pub const DEFAULT_CANDIDATE_RENEW_INTERVAL: Duration = Duration::from_secs(5 * 60);

/// The longest wait before trying again after a transient error.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What a candidate needs on LeaseCandidates.
const LEASE_CANDIDATES: Access<'static> = Access {
    who: "the candidate",
    verbs: "get, list, watch, create, update (and delete to withdraw)",
    resource: "leasecandidates.coordination.k8s.io",
};

/// One replica's `LeaseCandidate` for a Lease, kept by [`run`](Candidate::run) beside a
/// [`LeaderElector`](lock_core::LeaderElector) on a
/// [`KubeBackend::coordinated`](crate::KubeBackend::coordinated) lock.
///
/// The candidate's name is the replica's identity: the election controller names the
/// elected candidate's name as the Lease's holder, so it must be the lock's identity.
///
/// ```no_run
/// # async fn run(client: kube::Client) -> lock_core::Result<()> {
/// let candidate = lock_kube::Candidate::builder(client, "my-namespace", "my-controller", "pod-a")
///     .binary_version("1.36.0")
///     .emulation_version("1.35.0")
///     .build()?;
/// candidate.run().await
/// # }
/// ```
#[derive(Clone)]
pub struct Candidate {
    api: Api<LeaseCandidate>,
    namespace: String,
    identity: String,
    spec: LeaseCandidateSpec,
    renew_interval: Duration,
}

impl std::fmt::Debug for Candidate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Candidate")
            .field("namespace", &self.namespace)
            .field("identity", &self.identity)
            .field("lease", &self.spec.lease_name)
            .field("binary_version", &self.spec.binary_version)
            .field("emulation_version", &self.spec.emulation_version)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Candidate`]; the versions are required.
#[must_use]
pub struct CandidateBuilder {
    client: Client,
    namespace: String,
    lease: String,
    identity: String,
    binary_version: Option<String>,
    emulation_version: Option<String>,
    renew_interval: Duration,
}

impl std::fmt::Debug for CandidateBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self {
            lease, identity, ..
        } = self;
        write!(
            f,
            "CandidateBuilder {{ lease: {lease:?}, identity: {identity:?}, .. }}"
        )
    }
}

impl CandidateBuilder {
    /// The replica's binary version, a semantic version `MAJOR.MINOR.PATCH` (e.g.
    /// "1.36.0"), as the apiserver requires.
    pub fn binary_version(mut self, version: &str) -> Self {
        self.binary_version = Some(version.to_owned());
        self
    }

    /// The version the replica emulates, `MAJOR.MINOR.PATCH`, at most its binary
    /// version. The candidate with the oldest one is elected.
    pub fn emulation_version(mut self, version: &str) -> Self {
        self.emulation_version = Some(version.to_owned());
        self
    }

    /// How often the candidate is renewed without being pinged (default:
    /// [`DEFAULT_CANDIDATE_RENEW_INTERVAL`]).
    pub fn renew_interval(mut self, interval: Duration) -> Self {
        self.renew_interval = interval;
        self
    }

    /// Checks the options: lease name and identity must be Kubernetes object names,
    /// both versions given and valid, the emulation version at most the binary version,
    /// the renew interval positive.
    pub fn build(self) -> Result<Candidate> {
        LockName::new(&self.lease)?;
        // The identity is the candidate's object name.
        LockName::new(&self.identity).map_err(|_| Error::InvalidIdentity {
            identity: self.identity.clone(),
            reason: "a coordinated candidate's identity is its LeaseCandidate's name, so it \
                     must be a Kubernetes object name (lowercase DNS-1123 subdomain)"
                .to_owned(),
        })?;
        let required = |version: Option<String>, which: &str| {
            version.ok_or_else(|| Error::InvalidOption {
                reason: format!("a coordinated candidate needs its {which} version"),
            })
        };
        let binary = required(self.binary_version, "binary")?;
        let emulation = required(self.emulation_version, "emulation")?;
        let (binary_parsed, emulation_parsed) = (
            parse_version(&binary, "binary")?,
            parse_version(&emulation, "emulation")?,
        );
        if emulation_parsed > binary_parsed {
            return Err(Error::InvalidOption {
                reason: format!(
                    "emulation version {emulation:?} is newer than binary version {binary:?}"
                ),
            });
        }
        if self.renew_interval.is_zero() {
            return Err(Error::InvalidOption {
                reason: "the candidate's renew interval must be positive".to_owned(),
            });
        }
        Ok(Candidate {
            api: Api::namespaced(self.client, &self.namespace),
            namespace: self.namespace,
            spec: LeaseCandidateSpec {
                lease_name: self.lease,
                binary_version: binary,
                emulation_version: Some(emulation),
                strategy: OLDEST_EMULATION_VERSION.to_owned(),
                ..LeaseCandidateSpec::default()
            },
            identity: self.identity,
            renew_interval: self.renew_interval,
        })
    }
}

/// `MAJOR.MINOR.PATCH`, numbers only (no pre-release or build), as (major, minor, patch).
fn parse_version(version: &str, which: &str) -> Result<(u64, u64, u64)> {
    let invalid = || Error::InvalidOption {
        reason: format!(
            "{which} version {version:?} is not a semantic version MAJOR.MINOR.PATCH (e.g. \"1.36.0\")"
        ),
    };
    let mut parts = version.split('.').map(|part| {
        (!part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
            .then(|| part.parse::<u64>().ok())
            .flatten()
    });
    let major = parts.next().flatten().ok_or_else(invalid)?;
    let minor = parts.next().flatten().ok_or_else(invalid)?;
    let patch = parts.next().flatten().ok_or_else(invalid)?;
    if parts.next().is_some() {
        return Err(invalid());
    }
    Ok((major, minor, patch))
}

/// What the candidate on the server needs now.
enum Due {
    /// Nothing until the next periodic renewal.
    Nothing,
    /// Absent: create it.
    Create,
    /// Pinged, or its periodic renewal is due: write a new renewTime.
    Renew(Box<LeaseCandidate>),
}

impl Candidate {
    /// A candidate `identity` (the lock's identity) for the Lease `lease` in
    /// `namespace`.
    pub fn builder(
        client: Client,
        namespace: &str,
        lease: &str,
        identity: &str,
    ) -> CandidateBuilder {
        CandidateBuilder {
            client,
            namespace: namespace.to_owned(),
            lease: lease.to_owned(),
            identity: identity.to_owned(),
            binary_version: None,
            emulation_version: None,
            renew_interval: DEFAULT_CANDIDATE_RENEW_INTERVAL,
        }
    }

    /// The candidate's name: the replica's identity.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Keeps the candidate until dropped: creates it if absent, renews it (a new
    /// `renewTime`) whenever the election controller pings it (`pingTime` later than
    /// `renewTime`) and every renew interval. Transient errors are retried with
    /// backoff; it returns only on an error retrying cannot fix, e.g.
    /// [`Error::Unsupported`] from an apiserver that does not serve
    /// `coordination.k8s.io/v1beta1` LeaseCandidates (Kubernetes before 1.33, or without
    /// the `CoordinatedLeaderElection` gate and that API version enabled).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future stops answering pings at once: the controller no longer
    /// elects this replica in any election it starts after that (the candidate's last
    /// answer is older than the ping), and it collects the LeaseCandidate 30 minutes
    /// after its last renewal. It does not touch the Lease: stop the elector too (a
    /// leader that keeps renewing keeps leading). A write in flight when dropped either
    /// lands or not; neither leaves anything held.
    pub async fn run(&self) -> Result<()> {
        let mut retries = lock_core::retry_delays(MAX_BACKOFF);
        loop {
            match self.keep().await {
                Ok(()) => retries = lock_core::retry_delays(MAX_BACKOFF),
                Err(error) if error.is_transient() => {
                    tracing::debug!(candidate = %self.identity, %error, "lease candidate: retrying");
                    tokio::time::sleep(retries.next().unwrap_or(MAX_BACKOFF)).await;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Watches the candidate, acting on what each event says is due, until the watch
    /// fails or a write does; a periodic renewal is due `renew_interval` after the last.
    async fn keep(&self) -> Result<()> {
        let config = watcher::Config::default().fields(&format!("metadata.name={}", self.identity));
        let mut events = Box::pin(watcher(self.api.clone(), config));
        let mut seen: Option<LeaseCandidate> = None;
        let mut renewed_at = tokio::time::Instant::now();
        let mut initial = Vec::new();
        loop {
            let due_at = renewed_at + self.renew_interval;
            let event = tokio::select! {
                event = events.next() => event,
                () = tokio::time::sleep_until(due_at) => {
                    if let Some(current) = seen.clone() {
                        seen = Some(self.renew(current).await?);
                        renewed_at = tokio::time::Instant::now();
                    }
                    continue;
                }
            };
            let due = match event {
                None => return Err(Error::transient("lease candidate watch ended")),
                Some(Err(error)) => return Err(self.watch_error(error)),
                Some(Ok(watcher::Event::Init)) => {
                    initial.clear();
                    Due::Nothing
                }
                Some(Ok(watcher::Event::InitApply(candidate))) => {
                    initial.push(candidate);
                    Due::Nothing
                }
                Some(Ok(watcher::Event::InitDone)) => match initial.pop() {
                    None => Due::Create,
                    Some(candidate) => self.due(candidate, true),
                },
                Some(Ok(watcher::Event::Apply(candidate))) => self.due(candidate, false),
                Some(Ok(watcher::Event::Delete(_))) => Due::Create,
            };
            match due {
                Due::Nothing => {}
                Due::Create => {
                    seen = Some(self.create().await?);
                    renewed_at = tokio::time::Instant::now();
                }
                Due::Renew(candidate) => {
                    seen = Some(self.renew(*candidate).await?);
                    renewed_at = tokio::time::Instant::now();
                }
            }
        }
    }

    /// What `candidate` as seen needs: a renewal if pinged since its last renewal, if
    /// it does not say what we announce, or (`first` sight) always, as client-go does.
    fn due(&self, candidate: LeaseCandidate, first: bool) -> Due {
        let spec = spec_of(&candidate);
        let pinged = match (&spec.ping_time, &spec.renew_time) {
            (Some(ping), Some(renew)) => ping.0 > renew.0,
            (Some(_), None) => true,
            (None, _) => false,
        };
        let differs = spec.lease_name != self.spec.lease_name
            || spec.binary_version != self.spec.binary_version
            || spec.emulation_version != self.spec.emulation_version
            || spec.strategy != self.spec.strategy;
        if first || pinged || differs {
            Due::Renew(Box::new(candidate))
        } else {
            Due::Nothing
        }
    }

    async fn create(&self) -> Result<LeaseCandidate> {
        let candidate = LeaseCandidate {
            metadata: ObjectMeta {
                name: Some(self.identity.clone()),
                ..ObjectMeta::default()
            },
            spec: spec_field(LeaseCandidateSpec {
                renew_time: Some(record::now()),
                ..self.spec.clone()
            }),
        };
        match self.api.create(&PostParams::default(), &candidate).await {
            Ok(created) => Ok(created),
            // Created meanwhile (by an earlier run): the watch shows it.
            Err(error) if status(&error) == Some(409) => Err(Error::backend(
                "lease candidate created meanwhile; watching it again",
                true,
                error,
            )),
            Err(error) => Err(self.api_error(error, "create the lease candidate")),
        }
    }

    /// Writes a new renewTime (and what we announce), guarded by the version seen.
    async fn renew(&self, mut candidate: LeaseCandidate) -> Result<LeaseCandidate> {
        let previous = spec_of(&candidate);
        candidate.spec = spec_field(LeaseCandidateSpec {
            renew_time: Some(record::now()),
            ping_time: previous.ping_time,
            ..self.spec.clone()
        });
        match self
            .api
            .replace(&self.identity, &PostParams::default(), &candidate)
            .await
        {
            Ok(renewed) => Ok(renewed),
            // Pinged or deleted meanwhile: the watch shows the newer version.
            Err(error) if matches!(status(&error), Some(409 | 404)) => Err(Error::backend(
                "lease candidate changed meanwhile; watching it again",
                true,
                error,
            )),
            Err(error) => Err(self.api_error(error, "renew the lease candidate")),
        }
    }

    /// Deletes the LeaseCandidate, so that the election controller stops considering
    /// this replica at once instead of until its last answer is older than a ping.
    /// Call it after dropping [`run`](Candidate::run) (which would create it again) and
    /// before the elector releases the Lease at shutdown: otherwise the controller may
    /// elect this replica again the moment it releases, and the next leader waits a
    /// lease duration plus an election for that term to expire. Absent is fine.
    ///
    /// Needs the `delete` verb on `leasecandidates.coordination.k8s.io`.
    pub async fn withdraw(&self) -> Result<()> {
        match self
            .api
            .delete(&self.identity, &kube::api::DeleteParams::default())
            .await
        {
            Ok(_) => Ok(()),
            Err(error) if status(&error) == Some(404) && !self.unserved(&error) => Ok(()),
            Err(error) => Err(self.api_error(error, "delete the lease candidate")),
        }
    }

    /// A watch that could not start is an apiserver error like any other; one that
    /// failed later (a dropped stream, `410 Gone`) is watched again.
    fn watch_error(&self, error: watcher::Error) -> Error {
        const FAILED: &str = "lease candidate watch failed; watching it again";
        match error {
            watcher::Error::InitialListFailed(error) | watcher::Error::WatchStartFailed(error) => {
                self.api_error(error, "watch the lease candidate")
            }
            watcher::Error::WatchFailed(error) => Error::backend(FAILED, true, error),
            watcher::Error::WatchError(status) => {
                Error::backend(FAILED, true, kube::Error::Api(status))
            }
            other @ watcher::Error::NoResourceVersion => Error::backend(FAILED, true, other),
        }
    }

    /// Whether `error` says the apiserver does not serve LeaseCandidates at all (a 404
    /// with no object or namespace named), rather than that one is absent.
    fn unserved(&self, error: &kube::Error) -> bool {
        match error {
            kube::Error::Api(status) => {
                status.code == 404
                    && status.reason == "NotFound"
                    && status
                        .details
                        .as_ref()
                        .is_none_or(|details| details.name.is_empty())
                    && !status.message.contains("namespaces")
            }
            _ => false,
        }
    }

    /// A 404 on the collection means the API is not served: `Unsupported`. Any other
    /// error is a backend error whose source is the kube error.
    fn api_error(&self, error: kube::Error, what: &str) -> Error {
        if self.unserved(&error) {
            return Error::Unsupported {
                reason: format!(
                    "cannot {what}: the apiserver does not serve coordination.k8s.io/v1beta1 \
                     LeaseCandidates (coordinated leader election needs Kubernetes 1.33 or \
                     newer with the CoordinatedLeaderElection feature gate and \
                     --runtime-config=coordination.k8s.io/v1beta1=true): {error}"
                ),
            };
        }
        kube_error(error, what, &LEASE_CANDIDATES, Some(&self.namespace))
    }
}

// `LeaseCandidate.spec` is optional in the API of Kubernetes 1.35 and before, and
// required from 1.36 on: the same code for whichever API version the binary picks.
k8s_openapi::k8s_if_le_1_35! {
    /// The candidate's spec (empty if it has none).
    fn spec_of(candidate: &LeaseCandidate) -> LeaseCandidateSpec {
        candidate.spec.clone().unwrap_or_default()
    }

    /// `spec` as the candidate's `spec` field.
    fn spec_field(spec: LeaseCandidateSpec) -> Option<LeaseCandidateSpec> {
        Some(spec)
    }
}

k8s_openapi::k8s_if_ge_1_36! {
    /// The candidate's spec.
    fn spec_of(candidate: &LeaseCandidate) -> LeaseCandidateSpec {
        candidate.spec.clone()
    }

    /// `spec` as the candidate's `spec` field.
    fn spec_field(spec: LeaseCandidateSpec) -> LeaseCandidateSpec {
        spec
    }
}

#[cfg(test)]
mod tests {
    use super::parse_version;

    #[test]
    fn versions_are_major_minor_patch() {
        assert_eq!(parse_version("0.0.0", "binary").ok(), Some((0, 0, 0)));
        assert_eq!(parse_version("1.36.3", "binary").ok(), Some((1, 36, 3)));
        for bad in [
            "",
            "1",
            "1.",
            "1.36",
            "v1.36.0",
            "1.36.3.4",
            "1.x",
            "1.36-beta",
            " 1.36",
        ] {
            assert!(
                matches!(
                    parse_version(bad, "binary"),
                    Err(lock_core::Error::InvalidOption { .. })
                ),
                "{bad:?}"
            );
        }
    }
}
