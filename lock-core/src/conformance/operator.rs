//! Checks of what an operator sees and does from outside the holder: freeing a named
//! holder's lock, listing the locks under a prefix, breaking a lock (which fencing then
//! enforces), and observing each change of holder (docs/design.md, Contracts: "Release",
//! "Fenced writes").

use super::*;

/// `release_holder` (through the operator API, [`Locks`](crate::Locks)) frees the lock
/// only for the holder named, wakes the waiters at once, and the holder's guard reports
/// the loss.
pub async fn an_operator_release_frees_only_the_named_holders_lock(backend: impl Backend) {
    let backend: Arc<dyn Backend> = Arc::new(backend);
    let name = unique_name("operator-release");
    let operator = crate::Locks::new(backend.clone());
    let stuck = lock(&backend, &name, "stuck-holder")
        .acquire()
        .await
        .expect("acquire");
    let waiter = lock(&backend, &name, "waiter");
    let waiting = tokio::spawn(async move { waiter.acquire().await });

    let wrong = operator.release_holder(&name, "someone-else").await;
    assert_eq!(wrong.expect("release_holder"), crate::Release::NotHeld);
    assert!(stuck.is_valid(), "another holder's name changes nothing");

    let freed = operator.release_holder(&name, "stuck-holder").await;
    assert_eq!(freed.expect("release_holder"), crate::Release::Released);
    let next = tokio::time::timeout(TTL / 2, join(waiting))
        .await
        .expect("the waiter takes over without waiting for the TTL")
        .expect("acquire");
    assert!(next.token() > stuck.token());
    assert_taken_within_one_renew_interval(&stuck, "released by an operator").await;
    next.release().await.expect("release");
}

/// A holder freed by someone else learns it at its next renewal: `Taken` within one
/// renew interval (plus the time a request takes), not at its self-fencing deadline.
async fn assert_taken_within_one_renew_interval(guard: &crate::Guard, what: &str) {
    let bound = timing().renew_interval() + Duration::from_millis(500);
    let reason = tokio::time::timeout(bound, guard.lost())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "a holder {what} still trusted its lock {bound:?} later (is_valid: {})",
                guard.is_valid()
            )
        });
    assert_eq!(reason, LossReason::Taken, "a holder {what}");
}

/// `list` (through the operator API, [`Locks`](crate::Locks)) finds every held lock
/// whose name starts with the prefix, with its holder, sorted by name, and nothing else;
/// the operator reads a holder without an identity of its own.
pub async fn list_finds_the_locks_under_a_prefix(backend: impl Backend) {
    let backend: Arc<dyn Backend> = Arc::new(backend);
    let prefix = unique_name("listed");
    let first = lock(&backend, &format!("{prefix}-a"), "holder-a")
        .acquire()
        .await
        .expect("acquire");
    let second = lock(&backend, &format!("{prefix}-b"), "holder-b")
        .acquire()
        .await
        .expect("acquire");
    let outside = lock(&backend, &unique_name("elsewhere"), "holder-c")
        .acquire()
        .await
        .expect("acquire");

    let operator = crate::Locks::new(backend.clone());
    let read = operator
        .holder(&format!("{prefix}-a"))
        .await
        .expect("holder");
    assert_eq!(read.map(|info| info.holder).as_deref(), Some("holder-a"));
    let listed = operator.list(&prefix).await.expect("list");
    let found: Vec<(String, Option<String>)> = listed
        .into_iter()
        .map(|lock| {
            let holder = lock.holder.expect("readable").map(|info| info.holder);
            (lock.name, holder)
        })
        .collect();
    assert_eq!(
        found,
        vec![
            (format!("{prefix}-a"), Some("holder-a".to_owned())),
            (format!("{prefix}-b"), Some("holder-b".to_owned())),
        ]
    );

    let literal = backend.list(&format!("{prefix}*")).await.expect("list");
    assert!(
        literal.is_empty(),
        "a prefix is taken literally, never as a pattern: {literal:?}"
    );

    second.release().await.expect("release");
    let after = backend.list(&prefix).await.expect("list");
    let held: Vec<String> = after
        .into_iter()
        .filter(|lock| matches!(lock.holder, Ok(Some(_))))
        .map(|lock| lock.name)
        .collect();
    assert_eq!(
        held,
        vec![format!("{prefix}-a")],
        "a released lock is free or gone"
    );
    first.release().await.expect("release");
    outside.release().await.expect("release");
}

/// Breaking a lock frees it from its holder and takes a larger token: the holder's guard
/// reports the loss, and its fenced writes are rejected once a newer token has written.
pub async fn breaking_a_lock_supersedes_its_holder_and_fencing_rejects_it(backend: impl Backend) {
    let backend: Arc<dyn Backend> = Arc::new(backend);
    let name = unique_name("break");
    let register = crate::FencedRegister::new(0);
    let stuck = lock(&backend, &name, "stuck-holder")
        .acquire()
        .await
        .expect("acquire");
    register.write(stuck.token(), 1).expect("the holder writes");

    let broken = lock(&backend, &name, "operator")
        .break_lock()
        .await
        .expect("break");
    assert_eq!(
        broken.previous.map(|previous| previous.holder).as_deref(),
        Some("stuck-holder")
    );
    let taken = broken.token.expect("nobody else was waiting");
    assert!(taken > stuck.token());
    assert_taken_within_one_renew_interval(&stuck, "whose lock was broken").await;

    let next = lock(&backend, &name, "next")
        .try_acquire()
        .await
        .expect("the lock is free");
    assert!(next.token() > taken);
    register
        .write(next.token(), 2)
        .expect("the next holder writes");
    assert!(matches!(
        register.write(stuck.token(), 3),
        Err(Error::StaleToken { .. })
    ));
    next.release().await.expect("release");
}

/// `observe` yields the current holder first, then each change, within a poll interval.
pub async fn observe_reports_every_change_of_holder(backend: impl Backend) {
    use futures::StreamExt;

    let backend: Arc<dyn Backend> = Arc::new(backend);
    let name = unique_name("observe");
    let mut holders = lock(&backend, &name, "observer").observe();
    let mut next_holder = async || {
        let item = tokio::time::timeout(TTL, holders.next()).await;
        let item = item
            .expect("an item within the poll interval")
            .expect("endless");
        item.expect("describe").map(|info| info.holder)
    };
    assert_eq!(next_holder().await, None, "free at first");
    let guard = lock(&backend, &name, "holder")
        .acquire()
        .await
        .expect("acquire");
    let mut seen = next_holder().await;
    for _ in 0..10 {
        if seen.is_some() {
            break;
        }
        seen = next_holder().await;
    }
    assert_eq!(seen.as_deref(), Some("holder"));
    guard.release().await.expect("release");
    for _ in 0..10 {
        if next_holder().await.is_none() {
            return;
        }
    }
    panic!("the release was not observed within 10 items");
}

// This file's part of `conformance_tests!`: a test for each check above.
checks! {
    $ __conformance_operator_checks:
    an_operator_release_frees_only_the_named_holders_lock,
    list_finds_the_locks_under_a_prefix,
    breaking_a_lock_supersedes_its_holder_and_fencing_rejects_it,
    observe_reports_every_change_of_holder,
}
