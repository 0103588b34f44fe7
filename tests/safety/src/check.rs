//! The checkers: properties that must hold over a recorded history.
//!
//! Each checker counts violations; zero means the property held in that run. The unit
//! tests below feed each one a history that breaks it, so a checker that cannot fail
//! fails its own test.

use std::{collections::HashMap, time::Duration};

use crate::history::{Outcome, Record, Target, Term, Write};

/// A log entry of a fenced log: the token presented and the unique value written.
pub type Entry = (u64, u64);

/// Violations found in one scenario, per property, with the counts that give them
/// weight.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Writes attempted (all targets).
    pub writes: usize,
    /// Acquisitions acted on.
    pub terms: usize,
    /// Faults injected.
    pub faults: usize,
    /// Writes with a stale token that a fenced store accepted.
    pub stale: usize,
    /// Acknowledged fenced writes missing from the final state.
    pub lost: usize,
    /// Of `stale` and `lost`, those of the backend's own store (the rest are lock-core's
    /// register, in the contenders' process).
    pub store_stale: usize,
    /// See `store_stale`.
    pub store_lost: usize,
    /// Acquisitions whose token was not above an earlier one's.
    pub token_order: usize,
    /// Pairs of terms of different acquisitions that overlap in time.
    pub overlaps: usize,
    /// Stale writes the unfenced log accepted: what fencing saved.
    pub unfenced_stale: usize,
    /// Stale writes the fenced stores rejected.
    pub rejected: usize,
    /// Writes that ended in an error or a timeout (applied or not): the faults' mark.
    pub indeterminate: usize,
    /// The longest time from a fault's heal until someone held the lock again.
    pub recovery: Option<Duration>,
    /// Faults after whose heal nobody held the lock within the bound.
    pub unrecovered: usize,
}

impl Verdict {
    /// Whether every property that must always hold did.
    pub fn safe(&self) -> bool {
        self.stale == 0 && self.lost == 0 && self.token_order == 0 && self.unrecovered == 0
    }
}

/// The final state of every store, read after the contenders stopped.
#[derive(Clone, Debug, Default)]
pub struct Finals {
    /// The core register's log.
    pub core: Vec<Entry>,
    /// The unfenced log.
    pub unfenced: Vec<Entry>,
    /// The value last written to the backend's store, if it has one: `None` when the
    /// backend has no store of its own.
    pub backend: Option<Option<u64>>,
}

/// Runs every checker over a scenario's record. `recovery_bound` is how long after a
/// heal someone must hold the lock again.
pub fn check(record: &Record, finals: &Finals, recovery_bound: Duration) -> Verdict {
    let of = |target| -> Vec<Write> {
        let writes = record.writes.iter().filter(|write| write.target == target);
        writes.copied().collect()
    };
    let (core, backend, unfenced) = (of(Target::Core), of(Target::Backend), of(Target::Unfenced));
    let (mut store_stale, mut store_lost) = (0, 0);
    if let Some(last) = finals.backend {
        store_stale = stale_in_real_time(&backend);
        store_lost = lost_from_register(&backend, last);
    }
    let stale = stale_in_log(&finals.core) + stale_in_real_time(&core) + store_stale;
    let lost = lost_from_log(&core, &finals.core) + store_lost;
    let (recovery, unrecovered) = recovery(record, recovery_bound);
    Verdict {
        writes: record.writes.len(),
        terms: record.terms.len(),
        faults: record.faults.len(),
        stale,
        lost,
        store_stale,
        store_lost,
        token_order: token_order(&record.terms),
        overlaps: overlaps(&record.terms),
        unfenced_stale: stale_in_log(&finals.unfenced) + stale_in_real_time(&unfenced),
        rejected: record
            .writes
            .iter()
            .filter(|write| write.outcome == Outcome::Rejected)
            .count(),
        indeterminate: record
            .writes
            .iter()
            .filter(|write| write.outcome == Outcome::Unknown)
            .count(),
        recovery,
        unrecovered,
    }
}

/// In a log kept in the order writes were applied, an entry whose token is below an
/// earlier entry's was accepted after a newer holder wrote.
pub fn stale_in_log(log: &[Entry]) -> usize {
    let mut highest = 0;
    let mut stale = 0;
    for &(token, _) in log {
        if token < highest {
            stale += 1;
        }
        highest = highest.max(token);
    }
    stale
}

