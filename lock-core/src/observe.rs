//! Watching who holds a lock, for dashboards and operators' tools.

use futures::{StreamExt, stream::BoxStream};

use crate::{Changes, Lock, LockInfo, LockName, Locks, Result};

struct Observer {
    locks: Locks,
    name: LockName,
    changes: Option<Changes>,
    first: bool,
}

impl Lock {
    /// Who holds the lock: now, then again after every change the backend notifies, and
    /// at least every poll interval (so that an expiry shows even on a backend without
    /// notifications). An error is an item; the stream goes on, and it never ends.
    ///
    /// Consecutive items may be equal; compare them to see what changed.
    ///
    /// ```
    /// use futures::StreamExt;
    /// use lock_core::{Lock, MemoryBackend};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> lock_core::Result<()> {
    /// let backend = MemoryBackend::new();
    /// let mut holders = Lock::new(backend.clone(), "report", "dashboard")?.observe();
    /// assert_eq!(holders.next().await.transpose()?.flatten(), None); // free
    ///
    /// let guard = Lock::new(backend, "report", "pod-a")?.acquire().await?;
    /// let held = holders.next().await.transpose()?.flatten().expect("held");
    /// assert_eq!((held.holder.as_str(), held.token), ("pod-a", Some(guard.token())));
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// The stream holds no lock and writes nothing: dropping it (or a pending `next()`)
    /// only ends the subscription and any read in flight.
    pub fn observe(&self) -> BoxStream<'static, Result<Option<LockInfo>>> {
        observe(self.locks(), self.name.clone())
    }
}

/// The stream of [`Lock::observe`] and [`Locks::observe`].
pub(crate) fn observe(
    locks: Locks,
    name: LockName,
) -> BoxStream<'static, Result<Option<LockInfo>>> {
    let observer = Observer {
        locks,
        name,
        changes: None,
        first: true,
    };
    futures::stream::unfold(observer, |mut observer| async move {
        if observer.changes.is_none() {
            // Subscribed before reading, so that no change falls in between. Without
            // notifications (or permission to watch) it polls; a read error shows.
            observer.changes = observer.locks.changes(&observer.name).await.unwrap_or(None);
        }
        if !observer.first {
            let poll = tokio::time::sleep(observer.locks.timing().poll_interval());
            match observer.changes.as_mut() {
                Some(changes) => tokio::select! {
                    next = changes.next() => if next.is_none() {
                        observer.changes = None; // subscribe again next time
                    },
                    () = poll => {}
                },
                None => poll.await,
            }
        }
        observer.first = false;
        let holder = observer.locks.holder_of(&observer.name).await;
        Some((holder, observer))
    })
    .boxed()
}
