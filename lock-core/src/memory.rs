//! An in-memory backend with the same semantics as the real ones.
//!
//! Locks expire on the server side, as on etcd and Redis, measured on tokio's clock, so
//! tests can run it on paused time (`#[tokio::test(start_paused = true)]`) and get exact,
//! instant timings. Clones share one store, like several clients of one server.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use async_trait::async_trait;
use tokio::{sync::watch, time::Instant};

use crate::{
    Backend, Changes, FencingToken, Lease, Listed, LockInfo, LockName, Release, Renew, Result, Take,
};

/// Tokens come from one process-wide counter, so they grow across every lock and every
/// `MemoryBackend`, even one created anew (the in-memory "server restart").
static NEXT_TOKEN: AtomicU64 = AtomicU64::new(1);

/// An in-memory lock server. Clones share the same locks.
///
/// ```
/// use lock_core::{Lock, MemoryBackend};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> lock_core::Result<()> {
/// let server = MemoryBackend::new();
/// let a = Lock::new(server.clone(), "my-lock", "replica-a")?;
/// let b = Lock::new(server, "my-lock", "replica-b")?;
///
/// let guard = a.try_acquire().await?;
/// assert!(b.try_acquire().await.is_err());
/// guard.release().await?;
/// assert!(b.try_acquire().await.is_ok());
/// # Ok(()) }
/// ```
#[derive(Clone, Default)]
pub struct MemoryBackend {
    locks: Arc<Mutex<HashMap<LockName, Slot>>>,
    /// Bumped whenever any lock is taken or freed, for the groups watching.
    changed: Arc<watch::Sender<u64>>,
}

impl std::fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBackend").finish_non_exhaustive()
    }
}

struct Slot {
    record: Option<Record>,
    changed: watch::Sender<u64>,
}

struct Record {
    holder: String,
    token: FencingToken,
    ttl: Duration,
    expires_at: Instant,
    acquired_at: SystemTime,
    renewed_at: SystemTime,
}

impl Slot {
    fn new() -> Self {
        Self {
            record: None,
            changed: watch::Sender::new(0),
        }
    }

    /// The record if it has not expired.
    fn live(&self, now: Instant) -> Option<&Record> {
        self.record.as_ref().filter(|r| now < r.expires_at)
    }

    fn is_ours(&self, lease: &Lease, now: Instant) -> bool {
        self.live(now).is_some_and(|r| r.token == lease.token)
    }

    fn notify(&self) {
        self.changed.send_modify(|version| *version += 1);
    }

    /// Frees the lock and wakes its waiters.
    fn free(&mut self) -> Release {
        self.record = None;
        self.notify();
        Release::Released
    }
}

impl Record {
    fn info(&self, now: Instant) -> LockInfo {
        LockInfo {
            holder: self.holder.clone(),
            token: Some(self.token),
            ttl: self.ttl,
            acquired_at: Some(self.acquired_at),
            renewed_at: Some(self.renewed_at),
            expires_in: Some(self.expires_at.saturating_duration_since(now)),
        }
    }
}

impl MemoryBackend {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn with_slot<T>(&self, name: &LockName, f: impl FnOnce(&mut Slot) -> T) -> T {
        let mut locks = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = locks.entry(name.clone()).or_insert_with(Slot::new);
        let before = *slot.changed.borrow();
        let result = f(slot);
        if *slot.changed.borrow() != before {
            self.changed.send_modify(|version| *version += 1);
        }
        result
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    async fn take(&self, name: &LockName, holder: &str, ttl: Duration) -> Result<Take> {
        let now = Instant::now();
        Ok(self.with_slot(name, |slot| {
            if let Some(record) = slot.live(now) {
                return Take::Held(record.info(now));
            }
            let token = FencingToken::new(NEXT_TOKEN.fetch_add(1, Ordering::Relaxed));
            slot.record = Some(Record {
                holder: holder.to_owned(),
                token,
                ttl,
                expires_at: now + ttl,
                acquired_at: SystemTime::now(),
                renewed_at: SystemTime::now(),
            });
            slot.notify();
            Take::Acquired(Lease {
                name: name.clone(),
                holder: holder.to_owned(),
                token,
                ttl,
                revision: token.get(),
            })
        }))
    }

    async fn renew(&self, lease: &Lease) -> Result<Renew> {
        let now = Instant::now();
        Ok(self.with_slot(&lease.name, |slot| {
            if !slot.is_ours(lease, now) {
                return Renew::NotHeld;
            }
            if let Some(record) = slot.record.as_mut() {
                record.expires_at = now + lease.ttl;
                record.renewed_at = SystemTime::now();
            }
            Renew::Renewed(lease.clone())
        }))
    }

    async fn release(&self, lease: &Lease) -> Result<Release> {
        let now = Instant::now();
        Ok(self.with_slot(&lease.name, |slot| {
            if !slot.is_ours(lease, now) {
                return Release::NotHeld;
            }
            slot.free()
        }))
    }

    async fn describe(&self, name: &LockName) -> Result<Option<LockInfo>> {
        let now = Instant::now();
        Ok(self.with_slot(name, |slot| slot.live(now).map(|r| r.info(now))))
    }

    async fn release_holder(&self, name: &LockName, holder: &str) -> Result<Release> {
        let now = Instant::now();
        Ok(self.with_slot(name, |slot| {
            if slot.live(now).is_none_or(|record| record.holder != holder) {
                return Release::NotHeld;
            }
            slot.free()
        }))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Listed>> {
        let now = Instant::now();
        let locks = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
        let mut listed: Vec<Listed> = locks
            .iter()
            .filter(|(name, _)| name.as_str().starts_with(prefix))
            .filter_map(|(name, slot)| {
                let record = slot.live(now)?;
                Some(Listed {
                    name: name.to_string(),
                    holder: Ok(Some(record.info(now))),
                })
            })
            .collect();
        listed.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(listed)
    }

    async fn changes(&self, name: &LockName) -> Result<Changes> {
        Ok(notifications(
            self.with_slot(name, |slot| slot.changed.subscribe()),
        ))
    }

    /// Every take and release of any lock notifies (the prefix is not looked at).
    async fn group_changes(&self, _prefix: &str) -> Result<Changes> {
        Ok(notifications(self.changed.subscribe()))
    }
}

/// An item each time `receiver` sees a change.
fn notifications(receiver: watch::Receiver<u64>) -> Changes {
    Box::pin(futures::stream::unfold(
        receiver,
        |mut receiver| async move { receiver.changed().await.ok().map(|()| ((), receiver)) },
    ))
}
