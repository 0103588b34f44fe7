//! The lock-core primitives over `coordination.k8s.io/v1` Leases.
//!
//! Every mutation is a compare-and-set: a create (POST; 409 means someone else created
//! it first) or a replace (PUT) carrying the resourceVersion it was decided on (409 means
//! someone else wrote since). Nothing is ever patched unconditionally, and a Lease
//! changed by another writer is re-read and re-checked, never overwritten blindly. One
//! loop does this for every operation: `Inner::compare_and_set`, each operation giving
//! only its decision on the Lease it is shown.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex, PoisonError, RwLock},
    time::Duration,
};

use async_trait::async_trait;
use futures::StreamExt;
use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, OwnerReference},
};
use kube::{
    Api, Client,
    api::{ListParams, ObjectMeta, PostParams},
    runtime::watcher,
};
use lock_core::{
    Backend, Changes, Error, FencingToken, Lease as Held, Listed, LockInfo, LockName, Release,
    Renew, Result, Take,
};

use crate::{
    error::{CONFLICT_RETRIES, LEASES, kept_changing, kube_error, status},
    known::Known,
    record::{self, Record},
    watch,
};

/// Kubernetes Leases as a lock backend, in one namespace, over the `kube::Client` you
/// already have.
///
/// Records are those of client-go's `LeaseLock`, so Go and Rust controllers can contend
/// for the same Lease; use the same lease duration on both sides (client-go judges
/// expiry by its own configured duration). The fencing token is the resourceVersion of
/// the write that acquired the lease.
///
/// ```no_run
/// use lock_core::Lock;
/// use lock_kube::KubeBackend;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let client = kube::Client::try_default().await?;
/// let backend = KubeBackend::new(client, "my-namespace");
/// let lock = Lock::new(backend, "my-controller", std::env::var("POD_NAME")?)?;
/// let guard = lock.acquire().await?;
/// # drop(guard); Ok(()) }
/// ```
#[derive(Clone)]
pub struct KubeBackend {
    inner: Arc<Inner>,
}

struct Inner {
    api: Api<Lease>,
    namespace: String,
    known: Arc<Known>,
    /// Coordinated leader election: `take` only renews a Lease the election controller
    /// gave us, never takes one.
    coordinated: bool,
    /// The labels and owner references of the Leases this backend creates.
    created: RwLock<Created>,
    /// Each acquisition this process holds, by lease name and token: its holder and
    /// acquireTime, which tell our record from a later acquisition by the same identity.
    acquisitions: Mutex<HashMap<(String, FencingToken), Acquisition>>,
}

/// What a Lease this backend creates carries besides its name.
#[derive(Clone, Debug, Default)]
struct Created {
    labels: BTreeMap<String, String>,
    owners: Vec<OwnerReference>,
}

/// What identifies one acquisition in the Lease's record.
#[derive(Clone, Debug, PartialEq)]
struct Acquisition {
    holder: String,
    /// `None` for a Lease the election controller handed us: it writes no acquireTime.
    acquire_time: Option<MicroTime>,
}

impl Acquisition {
    /// Whether `record` is still this acquisition: the one place that decides whether
    /// a Lease is ours.
    fn is(&self, record: &Record) -> bool {
        match &self.acquire_time {
            Some(time) => record.is_acquisition(&self.holder, time),
            None => {
                record.holder.as_deref() == Some(self.holder.as_str())
                    && record.acquire_time.is_none()
            }
        }
    }
}

impl std::fmt::Debug for KubeBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeBackend")
            .field("namespace", &self.inner.namespace)
            .finish_non_exhaustive()
    }
}

/// A coordinated Lease nobody holds yet, as a waiter reports it.
fn nobody(ttl: Duration) -> LockInfo {
    LockInfo::new(String::new(), ttl)
}

/// The outcome of one compare-and-set write.
enum Write {
    Done(Box<Lease>),
    /// Someone else wrote (or created) it first: the apiserver's 409.
    Conflict(kube::Error),
    /// The Lease was deleted: the apiserver's 404.
    Gone(kube::Error),
}

