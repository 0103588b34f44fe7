//! The renewal task: keeps a held lock alive until it is stopped or lost.
//!
//! It renews every `renew_interval`, counted from when the last successful request was
//! sent. A transient failure is retried with backoff until the self-fencing deadline;
//! each request is bounded by the request timeout and by the remaining validity, so a
//! late answer can never extend a guard that has already expired. "Not ours any more"
//! and permanent errors end the guard at once.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::{
    task::JoinHandle,
    time::{Instant, sleep_until},
};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{
    Backend, Lease, LossReason, Renew, Timing, Validity,
    backoff::retry_delays,
    request::{Request, is_timeout},
};

/// A running renewal task.
#[derive(Debug)]
pub(crate) struct Renewal {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Renewal {
    pub(crate) fn spawn(
        backend: Arc<dyn Backend>,
        lease: Arc<Mutex<Lease>>,
        validity: Validity,
        timing: Timing,
    ) -> Self {
        let stop = CancellationToken::new();
        let task = tokio::spawn(renew_until_stopped(
            backend,
            lease,
            validity,
            timing,
            stop.clone(),
        ));
        Self { stop, task }
    }

    /// Stops renewing. A request in flight is finished first (bounded by its timeout),
    /// so the lease it returns is the one a release must present.
    pub(crate) async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

async fn renew_until_stopped(
    backend: Arc<dyn Backend>,
    lease: Arc<Mutex<Lease>>,
    validity: Validity,
    timing: Timing,
    stop: CancellationToken,
) {
    let mut retries = retry_delays(timing.renew_interval());
    let mut next = validity.last_renewed() + timing.renew_interval();
    loop {
        let Some(deadline) = validity.valid_until() else {
            return;
        };
        tokio::select! {
            () = stop.cancelled() => return,
            () = sleep_until(next.min(deadline)) => {}
        }
        let sent = Instant::now();
        if sent >= deadline {
            validity.expire_if_due();
            return;
        }
        let current = lease.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let request = Request::on("renewal", &current.name, &timing).until(deadline);
        let bound = request.bound();
        let span = tracing::debug_span!("renew", lock = %current.name, holder = %current.holder, token = %current.token);
        let answer = request.send(backend.renew(&current)).instrument(span).await;
        if let Ok(Renew::HandOver(_)) = &answer {
            tracing::debug!("the server asks this holder to hand the lock over");
            validity.request_hand_over();
        }
        match answer {
            Ok(Renew::Renewed(renewed) | Renew::HandOver(renewed)) => {
                crate::metrics::renewed(validity.name(), sent.elapsed());
                *lease.lock().unwrap_or_else(PoisonError::into_inner) = renewed;
                if !validity.extend(sent, timing.validity()) {
                    return;
                }
                retries = retry_delays(timing.renew_interval());
                next = sent + timing.renew_interval();
            }
            Ok(Renew::NotHeld) => {
                tracing::warn!("lock lost: the server says it is no longer ours");
                validity.end(LossReason::Taken);
                return;
            }
            Err(error) if !error.is_transient() => {
                tracing::warn!(%error, "lock lost: renewal failed permanently");
                validity.end(LossReason::Failed(error.to_string()));
                return;
            }
            Err(error) if is_timeout(&error) => {
                crate::metrics::renew_failed(validity.name(), "timeout");
                validity.renewal_failed();
                tracing::debug!(timeout = ?bound, "renewal timed out; retrying");
                next = Instant::now() + retries.next().unwrap_or(timing.renew_interval());
            }
            Err(error) => {
                crate::metrics::renew_failed(validity.name(), "error");
                validity.renewal_failed();
                tracing::debug!(%error, "renewal failed; retrying");
                next = Instant::now() + retries.next().unwrap_or(timing.renew_interval());
            }
        }
    }
}
