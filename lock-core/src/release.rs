//! Releasing a lease: retried while it matters, and in the background on drop.

use std::{future::Future, sync::Arc, time::Duration};

use tokio::time::{Instant, sleep, timeout};

use crate::{Backend, Error, Lease, Release, Result, Timing, backoff::retry_delays};

/// Releases `lease`. While `retry` is set, transient errors are retried until the lease
/// would have expired anyway.
pub(crate) async fn release_with_retries(
    backend: &dyn Backend,
    lease: &Lease,
    timing: &Timing,
    retry: bool,
) -> Result<Release> {
    let give_up_at = Instant::now() + lease.ttl;
    let mut retries = retry_delays(timing.renew_interval());
    loop {
        let bound = timing
            .request_timeout()
            .min(give_up_at.saturating_duration_since(Instant::now()))
            .max(Duration::from_millis(1));
        let error = match timeout(bound, backend.release(lease)).await {
            Ok(Ok(outcome)) => return Ok(outcome),
            Ok(Err(error)) => error,
            Err(_) => Error::transient(format!(
                "release of lock {} timed out after {bound:?}",
                lease.name
            )),
        };
        let delay = retries.next().unwrap_or(timing.renew_interval());
        if !retry || !error.is_transient() || Instant::now() + delay >= give_up_at {
            return Err(error);
        }
        sleep(delay).await;
    }
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
            Ok(Release::Released) => {
                tracing::debug!(lock = %lease.name, token = %lease.token, "released in the background")
            }
            Ok(Release::NotHeld) => {}
            Err(error) => tracing::warn!(
                lock = %lease.name, token = %lease.token, %error,
                "background release failed; the lock expires after its TTL"
            ),
        }
    });
}
