//! A backend wrapper for the core's timing specifications: it records when each renewal
//! was sent and ended, and counts every request by kind. Faults (latency, failures) come from a [`lock_core::Faulty`]
//! inside it, so that the recorded times include them.
#![allow(dead_code)] // each test binary uses a part of it

use std::{
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use async_trait::async_trait;
use lock_core::{
    Backend, Changes, Lease, Listed, LockInfo, LockName, Release, Renew, Result, Take,
};
use tokio::time::Instant;

/// One renew request: when it was sent, and when it ended (answered or dropped).
#[derive(Clone, Copy, Debug)]
pub struct Request {
    pub sent: Instant,
    pub ended: Option<Instant>,
}

#[derive(Default)]
struct Record {
    renewals: Vec<Request>,
    hand_over: bool,
    /// Requests sent, by kind (`take`, `renew`, `list`, ...).
    sent: std::collections::HashMap<&'static str, usize>,
}

/// A backend that records the renewals sent through it to `inner`.
#[derive(Clone)]
pub struct Recorder<B> {
    inner: B,
    record: Arc<Mutex<Record>>,
}

impl<B: Backend> Recorder<B> {
    pub fn new(inner: B) -> Self {
        Self {
            inner,
            record: Arc::default(),
        }
    }

    fn record(&self) -> MutexGuard<'_, Record> {
        self.record.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Answers each successful renewal from now on as the server's request to hand the
    /// lock over ([`Renew::HandOver`]): the one answer no backend here gives on its own.
    pub fn ask_for_hand_over(&self) {
        self.record().hand_over = true;
    }

    /// Every renewal sent so far, in order.
    pub fn renewals(&self) -> Vec<Request> {
        self.record().renewals.clone()
    }

    /// How many requests of `kind` (a `Backend` method's name) were sent so far.
    pub fn sent(&self, kind: &str) -> usize {
        self.record().sent.get(kind).copied().unwrap_or(0)
    }

    fn count(&self, kind: &'static str) {
        *self.record().sent.entry(kind).or_default() += 1;
    }
}

/// Marks a recorded request as ended when the request future is dropped or finishes.
struct Ends(Arc<Mutex<Record>>, usize);

impl Drop for Ends {
    fn drop(&mut self) {
        let mut record = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        record.renewals[self.1].ended = Some(Instant::now());
    }
}

#[async_trait]
impl<B: Backend> Backend for Recorder<B> {
    async fn take(&self, name: &LockName, holder: &str, ttl: Duration) -> Result<Take> {
        self.count("take");
        self.inner.take(name, holder, ttl).await
    }

    async fn renew(&self, lease: &Lease) -> Result<Renew> {
        self.count("renew");
        let (index, hand_over) = {
            let mut record = self.record();
            record.renewals.push(Request {
                sent: Instant::now(),
                ended: None,
            });
            (record.renewals.len() - 1, record.hand_over)
        };
        let _ends = Ends(self.record.clone(), index);
        match self.inner.renew(lease).await? {
            Renew::Renewed(renewed) if hand_over => Ok(Renew::HandOver(renewed)),
            outcome => Ok(outcome),
        }
    }

    async fn release(&self, lease: &Lease) -> Result<Release> {
        self.count("release");
        self.inner.release(lease).await
    }

    async fn describe(&self, name: &LockName) -> Result<Option<LockInfo>> {
        self.count("describe");
        self.inner.describe(name).await
    }

    async fn changes(&self, name: &LockName) -> Result<Changes> {
        self.count("changes");
        self.inner.changes(name).await
    }

    async fn group_changes(&self, prefix: &str) -> Result<Changes> {
        self.count("group_changes");
        self.inner.group_changes(prefix).await
    }

    async fn release_holder(&self, name: &LockName, holder: &str) -> Result<Release> {
        self.count("release_holder");
        self.inner.release_holder(name, holder).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Listed>> {
        self.count("list");
        self.inner.list(prefix).await
    }
}
