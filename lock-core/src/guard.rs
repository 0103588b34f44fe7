//! The guard of a held lock.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::time::Instant;
use tracing::Instrument;

use crate::{
    Backend, Error, FencingToken, Lease, LockName, LossReason, Release, Result, Timing, Validity,
    release::{Released, release_in_background, release_with_retries},
    renewal::Renewal,
    take::HeldLease,
};

/// A held lock. While it exists, a background task renews the lock.
///
/// Check [`is_valid`](Guard::is_valid) before each protected step, or race your work
/// against [`lost`](Guard::lost), and pass [`token`](Guard::token) to every write the
/// lock protects.
///
/// **Drop.** Dropping the guard stops renewal, ends its validity and releases the lock
/// in the background, best effort (if that fails, the lock expires after its TTL). Call
/// [`release`](Guard::release) to free the lock at once and learn whether the guard
/// stayed valid until then.
///
/// ```
/// use lock_core::{Lock, MemoryBackend};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> lock_core::Result<()> {
/// let lock = Lock::new(MemoryBackend::new(), "nightly-report", "worker-1")?;
/// let guard = lock.acquire().await?;
/// tokio::select! {
///     reason = guard.lost() => eprintln!("lost the lock ({reason}); stopping"),
///     () = async { /* the protected work, writing with guard.token() */ } => {}
/// }
/// guard.release().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Guard {
    validity: Validity,
    backend: Arc<dyn Backend>,
    lease: Arc<Mutex<Lease>>,
    renewal: Option<Renewal>,
    timing: Timing,
}

impl Guard {
    /// Starts renewing `held`.
    pub(crate) fn start(backend: Arc<dyn Backend>, held: HeldLease, timing: Timing) -> Self {
        let sent = held.sent;
        let lease = held.into_lease();
        let validity = Validity::new(lease.name.clone(), lease.token, sent, timing.validity());
        let lease = Arc::new(Mutex::new(lease));
        let renewal = Renewal::spawn(backend.clone(), lease.clone(), validity.clone(), timing);
        Self {
            validity,
            backend,
            lease,
            renewal: Some(renewal),
            timing,
        }
    }

    /// The fencing token of this acquisition: pass it to every protected write.
    pub fn token(&self) -> FencingToken {
        self.validity.token()
    }

    /// The lock held.
    pub fn name(&self) -> &LockName {
        self.validity.name()
    }

    /// Whether the lock can still be trusted now. Turns false at the self-fencing
    /// deadline even if the renewal task did not get to run.
    pub fn is_valid(&self) -> bool {
        self.validity.is_valid()
    }

    /// Until when the lock can be trusted without a further renewal, or `None` if it
    /// already cannot.
    pub fn valid_until(&self) -> Option<Instant> {
        self.validity.valid_until()
    }

    /// Resolves when the lock can no longer be trusted, strictly before any other
    /// contender can acquire it.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only waits. Dropping the future changes nothing, and it can be
    /// called again (or raced in a `select!` loop) as often as you like.
    pub async fn lost(&self) -> LossReason {
        self.validity.lost().await
    }

    /// Resolves once the server asks this holder to hand the lock over (Kubernetes'
    /// coordinated leader election naming another preferred holder); never, if it does
    /// not. The lock stays valid: finish the work, then [`release`](Guard::release).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only waits, and a request already made is still seen by the
    /// next call.
    pub async fn hand_over(&self) {
        self.validity.hand_over().await;
    }

    /// A cloneable view of this guard's validity, for code that does not own the guard.
    pub fn validity(&self) -> Validity {
        self.validity.clone()
    }

    /// Stops renewing and frees the lock at once for the next waiter.
    ///
    /// The release is a compare-and-set on our own record: if the lock is no longer
    /// ours, nothing is written and the result is [`Error::Lost`]. It is also `Lost` if
    /// the guard's validity ended before the release, since the work done since then was
    /// not protected. Transient errors are retried until the lock would expire anyway;
    /// if an attempt went unanswered and a retry finds the lock no longer ours, the
    /// result is [`Error::ReleaseUnconfirmed`] (most likely that attempt freed it).
    ///
    /// # Cancel safety
    ///
    /// The guard is invalid from the first poll, and the release runs in a task of its
    /// own: dropping this future (e.g. under a `timeout`) still releases the lock, in
    /// the background, as dropping the guard does.
    pub async fn release(self) -> Result<()> {
        let holder = self
            .lease
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .holder
            .clone();
        let span =
            tracing::debug_span!("release", lock = %self.name(), %holder, token = %self.token());
        self.release_inner().instrument(span).await
    }

    async fn release_inner(mut self) -> Result<()> {
        let renewal = self.renewal.take();
        let loss = self.validity.loss();
        // Invalid before the lock is freed, so that no view of this guard overlaps the
        // next holder.
        self.validity.end(LossReason::Released);
        let (backend, shared, timing) = (self.backend.clone(), self.lease.clone(), self.timing);
        let retry = loss.is_none();
        let releasing = tokio::spawn(async move {
            if let Some(renewal) = renewal {
                renewal.stop().await;
            }
            let lease = shared
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            release_with_retries(&*backend, &lease, &timing, retry).await
        });
        let outcome = releasing.await.unwrap_or_else(|error| {
            Err(Error::transient(format!(
                "the release of lock {} did not finish: {error}",
                self.name()
            )))
        });
        let lease = self
            .lease
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let lost = |reason| Error::Lost {
            name: lease.name.to_string(),
            token: lease.token,
            reason,
        };
        match (loss, outcome) {
            (Some(reason), _) => Err(lost(reason)),
            (
                None,
                Ok(Released {
                    outcome: Release::Released,
                    ..
                }),
            ) => {
                tracing::debug!(lock = %lease.name, token = %lease.token, "released");
                Ok(())
            }
            (
                None,
                Ok(Released {
                    after_unanswered: true,
                    ..
                }),
            ) => Err(Error::ReleaseUnconfirmed {
                name: lease.name.to_string(),
                token: lease.token,
            }),
            (None, Ok(_)) => Err(lost(LossReason::Taken)),
            (None, Err(error)) => Err(error),
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let Some(renewal) = self.renewal.take() else {
            return;
        };
        self.validity.end(LossReason::Released);
        let lease = self.lease.clone();
        release_in_background(self.backend.clone(), self.timing, async move {
            renewal.stop().await;
            lease.lock().unwrap_or_else(PoisonError::into_inner).clone()
        });
    }
}
