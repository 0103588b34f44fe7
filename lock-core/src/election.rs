//! Leader election: a continuous campaign for one lock.

use std::{
    future::Future,
    pin::pin,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use tokio::{sync::watch, task::JoinHandle, time::Instant};
use tokio_util::sync::CancellationToken;

use crate::{
    BoxError, Error, FencingToken, Lock, LossReason, Result, Validity,
    backoff::retry_delays,
    term::{EndOnDrop, TermTasks},
};

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

/// The default bound on draining a leader's work (and its term's tasks) at a step-down.
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
/// Work that returns `Ok` is followed by a pause before the next campaign; work that
/// returns an error ends the campaign with [`Error::Work`] (see
/// [`run`](LeaderElector::run)). Tasks the work spawns through [`Leadership::spawn`]
/// end with its term.
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

/// Handed to the work of a leader: its token, its validity, the drain signal, and a way
/// to spawn tasks that end with the term.
///
/// Clones share the term: hand one to each task that needs the token or the drain
/// signal.
///
/// # Tasks of a term
///
/// Dropping the work future (on loss of the lock, or after the drain timeout) cancels
/// the work, but not the tasks it spawned with `tokio::spawn`: such a task outlives the
/// term and keeps writing as a former leader, until a fenced store rejects it, or for
/// ever where nothing is fenced. Spawn the work's tasks with [`Leadership::spawn`]
/// instead: they are aborted when the term is lost, and drained with the work (then
/// aborted) when the leader steps down, always before the lock is released.
///
/// ```
/// use std::{sync::Arc, time::Duration};
/// use lock_core::{FencedRegister, LeaderElector, Lock, MemoryBackend};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> lock_core::Result<()> {
/// let elector = LeaderElector::new(Lock::new(MemoryBackend::new(), "my-controller", "pod-a")?);
/// let beats = Arc::new(FencedRegister::new(0_u64));
/// # let shutdown = elector.shutdown_handle();
/// # tokio::spawn(async move { tokio::time::sleep(Duration::from_secs(1)).await; shutdown.shutdown() });
/// elector
///     .run(|leadership| {
///         let beats = beats.clone();
///         async move {
///             // Not `tokio::spawn`: this task must not outlive the term.
///             let term = leadership.clone();
///             leadership.spawn(async move {
///                 while !term.is_stopping() {
///                     let _ = beats.update(term.token(), |beats| *beats += 1);
///                     tokio::time::sleep(Duration::from_millis(100)).await;
///                 }
///             });
///             leadership.stopping().await;
///         }
///     })
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Leadership {
    validity: Validity,
    stopping: CancellationToken,
    tasks: TermTasks,
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

    /// Resolves when a graceful step-down begins (shutdown, a hand-over the server
    /// asked for, or the work returned `Ok` while its tasks still run): stop taking new
    /// work, finish what is in flight, and return.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only waits; dropping it changes nothing.
    pub async fn stopping(&self) {
        self.stopping.cancelled().await;
    }

    /// Like [`stopping`](Leadership::stopping), as an owned future that can be handed to
    /// a framework, e.g. kube-runtime's `Controller::graceful_shutdown_on`, which then
    /// stops taking new work and finishes the reconciles in flight.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only waits; dropping it changes nothing.
    pub fn stopped(&self) -> impl Future<Output = ()> + Send + Sync + 'static + use<> {
        self.stopping.clone().cancelled_owned()
    }

    /// Whether a graceful step-down has begun.
    pub fn is_stopping(&self) -> bool {
        self.stopping.is_cancelled()
    }

    /// Spawns `task` on the current tokio runtime as a task of this term, which ends
    /// with the term:
    ///
    /// - on loss of the lock (or when the `run` future is dropped) it is aborted at
    ///   once;
    /// - on a graceful step-down (shutdown, hand-over, or the work returning `Ok`) it is
    ///   drained with the work: [`stopping`](Leadership::stopping) fires, the elector
    ///   waits until the work and every task of the term have finished, up to the drain
    ///   timeout, then aborts what is left, and only then releases the lock;
    /// - if the work returns an error, it is aborted at once, before the release.
    ///
    /// An aborted task stops at its next `.await`, and the elector waits for that
    /// before it releases the lock or campaigns again, so no task of a term runs after
    /// the term's lock was released. A task spawned after its term ended is aborted
    /// before it runs. Tasks may spawn tasks of the same term through a clone of the
    /// `Leadership`.
    ///
    /// The returned handle is tokio's: awaiting it gives the task's output, or a
    /// [`JoinError`](tokio::task::JoinError) that
    /// [`is_cancelled`](tokio::task::JoinError::is_cancelled) if the term ended first.
    /// Dropping it detaches the task, which still ends with the term. A task's error or
    /// panic does not end the term; only the work's own output does.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, as `tokio::spawn` does.
    ///
    /// ```
    /// use std::time::Duration;
    /// use lock_core::{LeaderElector, Lock, MemoryBackend};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> lock_core::Result<()> {
    /// let elector = LeaderElector::new(Lock::new(MemoryBackend::new(), "my-controller", "pod-a")?);
    /// # elector.shutdown();
    /// elector
    ///     .run(|leadership| async move {
    ///         let watcher = leadership.spawn(async { tokio::time::sleep(Duration::from_secs(3600)).await });
    ///         leadership.stopping().await;
    ///         // `watcher` ignores the drain signal: it is aborted after the drain
    ///         // timeout, before the lock is released.
    ///         drop(watcher);
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn spawn<F>(&self, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tasks.spawn(task)
    }
}

