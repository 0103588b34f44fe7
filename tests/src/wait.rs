//! Waiting for a condition, bounded in time.

use std::time::Duration;

use tokio::time::{Instant, sleep};

/// Waits until `condition` holds, checking every 5 ms, and returns how long it took;
/// fails the test, naming `what`, after `limit`.
pub async fn eventually(
    what: &str,
    limit: Duration,
    mut condition: impl FnMut() -> bool,
) -> Duration {
    let started = Instant::now();
    while !condition() {
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting until {what}"
        );
        sleep(Duration::from_millis(5)).await;
    }
    started.elapsed()
}