/// What a [compare-and-set](Inner::compare_and_set) decides first.
#[derive(Clone, Copy, Debug)]
enum Start {
    /// The Lease as this process last saw it (by the watch or its own requests), read
    /// now only if never seen: a decision that may not act on an old record asks for
    /// [`Decision::ReadFresh`].
    Known,
    /// The Lease read now.
    Fresh,
}

/// What a compare-and-set decides on the Lease it is shown.
enum Decision<T> {
    /// Write this spec: create the Lease if it was absent, else replace the version shown,
    /// guarded by its resourceVersion.
    Write(LeaseSpec),
    /// What was shown may be old (it was known, not read): read it now and decide again.
    ReadFresh,
    /// Write nothing: the operation ends with this.
    Stop(T),
}

/// How a compare-and-set ended.
enum Settled<T> {
    /// The decided spec was written; the Lease as the apiserver answered.
    Written(Box<Lease>),
    /// The decision was to stop with this.
    Stopped(T),
}

impl KubeBackend {
    /// Locks are Leases in `namespace`.
    ///
    /// A lease found held is taken over only after its record stayed unchanged for its
    /// `leaseDurationSeconds` of this process's own observation, as client-go does.
    pub fn new(client: Client, namespace: &str) -> Self {
        Self::with_known(client, namespace, Known::default())
    }

    /// Like [`new`](KubeBackend::new), but a lease seen for the first time is judged by
    /// its holder's `renewTime`, trusted to be within `skew` of this node's clock: a
    /// freshly started process then need not wait a whole lease duration for a lease
    /// that was abandoned long ago. Only safe if node clocks are synchronised within
    /// `skew`.
    pub fn trusting_renew_time(client: Client, namespace: &str, skew: Duration) -> Self {
        Self::with_known(client, namespace, Known::trusting_renew_time(skew))
    }

    /// Locks are Leases in `namespace` that Kubernetes' coordinated leader election
    /// (KEP-4355) assigns: [`take`](Backend::take) acquires only a Lease the election
    /// controller names this holder in and that has not expired by this process's own
    /// observation, renewing it at once. Announce each replica with a
    /// [`Candidate`](crate::Candidate) whose identity is the lock's; see the
    /// [crate docs](crate#coordinated-leader-election).
    ///
    /// The fencing token is the resourceVersion of that first renewal, which follows the
    /// controller's write naming this holder: larger than every earlier token.
    /// Renewing and releasing are as in [`new`](KubeBackend::new); a renewal answers
    /// [`Renew::HandOver`] once the controller names another `preferredHolder`.
    pub fn coordinated(client: Client, namespace: &str) -> Self {
        let mut backend = Self::new(client, namespace);
        if let Some(inner) = Arc::get_mut(&mut backend.inner) {
            inner.coordinated = true;
        }
        backend
    }

    /// Locks are Leases in the client's default namespace (its kubeconfig context's, or
    /// the pod's own in a cluster), as `kube::Api::default_namespaced`.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let client = kube::Client::try_default().await?;
    /// let backend = lock_kube::KubeBackend::default_namespaced(client);
    /// let lock = lock_core::Lock::new(backend, "my-controller", lock_kube::default_identity())?;
    /// # drop(lock); Ok(()) }
    /// ```
    pub fn default_namespaced(client: Client) -> Self {
        let namespace = client.default_namespace().to_owned();
        Self::new(client, &namespace)
    }