/// Without the store's order, real time still orders writes: an accepted write that
/// started after a write with a larger token was acknowledged was applied after it,
/// so it was stale.
pub fn stale_in_real_time(writes: &[Write]) -> usize {
    let mut acknowledged: Vec<&Write> = writes
        .iter()
        .filter(|write| write.outcome == Outcome::Accepted)
        .collect();
    acknowledged.sort_by_key(|write| write.ended);
    let mut highest_before = Vec::with_capacity(acknowledged.len());
    let mut highest = 0;
    for write in &acknowledged {
        highest = highest.max(write.token);
        highest_before.push(highest);
    }
    acknowledged
        .iter()
        .filter(|write| {
            let ended_before = acknowledged.partition_point(|other| other.ended < write.started);
            ended_before > 0 && highest_before[ended_before - 1] > write.token
        })
        .count()
}

/// Every acknowledged write must be in the final log exactly once, and the log holds
/// nothing that was not written.
pub fn lost_from_log(writes: &[Write], log: &[Entry]) -> usize {
    let mut seen: HashMap<u64, usize> = HashMap::new();
    for &(_, op) in log {
        *seen.entry(op).or_default() += 1;
    }
    let written: HashMap<u64, Outcome> = writes.iter().map(|w| (w.op, w.outcome)).collect();
    let missing = writes
        .iter()
        .filter(|write| write.outcome == Outcome::Accepted && !seen.contains_key(&write.op))
        .count();
    let invented_or_repeated = seen
        .iter()
        .filter(|(op, count)| {
            **count > 1 || written.get(op).is_none_or(|o| *o == Outcome::Rejected)
        })
        .count();
    missing + invented_or_repeated
}

/// A register keeps the last write applied: its final value must come from a write
/// that was not rejected and that no acknowledged write followed in real time.
pub fn lost_from_register(writes: &[Write], last: Option<u64>) -> usize {
    let acknowledged = writes.iter().filter(|w| w.outcome == Outcome::Accepted);
    let Some(last) = last else {
        // Empty at the end: only right if nothing was ever acknowledged.
        return usize::from(acknowledged.count() > 0);
    };
    let Some(final_write) = writes.iter().find(|write| write.op == last) else {
        return 1;
    };
    let overwritten = writes
        .iter()
        .filter(|w| w.outcome == Outcome::Accepted)
        .any(|later| later.started > final_write.ended);
    usize::from(final_write.outcome == Outcome::Rejected || overwritten)
}

/// An acquisition that began after another ended must carry a larger token, and no
/// two acquisitions share one: counts the acquisitions that break either.
pub fn token_order(terms: &[Term]) -> usize {
    let mut by_start: Vec<&Term> = terms.iter().collect();
    by_start.sort_by_key(|term| term.from);
    let mut by_end = by_start.clone();
    by_end.sort_by_key(|term| term.to);
    let mut ended = by_end.iter().peekable();
    let mut highest_ended = None;
    let mut holders: HashMap<u64, usize> = HashMap::new();
    for term in terms {
        *holders.entry(term.token).or_default() += 1;
    }
    let mut violations = 0;
    for term in &by_start {
        while let Some(earlier) = ended.next_if(|earlier| earlier.to < term.from) {
            highest_ended = highest_ended.max(Some(earlier.token));
        }
        let below_earlier = highest_ended.is_some_and(|highest| highest >= term.token);
        if below_earlier || holders[&term.token] > 1 {
            violations += 1;
        }
    }
    violations
}

/// Pairs of terms that overlap: two holders acting at the same instant.
pub fn overlaps(terms: &[Term]) -> usize {
    let mut sorted: Vec<&Term> = terms.iter().collect();
    sorted.sort_by_key(|term| term.from);
    let mut overlaps = 0;
    for (i, term) in sorted.iter().enumerate() {
        overlaps += sorted[i + 1..]
            .iter()
            .take_while(|next| next.from <= term.to)
            .count();
    }
    overlaps
}

