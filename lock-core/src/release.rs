//! Releasing a lease: retried while it matters, and in the background on drop.

use std::{future::Future, sync::Arc};

use tokio::time::{Instant, sleep};

use crate::{
    Backend, Error, Lease, Release, Result, Timing, backoff::retry_delays, request::Request,
};

/// What a release found: whether the lease was ours, and whether an earlier attempt
/// went unanswered (so a `NotHeld` may be that attempt's own doing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Released {
    pub(crate) outcome: Release,
    pub(crate) after_unanswered: bool,
}

/// Releases `lease`. While `retry` is set, transient errors are retried until the lease
/// would have expired anyway.
pub(crate) async fn release_with_retries(
    backend: &dyn Backend,
    lease: &Lease,
    timing: &Timing,
    retry: bool,
) -> Result<Released> {
    let give_up_at = Instant::now() + lease.ttl;
    let mut retries = retry_delays(timing.renew_interval());
    let mut after_unanswered = false;
    loop {
        let request = Request::on("release", &lease.name, timing).until(give_up_at);
        let error = match request.send(backend.release(lease)).await {
            Ok(outcome) => {
                return Ok(Released {
                    outcome,
                    after_unanswered,
                });
            }
            Err(error) => error,
        };
        // A transient failure may have happened after the release was carried out.
        after_unanswered |= error.is_transient();
        let delay = retries.next().unwrap_or(timing.renew_interval());
        if !retry || !error.is_transient() || Instant::now() + delay >= give_up_at {
            return Err(error);
        }
        sleep(delay).await;
    }
}

/// Releases `lease` in a task of its own and waits for it: dropping the wait does not
/// stop the release.
pub(crate) async fn release_detached(
    backend: Arc<dyn Backend>,
    timing: Timing,
    lease: Lease,
) -> Result<Released> {
    let name = lease.name.clone();
    let task =
        tokio::spawn(async move { release_with_retries(&*backend, &lease, &timing, true).await });
    task.await.unwrap_or_else(|error| {
        Err(Error::transient(format!(
            "the release of lock {name} did not finish: {error}"
        )))
    })
}

/// Releases the lease that `lease` yields without waiting for it: best effort, logged,
/// never reported. Without a tokio runtime nothing can be sent; the lock then expires
/// after its TTL.
pub(crate) fn release_in_background(
    backend: Arc<dyn Backend>,
    timing: Timing,
    lease: impl Future<Output = Lease> + Send + 'static,
) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::warn!("no tokio runtime to release a dropped lock; it expires after its TTL");
        return;
    };
    runtime.spawn(async move {
        let lease = lease.await;
        match release_with_retries(&*backend, &lease, &timing, true).await {
            Ok(Released {
                outcome: Release::Released,
                ..
            }) => {
                tracing::debug!(lock = %lease.name, token = %lease.token, "released in the background")
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(
                lock = %lease.name, token = %lease.token, %error,
                "background release failed; the lock expires after its TTL"
            ),
        }
    });
}
