//! Leader election: a continuous campaign for one lock.

use std::{
    future::Future,
    pin::pin,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use tokio::{sync::watch, time::Instant};
use tokio_util::sync::CancellationToken;

use crate::{FencingToken, Lock, LossReason, Result, Validity};

/// What an elector is doing.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaderState {
    /// Campaigning: someone else leads (its identity, if seen) or nobody does yet.
    Following {
        /// The identity of the current leader, if one was seen.
        leader: Option<String>,
    },
    /// Leading, with the token to present to every fenced write.
    Leading {
        /// The fencing token of this term.
        token: FencingToken,
    },
    /// The elector stopped: it was shut down or failed.
    Stopped,
}

/// The default bound on draining a leader's work at shutdown.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs a future only while this replica leads.
///
/// The elector campaigns for its [`Lock`] without end: while another replica leads it
/// follows, waiting on the backend's notifications; once it holds the lock it runs the
/// work future. If the lock is lost, the work is cancelled (dropped) at once and the
/// campaign resumes in the same process. When the server asks the leader to hand over
/// (Kubernetes' coordinated leader election naming another `preferredHolder`), the
/// leader steps down as at shutdown (drain, release) and campaigns again. On
/// [`shutdown`](LeaderElector::shutdown) it
/// stops campaigning, tells the work to drain ([`Leadership::stopping`]), waits for it
/// up to the drain timeout, and releases the lock so that a standby takes over at once.
///
/// ```
/// use lock_core::{LeaderElector, Lock, MemoryBackend};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> lock_core::Result<()> {
/// let lock = Lock::new(MemoryBackend::new(), "my-controller", "pod-a")?;
/// let elector = LeaderElector::new(lock);
/// let shutdown = elector.shutdown_handle();
///
/// # shutdown.shutdown();
/// elector
///     .run(|leadership| async move {
///         println!("leading with token {}", leadership.token());
///         // Reconcile until asked to stop, then finish in-flight work and return.
///         leadership.stopping().await;
///     })
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct LeaderElector {
    lock: Lock,
    state: watch::Sender<LeaderState>,
    term: Arc<Mutex<Option<Validity>>>,
    shutdown: CancellationToken,
    drain_timeout: Duration,
    health_grace: Duration,
}

/// Handed to the work of a leader: its token, its validity, and the drain signal.
#[derive(Clone, Debug)]
pub struct Leadership {
    validity: Validity,
    stopping: CancellationToken,
}

impl Leadership {
    /// The fencing token of this term: present it with every write.
    pub fn token(&self) -> FencingToken {
        self.validity.token()
    }

    /// Whether this replica can still trust that it leads.
    pub fn is_valid(&self) -> bool {
        self.validity.is_valid()
    }

    /// The validity of this term, e.g. to check it before each write.
    pub fn validity(&self) -> &Validity {
        &self.validity
    }

    /// Resolves when a graceful step-down begins (shutdown, or a hand-over the server
    /// asked for): stop taking new work, finish what is in flight, and return.
    pub async fn stopping(&self) {
        self.stopping.cancelled().await;
    }

    /// Like [`stopping`](Leadership::stopping), as an owned future that can be handed to
    /// a framework, e.g. kube-runtime's `Controller::graceful_shutdown_on`, which then
    /// stops taking new work and finishes the reconciles in flight.
    pub fn stopped(&self) -> impl Future<Output = ()> + Send + Sync + 'static + use<> {
        self.stopping.clone().cancelled_owned()
    }

    /// Whether a graceful step-down has begun.
    pub fn is_stopping(&self) -> bool {
        self.stopping.is_cancelled()
    }
}

/// Starts a graceful step-down of a [`LeaderElector`] from anywhere, e.g. a signal
/// handler.
#[derive(Clone, Debug)]
pub struct ShutdownHandle(CancellationToken);

impl ShutdownHandle {
    /// Stops campaigning; a leader drains its work and releases the lock.
    pub fn shutdown(&self) {
        self.0.cancel();
    }
}

