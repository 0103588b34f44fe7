//! The tasks of one leadership term: spawned through [`Leadership::spawn`], they end with
//! the term (docs/design.md, Contracts: "Leader election").
//!
//! [`Leadership::spawn`]: crate::Leadership::spawn

use std::{
    fmt,
    future::Future,
    sync::{Arc, Mutex, PoisonError},
};

use tokio::{
    sync::watch,
    task::{AbortHandle, JoinHandle},
};

/// The tasks spawned in one term. Clones share them.
///
/// A small task tracker: it counts the spawned futures that still exist (running, or
/// aborted but not yet dropped), so that the end of a term can wait until none is left,
/// and keeps their abort handles, so that it can abort them.
#[derive(Clone)]
pub(crate) struct TermTasks {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    /// How many spawned futures still exist.
    live: watch::Sender<usize>,
}

#[derive(Default)]
struct State {
    /// Set when the term ended: a task spawned later is aborted before it runs.
    ended: bool,
    tasks: Vec<AbortHandle>,
    /// Finished tasks' handles are pruned when the list grows to this length.
    prune_at: usize,
}

impl fmt::Debug for TermTasks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state();
        f.debug_struct("TermTasks")
            .field("ended", &state.ended)
            .field("live", &*self.inner.live.borrow())
            .finish()
    }
}

/// Held by each spawned future: counts it as live until it is dropped, whether it
/// finished or was aborted.
struct Live(Arc<Inner>);

impl Live {
    fn new(inner: Arc<Inner>) -> Self {
        inner.live.send_modify(|live| *live += 1);
        Self(inner)
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.live.send_modify(|live| *live -= 1);
    }
}

const PRUNE_AT: usize = 16;

impl TermTasks {
    pub(crate) fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    prune_at: PRUNE_AT,
                    ..State::default()
                }),
                live: watch::Sender::new(0),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Spawns `task` on the current runtime as a task of this term; if the term has
    /// ended, the task is aborted before it is ever polled.
    pub(crate) fn spawn<F>(&self, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let live = Live::new(self.inner.clone());
        // Spawned under the lock, so that `end` cannot run between the spawn and the
        // check: a task is either in the list when the term ends or sees it ended.
        let mut state = self.state();
        let handle = tokio::spawn(async move {
            let _live = live;
            task.await
        });
        if state.ended {
            handle.abort();
        } else {
            if state.tasks.len() >= state.prune_at {
                state.tasks.retain(|task| !task.is_finished());
                state.prune_at = (state.tasks.len() * 2).max(PRUNE_AT);
            }
            state.tasks.push(handle.abort_handle());
        }
        handle
    }

    /// Ends the term: aborts every task, and every task spawned from now on before it
    /// runs. An aborted task stops at its next `.await`; [`finished`](Self::finished)
    /// tells when it is gone.
    pub(crate) fn end(&self) {
        let tasks = {
            let mut state = self.state();
            state.ended = true;
            std::mem::take(&mut state.tasks)
        };
        for task in tasks {
            task.abort();
        }
    }

    /// Resolves once no spawned future is left: each one finished, or was aborted and
    /// dropped. Cancel-safe: it only waits.
    pub(crate) async fn finished(&self) {
        let mut live = self.inner.live.subscribe();
        // The sender lives in `self`, so waiting cannot fail.
        let _ = live.wait_for(|live| *live == 0).await;
    }
}

/// Ends a term's tasks when dropped: when the term ends, however it ends, including the
/// `run` future being dropped in the middle of a term.
pub(crate) struct EndOnDrop(pub(crate) TermTasks);

impl Drop for EndOnDrop {
    fn drop(&mut self) {
        self.0.end();
    }
}
