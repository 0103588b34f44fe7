//! A client whose n-th write is held back: the interleavings that break naive fencing,
//! run on the real apiserver ("the stale writer reads and passes its check, a newer
//! writer writes, then the stale writer sends").

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use http::{Method, Request};
use tokio::sync::watch;

use crate::Kube;

/// The write a [`Kube::holding_write`] client holds back, and the controls over it.
#[derive(Clone, Debug)]
pub struct HeldWrite {
    state: Arc<State>,
}

#[derive(Debug)]
struct State {
    /// Which write to hold, counted from 1.
    nth: usize,
    writes: AtomicUsize,
    reached: watch::Sender<bool>,
    released: watch::Sender<bool>,
}

impl HeldWrite {
    /// Waits until the held write has been sent by its caller (and is held here, not yet
    /// on the wire). Panics after 30 s: the write never came.
    pub async fn reached(&self) {
        let mut reached = self.state.reached.subscribe();
        tokio::time::timeout(Duration::from_secs(30), reached.wait_for(|r| *r))
            .await
            .unwrap_or_else(|_| panic!("write {} was never sent", self.state.nth))
            .unwrap_or_else(|_| unreachable!("the sender lives in the state"));
    }

    /// Lets the held write go to the apiserver.
    pub fn release(&self) {
        self.state.released.send_replace(true);
    }

    /// How many writes the client has sent (or is holding) so far.
    pub fn writes(&self) -> usize {
        self.state.writes.load(Ordering::SeqCst)
    }
}

impl Kube {
    /// An admin client whose `nth` write (POST, PUT, PATCH or DELETE, counted from 1) is
    /// held until [`HeldWrite::release`]; reads and the other writes pass at once.
    pub async fn holding_write(&self, nth: usize) -> (kube::Client, HeldWrite) {
        let held = HeldWrite {
            state: Arc::new(State {
                nth,
                writes: AtomicUsize::new(0),
                reached: watch::Sender::new(false),
                released: watch::Sender::new(false),
            }),
        };
        let builder = kube::client::ClientBuilder::try_from(self.config(false).await)
            .unwrap_or_else(|error| panic!("cannot build a kube client: {error}"));
        let state = held.state.clone();
        let layer = tower::layer::layer_fn(move |inner| Hold {
            inner,
            state: state.clone(),
        });
        (builder.with_layer(&layer).build(), held)
    }
}

/// The service that holds the chosen write.
struct Hold<S> {
    inner: S,
    state: Arc<State>,
}

type Boxed<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B> tower::Service<Request<B>> for Hold<S>
where
    S: tower::Service<Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Boxed<S::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let write = matches!(
            *request.method(),
            Method::POST | Method::PUT | Method::PATCH | Method::DELETE
        );
        let hold = write && self.state.writes.fetch_add(1, Ordering::SeqCst) + 1 == self.state.nth;
        // The inner future sends the request only once polled.
        let sending = self.inner.call(request);
        let state = self.state.clone();
        Box::pin(async move {
            if hold {
                state.reached.send_replace(true);
                let mut released = state.released.subscribe();
                let _ = released.wait_for(|r| *r).await;
            }
            sending.await
        })
    }
}
