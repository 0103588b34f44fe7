//! Property tests against a real server: generated hostile data written where a lock
//! lives, then checked case by case.
//!
//! ```no_run
//! use lock_tests::{Hostile, Redis};
//! use proptest::prelude::*;
//!
//! let hostile = Hostile::new(64);
//! let redis = hostile.block_on(Redis::start());
//! hostile.check(any::<Vec<u8>>(), async |value| {
//!     let mut connection = redis.connection().await;
//!     let () = redis::AsyncCommands::set(&mut connection, "key", &value).await.unwrap();
//!     prop_assert!(value.len() < 1 << 20);
//!     Ok(())
//! });
//! ```

use std::future::Future;

use lock_core::{Error, Lock};
use proptest::{
    prop_assert,
    strategy::Strategy,
    test_runner::{Config, TestCaseError, TestRunner},
};
use tokio::runtime::Runtime;

/// A runtime of its own for the server and the cases, and a proptest runner that never
/// saves failures to a file: a server's state cannot be replayed.
pub struct Hostile {
    runtime: Runtime,
    cases: u32,
}

impl Hostile {
    /// `cases` generated cases per [`check`](Hostile::check).
    ///
    /// # Panics
    ///
    /// When no runtime can be built.
    pub fn new(cases: u32) -> Self {
        Self {
            runtime: Runtime::new().expect("a tokio runtime"),
            cases,
        }
    }

    /// Runs `future` to completion on the runtime, e.g. to start the server.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// Checks `case` on every generated value; shrinks and panics on a failure.
    ///
    /// # Panics
    ///
    /// When a case fails, with the smallest failing value proptest found.
    pub fn check<S: Strategy>(
        &self,
        strategy: S,
        case: impl AsyncFn(S::Value) -> Result<(), TestCaseError>,
    ) {
        let mut runner = TestRunner::new(Config {
            failure_persistence: None,
            ..Config::with_cases(self.cases)
        });
        if let Err(failure) = runner.run(&strategy, |value| self.runtime.block_on(case(value))) {
            panic!("{failure}");
        }
    }
}

/// Checks what a lock does with a record another writer left at its location: taking
/// it fails with `Held` or `Malformed` (never takes it over), and describing it names a
/// holder or says `Malformed`. `what` names the record in the failure message.
///
/// # Errors
///
/// A failed case, for proptest to shrink.
pub async fn reported_and_not_taken(lock: &Lock, what: &str) -> Result<(), TestCaseError> {
    let taken = lock.try_acquire().await;
    prop_assert!(
        matches!(taken, Err(Error::Held { .. } | Error::Malformed { .. })),
        "{what} gave {:?}",
        taken.map(|guard| guard.token())
    );
    let described = lock.holder().await;
    prop_assert!(
        matches!(described, Ok(Some(_)) | Err(Error::Malformed { .. })),
        "{what} described as {described:?}"
    );
    Ok(())
}
