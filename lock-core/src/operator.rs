//! Operators' access to locks: reading, listing, watching and freeing a stuck holder,
//! without an identity of one's own.

use std::sync::Arc;

use futures::stream::BoxStream;

use crate::{
    Backend, Broken, Changes, Listed, Lock, LockInfo, LockName, Release, Result, Timing,
    request::Request,
};

/// The locks of one backend as an operator, a dashboard or `lockctl` sees them: who holds
/// one, which exist under a prefix, and freeing one from a holder that cannot release it.
///
/// No identity is needed to read; every request is bounded by the request timeout, as
/// a lock's own requests are. Cheap to clone.
///
/// ```
/// use lock_core::{Lock, Locks, LossReason, MemoryBackend, Release};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> lock_core::Result<()> {
/// let backend = MemoryBackend::new();
/// let guard = Lock::new(backend.clone(), "reports.nightly", "pod-a")?.acquire().await?;
///
/// let locks = Locks::new(backend);
/// let listed = locks.list("reports.").await?;
/// assert_eq!(listed[0].name, "reports.nightly");
/// let holder = locks.holder("reports.nightly").await?.expect("held");
/// assert_eq!(holder.holder, "pod-a");
///
/// // pod-a is stuck: free the lock from it (a compare-and-set, never a blind delete).
/// assert_eq!(locks.release_holder("reports.nightly", "pod-a").await?, Release::Released);
/// assert_eq!(guard.lost().await, LossReason::Taken);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Locks {
    backend: Arc<dyn Backend>,
    timing: Timing,
}

impl Locks {
    /// The locks of `backend`, with the default timing (requests bounded by its request
    /// timeout, 5 s).
    pub fn new(backend: impl Backend) -> Self {
        Self::over(Arc::new(backend), Timing::default())
    }

    pub(crate) fn over(backend: Arc<dyn Backend>, timing: Timing) -> Self {
        Self { backend, timing }
    }

    /// Uses `timing`: its request timeout bounds every request, and its poll interval
    /// paces [`observe`](Locks::observe) on a backend without change notifications.
    pub fn with_timing(self, timing: Timing) -> Result<Self> {
        timing.validate()?;
        Ok(Self { timing, ..self })
    }

    /// The timing used.
    pub fn timing(&self) -> &Timing {
        &self.timing
    }

    /// Who holds the lock `name` now, or `None` if it is free.
    ///
    /// # Cancel safety
    ///
    /// A read: dropping the future drops the request and changes nothing.
    pub async fn holder(&self, name: &str) -> Result<Option<LockInfo>> {
        self.holder_of(&LockName::new(name)?).await
    }

    pub(crate) async fn holder_of(&self, name: &LockName) -> Result<Option<LockInfo>> {
        Request::on("describe", name, &self.timing)
            .send(self.backend.describe(name))
            .await
    }

    /// Every lock whose name starts with `prefix`, sorted by name: held ones, and free
    /// ones where the backend keeps a record of them (Kubernetes). A record that cannot
    /// be read is listed with its error, not fatal. [`Error::Unsupported`](crate::Error)
    /// where the backend cannot list.
    ///
    /// # Cancel safety
    ///
    /// A read: dropping the future drops the request and changes nothing.
    pub async fn list(&self, prefix: &str) -> Result<Vec<Listed>> {
        Request::new("list", prefix, &self.timing)
            .send(self.backend.list(prefix))
            .await
    }

    /// Change notifications of the locks under `prefix` (the subscription bounded), or
    /// `None` (poll) if the backend cannot give them now; a permanent error, such as
    /// [`Error::Unsupported`](crate::Error), is an error.
    pub(crate) async fn group_changes(&self, prefix: &str) -> Result<Option<Changes>> {
        notifications_or_poll(
            Request::new("group subscription", prefix, &self.timing)
                .send(self.backend.group_changes(prefix))
                .await,
        )
    }

    /// Frees the lock `name` if `holder` holds it now, whichever acquisition that is:
    /// a compare-and-set on the record read, never a blind delete. `NotHeld` if someone
    /// else (or nobody) holds it; nothing is changed then. The released holder's guard
    /// reports the loss at its next renewal; unlike [`break_lock`](Locks::break_lock),
    /// no newer token is issued, so stores fenced by a high-water mark reject the old
    /// holder only once the next holder has written.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future drops the request; one that already reached the server may
    /// still have released the lock. Look again with [`holder`](Locks::holder).
    pub async fn release_holder(&self, name: &str, holder: &str) -> Result<Release> {
        self.release_holder_of(&LockName::new(name)?, holder).await
    }

    pub(crate) async fn release_holder_of(&self, name: &LockName, holder: &str) -> Result<Release> {
        Request::on("release", name, &self.timing)
            .send(self.backend.release_holder(name, holder))
            .await
    }

    /// Forcibly frees the lock `name`, whoever holds it, taking it once as `identity`
    /// so that a newer token is issued: see [`Lock::break_lock`], also for what
    /// dropping the future does.
    pub async fn break_lock(&self, name: &str, identity: &str) -> Result<Broken> {
        self.lock(name, identity)?.break_lock().await
    }

    /// Who holds the lock `name`, now and after every change: see [`Lock::observe`].
    pub fn observe(&self, name: &str) -> Result<BoxStream<'static, Result<Option<LockInfo>>>> {
        Ok(crate::observe::observe(self.clone(), LockName::new(name)?))
    }

    /// The lock `name` with this backend and timing, acquired as `identity`.
    pub fn lock(&self, name: &str, identity: &str) -> Result<Lock> {
        Lock::builder(self.backend.clone(), name, identity)
            .timing(self.timing)
            .build()
    }

    /// Change notifications for `name`, or `None` (poll) if the backend cannot give
    /// them now; only a permanent error is an error.
    pub(crate) async fn changes(&self, name: &LockName) -> Result<Option<Changes>> {
        notifications_or_poll(
            Request::on("subscription", name, &self.timing)
                .send(self.backend.changes(name))
                .await,
        )
    }
}

/// A subscription's outcome as its users take it: the stream, `None` (poll) after a
/// transient error, or the permanent error.
fn notifications_or_poll(subscribing: Result<Changes>) -> Result<Option<Changes>> {
    match subscribing {
        Ok(stream) => Ok(Some(stream)),
        Err(error) if !error.is_transient() => Err(error),
        Err(error) => {
            tracing::debug!(%error, "no change notifications; polling");
            Ok(None)
        }
    }
}