/// A health signal for probes: false while this replica leads but its lock is at risk
/// (a renewal failed or timed out, and none has succeeded for the renew interval plus
/// a grace period), so an orchestrator can restart a leader that can no longer reach its
/// backend. A renewal that is slow but succeeds never turns it false; the price is that
/// a renewal that hangs counts only once it times out (the request timeout, by default
/// the renew interval), so with the default timing a blackholed leader turns unhealthy
/// two renew intervals after its last renewal, a third of the TTL before it stops
/// leading.
#[derive(Clone, Debug)]
pub struct Health {
    term: Arc<Mutex<Option<Validity>>>,
    stall_after: Duration,
}

impl Health {
    /// Whether this replica is healthy now. A follower always is.
    pub fn is_healthy(&self) -> bool {
        match &*self.term.lock().unwrap_or_else(PoisonError::into_inner) {
            None => true,
            Some(term) => {
                let stalled =
                    term.renewal_failing() && term.last_renewed().elapsed() > self.stall_after;
                term.is_valid() && !stalled
            }
        }
    }
}

/// Leaves the elector stopped when `run` returns or its future is dropped.
struct StopOnDrop<'a>(&'a LeaderElector);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.stop();
    }
}

enum TermEnd {
    Finished,
    Lost(LossReason),
    Shutdown,
    /// The server asked for the lock to go to another holder.
    HandOver,
}

impl LeaderElector {
    /// An elector campaigning for `lock`.
    pub fn new(lock: Lock) -> Self {
        let health_grace = lock.timing().renew_interval() / 2;
        Self {
            lock,
            state: watch::Sender::new(LeaderState::Following { leader: None }),
            term: Arc::default(),
            shutdown: CancellationToken::new(),
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            health_grace,
        }
    }

    /// Sets how long a leader's work may take to drain at shutdown before it is
    /// cancelled (default: [`DEFAULT_DRAIN_TIMEOUT`]). Draining also ends if the lock
    /// is lost.
    pub fn with_drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// Sets how long past a due renewal [`Health`] stays true while renewals fail
    /// (default: half the renew interval).
    pub fn with_health_grace(mut self, grace: Duration) -> Self {
        self.health_grace = grace;
        self
    }

    /// The lock campaigned for.
    pub fn lock(&self) -> &Lock {
        &self.lock
    }

    /// The state, observable as it changes.
    pub fn state(&self) -> watch::Receiver<LeaderState> {
        self.state.subscribe()
    }

    /// Whether this replica leads now and can still trust it.
    pub fn is_leader(&self) -> bool {
        self.term
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(Validity::is_valid)
    }

    /// The health signal of this elector.
    pub fn health(&self) -> Health {
        Health {
            term: self.term.clone(),
            stall_after: self.lock.timing().renew_interval() + self.health_grace,
        }
    }