/// What a leader's work returns: `()`, or `Result<(), E>` for work that can fail.
///
/// [`LeaderElector::run`] accepts work whose future's output implements this trait.
/// `Ok(())` (or `()`) means the work ended by itself: the replica steps down and
/// campaigns again after a pause. An error ends the campaign: the replica steps down,
/// releases the lock, and `run` returns [`Error::Work`] with the work's error as its
/// [`source`](std::error::Error::source).
///
/// ```
/// use lock_core::{Error, LeaderElector, Lock, MemoryBackend};
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("the config is broken")]
/// struct BrokenConfig;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> lock_core::Result<()> {
/// let elector = LeaderElector::new(Lock::new(MemoryBackend::new(), "my-controller", "pod-a")?);
/// let error = elector
///     .run(|_leadership| async { Err::<(), _>(BrokenConfig) })
///     .await
///     .expect_err("the work failed");
/// assert!(matches!(error, Error::Work { .. }));
/// let source = std::error::Error::source(&error).and_then(|s| s.downcast_ref::<BrokenConfig>());
/// assert!(source.is_some());
/// # Ok(()) }
/// ```
pub trait WorkOutput {
    /// `Ok` if the work ended well, otherwise its error.
    fn into_result(self) -> std::result::Result<(), BoxError>;
}

impl WorkOutput for () {
    fn into_result(self) -> std::result::Result<(), BoxError> {
        Ok(())
    }
}

