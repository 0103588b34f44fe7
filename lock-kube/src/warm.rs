//! Warm standby: a reflector cache kept filled while following, so that a new leader's
//! controller starts from it with no re-list.

use std::sync::Arc;

use futures::{Stream, StreamExt, stream};
use kube::{
    Api, Resource,
    runtime::{
        WatchStreamExt,
        reflector::{self, ReflectHandle, Store},
        watcher,
    },
};
use serde::de::DeserializeOwned;
use tokio::{
    sync::{mpsc, oneshot},
    task::JoinHandle,
};

/// How many changes a slow subscriber may lag behind before the watch waits for it.
const BUFFER: usize = 1024;

/// A watch of `K` and its cache, running from the moment it is made, leader or not:
/// kube-runtime's shared reflector. A leader-gated controller built on it starts from
/// the warm cache when its term begins, with no re-list, and reconciles what a fresh
/// controller would: every cached object once, then every change.
///
/// Make one per watched resource when the replica starts (before it campaigns), and
/// build the controller of each term from it with
/// `Controller::for_shared_stream(warm.trigger(), warm.store())`; add owned or related
/// resources with `owns_shared_stream` / `watches_shared_stream` on their own
/// `WarmCache`. The cold way, `Controller::new` inside the term, lists and caches every
/// object first, which at thousands of objects takes seconds.
///
/// Dropping the `WarmCache` stops its watch. Types with a dynamic type (a
/// `DynamicObject`) are not supported: kube-runtime's shared streams need a static one;
/// give a custom resource a type of its own (`#[derive(CustomResource)]`).
///
/// ```no_run
/// use futures::StreamExt;
/// use k8s_openapi::api::core::v1::ConfigMap;
/// use kube::{Api, runtime::{Controller, controller::Action, watcher}};
/// use lock_core::{LeaderElector, Lock};
/// use lock_kube::{KubeBackend, WarmCache};
/// use std::{sync::Arc, time::Duration};
///
/// # async fn reconcile(_: Arc<ConfigMap>, _: Arc<()>) -> Result<Action, lock_core::Error> { Ok(Action::await_change()) }
/// # fn error_policy(_: Arc<ConfigMap>, _: &lock_core::Error, _: Arc<()>) -> Action { Action::await_change() }
/// # async fn run(client: kube::Client) -> lock_core::Result<()> {
/// let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
/// let warm = WarmCache::spawn(maps, watcher::Config::default());
/// let lock = Lock::new(KubeBackend::new(client, "default"), "my-controller", "pod-a")?;
/// LeaderElector::new(lock)
///     .run(|leadership| {
///         Controller::for_shared_stream(warm.trigger(), warm.store())
///             .graceful_shutdown_on(leadership.stopped())
///             .run(reconcile, error_policy, Arc::new(()))
///             .for_each(|_| futures::future::ready(()))
///     })
///     .await
/// # }
/// ```
pub struct WarmCache<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    store: Store<K>,
    /// Asks the draining task for a subscriber of its own.
    subscribe: mpsc::UnboundedSender<oneshot::Sender<ReflectHandle<K>>>,
    tasks: [JoinHandle<()>; 2],
}

impl<K> std::fmt::Debug for WarmCache<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WarmCache {{ objects: {}, .. }}", self.store.len())
    }
}

impl<K> WarmCache<K>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Default + Send + Sync,
{
    /// Starts watching `api` with `config` (re-listing after errors and `410 Gone`,
    /// with backoff), filling the cache, in a task of its own.
    pub fn spawn(api: Api<K>, config: watcher::Config) -> Self {
        let (store, writer) = reflector::store_shared(BUFFER);
        let Some(changes) = writer.subscribe() else {
            unreachable!("a shared store has a dispatcher");
        };
        let watching = watcher(api, config)
            .default_backoff()
            .reflect_shared(writer)
            .for_each(|event| {
                if let Err(error) = event {
                    tracing::debug!(%error, "warm cache watch failed; it re-lists with backoff");
                }
                futures::future::ready(())
            });
        // A subscriber of our own, always drained, so that no change waits for a
        // controller while none runs; each term's controller gets a clone of it.
        let (subscribe, requests) = mpsc::unbounded_channel();
        Self {
            store,
            subscribe,
            tasks: [
                tokio::spawn(watching),
                tokio::spawn(drain(changes, requests)),
            ],
        }
    }

    /// The cache: every object as last seen.
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// Waits until the first list has filled the cache.
    pub async fn ready(&self) {
        let _ = self.store.wait_until_ready().await;
    }

    /// What a term's controller reconciles: every object in the cache once (a term that
    /// starts before the first list has filled it waits for it), then every change.
    /// Subscribed before the cache is read, so that no change between the two is
    /// missed; an object in both is reconciled once more, which a controller takes as it
    /// comes.
    pub fn trigger(&self) -> impl Stream<Item = Arc<K>> + Send + 'static {
        let (subscribe, store) = (self.subscribe.clone(), self.store.clone());
        stream::once(async move {
            // Subscribed only once the first list is in: a subscriber not read while
            // the list's changes are dispatched would fill its buffer and hold the
            // watch (and so the list) back.
            let _ = store.wait_until_ready().await;
            let (reply, subscriber) = oneshot::channel();
            let changes = match subscribe.send(reply) {
                Ok(()) => subscriber.await.ok(),
                Err(_) => None,
            };
            stream::iter(store.state()).chain(stream::iter(changes).flatten())
        })
        .flatten()
    }
}

/// Drains `changes` for as long as the cache lives, handing a clone (a subscriber from
/// the same point on) to each request.
async fn drain<K>(
    mut changes: ReflectHandle<K>,
    mut requests: mpsc::UnboundedReceiver<oneshot::Sender<ReflectHandle<K>>>,
) where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Default,
{
    loop {
        tokio::select! {
            change = changes.next() => if change.is_none() {
                return;
            },
            request = requests.recv() => match request {
                Some(reply) => {
                    let _ = reply.send(changes.clone());
                }
                None => return,
            },
        }
    }
}

impl<K> Drop for WarmCache<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
