//! Warm standby: a reflector cache kept filled while following, so that a new leader's
//! controller starts from it with no re-list.

use std::{
    collections::{HashSet, VecDeque},
    sync::{Arc, Mutex, PoisonError},
};

use futures::{
    FutureExt, Stream, StreamExt,
    stream::{self, PollNext},
};
use kube::{
    Api, Resource,
    runtime::{
        WatchStreamExt,
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};
use serde::de::DeserializeOwned;
use tokio::{
    sync::{broadcast, watch},
    task::JoinHandle,
};

/// How many changes a term's trigger may lag behind before it falls back to the whole
/// cache, and how many recent changes a new term reconciles first.
const BUFFER: usize = 1024;

/// How many cached objects a term's trigger hands the controller at a time, letting it
/// start reconciling between them.
const CHUNK: usize = 128;

/// A watch of `K` and its cache, running from the moment it is made, leader or not:
/// kube-runtime's watcher and reflector store. A leader-gated controller built on it
/// starts from the warm cache when its term begins, with no re-list, and reconciles what
/// a fresh controller would: every cached object, then every change (see
/// [`trigger`](Self::trigger) for the order).
///
/// Make one per watched resource when the replica starts (it may campaign at once: a
/// term that begins before the first list is in waits for it), and build the controller
/// of each term from it with `Controller::for_shared_stream(warm.trigger(), warm.store())`;
/// add owned or related resources with `owns_shared_stream` / `watches_shared_stream` on
/// their own `WarmCache`. The cold way, `Controller::new` inside the term, lists and
/// caches every object first, which at thousands of objects takes seconds.
///
/// The watch never waits for a controller: a term's trigger that falls more than 1,024
/// changes behind hands its controller the whole cache again instead (nothing is lost; a
/// controller reconciles an object queued twice once).
///
/// Dropping the `WarmCache` stops its watch; the triggers made from it end once they
/// handed over what was cached. Types
/// with a dynamic type (a `DynamicObject`) are not supported: kube-runtime's shared
/// streams need a static one; give a custom resource a type of its own
/// (`#[derive(CustomResource)]`).
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
    /// Every change the watch applied to the store, for the terms' triggers.
    changes: broadcast::Sender<Change<K>>,
    /// The changes seen last, oldest first: a new term reconciles these first.
    recent: Arc<Mutex<VecDeque<ObjectRef<K>>>>,
    /// Whether the first list is in. The store's own readiness wakes only one waiter at
    /// a time, so that the controller's runner is its only waiter.
    ready: watch::Receiver<bool>,
    watching: JoinHandle<()>,
}

/// What the watch tells the terms' triggers.
enum Change<K: Resource> {
    /// This object was created or changed.
    Object(ObjectRef<K>),
    /// A list replaced the whole cache.
    All,
}

impl<K: Resource> Clone for Change<K>
where
    K::DynamicType: Clone,
{
    fn clone(&self) -> Self {
        match self {
            Self::Object(object) => Self::Object(object.clone()),
            Self::All => Self::All,
        }
    }
}

