//! Timing options of a lock and the rules that keep them safe.

use std::time::Duration;

use crate::Error;

/// How long a lock lives and how it is kept alive.
///
/// Everything but the TTL has a default derived from it:
///
/// | option | default | meaning |
/// |---|---|---|
/// | `ttl` | 15 s | how long a lock outlives its last renewal; others take it over after that |
/// | `renew_interval` | ttl / 3 | time between renewals |
/// | `drift_margin` | ttl / 100 + 2 ms | how much sooner than the TTL the holder gives up: the clock drift it tolerates |
/// | `request_timeout` | renew_interval | bound on one server request (always also bounded by the remaining validity) |
/// | `poll_interval` | renew_interval | how often a waiter looks again when the backend cannot notify it |
///
/// ```
/// use std::time::Duration;
/// use lock_core::Timing;
///
/// let timing = Timing::new(Duration::from_secs(9));
/// assert_eq!(timing.renew_interval(), Duration::from_secs(3));
///
/// let bad = Timing::new(Duration::from_secs(9)).with_renew_interval(Duration::from_secs(9));
/// assert!(bad.validate().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    ttl: Duration,
    renew_interval: Option<Duration>,
    drift_margin: Option<Duration>,
    request_timeout: Option<Duration>,
    poll_interval: Option<Duration>,
}

/// The TTL used when none is given, as in client-go's leader election.
pub const DEFAULT_TTL: Duration = Duration::from_secs(15);

impl Default for Timing {
    fn default() -> Self {
        Self::new(DEFAULT_TTL)
    }
}

impl Timing {
    /// Timing for `ttl` with every other option derived from it.
    pub const fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            renew_interval: None,
            drift_margin: None,
            request_timeout: None,
            poll_interval: None,
        }
    }

    /// How long the lock outlives its last renewal.
    pub const fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Time between renewals.
    pub fn renew_interval(&self) -> Duration {
        self.renew_interval.unwrap_or(self.ttl / 3)
    }

    /// Sets the time between renewals (default: ttl / 3).
    pub const fn with_renew_interval(mut self, interval: Duration) -> Self {
        self.renew_interval = Some(interval);
        self
    }

    /// How much sooner than the TTL the holder gives up.
    pub fn drift_margin(&self) -> Duration {
        self.drift_margin
            .unwrap_or(self.ttl / 100 + Duration::from_millis(2))
    }

    /// Sets how much sooner than the TTL the holder stops trusting its lock
    /// (default: ttl / 100 + 2 ms).
    pub const fn with_drift_margin(mut self, margin: Duration) -> Self {
        self.drift_margin = Some(margin);
        self
    }

    /// Bound on one server request.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout.unwrap_or(self.renew_interval())
    }

    /// Sets the bound on one server request (default: the renew interval).
    pub const fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = Some(timeout);
        self
    }

    /// How often a waiter looks again without a notification.
    pub fn poll_interval(&self) -> Duration {
        self.poll_interval.unwrap_or(self.renew_interval())
    }

    /// Sets how often a waiter looks again when its backend cannot notify it
    /// (default: the renew interval).
    pub const fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = Some(interval);
        self
    }

    /// How long a guard trusts an acquisition or renewal, counted from when its request
    /// was sent: the TTL minus the drift margin.
    pub fn validity(&self) -> Duration {
        self.ttl.saturating_sub(self.drift_margin())
    }

    /// Checks the rules that keep the lock safe; the error names the broken rule and the
    /// values given.
    pub fn validate(&self) -> Result<(), Error> {
        let (ttl, renew, drift) = (self.ttl, self.renew_interval(), self.drift_margin());
        if ttl.is_zero() {
            return Err(Error::invalid_timing("ttl must be greater than zero"));
        }
        if ttl > Duration::from_secs(i32::MAX as u64) {
            return Err(Error::invalid_timing(format!(
                "ttl must be at most {} s (it is stored as whole seconds by Kubernetes), got {ttl:?}",
                i32::MAX
            )));
        }
        if drift.is_zero() {
            return Err(Error::invalid_timing(
                "drift margin must be greater than zero: clocks drift, and the guard must give up strictly before the server lets another holder in",
            ));
        }
        if drift >= ttl {
            return Err(Error::invalid_timing(format!(
                "drift margin ({drift:?}) must be less than the ttl ({ttl:?})"
            )));
        }
        if renew.is_zero() {
            return Err(Error::invalid_timing(
                "renew interval must be greater than zero",
            ));
        }
        if renew >= self.validity() {
            return Err(Error::invalid_timing(format!(
                "renew interval ({renew:?}) must be less than the ttl minus the drift margin ({:?}), \
                 or the lock expires before it is renewed",
                self.validity()
            )));
        }
        if self.request_timeout().is_zero() {
            return Err(Error::invalid_timing(
                "request timeout must be greater than zero",
            ));
        }
        if self.poll_interval().is_zero() {
            return Err(Error::invalid_timing(
                "poll interval must be greater than zero",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn defaults_follow_the_ttl() {
        let t = Timing::new(15 * S);
        assert_eq!(t.renew_interval(), 5 * S);
        assert_eq!(t.drift_margin(), Duration::from_millis(152));
        assert_eq!(t.request_timeout(), 5 * S);
        assert_eq!(t.poll_interval(), 5 * S);
        assert_eq!(t.validity(), Duration::from_millis(14_848));
        t.validate().expect("defaults are valid");
    }

    #[test]
    fn unsafe_timings_are_rejected_with_the_rule_broken() {
        let cases = [
            (Timing::new(Duration::ZERO), "ttl must be greater than zero"),
            (Timing::new(S).with_drift_margin(S), "drift margin"),
            (
                Timing::new(S).with_drift_margin(Duration::ZERO),
                "drift margin must be greater than zero",
            ),
            (
                Timing::new(S).with_renew_interval(Duration::ZERO),
                "renew interval must be greater",
            ),
            (
                Timing::new(3 * S).with_renew_interval(3 * S),
                "renew interval (3s) must be less",
            ),
            (
                Timing::new(3 * S)
                    .with_renew_interval(2 * S)
                    .with_drift_margin(S),
                "must be less than the ttl minus the drift margin",
            ),
            (
                Timing::new(S).with_request_timeout(Duration::ZERO),
                "request timeout",
            ),
            (
                Timing::new(S).with_poll_interval(Duration::ZERO),
                "poll interval",
            ),
            (
                Timing::new(Duration::from_secs(1 << 40)),
                "ttl must be at most",
            ),
        ];
        for (timing, expected) in cases {
            match timing.validate() {
                Err(Error::InvalidTiming { reason }) => {
                    assert!(
                        reason.contains(expected),
                        "{reason:?} should mention {expected:?}"
                    )
                }
                other => panic!("{timing:?} gave {other:?}, expected InvalidTiming"),
            }
        }
    }
}
