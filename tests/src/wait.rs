//! Waiting for a condition, bounded in time.

use std::time::Duration;

use tokio::time::{Instant, sleep};

/// Waits until `condition` holds, checking every 5 ms, and returns how long it took;
/// fails the test, naming `what`, after `limit`.
pub async fn eventually(what: &str, limit: Duration, condition: impl FnMut() -> bool) -> Duration {
    match waited(limit, condition).await {
        Some(took) => took,
        None => panic!("timed out after {limit:?} waiting until {what}"),
    }
}

/// Waits until `condition` holds, checking every 5 ms, and returns how long it took, or
/// `None` after `limit`: for a test that says more than [`eventually`] when it fails.
pub async fn waited(limit: Duration, mut condition: impl FnMut() -> bool) -> Option<Duration> {
    let started = Instant::now();
    while !condition() {
        if started.elapsed() >= limit {
            return None;
        }
        sleep(Duration::from_millis(5)).await;
    }
    Some(started.elapsed())
}