impl<K> std::fmt::Debug for WarmCache<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "WarmCache {{ objects: {}, ready: {} }}",
            self.store.len(),
            *self.ready.borrow()
        )
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
        let (store, writer) = reflector::store();
        let (changes, _) = broadcast::channel(BUFFER);
        let recent = Arc::new(Mutex::new(VecDeque::with_capacity(BUFFER)));
        let (ready_tx, ready) = watch::channel(false);
        let watching = {
            let (store, changes, recent) = (store.clone(), changes.clone(), recent.clone());
            watcher(api, config)
                .default_backoff()
                .reflect(writer)
                .for_each(move |event| {
                    match event {
                        Ok(watcher::Event::Apply(object)) => {
                            let object = ObjectRef::from_obj(&object);
                            let mut recent = recent.lock().unwrap_or_else(PoisonError::into_inner);
                            if recent.len() == BUFFER {
                                recent.pop_front();
                            }
                            recent.push_back(object.clone());
                            // No term listening is not an error.
                            let _ = changes.send(Change::Object(object));
                        }
                        Ok(watcher::Event::InitDone) => {
                            let _ = changes.send(Change::All);
                            // The store is ready now; a first look makes it stay so for
                            // every later waiter.
                            let _ = store.wait_until_ready().now_or_never();
                            ready_tx.send_replace(true);
                        }
                        Ok(_) => {}
                        Err(error) => {
                            tracing::debug!(%error, "warm cache watch failed; it re-lists with backoff");
                        }
                    }
                    futures::future::ready(())
                })
        };
        Self {
            store,
            changes,
            recent,
            ready,
            watching: tokio::spawn(watching),
        }
    }

    /// The cache: every object as last seen. Wait for it with [`ready`](Self::ready),
    /// not `Store::wait_until_ready`: that one wakes only the last of its waiters, and
    /// a term's controller is one.
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// Waits until the first list has filled the cache (at once if it has).
    pub async fn ready(&self) {
        let _ = self.ready.clone().wait_for(|ready| *ready).await;
    }

    /// What a term's controller reconciles: first the objects changed most recently
    /// (the last 1,024 changes the watch saw, newest first), then every object in the
    /// cache, and every change as it comes (ahead of the cached objects not yet handed
    /// over). A term that starts before the first list is in waits for it. An object may
    /// come more than once, which a controller takes as it comes. The stream ends after
    /// the `WarmCache` is dropped.
    pub fn trigger(&self) -> impl Stream<Item = Arc<K>> + Send + 'static {
        // Subscribed now, before the cache is read: a change in between comes twice,
        // none is missed. Changes before the first list is in only make it lag, and a
        // lagging subscriber reads the whole cache (once ready, the state).
        let subscriber = self.changes.subscribe();
        let mut ready = self.ready.clone();
        let (store, recent) = (self.store.clone(), self.recent.clone());
        stream::once(async move {
            let _ = ready.wait_for(|ready| *ready).await;
            let mut first = HashSet::new();
            let recent: Vec<Arc<K>> = {
                let recent = recent.lock().unwrap_or_else(PoisonError::into_inner);
                let newest_first = recent.iter().rev().filter(|object| first.insert(*object));
                newest_first
                    .filter_map(|object| store.get(object))
                    .collect()
            };
            let cached = paced(recent).chain(paced(store.state()));
            // A change while the cache is handed over goes ahead of it.
            stream::select_with_strategy(following(subscriber, store), cached, |_: &mut ()| {
                PollNext::Left
            })
        })
        .flatten()
    }
}

/// `objects`, [`CHUNK`] at a time, letting the task run between chunks: a controller
/// takes in everything a stream has ready before it starts a reconcile, so without the
/// pause its first reconcile would wait for the whole cache to be queued.
fn paced<K: Send + Sync + 'static>(objects: Vec<Arc<K>>) -> impl Stream<Item = Arc<K>> + Send {
    let mut objects = objects.into_iter();
    stream::iter(std::iter::from_fn(move || {
        let chunk: Vec<_> = objects.by_ref().take(CHUNK).collect();
        (!chunk.is_empty()).then_some(chunk)
    }))
    .then(|chunk| async move {
        tokio::task::yield_now().await;
        stream::iter(chunk)
    })
    .flatten()
}

/// Each change from `subscriber` as the object now in `store` (a deleted one is not
/// reconciled); the whole cache after a list, or when it fell too far behind.
fn following<K>(
    subscriber: broadcast::Receiver<Change<K>>,
    store: Store<K>,
) -> impl Stream<Item = Arc<K>> + Send
where
    K: Resource + Clone + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync,
{
    stream::unfold(subscriber, move |mut subscriber| {
        let store = store.clone();
        async move {
            loop {
                let objects = match subscriber.recv().await {
                    Ok(Change::Object(object)) => store.get(&object).into_iter().collect(),
                    Ok(Change::All) | Err(broadcast::error::RecvError::Lagged(_)) => store.state(),
                    Err(broadcast::error::RecvError::Closed) => return None,
                };
                if !objects.is_empty() {
                    return Some((paced(objects), subscriber));
                }
            }
        }
    })
    .flatten()
}

impl<K> Drop for WarmCache<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    fn drop(&mut self) {
        self.watching.abort();
    }
}
