//! The user-facing lock.

use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use tokio::time::{Instant, sleep_until};
use tracing::Instrument;

use crate::{
    Backend, Changes, Error, Guard, LockInfo, LockName, Locks, Result, Timing,
    backoff::retry_delays,
    name::validate_identity,
    take::{Taken, take},
};

/// A named lock on some backend, for one holder identity.
///
/// Cheap to clone. The same code runs on every backend: build the `Lock` over a
/// Kubernetes, etcd, Redis or in-memory backend and nothing else changes.
///
/// ```
/// use std::time::Duration;
/// use lock_core::{Lock, MemoryBackend, Timing};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> lock_core::Result<()> {
/// let lock = Lock::builder(MemoryBackend::new(), "my-controller", "pod-a")
///     .timing(Timing::new(Duration::from_secs(15)))
///     .build()?;
///
/// let guard = lock.acquire_timeout(Duration::from_secs(30)).await?;
/// println!("leading with token {}", guard.token());
/// guard.release().await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Lock {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) name: LockName,
    pub(crate) identity: Arc<str>,
    pub(crate) timing: Timing,
}

/// Builds a [`Lock`]; see [`Lock::builder`].
#[must_use]
pub struct LockBuilder {
    backend: Arc<dyn Backend>,
    name: String,
    identity: String,
    timing: Timing,
}

impl LockBuilder {
    /// Sets all timing options (default: [`Timing::default`], a 15 s TTL).
    pub fn timing(mut self, timing: Timing) -> Self {
        self.timing = timing;
        self
    }

    /// Sets the TTL, deriving the other timing options from it.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.timing = Timing::new(ttl);
        self
    }

    /// Validates the name, identity and timing; the error says what is wrong.
    pub fn build(self) -> Result<Lock> {
        let name = LockName::new(&self.name)?;
        validate_identity(&self.identity)?;
        self.timing.validate()?;
        Ok(Lock {
            backend: self.backend,
            name,
            identity: self.identity.into(),
            timing: self.timing,
        })
    }
}

impl Lock {
    /// A lock named `name` on `backend`, held as `identity` (e.g. the pod name), with
    /// the default timing.
    pub fn new(
        backend: impl Backend,
        name: impl Into<String>,
        identity: impl Into<String>,
    ) -> Result<Self> {
        Self::builder(backend, name, identity).build()
    }

    /// A builder for a lock with non-default timing.
    pub fn builder(
        backend: impl Backend,
        name: impl Into<String>,
        identity: impl Into<String>,
    ) -> LockBuilder {
        LockBuilder {
            backend: Arc::new(backend),
            name: name.into(),
            identity: identity.into(),
            timing: Timing::default(),
        }
    }

    /// The lock's name.
    pub fn name(&self) -> &LockName {
        &self.name
    }

    /// Who this lock acquires as.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The lock's timing options.
    pub fn timing(&self) -> &Timing {
        &self.timing
    }

    /// The same lock acquired under another identity, e.g. a second replica in a test.
    pub fn with_identity(&self, identity: impl Into<String>) -> Result<Self> {
        let identity = identity.into();
        validate_identity(&identity)?;
        Ok(Self {
            identity: identity.into(),
            ..self.clone()
        })
    }

    /// Takes the lock if it is free, without waiting; [`Error::Held`] says who holds it.
    ///
    /// # Cancel safety
    ///
    /// As for [`acquire`](Lock::acquire): dropping the future leaves nothing held.
    pub async fn try_acquire(&self) -> Result<Guard> {
        match self.take_once().await? {
            Ok(guard) => Ok(guard),
            Err(holder) => Err(Error::Held(Box::new(holder))),
        }
    }

    /// Waits until the lock is ours.
    ///
    /// Waiting is driven by the backend's change notifications, so a released lock is
    /// taken at once; a crashed holder's lock is taken when its TTL runs out. Transient
    /// errors are retried with backoff.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future at any point leaves nothing held. A take request already
    /// sent runs to its end in a task of its own (bounded by the TTL); if it acquired
    /// the lock after the future was dropped, the lock is released at once in the
    /// background, so no acquisition is orphaned until its TTL.
    pub async fn acquire(&self) -> Result<Guard> {
        self.acquire_observing(|_| {}).await
    }

