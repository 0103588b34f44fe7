//! What the bench's helper processes (`lock-bench-replica`, `lock-bench-shard-member`)
//! share: their event lines on stdout, and the error type of a reconcile that cannot
//! fail. Included by each with `#[path]`, as a module of its own.

use std::{
    io::Write,
    time::{SystemTime, UNIX_EPOCH},
};

/// Prints `event` with the time (CLOCK_REALTIME nanoseconds), in one write.
pub fn emit(event: &str) {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    let mut out = std::io::stdout().lock();
    // The bench reads every line; if it is gone, so is the point of going on.
    if writeln!(out, "{nanos} {event}").is_err() {
        std::process::exit(1);
    }
}

/// The error of a reconcile that never fails.
#[derive(Debug)]
pub struct Never;

impl std::fmt::Display for Never {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("never")
    }
}

impl std::error::Error for Never {}
