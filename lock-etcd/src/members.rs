//! Clients of an etcd cluster's members, one in use, and the move to the next member
//! when the one in use cannot be reached.
//!
//! etcd-client balances a client of several endpoints over all of them, and keeps
//! sending requests to a member that is down (each fails at once with a connect error)
//! or hangs. A client per member, with failover, keeps a lock renewed through any
//! member that can answer.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use etcd_client::{Client, Error};

/// The members' clients and the one in use; clones share them.
#[derive(Clone)]
pub(crate) struct Members {
    clients: Arc<[Client]>,
    current: Arc<AtomicUsize>,
}

impl Members {
    /// A single client (which may balance over several endpoints itself).
    pub(crate) fn one(client: Client) -> Self {
        Self::each(vec![client])
    }

    /// A client of each member, the first in use.
    pub(crate) fn each(clients: Vec<Client>) -> Self {
        assert!(!clients.is_empty(), "at least one member");
        Self {
            clients: clients.into(),
            current: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The client of the member in use.
    pub(crate) fn current(&self) -> &Client {
        &self.clients[self.current.load(Ordering::Relaxed) % self.clients.len()]
    }

    /// Runs `request` on the member in use; if that member cannot be reached (or has no
    /// leader), on the next, until each was tried once. A request dropped before it
    /// ends (a caller's timeout over a member that hangs) also moves on, so the next
    /// request goes elsewhere.
    ///
    /// A request is retried only on errors that leave it unapplied or harmless to repeat
    /// for the callers here: each is either a read, a compare-and-set that fails the
    /// second time if the first applied, or a keep-alive.
    pub(crate) async fn call<T, F, Fut>(&self, mut request: F) -> Result<T, Error>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let mut last = None;
        // From the member in use, each member once, whatever other requests do meanwhile.
        let start = self.current.load(Ordering::Relaxed);
        for offset in 0..self.clients.len() {
            let index = (start + offset) % self.clients.len();
            let attempt = Attempt {
                members: self,
                index,
                ended: false,
            };
            let result = request(self.clients[index].clone()).await;
            attempt.end();
            match result {
                Err(error) if self.clients.len() > 1 && unreachable(&error) => {
                    self.move_on(index);
                    last = Some(error);
                }
                other => return other,
            }
        }
        Err(last.unwrap_or_else(|| Error::InvalidArgs("no etcd member".to_owned())))
    }

    /// Moves from member `from` to the next, unless another request already moved.
    fn move_on(&self, from: usize) {
        let next = (from + 1) % self.clients.len();
        let _ = self
            .current
            .compare_exchange(from, next, Ordering::Relaxed, Ordering::Relaxed);
    }
}

/// One request on one member: dropped before it ended, it moves on from that member.
struct Attempt<'a> {
    members: &'a Members,
    index: usize,
    ended: bool,
}

impl Attempt<'_> {
    fn end(mut self) {
        self.ended = true;
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.ended && self.members.clients.len() > 1 {
            self.members.move_on(self.index);
        }
    }
}

/// Whether `error` says the member could not be reached or cannot serve now (no leader,
/// request timed out in Raft): another member may answer.
fn unreachable(error: &Error) -> bool {
    match error {
        Error::TransportError(_) | Error::IoError(_) => true,
        // Cancelled 1 (tonic's own request timeout, `ConnectOptions::with_timeout`),
        // DeadlineExceeded 4, Unavailable 14.
        Error::GRpcStatus(status) => matches!(status.code() as i32, 1 | 4 | 14),
        _ => false,
    }
}