    /// Gives the Leases this backend creates these labels (for example the
    /// controller's name, `app.kubernetes.io/name`), to find them with a selector. A
    /// Lease that exists already keeps its own; a coordinated backend creates none.
    /// Clones of a backend share this setting (set it before making locks): it applies
    /// to every Lease any of them creates from then on, and labels given again add to
    /// those given before.
    ///
    /// ```no_run
    /// # fn run(client: kube::Client) {
    /// let backend = lock_kube::KubeBackend::new(client, "my-namespace")
    ///     .with_labels([("app.kubernetes.io/name", "my-controller")]);
    /// # drop(backend); }
    /// ```
    pub fn with_labels<K: Into<String>, V: Into<String>>(
        self,
        labels: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.inner
            .created
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .labels
            .extend(labels.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// Makes the Leases this backend creates owned by `owner` (for example the
    /// controller's Deployment), so that Kubernetes' garbage collector deletes them with
    /// it. A Lease that exists already keeps its own owners; clones share this setting,
    /// as [`with_labels`](KubeBackend::with_labels)'. Reading the owner needs its own
    /// RBAC (`get` on `deployments.apps`), and clusters that enforce owner-reference
    /// permissions (the `OwnerReferencesPermissionEnforcement` admission plugin) also
    /// want `delete` on `leases`.
    ///
    /// ```no_run
    /// use k8s_openapi::api::apps::v1::Deployment;
    /// use kube::{Api, Resource};
    ///
    /// # async fn run(client: kube::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// let deployment = Api::<Deployment>::namespaced(client.clone(), "my-namespace")
    ///     .get("my-controller")
    ///     .await?;
    /// let backend = lock_kube::KubeBackend::new(client, "my-namespace")
    ///     .owned_by(deployment.owner_ref(&()).ok_or("the Deployment has no uid")?);
    /// # drop(backend); Ok(()) }
    /// ```
    pub fn owned_by(self, owner: OwnerReference) -> Self {
        self.inner
            .created
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .owners
            .push(owner);
        self
    }

    fn with_known(client: Client, namespace: &str, known: Known) -> Self {
        Self {
            inner: Arc::new(Inner {
                api: Api::namespaced(client, namespace),
                namespace: namespace.to_owned(),
                known: Arc::new(known),
                coordinated: false,
                created: RwLock::default(),
                acquisitions: Mutex::default(),
            }),
        }
    }

    /// Whether this backend leaves acquisitions to coordinated leader election.
    pub fn is_coordinated(&self) -> bool {
        self.inner.coordinated
    }

    /// The namespace of the Leases.
    pub fn namespace(&self) -> &str {
        &self.inner.namespace
    }
}

impl Inner {
    /// A lock error for the kube error of a request to `what`: its context names the
    /// verbs a 403 needs, its source is the kube error.
    fn error(&self, error: kube::Error, what: &str) -> Error {
        kube_error(error, what, &LEASES, Some(&self.namespace))
    }

    /// The Lease read now (and remembered); `None` if absent.
    async fn read(&self, name: &str) -> Result<Option<Lease>> {
        match self.api.get_opt(name).await {
            Ok(Some(lease)) => {
                self.known.saw(&lease);
                Ok(Some(lease))
            }
            Ok(None) => {
                self.known.forget(name);
                Ok(None)
            }
            Err(error) => Err(self.error(error, &format!("read lease {name}"))),
        }
    }

    async fn create(&self, name: &str, spec: LeaseSpec) -> Result<Write> {
        let Created { labels, owners } = self
            .created
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                labels: (!labels.is_empty()).then_some(labels),
                owner_references: (!owners.is_empty()).then_some(owners),
                ..ObjectMeta::default()
            },
            spec: Some(spec),
        };
        match self.api.create(&PostParams::default(), &lease).await {
            Ok(created) => {
                self.known.saw(&created);
                Ok(Write::Done(Box::new(created)))
            }
            Err(error) if status(&error) == Some(409) => Ok(Write::Conflict(error)),
            Err(error) => Err(self.error(error, &format!("create lease {name}"))),
        }
    }

    /// Replaces the spec of `current`, only if it is still the version on the server.
    async fn replace(&self, name: &str, mut current: Lease, spec: LeaseSpec) -> Result<Write> {
        current.spec = Some(spec);
        match self
            .api
            .replace(name, &PostParams::default(), &current)
            .await
        {
            Ok(written) => {
                self.known.saw(&written);
                Ok(Write::Done(Box::new(written)))
            }
            Err(error) if status(&error) == Some(409) => Ok(Write::Conflict(error)),
            Err(error) if status(&error) == Some(404) => {
                self.known.forget(name);
                Ok(Write::Gone(error))
            }
            Err(error) => Err(self.error(error, &format!("update lease {name}"))),
        }
    }

