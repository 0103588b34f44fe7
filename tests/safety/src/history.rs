//! What the contenders did: every write with its start, end and result, and every term
//! a contender acted as the holder.

use std::{
    sync::{Mutex, PoisonError},
    time::Instant,
};

/// Where a write went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// lock-core's `FencedRegister`, shared in-process: a log that keeps every write.
    Core,
    /// The backend's own fenced-write helper, on the server.
    Backend,
    /// A log that accepts every write, as a store without fencing would.
    Unfenced,
}

/// How a write ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Acknowledged: it was applied.
    Accepted,
    /// Rejected with `StaleToken`: it changed nothing.
    Rejected,
    /// An error or a timeout: it may or may not have been applied.
    Unknown,
}

/// One write of the workload.
#[derive(Clone, Copy, Debug)]
pub struct Write {
    /// Which contender wrote.
    pub contender: usize,
    /// The fencing token it presented.
    pub token: u64,
    /// The unique value it wrote.
    pub op: u64,
    /// Where it wrote.
    pub target: Target,
    /// When the write was sent.
    pub started: Instant,
    /// When its answer came.
    pub ended: Instant,
    /// Its result.
    pub outcome: Outcome,
}

/// One acquisition, from the first moment its holder checked it valid to the last
/// moment the holder acted on it (sent a write believing it held the lock).
#[derive(Clone, Copy, Debug)]
pub struct Term {
    /// Which contender held it.
    pub contender: usize,
    /// The acquisition's fencing token.
    pub token: u64,
    /// The first moment the holder trusted it.
    pub from: Instant,
    /// The last moment the holder acted on it.
    pub to: Instant,
}

/// One injected fault.
#[derive(Clone, Copy, Debug)]
pub struct Fault {
    /// When it began.
    pub injected: Instant,
    /// When it was healed (the server answers again, the link forwards again).
    pub healed: Instant,
}

/// Everything recorded in one scenario.
#[derive(Clone, Debug, Default)]
pub struct Record {
    /// Every write, in the order their answers came.
    pub writes: Vec<Write>,
    /// Every term, in the order they ended.
    pub terms: Vec<Term>,
    /// Every fault.
    pub faults: Vec<Fault>,
    /// Acquire calls that failed with an error other than a timeout (faults cause them).
    pub acquire_errors: u64,
}

/// The shared, append-only history of a scenario.
#[derive(Debug, Default)]
pub struct History {
    record: Mutex<Record>,
}

impl History {
    fn with<R>(&self, f: impl FnOnce(&mut Record) -> R) -> R {
        f(&mut self.record.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Records a write.
    pub fn write(&self, write: Write) {
        self.with(|record| record.writes.push(write));
    }

    /// Records a term.
    pub fn term(&self, term: Term) {
        self.with(|record| record.terms.push(term));
    }

    /// Records a fault.
    pub fn fault(&self, fault: Fault) {
        self.with(|record| record.faults.push(fault));
    }

    /// Counts a failed acquire.
    pub fn acquire_error(&self) {
        self.with(|record| record.acquire_errors += 1);
    }

    /// A copy of everything recorded so far.
    pub fn record(&self) -> Record {
        self.with(|record| record.clone())
    }
}
