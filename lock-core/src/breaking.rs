//! Breaking a lock: freeing it from a holder that cannot or will not release it.

use crate::{
    Error, FencingToken, Lock, LockInfo, Release, Result,
    release::release_detached,
    take::{Taken, take},
};

/// How many times a break frees the lock and tries to take it before giving up.
const BREAK_ATTEMPTS: usize = 3;

/// What [`Lock::break_lock`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Broken {
    /// Who held the lock when the break began (`None`: it was free).
    pub previous: Option<LockInfo>,
    /// The token the break took and gave back, larger than the broken holder's. `None`
    /// if a waiting contender took the lock first once it was free: its token is larger
    /// still.
    pub token: Option<FencingToken>,
    /// The contender that took the lock first, if one did.
    pub taken_by: Option<LockInfo>,
}

impl Lock {
    /// Forcibly frees the lock, whoever holds it: releases the holder's record (a
    /// compare-and-set on the record read, never a blind delete), then takes the lock
    /// under this lock's identity, so that the next token is issued, and releases it at
    /// once.
    ///
    /// The broken holder's guard reports the loss at its next renewal. Its fenced writes
    /// are rejected at once by stores fenced by the lock's own record (etcd's
    /// `fenced_txn`), and by stores fenced by a high-water mark (`FencedRegister`,
    /// `fenced_update`, `fenced_put`, `fenced_set`) as soon as a newer token has written.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future stops the break between steps: the holder's record may
    /// already be released (then the lock is free, and no newer token was issued); a
    /// take already sent runs to its end and releases what it took, so the break never
    /// leaves the lock held by its own identity.
    ///
    /// ```
    /// use lock_core::{Lock, LossReason, MemoryBackend};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> lock_core::Result<()> {
    /// let backend = MemoryBackend::new();
    /// let stuck = Lock::new(backend.clone(), "report", "pod-a")?.acquire().await?;
    ///
    /// let broken = Lock::new(backend, "report", "operator")?.break_lock().await?;
    /// assert_eq!(broken.previous.map(|p| p.holder).as_deref(), Some("pod-a"));
    /// assert!(broken.token > Some(stuck.token()));
    /// assert_eq!(stuck.lost().await, LossReason::Taken);
    /// # Ok(()) }
    /// ```
    pub async fn break_lock(&self) -> Result<Broken> {
        let previous = self.holder().await?;
        for _ in 0..BREAK_ATTEMPTS {
            if let Some(current) = self.holder().await? {
                let freed = self
                    .locks()
                    .release_holder_of(&self.name, &current.holder)
                    .await?;
                if freed == Release::NotHeld {
                    continue; // it changed hands meanwhile: look again
                }
            }
            // Through the core's take, so that a take whose answer is late (or whose
            // future is dropped) still releases what it acquired.
            match take(&self.backend, &self.name, &self.identity, self.timing).await? {
                Taken::Acquired(held) => {
                    let token = held.token();
                    let lease = held.into_lease();
                    release_detached(self.backend.clone(), self.timing, lease).await?;
                    return Ok(Broken {
                        previous,
                        token: Some(token),
                        taken_by: None,
                    });
                }
                Taken::Held(info) if previous.as_ref().is_none_or(|p| p.holder != info.holder) => {
                    return Ok(Broken {
                        previous,
                        token: None,
                        taken_by: Some(info),
                    });
                }
                Taken::Held(_) => {} // the broken holder took it again: once more
            }
        }
        Err(Error::transient(format!(
            "lock {} was taken again by its holder {BREAK_ATTEMPTS} times while breaking it",
            self.name
        )))
    }
}