    /// Like [`acquire`](Lock::acquire), but gives up with [`Error::Timeout`] after
    /// `timeout`.
    ///
    /// # Cancel safety
    ///
    /// As for [`acquire`](Lock::acquire): giving up or dropping the future leaves
    /// nothing held.
    pub async fn acquire_timeout(&self, timeout: Duration) -> Result<Guard> {
        tokio::time::timeout(timeout, self.acquire())
            .await
            .unwrap_or_else(|_| {
                Err(Error::Timeout {
                    name: self.name.to_string(),
                    waited: timeout,
                })
            })
    }

    /// Who holds the lock now, or `None` if it is free.
    ///
    /// # Cancel safety
    ///
    /// A read: dropping the future drops the request and changes nothing.
    pub async fn holder(&self) -> Result<Option<LockInfo>> {
        self.locks().holder_of(&self.name).await
    }

    /// The operator's view of this lock's backend, with this lock's timing.
    pub fn locks(&self) -> Locks {
        Locks::over(self.backend.clone(), self.timing)
    }

    /// Waits until the lock is ours, calling `on_held` with the holder each time the
    /// lock is found held.
    pub(crate) async fn acquire_observing(
        &self,
        mut on_held: impl FnMut(&LockInfo) + Send,
    ) -> Result<Guard> {
        let span = tracing::debug_span!("acquire", lock = %self.name, holder = %self.identity);
        async move {
            let started = Instant::now();
            let poll = self.timing.poll_interval();
            let mut retries = retry_delays(poll);
            let mut changes: Option<Changes> = None;
            let mut subscribed = false;
            loop {
                let wake_at = match self.take_once().await {
                    Ok(Ok(guard)) => {
                        crate::metrics::waited(&self.name, started.elapsed());
                        return Ok(guard);
                    }
                    Ok(Err(holder)) => {
                        // Held by our own identity: most likely a take of ours that
                        // timed out and is being released; not another holder.
                        if *holder.holder != *self.identity {
                            on_held(&holder);
                        }
                        retries = retry_delays(poll);
                        // Held: subscribe to changes, then look once more before
                        // waiting, so that no change after the first look is missed.
                        // An uncontended acquire never subscribes.
                        if changes.is_none() && !subscribed {
                            subscribed = true;
                            changes = self.locks().changes(&self.name).await?;
                            continue;
                        }
                        let wait = holder.expires_in.map_or(poll, |expiry| expiry.min(poll));
                        Instant::now() + wait
                    }
                    Err(error) if error.is_transient() => {
                        tracing::debug!(%error, "acquire attempt failed; retrying");
                        Instant::now() + retries.next().unwrap_or(poll)
                    }
                    Err(error) => return Err(error),
                };
                subscribed = false;
                wait_for_change(&mut changes, wake_at).await;
            }
        }
        .instrument(span)
        .await
    }

    /// One attempt: the guard, or who holds the lock.
    async fn take_once(&self) -> Result<Result<Guard, LockInfo>> {
        match take(&self.backend, &self.name, &self.identity, self.timing).await? {
            Taken::Held(holder) => Ok(Err(holder)),
            Taken::Acquired(held) if held.sent + self.timing.validity() <= Instant::now() => {
                // Acquired so slowly that it cannot be trusted any more: let it go.
                drop(held);
                Err(Error::transient(format!(
                    "lock {} was acquired after its validity had already run out",
                    self.name
                )))
            }
            Taken::Acquired(held) => {
                let guard = Guard::start(self.backend.clone(), held, self.timing);
                crate::metrics::acquired(&self.name);
                tracing::debug!(lock = %self.name, holder = %self.identity, token = %guard.token(), "acquired");
                Ok(Ok(guard))
            }
        }
    }
}

/// Sleeps until a change notification or `wake_at`, whichever comes first. A finished
/// notification stream is dropped so that the next attempt subscribes again.
pub(crate) async fn wait_for_change(changes: &mut Option<Changes>, wake_at: Instant) {
    if let Some(stream) = changes.as_mut() {
        tokio::select! {
            item = stream.next() => {
                if item.is_some() {
                    return;
                }
                *changes = None;
            }
            () = sleep_until(wake_at) => return,
        }
    }
    sleep_until(wake_at).await;
}