    /// The one compare-and-set loop of every write to a Lease. It shows `decide` the
    /// Lease (`None` if absent) and whether that is `fresh` (just read, or just answered
    /// by the apiserver) rather than known from before, and does what it decides: write
    /// (a create, or a replace guarded by the resourceVersion shown), read fresh and decide
    /// again, or stop. A write that loses the race is never retried blindly: after a 409
    /// (someone wrote or created it first) the Lease is read again and decided on again;
    /// a replace answered 404 shows it as absent (the answer is as fresh as a read). After
    /// [`CONFLICT_RETRIES`] lost races in a row it gives up with a transient error naming
    /// `what` failed, whose source is the last answer.
    async fn compare_and_set<T>(
        &self,
        name: &str,
        start: Start,
        what: &str,
        mut decide: impl FnMut(Option<&Lease>, bool) -> Result<Decision<T>>,
    ) -> Result<Settled<T>> {
        let known = match start {
            Start::Known => self.known.lease(name),
            Start::Fresh => None,
        };
        let (mut lease, mut fresh) = match known {
            Some(known) => (Some(known), false),
            None => (self.read(name).await?, true),
        };
        let mut lost = 0;
        loop {
            let spec = match decide(lease.as_ref(), fresh)? {
                Decision::Write(spec) => spec,
                Decision::ReadFresh => {
                    debug_assert!(!fresh, "only a known Lease needs a fresh read");
                    (lease, fresh) = (self.read(name).await?, true);
                    continue;
                }
                Decision::Stop(value) => return Ok(Settled::Stopped(value)),
            };
            let written = match lease {
                None => self.create(name, spec).await?,
                Some(current) => self.replace(name, current, spec).await?,
            };
            let (answer, deleted) = match written {
                Write::Done(written) => return Ok(Settled::Written(written)),
                Write::Conflict(answer) => (answer, false),
                Write::Gone(answer) => (answer, true),
            };
            lost += 1;
            if lost == CONFLICT_RETRIES {
                return Err(kept_changing(&format!("{what} lease {name}"), answer));
            }
            // Deleted meanwhile: the answer is as fresh as a read that found nothing.
            lease = if deleted {
                None
            } else {
                self.read(name).await?
            };
            fresh = true;
        }
    }

    fn acquisition(&self, held: &Held) -> Option<Acquisition> {
        let acquisitions = self
            .acquisitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        acquisitions
            .get(&(held.name.to_string(), held.token))
            .cloned()
    }

    fn set_acquisition(&self, held: &Held, acquisition: Option<Acquisition>) {
        let mut acquisitions = self
            .acquisitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let key = (held.name.to_string(), held.token);
        match acquisition {
            Some(acquisition) => acquisitions.insert(key, acquisition),
            None => acquisitions.remove(&key),
        };
    }

    /// Whether a guard of this process already holds the acquisition `record` of `name`.
    fn holds(&self, name: &str, record: &Record) -> bool {
        let acquisitions = self
            .acquisitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        acquisitions
            .iter()
            .any(|((held, _), acquisition)| held == name && acquisition.is(record))
    }

    /// The acquisition `written` made for `holder`: its token is the write's
    /// resourceVersion, and it is remembered by holder and the `acquireTime` written
    /// (none in a Lease the election controller handed us).
    fn acquired(&self, name: &str, holder: &str, ttl: Duration, written: &Lease) -> Result<Take> {
        let token = record::token(written)?;
        let acquire_time = written
            .spec
            .as_ref()
            .and_then(|spec| spec.acquire_time.clone());
        let held = Held::new(LockName::new(name)?, holder, token, ttl, token.get());
        self.set_acquisition(
            &held,
            Some(Acquisition {
                holder: holder.to_owned(),
                acquire_time,
            }),
        );
        Ok(Take::Acquired(held))
    }

