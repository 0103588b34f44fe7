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

/// A backend wrapper that fails or stalls requests on command, as a network fault
/// would, for tests of what the core does when renewals fail. Clones share the switches.
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
    partitioned: AtomicBool,
    frozen: watch::Sender<bool>,
    late_answers: Mutex<Duration>,
}

impl<B: Backend> Faulty<B> {
    /// Wraps `inner` with every fault off.
    pub fn new(inner: B) -> Self {
        Self {
            inner,
            switches: Arc::new(Switches {
                fail_renewals: AtomicBool::new(false),
                partitioned: AtomicBool::new(false),
                frozen: watch::Sender::new(false),
                late_answers: Mutex::new(Duration::ZERO),
            }),
        }
    }

    /// Makes every renewal fail with a transient error (or stops doing so).
    pub fn fail_renewals(&self, on: bool) {
        self.switches.fail_renewals.store(on, Ordering::SeqCst);
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

    /// Lets every request reach the server, then holds its answer back for `delay`
    /// (`Duration::ZERO`: off), as a slow or lost response does: a request that times
    /// out on the client may still have been carried out.
    pub fn answer_late(&self, delay: Duration) {
        *self
            .switches
            .late_answers
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = delay;
    }

    /// Turns every fault off.
    pub fn heal(&self) {
        self.fail_renewals(false);
        self.partition(false);
        self.freeze(false);
        self.answer_late(Duration::ZERO);
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &B {
        &self.inner
    }

    async fn network(&self) -> Result<()> {
        let mut frozen = self.switches.frozen.subscribe();
        // The sender lives in `self`, so waiting cannot fail.
        let _ = frozen.wait_for(|frozen| !frozen).await;
        if self.switches.partitioned.load(Ordering::SeqCst) {
            return Err(Error::transient("injected fault: connection refused"));
        }
        Ok(())
    }

    /// Holds `answer` back while late answers are on.
    async fn answer<T>(&self, answer: T) -> T {
        let delay = *self
            .switches
            .late_answers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        answer
    }
}

#[async_trait]
impl<B: Backend> Backend for Faulty<B> {
    async fn take(&self, name: &LockName, holder: &str, ttl: Duration) -> Result<Take> {
        self.network().await?;
        let answer = self.inner.take(name, holder, ttl).await;
        self.answer(answer).await
    }

    async fn renew(&self, lease: &Lease) -> Result<Renew> {
        self.network().await?;
        if self.switches.fail_renewals.load(Ordering::SeqCst) {
            return Err(Error::transient("injected fault: renewal failed"));
        }
        let answer = self.inner.renew(lease).await;
        self.answer(answer).await
    }

    async fn release(&self, lease: &Lease) -> Result<Release> {
        self.network().await?;
        let answer = self.inner.release(lease).await;
        self.answer(answer).await
    }

    async fn describe(&self, name: &LockName) -> Result<Option<LockInfo>> {
        self.network().await?;
        let answer = self.inner.describe(name).await;
        self.answer(answer).await
    }

    async fn changes(&self, name: &LockName) -> Result<Changes> {
        self.network().await?;
        let answer = self.inner.changes(name).await;
        self.answer(answer).await
    }

    async fn release_holder(&self, name: &LockName, holder: &str) -> Result<Release> {
        self.network().await?;
        let answer = self.inner.release_holder(name, holder).await;
        self.answer(answer).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Listed>> {
        self.network().await?;
        let answer = self.inner.list(prefix).await;
        self.answer(answer).await
    }
}