/// For each fault, the time from its heal until someone held the lock (zero if a term
/// spans the heal); faults never followed by a term within `bound` count as
/// unrecovered.
pub fn recovery(record: &Record, bound: Duration) -> (Option<Duration>, usize) {
    let mut longest = None;
    let mut unrecovered = 0;
    for fault in &record.faults {
        let next = record
            .terms
            .iter()
            .filter(|term| term.to >= fault.healed)
            .map(|term| term.from.saturating_duration_since(fault.healed))
            .min();
        match next {
            Some(gap) if gap <= bound => longest = longest.max(Some(gap)),
            _ => unrecovered += 1,
        }
    }
    (longest, unrecovered)
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn at(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    fn write(
        base: Instant,
        token: u64,
        op: u64,
        (from, to): (u64, u64),
        outcome: Outcome,
    ) -> Write {
        Write {
            contender: 0,
            token,
            op,
            target: Target::Backend,
            started: at(base, from),
            ended: at(base, to),
            outcome,
        }
    }

    fn term(base: Instant, token: u64, from: u64, to: u64) -> Term {
        Term {
            contender: 0,
            token,
            from: at(base, from),
            to: at(base, to),
        }
    }

    #[test]
    fn a_log_entry_below_an_earlier_token_is_stale() {
        assert_eq!(stale_in_log(&[(1, 1), (2, 2), (2, 3), (3, 4)]), 0);
        assert_eq!(stale_in_log(&[(1, 1), (3, 2), (2, 3)]), 1);
    }

    #[test]
    fn an_accepted_write_started_after_a_newer_token_was_acknowledged_is_stale() {
        let base = Instant::now();
        let newer = write(base, 5, 1, (0, 10), Outcome::Accepted);
        let concurrent = write(base, 4, 2, (5, 20), Outcome::Accepted);
        assert_eq!(stale_in_real_time(&[newer, concurrent]), 0);
        let later = write(base, 4, 3, (11, 20), Outcome::Accepted);
        assert_eq!(stale_in_real_time(&[newer, later]), 1);
        let rejected = write(base, 4, 3, (11, 20), Outcome::Rejected);
        assert_eq!(stale_in_real_time(&[newer, rejected]), 0);
    }

    #[test]
    fn an_acknowledged_write_missing_from_the_log_is_lost() {
        let base = Instant::now();
        let writes = [
            write(base, 1, 1, (0, 1), Outcome::Accepted),
            write(base, 1, 2, (2, 3), Outcome::Unknown),
        ];
        assert_eq!(lost_from_log(&writes, &[(1, 1)]), 0);
        assert_eq!(lost_from_log(&writes, &[(1, 1), (1, 2)]), 0);
        assert_eq!(lost_from_log(&writes, &[(1, 2)]), 1);
        assert_eq!(lost_from_log(&writes, &[(1, 1), (1, 1)]), 1);
        assert_eq!(lost_from_log(&writes, &[(1, 1), (1, 9)]), 1);
    }

    #[test]
    fn a_register_must_end_on_a_write_nothing_acknowledged_followed() {
        let base = Instant::now();
        let first = write(base, 1, 1, (0, 1), Outcome::Accepted);
        let second = write(base, 2, 2, (2, 3), Outcome::Accepted);
        let rejected = write(base, 1, 3, (4, 5), Outcome::Rejected);
        let writes = [first, second, rejected];
        assert_eq!(lost_from_register(&writes, Some(2)), 0);
        assert_eq!(lost_from_register(&writes, Some(1)), 1);
        assert_eq!(lost_from_register(&writes, Some(3)), 1);
        assert_eq!(lost_from_register(&writes, None), 1);
        assert_eq!(lost_from_register(&writes, Some(7)), 1);
    }

    #[test]
    fn a_later_acquisition_must_carry_a_larger_token() {
        let base = Instant::now();
        assert_eq!(
            token_order(&[term(base, 1, 0, 10), term(base, 2, 20, 30)]),
            0
        );
        assert_eq!(
            token_order(&[term(base, 2, 0, 10), term(base, 1, 20, 30)]),
            1
        );
        assert_eq!(
            token_order(&[term(base, 1, 0, 10), term(base, 1, 20, 30)]),
            2
        );
    }

    #[test]
    fn terms_that_share_an_instant_overlap() {
        let base = Instant::now();
        assert_eq!(overlaps(&[term(base, 1, 0, 10), term(base, 2, 11, 20)]), 0);
        assert_eq!(overlaps(&[term(base, 2, 11, 20), term(base, 1, 0, 11)]), 1);
        assert_eq!(
            overlaps(&[
                term(base, 1, 0, 100),
                term(base, 2, 10, 20),
                term(base, 3, 30, 40)
            ]),
            2
        );
    }

    #[test]
    fn a_fault_without_a_holder_soon_after_its_heal_is_unrecovered() {
        let base = Instant::now();
        let record = Record {
            terms: vec![term(base, 1, 0, 50), term(base, 2, 400, 500)],
            faults: vec![crate::history::Fault {
                injected: at(base, 10),
                healed: at(base, 100),
            }],
            ..Record::default()
        };
        let bound = Duration::from_millis(300);
        assert_eq!(
            recovery(&record, bound),
            (Some(Duration::from_millis(300)), 0)
        );
        assert_eq!(recovery(&record, Duration::from_millis(299)), (None, 1));
    }
}