    /// Coordinated `take`: never takes a Lease. It is ours only if it names `holder`,
    /// is unexpired by our own observation for at least `ttl` (so that our guard stops
    /// trusting it before the controller may elect anyone else) and no guard of this
    /// process holds that acquisition already. What this process knows may be old, so
    /// an acquisition is always decided on a fresh read, and renewed at once.
    async fn take_coordinated(&self, name: &str, holder: &str, ttl: Duration) -> Result<Take> {
        let settled = self
            .compare_and_set(name, Start::Known, "take", |lease, fresh| {
                let record = lease.map(Record::read).transpose()?;
                let named = record.as_ref().filter(|record| {
                    record.holder.as_deref() == Some(holder) && !self.holds(name, record)
                });
                Ok(match named {
                    Some(_) if !fresh => Decision::ReadFresh,
                    Some(record) if record.duration < ttl => {
                        return Err(Error::InvalidOption {
                            reason: format!(
                                "coordinated lease {name} was given to {holder} for {:?}, less than \
                                 the lock's TTL {ttl:?}: the guard would trust it after the election \
                                 controller may elect another candidate; use a TTL of at most {:?}",
                                record.duration, record.duration
                            ),
                        });
                    }
                    // Renewed at once, as client-go's candidates do: the guard's validity
                    // runs from before this write, and every other observer sees the
                    // Lease fresh from after it, however late our watch saw the
                    // controller's write.
                    Some(record) if self.known.expires_in(name, record) >= ttl => {
                        let spec = lease.and_then(|lease| lease.spec.clone());
                        Decision::Write(record::renewed(spec.unwrap_or_default(), ttl, record::now()))
                    }
                    _ => Decision::Stop(self.coordinated_holder(name, record.as_ref(), lease)),
                })
            })
            .await?;
        match settled {
            Settled::Written(written) => self.acquired(name, holder, ttl, &written),
            Settled::Stopped(info) => Ok(Take::Held(info)),
        }
    }

    /// Whom a coordinated waiter waits for: the holder named (or, while the Lease is
    /// free, the candidate preferred), with the time left by our observation, or an
    /// empty identity while the controller has elected nobody yet.
    fn coordinated_holder(
        &self,
        name: &str,
        record: Option<&Record>,
        lease: Option<&Lease>,
    ) -> LockInfo {
        let preferred = lease
            .and_then(|lease| lease.spec.as_ref())
            .and_then(|spec| spec.preferred_holder.clone())
            .filter(|preferred| !preferred.is_empty());
        match record {
            Some(record) => {
                let holder = record.holder.clone().or(preferred).unwrap_or_default();
                let mut info = self.info_for(name, record, holder);
                if let Some(info) = &mut info {
                    // The controller's write wakes the waiter through the watch; the
                    // time left only bounds the wait.
                    info.expires_in = info
                        .expires_in
                        .map(|left| left.max(Duration::from_millis(100)));
                }
                info.unwrap_or_else(|| nobody(record.duration))
            }
            None => nobody(Duration::ZERO),
        }
    }

    /// Rewrites our own record with `change` while it is still our acquisition, on the
    /// record known (one write when it is current), re-read after every conflict. `None`
    /// if it is not ours any more.
    async fn rewrite_own(
        &self,
        held: &Held,
        what: &str,
        change: impl Fn(LeaseSpec) -> LeaseSpec,
    ) -> Result<Option<Lease>> {
        let Some(acquisition) = self.acquisition(held) else {
            return Ok(None);
        };
        let settled = self
            .compare_and_set(held.name.as_str(), Start::Known, what, |lease, _| {
                Ok(match lease {
                    Some(lease) if acquisition.is(&Record::read(lease)?) => {
                        Decision::Write(change(lease.spec.clone().unwrap_or_default()))
                    }
                    _ => Decision::Stop(()),
                })
            })
            .await?;
        Ok(match settled {
            Settled::Written(written) => Some(*written),
            Settled::Stopped(()) => None,
        })
    }

    fn info(&self, name: &str, record: &Record) -> Option<LockInfo> {
        self.info_for(name, record, record.holder.clone()?)
    }

    /// The record as held by `holder`.
    fn info_for(&self, name: &str, record: &Record, holder: String) -> Option<LockInfo> {
        Some(
            LockInfo::new(holder, record.duration)
                .with_acquired_at(record.acquire_time.as_ref().map(record::system_time))
                .with_renewed_at(record.renew_time.as_ref().map(record::system_time))
                .with_expires_in(Some(self.known.expires_in(name, record))),
        )
    }
}

