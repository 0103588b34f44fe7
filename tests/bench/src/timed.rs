//! A backend that notes when each take and release began and ended and when each change
//! notification reached its waiter: the parts of a hand-over, timed where lock-core
//! calls the backend.

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use async_trait::async_trait;
use futures::StreamExt;
use lock_core::{Backend, Changes, Lease, LockInfo, LockName, Release, Renew, Result, Take};
use tokio::time::Instant;

/// What a [`Mark`] times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// A take; whether it acquired the lock.
    Take { acquired: bool },
    /// A release.
    Release,
    /// A change notification handed to the waiter (it began and ended at once).
    Change,
}

/// One timed operation.
#[derive(Clone, Copy, Debug)]
pub struct Mark {
    pub operation: Operation,
    pub began: Instant,
    pub ended: Instant,
}

impl Mark {
    /// How long it took.
    pub fn took(&self) -> Duration {
        self.ended - self.began
    }
}

/// The marks of every [`Timed`] backend made with them, in the order they ended.
#[derive(Clone, Debug, Default)]
pub struct Marks(Arc<Mutex<Vec<Mark>>>);

impl Marks {
    fn push(&self, operation: Operation, began: Instant) {
        let mark = Mark {
            operation,
            began,
            ended: Instant::now(),
        };
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(mark);
    }

    /// The marks so far, which are forgotten.
    pub fn take(&self) -> Vec<Mark> {
        std::mem::take(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// `inner`, with its takes, releases and change notifications marked in `marks`.
pub struct Timed {
    pub inner: Arc<dyn Backend>,
    pub marks: Marks,
}

#[async_trait]
impl Backend for Timed {
    async fn take(&self, name: &LockName, holder: &str, ttl: Duration) -> Result<Take> {
        let began = Instant::now();
        let taken = self.inner.take(name, holder, ttl).await;
        let acquired = matches!(taken, Ok(Take::Acquired(_)));
        self.marks.push(Operation::Take { acquired }, began);
        taken
    }

    async fn renew(&self, lease: &Lease) -> Result<Renew> {
        self.inner.renew(lease).await
    }

    async fn release(&self, lease: &Lease) -> Result<Release> {
        let began = Instant::now();
        let released = self.inner.release(lease).await;
        self.marks.push(Operation::Release, began);
        released
    }

    async fn describe(&self, name: &LockName) -> Result<Option<LockInfo>> {
        self.inner.describe(name).await
    }

    async fn changes(&self, name: &LockName) -> Result<Changes> {
        let marks = self.marks.clone();
        let changes = self.inner.changes(name).await?;
        Ok(Box::pin(changes.inspect(move |()| {
            marks.push(Operation::Change, Instant::now());
        })))
    }
}