impl<E: Into<BoxError>> WorkOutput for std::result::Result<(), E> {
    fn into_result(self) -> std::result::Result<(), BoxError> {
        self.map_err(Into::into)
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
    /// The work returned `Ok` by itself.
    Finished,
    /// The work returned an error.
    Failed(BoxError),
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

    /// Sets how long a leader's work and its term's tasks may take to drain at a
    /// graceful step-down before they are cancelled (default:
    /// [`DEFAULT_DRAIN_TIMEOUT`]). Draining also ends if the lock is lost.
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

    /// Campaigns and runs `work` whenever this replica leads, until shutdown or until
    /// the work fails.
    ///
    /// `work` is called at the start of each term with its [`Leadership`]; its future
    /// may return `()` or `Result<(), E>` (see [`WorkOutput`]).
    ///
    /// - **Loss** of the lock drops the work future at once, aborts the term's tasks
    ///   (see below), and the campaign resumes.
    /// - **Shutdown** or a **hand-over** asked by the server signals
    ///   [`stopping`](Leadership::stopping), waits up to the drain timeout for the work
    ///   and the term's tasks to finish, cancels what is left, steps down and releases
    ///   the lock; after a shutdown `run` returns `Ok`, after a hand-over it campaigns
    ///   again.
    /// - **`Ok` from the work** (or `()`) before shutdown: the term's tasks are drained
    ///   as at shutdown, the replica steps down and releases the lock, then **pauses
    ///   before campaigning again**, so that work which returns at once does not take
    ///   and release the lock in a tight loop. The pauses follow lock-core's one retry
    ///   schedule ([`retry_delays`](crate::retry_delays) of the renew interval): from a
    ///   tenth of the renew interval (at most 100 ms), doubling with jitter, up to the
    ///   renew interval; a term that lasted at least the renew interval starts the
    ///   schedule over. A shutdown during the pause ends `run` with `Ok` at once.
    /// - **An error from the work** ends the campaign: the term's tasks are aborted, the
    ///   replica leaves [`Leading`](LeaderState::Leading), releases the lock (so that a
    ///   standby takes over at once), and `run` returns [`Error::Work`] whose
    ///   [`source`](std::error::Error::source) is the work's error. An error the work
    ///   returns while draining is reported the same way.
    ///
    /// Otherwise `run` returns the first error that retrying cannot fix (transient
    /// errors are retried). In every case the replica leaves `Leading` before the lock
    /// is released.
    ///
    /// An elector campaigns once: shutdown is final, and `run` returns at once after it.
    /// Build a new elector to campaign again.
    ///
    /// # Tasks spawned by the work
    ///
    /// Dropping the work future does not stop the tasks it spawned with `tokio::spawn`:
    /// a task of a former leader would keep writing after the lock went to another
    /// replica. Spawn them with [`Leadership::spawn`]: they end with the term, and none
    /// runs after the term's lock was released.
    ///
    /// ```
    /// use std::time::Duration;
    /// use lock_core::{Error, LeaderElector, Lock, MemoryBackend};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> lock_core::Result<()> {
    /// let elector = LeaderElector::new(Lock::new(MemoryBackend::new(), "my-controller", "pod-a")?);
    /// let result = elector
    ///     .run(|leadership| async move {
    ///         // Aborted when the term ends, unlike a task of `tokio::spawn`.
    ///         leadership.spawn(async { tokio::time::sleep(Duration::from_secs(3600)).await });
    ///         // A failure ends the campaign after stepping down and releasing.
    ///         std::fs::read_to_string("/nonexistent/config")?;
    ///         leadership.stopping().await;
    ///         Ok::<(), std::io::Error>(())
    ///     })
    ///     .await;
    /// assert!(matches!(result, Err(Error::Work { .. })));
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Dropping the future stops the campaign at once, without a drain: the work is
    /// dropped, the term's tasks are aborted, the lock is released in the background
    /// (as a dropped [`Guard`](crate::Guard) is), and the elector is left
    /// [`Stopped`](LeaderState::Stopped), not leading, and healthy, as after a return.
    /// (An aborted task stops at its next `.await`; only an awaited `run` waits for
    /// that before the release.)
    pub async fn run<F, Fut>(&self, mut work: F) -> Result<()>
    where
        F: FnMut(Leadership) -> Fut,
        Fut: Future,
        Fut::Output: WorkOutput,
    {
        let _stopped = StopOnDrop(self);
        self.campaign(&mut work).await
    }

    /// Like [`run`](LeaderElector::run), with a graceful step-down when `signal`
    /// resolves (e.g. on SIGTERM).
    ///
    /// ```
    /// use lock_core::{LeaderElector, Lock, MemoryBackend};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> lock_core::Result<()> {
    /// let elector = LeaderElector::new(Lock::new(MemoryBackend::new(), "my-controller", "pod-a")?);
    /// let signal = async {}; // e.g. tokio::signal::ctrl_c(), mapped to ()
    /// elector
    ///     .run_until(|leadership| async move { leadership.stopping().await }, signal)
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// As for [`run`](LeaderElector::run): dropping the future stops the campaign at
    /// once, without a drain, aborts the term's tasks and releases the lock in the
    /// background. For a graceful step-down, let `signal` resolve and await the future
    /// to its end.
    pub async fn run_until<F, Fut>(&self, work: F, signal: impl Future<Output = ()>) -> Result<()>
    where
        F: FnMut(Leadership) -> Fut,
        Fut: Future,
        Fut::Output: WorkOutput,
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
        Fut: Future,
        Fut::Output: WorkOutput,
    {
        let renew_interval = self.lock.timing().renew_interval();
        // Pauses after work that returned by itself.
        let mut pauses = retry_delays(renew_interval);
        loop {
            self.follow(None);
            let guard = tokio::select! {
                biased;
                () = self.shutdown.cancelled() => return Ok(()),
                guard = self.lock.acquire_observing(|holder| self.follow(Some(&holder.holder))) => guard?,
            };
            let token = guard.token();
            let leading_since = Instant::now();
            *self.term.lock().unwrap_or_else(PoisonError::into_inner) = Some(guard.validity());
            self.state.send_replace(LeaderState::Leading { token });
            crate::metrics::leading(self.lock.name(), self.lock.identity(), true);
            tracing::info!(lock = %self.lock.name(), holder = %self.lock.identity(), %token, "leading");

            let stopping = self.shutdown.child_token();
            let tasks = TermTasks::new();
            // Aborts the term's tasks however the term ends, also if this future is
            // dropped (declared after the guard, so dropped before it).
            let _end_tasks = EndOnDrop(tasks.clone());
            // Boxed so that dropping it below really cancels the work, before the release.
            let mut term = Box::pin(work(Leadership {
                validity: guard.validity(),
                stopping: stopping.clone(),
                tasks: tasks.clone(),
            }));
            let mut end = tokio::select! {
                output = &mut term => match output.into_result() {
                    Ok(()) => TermEnd::Finished,
                    Err(error) => TermEnd::Failed(error),
                },
                reason = guard.lost() => TermEnd::Lost(reason),
                () = self.shutdown.cancelled() => TermEnd::Shutdown,
                () = guard.hand_over() => TermEnd::HandOver,
            };
            if let TermEnd::Finished | TermEnd::Shutdown | TermEnd::HandOver = end {
                // A graceful step-down: the work (unless it returned) and the term's
                // tasks drain.
                let work_returned = matches!(end, TermEnd::Finished);
                stopping.cancel();
                let started = Instant::now();
                let drain = async {
                    if !work_returned {
                        (&mut term).await.into_result()?;
                    }
                    tasks.finished().await;
                    Ok::<_, BoxError>(())
                };
                let failed = tokio::select! {
                    drained = drain => match drained {
                        Ok(()) => {
                            tracing::info!(took = ?started.elapsed(), "work drained");
                            None
                        }
                        Err(error) => Some(error),
                    },
                    reason = guard.lost() => {
                        tracing::warn!(%reason, "lost the lock while draining");
                        None
                    }
                    () = tokio::time::sleep(self.drain_timeout) => {
                        tracing::warn!(timeout = ?self.drain_timeout, "work did not drain in time; cancelling it");
                        None
                    }
                };
                if let Some(error) = failed {
                    end = TermEnd::Failed(error);
                }
            }
            // Not leading any more before the lock can go to anyone else.
            self.step_down();
            drop(term);
            // The term's tasks are gone before the lock is released or campaigned for.
            tasks.end();
            tasks.finished().await;
            if leading_since.elapsed() >= renew_interval {
                pauses = retry_delays(renew_interval);
            }
            if let TermEnd::Lost(reason) = end {
                tracing::warn!(lock = %self.lock.name(), %token, %reason, "lost leadership; campaigning again");
                drop(guard);
                continue;
            }
            if let Err(error) = guard.release().await {
                tracing::warn!(lock = %self.lock.name(), %token, %error, "stepping down: release failed");
            } else {
                tracing::info!(lock = %self.lock.name(), %token, "stepped down and released");
            }
            match end {
                TermEnd::Shutdown => return Ok(()),
                TermEnd::Failed(source) => {
                    tracing::warn!(lock = %self.lock.name(), %token, error = %source, "the leader's work failed; campaign ended");
                    return Err(Error::Work {
                        name: self.lock.name().to_string(),
                        token,
                        source,
                    });
                }
                TermEnd::Finished => {
                    let pause = pauses.next().unwrap_or(renew_interval);
                    tracing::debug!(lock = %self.lock.name(), ?pause, "the work returned; pausing before campaigning again");
                    tokio::select! {
                        biased;
                        () = self.shutdown.cancelled() => return Ok(()),
                        () = tokio::time::sleep(pause) => {}
                    }
                }
                TermEnd::HandOver | TermEnd::Lost(_) => {}
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