#[async_trait]
impl Backend for KubeBackend {
    /// A lease seen free or expired is written at once (one request when it is known
    /// from the watch). A lease seen held is reported held without a read while a watch
    /// of it is current (a waiter's: the change that frees it is on its way to that
    /// waiter), and read again otherwise, since what this process last saw may be old.
    /// Expiry is judged by this process's own observation either way.
    async fn take(&self, name: &LockName, holder: &str, ttl: Duration) -> Result<Take> {
        let inner = &self.inner;
        let name = name.as_str();
        if inner.coordinated {
            return inner.take_coordinated(name, holder, ttl).await;
        }
        let settled = inner
            .compare_and_set(name, Start::Known, "take", |lease, fresh| {
                let Some(current) = lease else {
                    let spec = record::acquired(holder, ttl, None, record::now());
                    return Ok(Decision::Write(spec));
                };
                let record = Record::read(current)?;
                let unexpired = !inner.known.expires_in(name, &record).is_zero();
                // A lease coordinated leader election hands to another candidate is
                // theirs while its record is fresh, even when released.
                let preferred = current
                    .spec
                    .as_ref()
                    .and_then(|spec| record::preferred_other(spec, holder))
                    .filter(|_| record.holder.is_none());
                let held = match preferred {
                    Some(preferred) => inner.info_for(name, &record, preferred),
                    None => inner.info(name, &record),
                };
                Ok(match held.filter(|_| unexpired) {
                    Some(info) if fresh || inner.known.is_watched(name) => Decision::Stop(info),
                    Some(_) => Decision::ReadFresh,
                    None => Decision::Write(record::acquired(
                        holder,
                        ttl,
                        Some(&current.spec.clone().unwrap_or_default()),
                        record::now(),
                    )),
                })
            })
            .await?;
        match settled {
            Settled::Written(written) => inner.acquired(name, holder, ttl, &written),
            Settled::Stopped(info) => Ok(Take::Held(info)),
        }
    }

    async fn renew(&self, held: &Held) -> Result<Renew> {
        let renewed = self
            .inner
            .rewrite_own(held, "renew", |spec| {
                record::renewed(spec, held.ttl, record::now())
            })
            .await?;
        Ok(match renewed {
            Some(written) => {
                let mut renewed = held.clone();
                renewed.revision = record::token(&written)?.get();
                let spec = written.spec.unwrap_or_default();
                if record::preferred_other(&spec, &held.holder).is_some() {
                    Renew::HandOver(renewed)
                } else {
                    Renew::Renewed(renewed)
                }
            }
            None => {
                self.inner.set_acquisition(held, None);
                Renew::NotHeld
            }
        })
    }

    async fn release(&self, held: &Held) -> Result<Release> {
        let released = self
            .inner
            .rewrite_own(held, "release", |spec| {
                record::released(spec, record::now())
            })
            .await?;
        self.inner.set_acquisition(held, None);
        Ok(if released.is_some() {
            Release::Released
        } else {
            Release::NotHeld
        })
    }

    /// Reads the Lease and, if `holder` holds it, writes the released record guarded by
    /// the resourceVersion read (re-read and re-checked on conflict).
    async fn release_holder(&self, name: &LockName, holder: &str) -> Result<Release> {
        let settled = self
            .inner
            .compare_and_set(name.as_str(), Start::Fresh, "release", |lease, _| {
                Ok(match lease {
                    Some(lease) if Record::read(lease)?.holder.as_deref() == Some(holder) => {
                        let spec = lease.spec.clone().unwrap_or_default();
                        Decision::Write(record::released(spec, record::now()))
                    }
                    _ => Decision::Stop(Release::NotHeld),
                })
            })
            .await?;
        Ok(match settled {
            Settled::Written(_) => Release::Released,
            Settled::Stopped(release) => release,
        })
    }

