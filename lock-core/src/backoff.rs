//! The one retry schedule used for every retried request: exponential with jitter.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// Delays between attempts, starting at a tenth of `interval` (at most 100 ms) and
/// doubling up to `interval`, with jitter so that contenders do not retry in step. The
/// schedule every retry of the workspace uses, also outside lock-core.
///
/// ```
/// use std::time::Duration;
/// let delays: Vec<_> = lock_core::retry_delays(Duration::from_secs(1)).take(3).collect();
/// assert!(delays.iter().all(|d| *d <= Duration::from_secs(1)));
/// ```
pub fn retry_delays(interval: Duration) -> impl Iterator<Item = Duration> + Send {
    let min = (interval / 10).min(Duration::from_millis(100));
    ExponentialBuilder::default()
        .with_min_delay(min)
        .with_max_delay(interval)
        .with_jitter()
        .without_max_times()
        .build()
        .map(move |delay| delay.clamp(min, interval))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stay_within_the_interval() {
        let interval = Duration::from_secs(1);
        let delays: Vec<_> = retry_delays(interval).take(20).collect();
        assert_eq!(delays.len(), 20, "the schedule never runs out");
        assert!(
            delays
                .iter()
                .all(|d| *d >= Duration::from_millis(100) && *d <= interval)
        );
        assert!(delays[19] > delays[0]);
    }
}
