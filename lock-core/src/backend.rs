//! The primitives a backend implements: small, atomic server operations.
//!
//! Everything else (renewal, self-fencing, waiting, retries, election) is written once in
//! this crate on top of them. Each primitive is a single compare-and-set on the server,
//! never a read followed by an unguarded write.

use std::{sync::Arc, time::Duration, time::SystemTime};

use async_trait::async_trait;
use futures::stream::BoxStream;

use crate::{Error, FencingToken, LockName, Result};

/// A lock held on the server, as the backend needs it for its next compare-and-set.
/// Made by [`Lease::new`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Lease {
    /// The lock held.
    pub name: LockName,
    /// Who holds it.
    pub holder: String,
    /// The token issued by the acquisition.
    pub token: FencingToken,
    /// The TTL the lock was taken with.
    pub ttl: Duration,
    /// Backend-specific state for the next compare-and-set, opaque to the core: the
    /// Lease's latest `resourceVersion` on Kubernetes, the etcd lease id on etcd.
    pub revision: u64,
}

/// Who holds a lock, as one backend sees it now. Made by [`LockInfo::new`] and the
/// `with_` methods.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LockInfo {
    /// The holder's identity.
    pub holder: String,
    /// The holder's fencing token, where the backend can tell it.
    pub token: Option<FencingToken>,
    /// The TTL the holder took the lock with.
    pub ttl: Duration,
    /// When the holder acquired the lock, by the holder's clock, if recorded.
    pub acquired_at: Option<SystemTime>,
    /// When the holder last renewed the lock, by the holder's clock, if recorded.
    pub renewed_at: Option<SystemTime>,
    /// How long until a contender may take the lock if it is not renewed, as judged by
    /// the backend now (for Kubernetes: by this process's own observation).
    pub expires_in: Option<Duration>,
}

/// The outcome of [`Backend::take`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Take {
    /// The lock was free or expired and is now ours.
    Acquired(Lease),
    /// Someone holds the lock.
    Held(LockInfo),
}

/// The outcome of [`Backend::renew`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Renew {
    /// Still ours, for another TTL; carries the lease for the next compare-and-set.
    Renewed(Lease),
    /// Still ours, for another TTL, but the server asks the holder to hand the lock
    /// over (Kubernetes' coordinated leader election names another `preferredHolder`):
    /// a leader drains its work and releases, as on a graceful step-down.
    HandOver(Lease),
    /// No longer ours: expired, released, or taken by someone else.
    NotHeld,
}

/// The outcome of [`Backend::release`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Release {
    /// It was ours and is now free.
    Released,
    /// It was not ours any more; nothing was changed.
    NotHeld,
}

/// A lock found by [`Backend::list`]. Made by [`Listed::new`].
#[derive(Debug)]
#[non_exhaustive]
pub struct Listed {
    /// The lock's name, as found on the server.
    pub name: String,
    /// Who holds it (`None`: free), or why its record cannot be read.
    pub holder: Result<Option<LockInfo>>,
}

impl Lease {
    /// The lease a backend's take or renewal returns.
    pub fn new(
        name: LockName,
        holder: impl Into<String>,
        token: FencingToken,
        ttl: Duration,
        revision: u64,
    ) -> Self {
        Self {
            name,
            holder: holder.into(),
            token,
            ttl,
            revision,
        }
    }
}

impl LockInfo {
    /// `holder`, which took the lock with `ttl`; token, times and expiry unknown until
    /// given.
    ///
    /// ```
    /// use std::time::Duration;
    /// use lock_core::{FencingToken, LockInfo};
    ///
    /// let info = LockInfo::new("pod-a", Duration::from_secs(15))
    ///     .with_token(Some(FencingToken::new(7)))
    ///     .with_expires_in(Some(Duration::from_secs(9)));
    /// assert_eq!(info.token, Some(FencingToken::new(7)));
    /// ```
    pub fn new(holder: impl Into<String>, ttl: Duration) -> Self {
        Self {
            holder: holder.into(),
            token: None,
            ttl,
            acquired_at: None,
            renewed_at: None,
            expires_in: None,
        }
    }

    /// With the holder's fencing token, where the backend can tell it.
    #[must_use]
    pub fn with_token(mut self, token: Option<FencingToken>) -> Self {
        self.token = token;
        self
    }

    /// With when the holder acquired the lock, by its clock.
    #[must_use]
    pub fn with_acquired_at(mut self, at: Option<SystemTime>) -> Self {
        self.acquired_at = at;
        self
    }

    /// With when the holder last renewed the lock, by its clock.
    #[must_use]
    pub fn with_renewed_at(mut self, at: Option<SystemTime>) -> Self {
        self.renewed_at = at;
        self
    }