    /// One list of the namespace's Leases; each is also an observation of it.
    async fn list(&self, prefix: &str) -> Result<Vec<Listed>> {
        let leases = self
            .inner
            .api
            .list(&ListParams::default())
            .await
            .map_err(|error| self.inner.error(error, "list leases"))?;
        let mut listed: Vec<Listed> = leases
            .items
            .into_iter()
            .filter_map(|lease| {
                let name = lease.metadata.name.clone()?;
                name.starts_with(prefix).then(|| {
                    self.inner.known.saw(&lease);
                    let holder = Record::read(&lease).map(|record| self.inner.info(&name, &record));
                    Listed::new(name, holder)
                })
            })
            .collect();
        listed.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(listed)
    }

    async fn describe(&self, name: &LockName) -> Result<Option<LockInfo>> {
        let Some(lease) = self.inner.read(name.as_str()).await? else {
            return Ok(None);
        };
        let record = Record::read(&lease)?;
        Ok(self.inner.info(name.as_str(), &record))
    }

    /// Watches the namespace's Leases (re-listing after errors and `410 Gone`, with
    /// backoff), keeping those whose name starts with `prefix`: every event updates what
    /// this process knows of them (so that a list judges expiry by a fresh observation),
    /// and one whose holder or acquisition changed, was created or deleted, notifies.
    /// A renewal does not. The Leases of other locks in the namespace are received and
    /// dropped: keep a busy namespace's locks apart. The stream ends at the watch's first
    /// error.
    async fn group_changes(&self, prefix: &str) -> Result<Changes> {
        let (inner, prefix) = (self.inner.clone(), prefix.to_owned());
        // Each Lease's acquisition as last seen: holder and transitions.
        let mut acquisitions: HashMap<String, Option<(Option<String>, i32)>> = HashMap::new();
        // Ends at the first error (the group is polled, then subscribes again), so that a
        // watch that keeps failing (forbidden, say) is not taken for a quiet group.
        let events = watcher(inner.api.clone(), watcher::Config::default()).take_while(|event| {
            if let Err(error) = event {
                tracing::debug!(%error, "group lease watch failed; the group is polled");
            }
            futures::future::ready(event.is_ok())
        });
        Ok(Box::pin(events.filter_map(move |event| {
            let in_group = |lease: &Lease| {
                lease
                    .metadata
                    .name
                    .clone()
                    .filter(|name| name.starts_with(&prefix))
            };
            let changed = match event {
                Ok(watcher::Event::Apply(lease)) => in_group(&lease).is_some_and(|name| {
                    inner.known.saw(&lease);
                    let acquisition = acquisition(&lease);
                    acquisitions.insert(name, acquisition.clone()) != Some(acquisition)
                }),
                // A (re-)list notifies once, when it is done.
                Ok(watcher::Event::InitApply(lease)) => {
                    if let Some(name) = in_group(&lease) {
                        inner.known.saw(&lease);
                        acquisitions.insert(name, acquisition(&lease));
                    }
                    false
                }
                Ok(watcher::Event::Delete(lease)) => in_group(&lease).is_some_and(|name| {
                    inner.known.forget(&name);
                    acquisitions.remove(&name).is_some()
                }),
                Ok(watcher::Event::Init) => {
                    acquisitions.clear();
                    false
                }
                Ok(watcher::Event::InitDone) => true,
                Err(_) => false, // ended above
            };
            futures::future::ready(changed.then_some(()))
        })))
    }

    /// Watches the Lease (re-listing after errors and `410 Gone`, with backoff), from
    /// after its first list: every event updates what this process knows of it, and
    /// while the watch is current a take trusts that instead of reading the Lease. A
    /// change of holder or acquisition, a release, a deletion and each re-list notify; a
    /// renewal (a new `renewTime`, nothing else) does not: it only moves the observed
    /// expiry on.
    async fn changes(&self, name: &LockName) -> Result<Changes> {
        let inner = &self.inner;
        Ok(watch::lease_changes(inner.api.clone(), inner.known.clone(), name.as_str()).await)
    }
}

/// Who holds `lease` and how often it changed hands: what a group watch compares.
fn acquisition(lease: &Lease) -> Option<(Option<String>, i32)> {
    Record::read(lease)
        .ok()
        .map(|record| (record.holder, record.transitions))
}