    /// A handle that starts a graceful step-down.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.shutdown.clone())
    }

    /// Starts a graceful step-down.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Campaigns and runs `work` whenever this replica leads, until shutdown.
    ///
    /// Returns `Ok` after a graceful shutdown, or the first error that retrying cannot
    /// fix (transient errors are retried). If `work` returns by itself, the replica
    /// steps down, releases the lock and campaigns again.
    ///
    /// An elector campaigns once: shutdown is final, and `run` returns at once after it.
    /// Build a new elector to campaign again.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future stops the campaign at once, without a drain: the work is
    /// dropped, the lock is released in the background (as a dropped [`Guard`](crate::Guard)
    /// is), and the elector is left [`Stopped`](LeaderState::Stopped), not leading, and
    /// healthy, as after a return.
    pub async fn run<F, Fut>(&self, mut work: F) -> Result<()>
    where
        F: FnMut(Leadership) -> Fut,
        Fut: Future<Output = ()>,
    {
        let _stopped = StopOnDrop(self);
        self.campaign(&mut work).await
    }

    /// Like [`run`](LeaderElector::run), with a graceful step-down when `signal`
    /// resolves (e.g. on SIGTERM).
    ///
    /// # Cancel safety
    ///
    /// As for [`run`](LeaderElector::run): dropping the future stops the campaign at
    /// once, without a drain, and releases the lock in the background. For a graceful
    /// step-down, let `signal` resolve and await the future to its end.
    pub async fn run_until<F, Fut>(&self, work: F, signal: impl Future<Output = ()>) -> Result<()>
    where
        F: FnMut(Leadership) -> Fut,
        Fut: Future<Output = ()>,
    {
        let mut run = pin!(self.run(work));
        tokio::select! {
            result = &mut run => return result,
            () = signal => self.shutdown(),
        }
        run.await
    }

    async fn campaign<F, Fut>(&self, work: &mut F) -> Result<()>
    where
        F: FnMut(Leadership) -> Fut,
        Fut: Future<Output = ()>,
    {
        loop {
            self.follow(None);
            let guard = tokio::select! {
                biased;
                () = self.shutdown.cancelled() => return Ok(()),
                guard = self.lock.acquire_observing(|holder| self.follow(Some(&holder.holder))) => guard?,
            };
            let token = guard.token();
            *self.term.lock().unwrap_or_else(PoisonError::into_inner) = Some(guard.validity());
            self.state.send_replace(LeaderState::Leading { token });
            crate::metrics::leading(self.lock.name(), self.lock.identity(), true);
            tracing::info!(lock = %self.lock.name(), holder = %self.lock.identity(), %token, "leading");

            // Boxed so that dropping it below really cancels the work, before the release.
            let stopping = self.shutdown.child_token();
            let mut term = Box::pin(work(Leadership {
                validity: guard.validity(),
                stopping: stopping.clone(),
            }));
            let end = tokio::select! {
                () = &mut term => TermEnd::Finished,
                reason = guard.lost() => TermEnd::Lost(reason),
                () = self.shutdown.cancelled() => TermEnd::Shutdown,
                () = guard.hand_over() => TermEnd::HandOver,
            };
            if let TermEnd::Shutdown | TermEnd::HandOver = end {
                stopping.cancel();
                let started = Instant::now();
                tokio::select! {
                    () = &mut term => tracing::info!(took = ?started.elapsed(), "work drained"),
                    reason = guard.lost() => tracing::warn!(%reason, "lost the lock while draining"),
                    () = tokio::time::sleep(self.drain_timeout) => tracing::warn!(timeout = ?self.drain_timeout, "work did not drain in time; cancelling it"),
                }
            }
            // Not leading any more before the lock can go to anyone else.
            self.step_down();
            drop(term);
            match end {
                TermEnd::Lost(reason) => {
                    tracing::warn!(lock = %self.lock.name(), %token, %reason, "lost leadership; campaigning again");
                    drop(guard);
                }
                TermEnd::Finished | TermEnd::Shutdown | TermEnd::HandOver => {
                    if let Err(error) = guard.release().await {
                        tracing::warn!(lock = %self.lock.name(), %token, %error, "stepping down: release failed");
                    } else {
                        tracing::info!(lock = %self.lock.name(), %token, "stepped down and released");
                    }
                    if let TermEnd::Shutdown = end {
                        return Ok(());
                    }
                }
            }
        }
    }

    fn follow(&self, leader: Option<&str>) {
        self.state.send_if_modified(|state| {
            let following = LeaderState::Following {
                leader: leader.map(str::to_owned),
            };
            let changed = *state != following;
            *state = following;
            changed
        });
    }

    /// Not leading any more, and stopped.
    fn stop(&self) {
        let was_leading = self
            .term
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .is_some();
        if was_leading {
            crate::metrics::leading(self.lock.name(), self.lock.identity(), false);
        }
        self.state.send_replace(LeaderState::Stopped);
    }

    fn step_down(&self) {
        *self.term.lock().unwrap_or_else(PoisonError::into_inner) = None;
        crate::metrics::leading(self.lock.name(), self.lock.identity(), false);
        self.follow(None);
    }
}
