//! Label-mode sharding: each member of an [`ElectedShards`] group watches only the objects
//! of the shards it owns, so that its cache, its watch traffic and its reconciles all
//! scale down with the number of members.

use futures::{Stream, StreamExt, stream};
use kube::{
    Api, Resource,
    api::{Patch, PatchParams},
    core::PartialObjectMeta,
    runtime::{WatchStreamExt, watcher},
};
use lock_core::ElectedShards;
use serde::de::DeserializeOwned;

/// The shard label's key under `prefix`: `<prefix>/shard`.
///
/// ```
/// assert_eq!(lock_kube::shard_label("example.com"), "example.com/shard");
/// ```
pub fn shard_label(prefix: &str) -> String {
    format!("{prefix}/shard")
}

/// The shard label's value for an object whose shard key is `key` (by default
/// `namespace/name`, or `name` for a cluster-scoped object: see [`shard_key`]) in a
/// group of `shards` shards: give it to the object when it is created (whoever creates
/// it needs only the shard count), and it never changes, since a key's shard does not.
///
/// ```
/// let value = lock_kube::shard_label_value("default/my-object", 12);
/// assert_eq!(value, lock_core::shard_of("default/my-object", 12).to_string());
/// ```
pub fn shard_label_value(key: &str, shards: u32) -> String {
    lock_core::shard_of(key, shards).to_string()
}

/// The default shard key of an object: `namespace/name`, or `name` when it has no
/// namespace (cluster-scoped). Objects that must land with their owner take the
/// owner's key instead (its uid, or its `namespace/name`).
pub fn shard_key<K: Resource>(object: &K) -> String {
    let meta = object.meta();
    let name = meta.name.as_deref().unwrap_or_default();
    match meta.namespace.as_deref() {
        Some(namespace) => format!("{namespace}/{name}"),
        None => name.to_owned(),
    }
}

/// The watch of a member's own objects, label mode: the objects of `api` matching
/// `config` whose shard label (`label`, see [`shard_label`]) names a shard this member
/// owns now. When the owned shards change, the watch starts again with the new set
/// (`<label> in (…)`), and its list replaces what a reflector over it holds: a shard's
/// objects leave the cache with the shard. Rebalancing writes no object.
///
/// Feed it to kube-runtime's reflector and controller, and reconcile through
/// [`ElectedShards::work_on`] so that a shard given up is released only once its
/// reconciles ended, and their writes carry the shard's token:
///
/// ```no_run
/// use futures::StreamExt;
/// use k8s_openapi::api::core::v1::ConfigMap;
/// use kube::{Api, runtime::{Controller, WatchStreamExt, reflector, watcher}};
/// use lock_core::ElectedShards;
///
/// # async fn run(maps: Api<ConfigMap>, shards: ElectedShards) {
/// let label = lock_kube::shard_label("example.com");
/// let (store, writer) = reflector::store();
/// let objects = lock_kube::shard_watch(maps, watcher::Config::default(), &shards, &label)
///     .reflect(writer)
///     .applied_objects();
/// Controller::for_stream(objects, store);
/// # }
/// ```
///
/// The stream ends when the member has left the group for good.
pub fn shard_watch<K>(
    api: Api<K>,
    config: watcher::Config,
    shards: &ElectedShards,
    label: &str,
) -> impl Stream<Item = watcher::Result<watcher::Event<K>>> + Send + 'static
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let label = label.to_owned();
    let watches = shards.owned_changes().map(move |owned| {
        if owned.is_empty() {
            // Nothing to watch: an empty list, so that the cache empties.
            return stream::iter([Ok(watcher::Event::Init), Ok(watcher::Event::InitDone)])
                .chain(stream::pending())
                .boxed();
        }
        let set: Vec<String> = owned.iter().map(u32::to_string).collect();
        let selector = format!("{label} in ({})", set.join(","));
        let selector = match &config.label_selector {
            Some(theirs) => format!("{theirs},{selector}"),
            None => selector,
        };
        let mut config = config.clone();
        config.label_selector = Some(selector);
        watcher(api.clone(), config).default_backoff().boxed()
    });
    switch(watches)
}

/// The items of the latest stream `outer` gave: each new one replaces the one before.
/// Ends when `outer` does.
fn switch<S>(outer: impl Stream<Item = S> + Send + 'static) -> impl Stream<Item = S::Item> + Send
where
    S: Stream + Send + Unpin + 'static,
    S::Item: Send,
{
    stream::unfold(
        (outer.boxed(), None::<S>),
        |(mut outer, mut inner)| async move {
            loop {
                let Some(current) = inner.as_mut() else {
                    inner = Some(outer.next().await?);
                    continue;
                };
                tokio::select! {
                    biased;
                    next = outer.next() => inner = Some(next?),
                    item = current.next() => match item {
                        Some(item) => return Some((item, (outer, inner))),
                        None => inner = None,
                    },
                }
            }
        },
    )
}

/// Labels every object that has no shard label yet: the labeler of label mode, for
/// objects that whoever creates them does not label. It watches only the objects of
/// `api` matching `config` that lack `label`, metadata only (`!<label>`), and gives each
/// its shard among `shards` by a merge patch of that one label, computed from
/// `key` (e.g. [`shard_key`]; any key from the metadata, such as the controlling
/// owner's uid, so that owned objects land on their owner's shard). An object is
/// written once: the label never changes.
///
/// Run it as the work of one leader for the whole controller (a [`LeaderElector`]
/// term), beside the sharded members; it runs until the future is dropped, logging
/// the patches that fail (an object deleted meanwhile).
///
/// ```no_run
/// use k8s_openapi::api::core::v1::ConfigMap;
/// use kube::{Api, runtime::watcher};
///
/// # async fn run(maps: Api<ConfigMap>) {
/// let label = lock_kube::shard_label("example.com");
/// lock_kube::label_shards(maps, watcher::Config::default(), &label, 12, lock_kube::shard_key)
///     .await;
/// # }
/// ```
///
/// [`LeaderElector`]: lock_core::LeaderElector
pub async fn label_shards<K>(
    api: Api<K>,
    config: watcher::Config,
    label: &str,
    shards: u32,
    key: impl Fn(&PartialObjectMeta<K>) -> String,
) where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let unlabelled = match &config.label_selector {
        Some(theirs) => format!("{theirs},!{label}"),
        None => format!("!{label}"),
    };
    let mut config = config;
    config.label_selector = Some(unlabelled);
    // Metadata only. kube's replacement, a watch of `Api<PartialObjectMeta<K>>`, is made
    // by a constructor per scope, which a `K` of either scope cannot call.
    #[allow(deprecated)]
    let watch = kube::runtime::metadata_watcher(api.clone(), config);
    let mut objects = std::pin::pin!(watch.default_backoff().applied_objects());
    while let Some(object) = objects.next().await {
        let object = match object {
            Ok(object) => object,
            Err(error) => {
                tracing::warn!(%error, "the labeler's watch failed; it re-lists with backoff");
                continue;
            }
        };
        let Some(name) = object.metadata.name.clone() else {
            continue;
        };
        let value = shard_label_value(&key(&object), shards);
        let patch = serde_json::json!({ "metadata": { "labels": { label: value } } });
        if let Err(error) = api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            tracing::warn!(%error, object = %name, "could not label the object with its shard");
        }
    }
}
