//! Watching who holds a lock, for dashboards and operators' tools.

use futures::{StreamExt, stream::BoxStream};

use crate::{Changes, Lock, LockInfo, Result};

struct Observer {
    lock: Lock,
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
    pub fn observe(&self) -> BoxStream<'static, Result<Option<LockInfo>>> {
        let observer = Observer {
            lock: self.clone(),
            changes: None,
            first: true,
        };
        futures::stream::unfold(observer, |mut observer| async move {
            let lock = &observer.lock;
            if observer.changes.is_none() {
                // Subscribed before reading, so that no change falls in between.
                observer.changes = lock.backend.changes(&lock.name).await.ok();
            }
            if !observer.first {
                let poll = tokio::time::sleep(lock.timing.poll_interval());
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
            let holder = observer.lock.holder().await;
            Some((holder, observer))
        })
        .boxed()
    }
}
