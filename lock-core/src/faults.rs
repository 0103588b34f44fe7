//! A wrapper that injects client-side faults into any backend.

use std::{
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use tokio::sync::watch;

use crate::{
    Backend, Changes, Error, Lease, Listed, LockInfo, LockName, Release, Renew, Result, Take,
};

/// A backend wrapper that fails, slows or stalls requests on command, as a network
/// fault or a refusing server would, for tests of what the core does when requests are
/// slow or fail. Clones share the switches.
///
/// It fakes faults on the client side of one process; faults of real servers and
/// networks belong to the test harness.
///
/// ```
/// use lock_core::{Faulty, Lock, MemoryBackend};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> lock_core::Result<()> {
/// let faulty = Faulty::new(MemoryBackend::new());
/// let lock = Lock::new(faulty.clone(), "lock", "holder")?;
/// let guard = lock.acquire().await?;
/// faulty.fail_renewals(true);
/// guard.lost().await; // within the TTL
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Faulty<B> {
    inner: B,
    switches: Arc<Switches>,
}

#[derive(Debug)]
struct Switches {
    fail_renewals: AtomicBool,
    refused: AtomicBool,
    partitioned: AtomicBool,
    frozen: watch::Sender<bool>,
    delay: Mutex<Duration>,
    late_answers: Mutex<Duration>,
}

impl<B: Backend> Faulty<B> {
    /// Wraps `inner` with every fault off.
    pub fn new(inner: B) -> Self {
        Self {
            inner,
            switches: Arc::new(Switches {
                fail_renewals: AtomicBool::new(false),
                refused: AtomicBool::new(false),
                partitioned: AtomicBool::new(false),
                frozen: watch::Sender::new(false),
                delay: Mutex::new(Duration::ZERO),
                late_answers: Mutex::new(Duration::ZERO),
            }),
        }
    }

    /// Makes every renewal fail with a transient error (or stops doing so).
    pub fn fail_renewals(&self, on: bool) {
        self.switches.fail_renewals.store(on, Ordering::SeqCst);
    }

    /// Makes every request fail with a permanent error, as a server that refuses the
    /// client does (revoked credentials, a forbidding access policy), or stops doing so.
    /// Nothing reaches the backend meanwhile, and the error says trying again will not help.
    pub fn fail_permanently(&self, on: bool) {
        self.switches.refused.store(on, Ordering::SeqCst);
    }

    /// Makes every request fail at once with a transient error, as a refused
    /// connection does (or stops doing so).
    pub fn partition(&self, on: bool) {
        self.switches.partitioned.store(on, Ordering::SeqCst);
    }

    /// Makes every request hang until unfrozen, as a blackholed connection or a frozen
    /// server does (or stops doing so).
    pub fn freeze(&self, on: bool) {
        self.switches.frozen.send_replace(on);
    }

    /// Makes every request wait `delay` before it reaches the server
    /// (`Duration::ZERO`: off), as a slow link does: the server acts on the request
    /// only after the delay, unlike [`answer_late`](Self::answer_late). A request
    /// dropped meanwhile never reaches it.
    pub fn delay(&self, delay: Duration) {
        *setting(&self.switches.delay) = delay;
    }

    /// Lets every request reach the server, then holds its answer back for `delay`
    /// (`Duration::ZERO`: off), as a slow or lost response does: a request that times
    /// out on the client may still have been carried out.
    pub fn answer_late(&self, delay: Duration) {
        *setting(&self.switches.late_answers) = delay;
    }

    /// Turns every fault off.
    pub fn heal(&self) {
        self.fail_renewals(false);
        self.fail_permanently(false);
        self.partition(false);
        self.freeze(false);
        self.delay(Duration::ZERO);
        self.answer_late(Duration::ZERO);
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &B {
        &self.inner
    }

    /// The way of a request to the server: delayed, frozen, refused by the network or
    /// by the server, in that order.
    async fn network(&self) -> Result<()> {
        sleep_for(&self.switches.delay).await;
        let mut frozen = self.switches.frozen.subscribe();
        // The sender lives in `self`, so waiting cannot fail.
        let _ = frozen.wait_for(|frozen| !frozen).await;
        if self.switches.partitioned.load(Ordering::SeqCst) {
            return Err(Error::transient("injected fault: connection refused"));
        }
        if self.switches.refused.load(Ordering::SeqCst) {
            return Err(Error::permanent("injected fault: forbidden"));
        }
        Ok(())
    }

    /// Sends `request` through the faults switched on: it reaches the server only if
    /// the network lets it, and its answer is held back while late answers are on.
    async fn forward<T>(&self, request: impl Future<Output = Result<T>>) -> Result<T> {
        self.network().await?;
        let answer = request.await;
        sleep_for(&self.switches.late_answers).await;
        answer
    }
}

/// The duration a switch holds, to read or set.
fn setting(duration: &Mutex<Duration>) -> std::sync::MutexGuard<'_, Duration> {
    duration.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Sleeps for the duration a switch holds now, if any.
async fn sleep_for(switch: &Mutex<Duration>) {
    let duration = *setting(switch);
    if !duration.is_zero() {
        tokio::time::sleep(duration).await;
    }
}

#[async_trait]
impl<B: Backend> Backend for Faulty<B> {
    async fn take(&self, name: &LockName, holder: &str, ttl: Duration) -> Result<Take> {
        self.forward(self.inner.take(name, holder, ttl)).await
    }

    async fn renew(&self, lease: &Lease) -> Result<Renew> {
        self.forward(async {
            if self.switches.fail_renewals.load(Ordering::SeqCst) {
                return Err(Error::transient("injected fault: renewal failed"));
            }
            self.inner.renew(lease).await
        })
        .await
    }

    async fn release(&self, lease: &Lease) -> Result<Release> {
        self.forward(self.inner.release(lease)).await
    }

    async fn describe(&self, name: &LockName) -> Result<Option<LockInfo>> {
        self.forward(self.inner.describe(name)).await
    }

    async fn changes(&self, name: &LockName) -> Result<Changes> {
        self.forward(self.inner.changes(name)).await
    }

    async fn group_changes(&self, prefix: &str) -> Result<Changes> {
        self.forward(self.inner.group_changes(prefix)).await
    }

    async fn release_holder(&self, name: &LockName, holder: &str) -> Result<Release> {
        self.forward(self.inner.release_holder(name, holder)).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Listed>> {
        self.forward(self.inner.list(prefix)).await
    }
}
