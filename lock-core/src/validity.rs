//! How long a held lock can be trusted: the self-fencing deadline.

use std::{fmt, sync::Arc, time::Duration};

use tokio::{
    sync::watch,
    time::{Instant, sleep_until},
};

use crate::{FencingToken, LockName};

/// Why a guard stopped being valid.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LossReason {
    /// No renewal succeeded before the self-fencing deadline (the server was unreachable
    /// or too slow); another contender may take the lock once its TTL runs out.
    Expired,
    /// The server says the lock is no longer ours: it expired there, or someone else
    /// holds it now.
    Taken,
    /// Renewing failed with an error that retrying cannot fix.
    Failed(String),
    /// The holder released the lock (or dropped its guard).
    Released,
}

impl fmt::Display for LossReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Expired => f.write_str("no renewal succeeded before the self-fencing deadline"),
            Self::Taken => f.write_str("the server says the lock is no longer ours"),
            Self::Failed(error) => write!(f, "renewal failed permanently: {error}"),
            Self::Released => f.write_str("released by its holder"),
        }
    }
}

#[derive(Clone, Debug)]
struct Status {
    valid_until: Instant,
    last_renewed: Instant,
    /// Whether the last renewal attempt failed or timed out (cleared by a success).
    renewal_failing: bool,
    /// Whether the server asked the holder to hand the lock over.
    hand_over: bool,
    lost: Option<LossReason>,
}

/// A cloneable view of one guard's validity, for code that must check it without owning
/// the guard (a leader's work, a health probe).
///
/// The deadline is the moment the last successful acquire or renew request was *sent*
/// plus the TTL minus the drift margin, on the local monotonic clock. Once the deadline
/// passes, or the lock is lost or released, the view stays invalid for good.
#[derive(Clone)]
pub struct Validity {
    name: LockName,
    token: FencingToken,
    status: Arc<watch::Sender<Status>>,
}

impl fmt::Debug for Validity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Validity")
            .field("name", &self.name)
            .field("token", &self.token)
            .field("valid_until", &self.valid_until())
            .field("loss", &self.loss())
            .finish()
    }
}

impl Validity {
    pub(crate) fn new(
        name: LockName,
        token: FencingToken,
        sent: Instant,
        validity: Duration,
    ) -> Self {
        Self {
            name,
            token,
            status: Arc::new(watch::Sender::new(Status {
                valid_until: sent + validity,
                last_renewed: sent,
                renewal_failing: false,
                hand_over: false,
                lost: None,
            })),
        }
    }

    /// The lock this guard is for.
    pub fn name(&self) -> &LockName {
        &self.name
    }

    /// The fencing token of this acquisition.
    pub fn token(&self) -> FencingToken {
        self.token
    }

    /// Whether the lock can still be trusted now.
    pub fn is_valid(&self) -> bool {
        self.loss().is_none()
    }

    /// Until when the lock can be trusted without a further renewal, or `None` if it
    /// already cannot.
    pub fn valid_until(&self) -> Option<Instant> {
        let status = self.status.borrow();
        (status.lost.is_none() && Instant::now() < status.valid_until).then_some(status.valid_until)
    }

    /// When the last successful acquire or renew request was sent.
    pub fn last_renewed(&self) -> Instant {
        self.status.borrow().last_renewed
    }

    /// Whether the last renewal attempt failed or timed out, and none has succeeded
    /// since.
    pub fn renewal_failing(&self) -> bool {
        self.status.borrow().renewal_failing
    }

    /// Whether the server asked this holder to hand the lock over (see
    /// [`Renew::HandOver`](crate::Renew::HandOver)). The lock stays valid meanwhile.
    pub fn hand_over_requested(&self) -> bool {
        self.status.borrow().hand_over
    }

    /// Resolves once the server asks this holder to hand the lock over; never, if it
    /// does not.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only waits; dropping it changes nothing.
    pub async fn hand_over(&self) {
        let mut status = self.status.subscribe();
        // The sender lives in `self`, so waiting cannot fail.
        let _ = status.wait_for(|status| status.hand_over).await;
    }

    /// Records that the server asks for a hand-over.
    pub(crate) fn request_hand_over(&self) {
        self.status.send_if_modified(|status| {
            let changed = !status.hand_over;
            status.hand_over = true;
            changed
        });
    }

    /// Records that a renewal attempt failed or timed out.
    pub(crate) fn renewal_failed(&self) {
        self.status.send_if_modified(|status| {
            let changed = !status.renewal_failing;
            status.renewal_failing = true;
            changed
        });
    }

    /// Why the lock can no longer be trusted, or `None` while it can.
    pub fn loss(&self) -> Option<LossReason> {
        let status = self.status.borrow();
        match &status.lost {
            Some(reason) => Some(reason.clone()),
            None if Instant::now() >= status.valid_until => Some(LossReason::Expired),
            None => None,
        }
    }

    /// Resolves when the lock can no longer be trusted, at the latest at the deadline,
    /// whether or not the renewal task has run: strictly before any other contender can
    /// acquire the lock.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only waits; dropping it changes nothing, and it can be called
    /// again as often as you like.
    pub async fn lost(&self) -> LossReason {
        let mut status = self.status.subscribe();
        loop {
            let valid_until = {
                let current = status.borrow_and_update();
                if let Some(reason) = &current.lost {
                    return reason.clone();
                }
                current.valid_until
            };
            tokio::select! {
                () = sleep_until(valid_until) => self.expire_if_due(),
                _ = status.changed() => {}
            }
        }
    }

    /// Moves the deadline to `sent + validity` after a successful renewal, unless the
    /// lock was already lost: a renewal that arrives after the deadline does not
    /// revive it. Returns whether the guard is still valid.
    pub(crate) fn extend(&self, sent: Instant, validity: Duration) -> bool {
        let now = Instant::now();
        self.status.send_if_modified(|status| {
            if status.lost.is_some() {
                return false;
            }
            if now >= status.valid_until {
                status.lost = Some(LossReason::Expired);
                crate::metrics::lost(&self.name, &LossReason::Expired);
            } else {
                status.valid_until = status.valid_until.max(sent + validity);
                status.last_renewed = status.last_renewed.max(sent);
                status.renewal_failing = false;
            }
            true
        });
        self.is_valid()
    }

    /// Ends validity as expired if the deadline has passed. A renewal may have moved the
    /// deadline just before; then nothing changes.
    pub(crate) fn expire_if_due(&self) {
        let now = Instant::now();
        let expired = self.status.send_if_modified(|status| {
            let due = status.lost.is_none() && now >= status.valid_until;
            if due {
                status.lost = Some(LossReason::Expired);
            }
            due
        });
        if expired {
            crate::metrics::lost(&self.name, &LossReason::Expired);
        }
    }

    /// Ends validity for `reason`, unless it already ended (the first reason stays).
    pub(crate) fn end(&self, reason: LossReason) {
        let now = Instant::now();
        let mut ended = None;
        self.status.send_if_modified(|status| {
            if status.lost.is_some() {
                return false;
            }
            let reason = if now >= status.valid_until {
                LossReason::Expired
            } else {
                reason
            };
            ended = Some(reason.clone());
            status.lost = Some(reason);
            true
        });
        if let Some(reason) = ended {
            crate::metrics::lost(&self.name, &reason);
        }
    }
}