    /// With how long until a contender may take the lock if it is not renewed.
    #[must_use]
    pub fn with_expires_in(mut self, expires_in: Option<Duration>) -> Self {
        self.expires_in = expires_in;
        self
    }
}

impl Listed {
    /// The lock `name` found by a list, with its holder (or why its record cannot be read).
    pub fn new(name: impl Into<String>, holder: Result<Option<LockInfo>>) -> Self {
        Self {
            name: name.into(),
            holder,
        }
    }
}

/// Notifications that a lock may have become free or changed hands (released, taken,
/// deleted). An item means "look again"; the end of the stream means notifications
/// stopped and the waiter falls back to polling and subscribes again.
///
/// A renewal need not notify, and should not: it cannot free the lock, and a waiter
/// looks again by itself when the holder's expiry runs out (see
/// [`LockInfo::expires_in`]) or after the poll interval, whichever comes first.
pub type Changes = BoxStream<'static, ()>;

/// The atomic server operations of one backend.
///
/// Implementations hold a client and nothing else: no loops, no timers, no retries.
/// Errors say whether they are transient ([`Error::transient`](crate::Error::transient)).
/// Every implementation must pass the [`conformance`](crate#conformance) suite.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Takes `name` for `holder` for `ttl` if it is free or expired, issuing a new
    /// fencing token larger than every token issued for `name` before.
    async fn take(&self, name: &LockName, holder: &str, ttl: Duration) -> Result<Take>;

    /// Extends `lease` by its TTL if it is still ours.
    async fn renew(&self, lease: &Lease) -> Result<Renew>;

    /// Frees `lease` at once if it is still ours; never touches another holder's record.
    async fn release(&self, lease: &Lease) -> Result<Release>;

    /// Who holds `name` now, or `None` if it is free.
    async fn describe(&self, name: &LockName) -> Result<Option<LockInfo>>;

    /// Notifications of changes to `name` that can free it or hand it to someone else
    /// (see [`Changes`]). The default has none, so waiters poll.
    async fn changes(&self, _name: &LockName) -> Result<Changes> {
        Ok(Box::pin(futures::stream::pending()))
    }

    /// Notifications that a lock whose name starts with `prefix` may have been taken,
    /// released or deleted, for a group of locks watched as one ([`ElectedShards`]'
    /// roster): an item means "look at the group again" (renewals need not notify); the
    /// end of the stream means notifications stopped, and the group is polled until it
    /// subscribes again. The default says the backend cannot, and the group is polled.
    ///
    /// [`ElectedShards`]: crate::ElectedShards
    async fn group_changes(&self, _prefix: &str) -> Result<Changes> {
        Err(Error::Unsupported {
            reason: "this backend cannot watch a group of locks".to_owned(),
        })
    }

    /// Frees `name` if `holder` holds it now, whichever acquisition that is: a
    /// compare-and-set on the record read, for an operator freeing a stuck holder
    /// ([`Lock::break_lock`](crate::Lock::break_lock), `lockctl release`). The default
    /// says the backend cannot.
    async fn release_holder(&self, _name: &LockName, _holder: &str) -> Result<Release> {
        Err(Error::Unsupported {
            reason: "this backend cannot release another process's lock".to_owned(),
        })
    }

    /// Every lock whose name starts with `prefix`, sorted by name: held ones, and free
    /// ones where the backend keeps a record of them (Kubernetes). The default says the
    /// backend cannot list.
    async fn list(&self, _prefix: &str) -> Result<Vec<Listed>> {
        Err(Error::Unsupported {
            reason: "this backend cannot list its locks".to_owned(),
        })
    }
}

/// A backend shows as its type's name only: its client and connections are not part of
/// what a lock or guard shows.
impl std::fmt::Debug for dyn Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("dyn Backend")
    }
}

#[async_trait]
impl<B: Backend + ?Sized> Backend for Arc<B> {
    async fn take(&self, name: &LockName, holder: &str, ttl: Duration) -> Result<Take> {
        (**self).take(name, holder, ttl).await
    }
    async fn renew(&self, lease: &Lease) -> Result<Renew> {
        (**self).renew(lease).await
    }
    async fn release(&self, lease: &Lease) -> Result<Release> {
        (**self).release(lease).await
    }
    async fn describe(&self, name: &LockName) -> Result<Option<LockInfo>> {
        (**self).describe(name).await
    }
    async fn changes(&self, name: &LockName) -> Result<Changes> {
        (**self).changes(name).await
    }

    async fn group_changes(&self, prefix: &str) -> Result<Changes> {
        (**self).group_changes(prefix).await
    }

    async fn release_holder(&self, name: &LockName, holder: &str) -> Result<Release> {
        (**self).release_holder(name, holder).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Listed>> {
        (**self).list(prefix).await
    }
}
