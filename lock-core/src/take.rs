//! Taking a lock so that no acquisition is ever orphaned.
//!
//! A take request that reached the server may succeed after the caller stopped waiting
//! for it (its `acquire` future was dropped, or it timed out). So the request runs to
//! its end in a task of its own, and what it acquires is held by a [`HeldLease`] that releases the
//! lock in the background when dropped. The caller turns it into a guard; if the caller
//! is gone, the lease is dropped, and so released.

use std::sync::Arc;

use tokio::{sync::oneshot, time::Instant};

use crate::{
    Backend, Error, Lease, LockInfo, LockName, Result, Take, Timing,
    release::release_in_background, request::Request,
};

/// A lease acquired but not yet owned by a guard; dropping it releases the lock.
pub(crate) struct HeldLease {
    backend: Arc<dyn Backend>,
    timing: Timing,
    lease: Option<Lease>,
    /// When the request that acquired it was sent: the start of its validity.
    pub(crate) sent: Instant,
}

impl HeldLease {
    /// The token of the acquisition.
    pub(crate) fn token(&self) -> crate::FencingToken {
        self.lease
            .as_ref()
            .map_or(crate::FencingToken::new(0), |lease| lease.token)
    }

    /// Hands the lease over; it is no longer released on drop.
    pub(crate) fn into_lease(mut self) -> Lease {
        self.lease
            .take()
            .expect("a HeldLease holds its lease until it is handed over")
    }
}

impl Drop for HeldLease {
    fn drop(&mut self) {
        if let Some(lease) = self.lease.take() {
            release_in_background(self.backend.clone(), self.timing, async { lease });
        }
    }
}

/// The outcome of a take that can be dropped safely.
pub(crate) enum Taken {
    Acquired(HeldLease),
    Held(LockInfo),
}

/// One take attempt whose acquisition is released if nobody receives it.
///
/// The caller waits at most the request timeout and then gets a transient error, but
/// the request itself is not dropped at that bound: a write that reached the server
/// would otherwise be held by nobody until its TTL ran out. It finishes in its task, and
/// what it acquired is released. A request still unanswered after the TTL is given up:
/// whatever it took then expires like a crashed holder's lock.
pub(crate) async fn take(
    backend: &Arc<dyn Backend>,
    name: &LockName,
    holder: &str,
    timing: Timing,
) -> Result<Taken> {
    let (tx, rx) = oneshot::channel();
    let (backend, task_name, holder) = (backend.clone(), name.clone(), holder.to_owned());
    tokio::spawn(async move {
        let sent = Instant::now();
        let taking = backend.take(&task_name, &holder, timing.ttl());
        let outcome = match Request::on("take", &task_name, &timing)
            .within(timing.ttl())
            .send(taking)
            .await
        {
            Ok(Take::Acquired(lease)) => Ok(Taken::Acquired(HeldLease {
                backend,
                timing,
                lease: Some(lease),
                sent,
            })),
            Ok(Take::Held(info)) => Ok(Taken::Held(info)),
            Err(error) => Err(error),
        };
        // If the receiver is gone, the outcome is dropped here and a held lease released.
        let _ = tx.send(outcome);
    });
    Request::on("take", name, &timing)
        .send(async {
            rx.await.unwrap_or_else(|_| {
                Err(Error::transient(
                    "the take task was cancelled (is the runtime shutting down?)",
                ))
            })
        })
        .await
}
