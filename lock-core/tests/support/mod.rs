//! A backend wrapper for the core's timing specifications: it records when each renewal
//! was sent and ended, and can add latency or fail permanently.
#![allow(dead_code)] // each test binary uses a part of it

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use async_trait::async_trait;
use lock_core::{
    Backend, Changes, Error, Lease, LockInfo, LockName, MemoryBackend, Release, Renew, Result, Take,
};
use tokio::time::{Instant, sleep};

/// One renew request: when it was sent, and when it ended (answered or dropped).
#[derive(Clone, Copy, Debug)]
pub struct Request {
    pub sent: Instant,
    pub ended: Option<Instant>,
}

#[derive(Default)]
struct Script {
    latency: Duration,
    renew_latency: Option<Duration>,
    fail_permanently: bool,
    hand_over: bool,
    renewals: Vec<Request>,
}

/// A memory backend that records renewals and follows a script.
#[derive(Clone, Default)]
pub struct Recorder {
    inner: MemoryBackend,
    script: Arc<Mutex<Script>>,
}

impl Recorder {
    pub fn new(inner: MemoryBackend) -> Self {
        Self {
            inner,
            script: Arc::default(),
        }
    }

    fn script(&self) -> std::sync::MutexGuard<'_, Script> {
        self.script.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every request takes this long before it reaches the server.
    pub fn set_latency(&self, latency: Duration) {
        self.script().latency = latency;
    }

    /// Renew requests take this long (`Duration::MAX`: never answer).
    pub fn set_renew_latency(&self, latency: Duration) {
        self.script().renew_latency = Some(latency);
    }

    /// Renewals fail with a permanent error.
    pub fn fail_permanently(&self) {
        self.script().fail_permanently = true;
    }

    /// Renewals succeed but ask the holder to hand the lock over.
    pub fn ask_for_hand_over(&self) {
        self.script().hand_over = true;
    }

    pub fn renewals(&self) -> Vec<Request> {
        self.script().renewals.clone()
    }

    async fn delay(&self) {
        let latency = self.script().latency;
        sleep(latency).await;
    }
}

/// Marks a recorded request as ended when the request future is dropped or finishes.
struct Ends(Arc<Mutex<Script>>, usize);

impl Drop for Ends {
    fn drop(&mut self) {
        let mut script = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        script.renewals[self.1].ended = Some(Instant::now());
    }
}

#[async_trait]
impl Backend for Recorder {
    async fn take(&self, name: &LockName, holder: &str, ttl: Duration) -> Result<Take> {
        self.delay().await;
        self.inner.take(name, holder, ttl).await
    }

    async fn renew(&self, lease: &Lease) -> Result<Renew> {
        let (index, latency, fail, hand_over) = {
            let mut script = self.script();
            script.renewals.push(Request {
                sent: Instant::now(),
                ended: None,
            });
            let latency = script.renew_latency.unwrap_or(script.latency);
            (
                script.renewals.len() - 1,
                latency,
                script.fail_permanently,
                script.hand_over,
            )
        };
        let _ends = Ends(self.script.clone(), index);
        if latency == Duration::MAX {
            std::future::pending::<()>().await;
        }
        sleep(latency).await;
        if fail {
            return Err(Error::permanent("forbidden"));
        }
        match self.inner.renew(lease).await? {
            Renew::Renewed(renewed) if hand_over => Ok(Renew::HandOver(renewed)),
            outcome => Ok(outcome),
        }
    }

    async fn release(&self, lease: &Lease) -> Result<Release> {
        self.delay().await;
        self.inner.release(lease).await
    }

    async fn describe(&self, name: &LockName) -> Result<Option<LockInfo>> {
        self.inner.describe(name).await
    }

    async fn changes(&self, name: &LockName) -> Result<Changes> {
        self.inner.changes(name).await
    }
}
