//! The conformance suite: the definition of a backend.
//!
//! Every backend, the in-memory one included, must pass every `pub async fn` here. They
//! check the contracts of the workspace's docs/design.md through the public API, against
//! whatever server the backend talks to. Each uses fresh lock names, so one server can
//! serve many tests, and panics with a message that names the broken contract.
//!
//! Run them all with [`conformance_tests!`](crate::conformance_tests), which writes one
//! test per function:
//!
//! ```no_run
//! // tests/conformance.rs of a backend crate
//! lock_core::conformance_tests!(
//!     #[tokio::test(start_paused = true)]
//!     backend = lock_core::MemoryBackend::new()
//! );
//! # fn main() {}
//! ```
//!
//! Timings are those of a 3 s TTL (renewal every second), short enough for tests on real
//! servers and long enough for etcd's minimum lease TTL and Kubernetes' whole seconds.
//! On the in-memory backend with paused time the suite runs in well under a second.
//!
//! The checks live in one file per concern, and each file ends with its part of the
//! list of tests: `lock.rs` (exclusion, tokens, expiry, waiting, validation), `guard.rs`
//! (release and loss of a held lock), `election.rs` (leader election), `shards.rs`
//! (elected shards) and `operator.rs` (operator release, listing, breaking, observing).
//! This file holds what they share.

// What the checks use, for the files of checks to take with `use super::*`.
use std::{
    panic::resume_unwind,
    pin::pin,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicUsize, Ordering::SeqCst},
    },
    time::Duration,
};

use tokio::{
    task::JoinHandle,
    time::{Instant, sleep},
};

use crate::{
    Backend, Error, Faulty, FencingToken, LeaderElector, LeaderState, Lock, LossReason, Take,
    Timing,
};

/// Defines `$name!`, one file's part of [`conformance_tests!`](crate::conformance_tests):
/// it writes the tests of the checks listed, through `conformance_tests!(@each ...)`. The
/// caller passes a `$` first, which the macro defined needs and a macro cannot write.
/// Rust lets a macro that another macro exported be called by path only from other
/// crates, so `conformance_tests!` works in tests/, doctests and other crates, not inside
/// lock-core's own src/.
macro_rules! checks {
    ($dollar:tt $name:ident: $($check:ident),+ $(,)?) => {
        #[doc(hidden)]
        #[macro_export]
        macro_rules! $name {
            ($dollar attributes:tt $dollar backend:tt) => {
                $dollar crate::conformance_tests!(
                    @each $dollar attributes $dollar backend; $($check),+
                );
            };
        }
    };
}

mod election;
mod guard;
mod lock;
mod operator;
mod shards;

pub use election::{
    election_never_has_two_leaders, leader_work_is_cancelled_on_loss_and_the_campaign_resumes,
    stopping_the_leader_hands_over_without_waiting_for_the_ttl,
};
pub use guard::{
    lost_fires_before_another_holder_can_acquire,
    release_after_loss_is_an_error_and_leaves_the_new_holder_alone,
    released_lock_is_taken_by_a_waiter_without_waiting_for_the_ttl,
};
pub use lock::{
    a_take_that_times_out_leaves_nothing_held, crashed_holders_lock_is_taken_after_the_ttl,
    dropped_acquire_leaves_nothing_held, invalid_names_and_timings_are_rejected,
    mutual_exclusion_with_8_contenders, tokens_strictly_increase,
    try_acquire_on_a_held_lock_reports_the_holder,
};
pub use operator::{
    an_operator_release_frees_only_the_named_holders_lock,
    breaking_a_lock_supersedes_its_holder_and_fencing_rejects_it,
    list_finds_the_locks_under_a_prefix, observe_reports_every_change_of_holder,
};
pub use shards::{
    a_cut_off_members_published_shards_never_overlap_the_new_owners,
    a_take_and_a_release_under_a_prefix_notify_the_group,
    elected_shards_share_fairly_and_never_overlap,
};

/// The TTL every conformance test uses.
pub const TTL: Duration = Duration::from_secs(3);

/// Writes one `async fn` per conformance check, each with the attributes given (such as
/// `#[tokio::test]`) and calling the check with a backend built by the expression after
/// `backend =` (evaluated inside the test, so it may `.await`).
#[macro_export]
macro_rules! conformance_tests {
    // Each file of checks defines its part (with `checks!`, above); this calls them all.
    ($(#[$meta:meta])* backend = $backend:expr) => {
        $crate::__conformance_lock_checks!([$(#[$meta])*] ($backend));
        $crate::__conformance_guard_checks!([$(#[$meta])*] ($backend));
        $crate::__conformance_election_checks!([$(#[$meta])*] ($backend));
        $crate::__conformance_shards_checks!([$(#[$meta])*] ($backend));
        $crate::__conformance_operator_checks!([$(#[$meta])*] ($backend));
    };
    (@each $attributes:tt $backend:tt; $($check:ident),*) => {
        $($crate::conformance_tests!(@one $attributes $backend $check);)*
    };
    (@one [$(#[$meta:meta])*] ($backend:expr) $check:ident) => {
        $(#[$meta])*
        async fn $check() {
            $crate::conformance::$check($backend).await;
        }
    };
}

/// The timing every conformance test uses: [`TTL`] with derived defaults.
pub fn timing() -> Timing {
    Timing::new(TTL)
}

/// A lock name no other test (or earlier run against the same server) uses.
pub fn unique_name(test: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{test}-{:x}-{}-{}",
        nanos & 0xffff_ffff_ffff,
        std::process::id(),
        COUNTER.fetch_add(1, SeqCst)
    )
}

fn lock(backend: &Arc<dyn Backend>, name: &str, identity: &str) -> Lock {
    lock_with(backend.clone(), name, identity, timing())
}

fn lock_with(backend: impl Backend, name: &str, identity: &str, timing: Timing) -> Lock {
    Lock::builder(backend, name, identity)
        .timing(timing)
        .build()
        .expect("the conformance suite uses valid names and timings")
}

async fn join<T>(task: JoinHandle<T>) -> T {
    match task.await {
        Ok(value) => value,
        Err(error) if error.is_panic() => resume_unwind(error.into_panic()),
        Err(error) => panic!("task did not finish: {error}"),
    }
}

/// Waits until `condition` holds, checking every 10 ms, and fails after `limit`.
async fn eventually(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting until {what}"
        );
        sleep(Duration::from_millis(10)).await;
    }
}
