//! The one error type of the workspace.

use std::{error::Error as StdError, time::Duration};

use crate::{FencingToken, LockInfo, LossReason};

/// A boxed error from a backend's client library.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Everything that can go wrong with a lock, on any backend.
///
/// Match on the variant to decide what to do; [`Error::is_transient`] tells whether
/// trying again later may succeed.
///
/// ```
/// use lock_core::{Error, FencingToken};
///
/// let err = Error::StaleToken { presented: FencingToken::new(3), current: FencingToken::new(5) };
/// assert!(!err.is_transient());
/// assert_eq!(err.to_string(), "stale fencing token 3: a write with token 5 was already accepted");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The lock name is not valid on every backend (see [`LockName`](crate::LockName)).
    #[error("invalid lock name {name:?}: {reason}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The holder identity is empty, too long or not printable.
    #[error("invalid holder identity {identity:?}: {reason}")]
    InvalidIdentity {
        /// The rejected identity.
        identity: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The timing options contradict each other (see [`Timing`](crate::Timing)).
    #[error("invalid timing: {reason}")]
    InvalidTiming {
        /// Which rule is broken, with the values given.
        reason: String,
    },

    /// An option other than a name, identity or timing is out of range (e.g. zero
    /// shards).
    #[error("invalid option: {reason}")]
    InvalidOption {
        /// Which option, with the value given.
        reason: String,
    },

    /// The lock is held by someone else.
    #[error("lock is held by {:?}{}", .0.holder, .0.token.map(|t| format!(" (token {t})")).unwrap_or_default())]
    Held(Box<LockInfo>),

    /// Waiting for the lock took longer than allowed.
    #[error("timed out after {waited:?} waiting for lock {name}")]
    Timeout {
        /// The lock waited for.
        name: String,
        /// How long was waited.
        waited: Duration,
    },

    /// The guard stopped being valid before it was released: work done under it since
    /// then was not protected.
    #[error("lock {name} with token {token} was lost: {reason}")]
    Lost {
        /// The lock that was lost.
        name: String,
        /// The token of the lost guard.
        token: FencingToken,
        /// Why it was lost.
        reason: LossReason,
    },

    /// A release was sent but its answer was lost, and the retry found the lock no
    /// longer ours. Most likely the first attempt freed it; but the lock may also have
    /// been freed for another holder just before (an operator's break, or expiry on the
    /// server), which the server's answer cannot tell apart. The guard was valid until
    /// the release began.
    #[error(
        "release of lock {name} with token {token} is unconfirmed: an attempt went unanswered and the lock is no longer ours (most likely that attempt released it)"
    )]
    ReleaseUnconfirmed {
        /// The lock released.
        name: String,
        /// The token of the released guard.
        token: FencingToken,
    },

    /// A fenced write presented a token lower than one already accepted: the writer is a
    /// former holder and its write was rejected.
    #[error("stale fencing token {presented}: a write with token {current} was already accepted")]
    StaleToken {
        /// The token the rejected write carried.
        presented: FencingToken,
        /// The highest token the resource has accepted.
        current: FencingToken,
    },

    /// The backend or server cannot provide what the contract needs (for example a
    /// server whose versions are not numbers).
    #[error("unsupported: {reason}")]
    Unsupported {
        /// What is missing.
        reason: String,
    },

    /// The record at the lock's location was not written by this library (or was
    /// damaged). It is reported, never overwritten.
    #[error("malformed record at lock {name}: {reason}")]
    Malformed {
        /// The lock whose record is malformed.
        name: String,
        /// What is wrong with the record.
        reason: String,
    },

    /// The leader's work returned an error (see
    /// [`LeaderElector::run`](crate::LeaderElector::run)): the elector stepped down,
    /// released the lock and stopped campaigning. `source` is the work's error, kept
    /// whole: downcast it through `std::error::Error::source`.
    #[error("the leader's work on lock {name} (token {token}) failed: {source}")]
    Work {
        /// The lock the elector campaigned for.
        name: String,
        /// The token of the term whose work failed.
        token: FencingToken,
        /// The work's error.
        source: BoxError,
    },

    /// The backend's client or server failed. Made by [`Error::backend`].
    ///
    /// `source` is the client library's own error, kept whole: downcast it to tell one
    /// server answer from another (a Kubernetes 404 from a 403, a gRPC status), e.g.
    /// through `std::error::Error::source`. The message shows `context` and then the
    /// client's message.
    #[error("{context}: {source}")]
    Backend {
        /// What failed and, where the backend can tell, what to do about it (e.g.
        /// "cannot take lock a: forbidden in namespace \"ns\"; ...").
        context: String,
        /// Whether trying again later may succeed (a timeout, a refused connection, a
        /// conflict) or not (forbidden, bad configuration).
        transient: bool,
        /// The client library's error.
        source: BoxError,
    },
}

impl Error {
    /// A backend request failed: `context` says what failed (and what to do about it),
    /// `transient` whether trying again later may succeed, and `source` is the client's
    /// error, kept as the [`source`](std::error::Error::source) of the result.
    ///
    /// The one constructor of [`Error::Backend`]: a backend's error module only decides
    /// `context` and `transient` for its client's errors.
    ///
    /// ```
    /// use std::error::Error as _;
    /// use lock_core::Error;
    ///
    /// let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
    /// let error = Error::backend("cannot take lock a", true, refused);
    /// assert!(error.is_transient());
    /// let source = error.source().and_then(|s| s.downcast_ref::<std::io::Error>());
    /// assert_eq!(source.map(std::io::Error::kind), Some(std::io::ErrorKind::ConnectionRefused));
    /// ```
    pub fn backend(
        context: impl Into<String>,
        transient: bool,
        source: impl Into<BoxError>,
    ) -> Self {
        Self::Backend {
            context: context.into(),
            transient,
            source: source.into(),
        }
    }

    /// A transient backend error without more context: trying again later may succeed.
    pub fn transient(source: impl Into<BoxError>) -> Self {
        Self::backend("backend error (transient)", true, source)
    }

    /// A permanent backend error without more context: trying again will not help.
    pub fn permanent(source: impl Into<BoxError>) -> Self {
        Self::backend("backend error (permanent)", false, source)
    }

    /// The client library's error of a [`Backend`](Error::Backend) error, if it is a
    /// `E` (e.g. `kube::Error`, `etcd_client::Error`, `redis::RedisError`).
    ///
    /// ```
    /// use lock_core::Error;
    ///
    /// let error = Error::backend("cannot read lock a", true, std::io::Error::other("reset"));
    /// assert!(error.client_error::<std::io::Error>().is_some());
    /// assert!(Error::transient("no client error").client_error::<std::io::Error>().is_none());
    /// ```
    pub fn client_error<E: StdError + 'static>(&self) -> Option<&E> {
        match self {
            Self::Backend { source, .. } => source.downcast_ref::<E>(),
            _ => None,
        }
    }

    /// Whether trying the same operation again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Backend {
                transient: true,
                ..
            } | Self::Timeout { .. }
        )
    }

    pub(crate) fn invalid_timing(reason: impl Into<String>) -> Self {
        Self::InvalidTiming {
            reason: reason.into(),
        }
    }
}

/// The result type of the workspace.
pub type Result<T, E = Error> = std::result::Result<T, E>;
