//! One server request, bounded: the one place that decides how long a request may take.
//!
//! Every request the core sends to a backend goes through [`Request::send`]. It is
//! bounded by the request timeout and, for a request made for a held lock (a renewal,
//! a release), by the time that lock can still be trusted or would expire anyway, so a
//! late answer can never extend a guard that has already run out. A request still
//! unanswered at its bound is a transient [`Error::Backend`] whose source is a
//! [`RequestTimeout`].

use std::{future::Future, time::Duration};

use tokio::time::Instant;

use crate::{Error, LockName, Result, Timing};

/// The source of the transient error of a request that got no answer within its bound.
///
/// ```
/// use std::time::Duration;
/// use lock_core::{Faulty, Lock, MemoryBackend, RequestTimeout, Timing};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let faulty = Faulty::new(MemoryBackend::new());
/// let timing = Timing::new(Duration::from_secs(9)).with_request_timeout(Duration::from_secs(2));
/// let lock = Lock::builder(faulty.clone(), "lock", "pod-a").timing(timing).build().unwrap();
/// faulty.freeze(true);
/// let error = lock.holder().await.expect_err("frozen");
/// assert!(error.is_transient());
/// let timeout = error.client_error::<RequestTimeout>().expect("a request timeout");
/// assert_eq!(timeout.after, Duration::from_secs(2));
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("no answer within {after:?}")]
#[non_exhaustive]
pub struct RequestTimeout {
    /// How long the request was given.
    pub after: Duration,
}

/// One request to a backend, with its bound.
pub(crate) struct Request<'a> {
    what: &'static str,
    name: &'a str,
    bound: Duration,
}

impl<'a> Request<'a> {
    /// A request `what` ("take", "renew", ...) about the lock (or prefix) `name`,
    /// bounded by the request timeout of `timing`.
    pub(crate) fn new(what: &'static str, name: &'a str, timing: &Timing) -> Self {
        Self {
            what,
            name,
            bound: timing.request_timeout(),
        }
    }

    /// A request about the lock `name`.
    pub(crate) fn on(what: &'static str, name: &'a LockName, timing: &Timing) -> Self {
        Self::new(what, name.as_str(), timing)
    }

    /// Also bounded by `deadline`: the end of the validity it is sent for. At least a
    /// millisecond, so that a request sent right at the deadline still gets a bound.
    pub(crate) fn until(mut self, deadline: Instant) -> Self {
        let left = deadline.saturating_duration_since(Instant::now());
        self.bound = self.bound.min(left).max(Duration::from_millis(1));
        self
    }

    /// Bounded by `bound` instead of the request timeout (a take running to its end
    /// in its own task is bounded by the TTL).
    pub(crate) fn within(mut self, bound: Duration) -> Self {
        self.bound = bound;
        self
    }

    /// The bound this request gets.
    pub(crate) fn bound(&self) -> Duration {
        self.bound
    }

    /// Sends `request`; no answer within the bound is a transient error whose source is
    /// a [`RequestTimeout`]. Dropping the future drops the request.
    pub(crate) async fn send<T>(self, request: impl Future<Output = Result<T>>) -> Result<T> {
        tokio::time::timeout(self.bound, request)
            .await
            .unwrap_or_else(|_| Err(self.timed_out()))
    }

    /// The error of this request timing out.
    pub(crate) fn timed_out(&self) -> Error {
        Error::backend(
            format!("{} of lock {} timed out", self.what, self.name),
            true,
            RequestTimeout { after: self.bound },
        )
    }
}

/// Whether `error` is a request that got no answer within its bound.
pub(crate) fn is_timeout(error: &Error) -> bool {
    error.client_error::<RequestTimeout>().is_some()
}
