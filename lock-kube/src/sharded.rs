//! Label-mode sharding: each member of an [`ElectedShards`] group watches only the objects
//! of the shards it owns, so that its cache, its watch traffic and its reconciles all
//! scale down with the number of members.

use std::collections::BTreeSet;

use futures::{Stream, StreamExt, stream};
use kube::{
    Api, Client, Resource,
    api::{Patch, PatchParams},
    core::PartialObjectMeta,
    runtime::{WatchStreamExt, watcher},
};
use lock_core::{ElectedShards, ShardWork};
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
/// objects leave the cache with the shard. Rebalancing writes no object. Each list's
/// objects are announced again (as `Apply` events) right after its `InitDone`, once a
/// reflector's store holds them: kube-runtime's controller drops the trigger of an
/// object its store does not hold yet, so an object of a shard just taken would
/// otherwise go unreconciled.
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
            return nothing_to_watch();
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
    announced_after_init(switch(watches))
}

/// `events`, with every object of a list announced again (as an `Apply`) right after
/// the list's `InitDone`.
///
/// A reflector keeps a list's objects aside until `InitDone` and only then swaps them
/// into its store, while kube-runtime's controller reconciles an object only if its
/// store holds it when the reconcile starts (otherwise the trigger is dropped as
/// `ObjectNotFound`). Each change of the owned shards starts a new list, so without
/// this, an object of a shard just taken (or one changed while the watch restarted)
/// could be triggered before the swap and then never reconciled.
fn announced_after_init<K: Clone + Send + 'static>(
    events: impl Stream<Item = watcher::Result<watcher::Event<K>>> + Send + 'static,
) -> impl Stream<Item = watcher::Result<watcher::Event<K>>> + Send + 'static {
    events
        .scan(Vec::new(), |listed, event| {
            let mut out = Vec::new();
            match event {
                Ok(watcher::Event::Init) => listed.clear(),
                Ok(watcher::Event::InitApply(ref object)) => listed.push(object.clone()),
                Ok(watcher::Event::InitDone) => {
                    out.extend(
                        listed
                            .drain(..)
                            .map(|object| Ok(watcher::Event::Apply(object))),
                    );
                }
                _ => {}
            }
            out.insert(0, event);
            std::future::ready(Some(stream::iter(out)))
        })
        .flatten()
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

/// The field whose hash places an object on a shard in server-side mode: the fields
/// KEP-5866's `shardRange` hashes (FNV-1a, 64 bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShardField {
    /// `metadata.uid`: every object on its own, spread evenly.
    Uid,
    /// `metadata.namespace`: a namespace's objects together (cluster-scoped objects,
    /// which have none, all on the shard of the empty string, as the apiserver hashes
    /// them).
    Namespace,
}

impl ShardField {
    /// The field's path in a shard selector.
    fn path(self) -> &'static str {
        match self {
            Self::Uid => "object.metadata.uid",
            Self::Namespace => "object.metadata.namespace",
        }
    }

    /// The server-side shard among `shards` of `object`: the range its field's hash is
    /// in. `None` for an object without a uid (one not created yet).
    pub fn shard_of<K: Resource>(self, object: &K, shards: u32) -> Option<u32> {
        let meta = object.meta();
        let value = match self {
            Self::Uid => meta.uid.as_deref()?,
            // The apiserver hashes a missing namespace as the empty string.
            Self::Namespace => meta.namespace.as_deref().unwrap_or_default(),
        };
        Some(hash_range_of(value, shards))
    }

    /// Starts work on `object`'s server-side shard if this member owns it now (see
    /// [`ElectedShards::work_on`]): what a reconcile over [`server_shard_watch`] calls,
    /// rather than `work_on(&shard_key(..))`, whose shards are label mode's.
    pub fn work_on<K: Resource>(self, shards: &ElectedShards, object: &K) -> Option<ShardWork> {
        shards.work_on_shard(self.shard_of(object, shards.shards())?)
    }
}

/// The range of `value`'s FNV-1a-64 hash among `shards` equal ranges of the hash space:
/// shard `i` holds the hashes from `⌈i·2⁶⁴/shards⌉` up to the next shard's start.
///
/// ```
/// assert_eq!(lock_kube::hash_range_of("anything", 1), 0);
/// assert!(lock_kube::hash_range_of("anything", 12) < 12);
/// ```
pub fn hash_range_of(value: &str, shards: u32) -> u32 {
    let range = (u128::from(fnv1a(value)) * u128::from(shards.max(1))) >> 64;
    u32::try_from(range).unwrap_or(0)
}

fn fnv1a(value: &str) -> u64 {
    value.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Where shard `shard` of `shards` begins in the hash space (`2⁶⁴` for `shard == shards`).
fn range_start(shard: u32, shards: u32) -> u128 {
    (u128::from(shard) << 64).div_ceil(u128::from(shards.max(1)))
}

/// The shard selector (KEP-5866) of the objects whose `field` hashes into one of the
/// `owned` shards among `shards`: one `shardRange` per run of consecutive shards,
/// joined by `||`. Empty when `owned` is.
///
/// ```
/// use lock_kube::{ShardField, shard_selector};
/// assert_eq!(
///     shard_selector(ShardField::Uid, &[0, 1, 3].into(), 4),
///     "shardRange(object.metadata.uid, '0x0000000000000000', '0x8000000000000000') \
///      || shardRange(object.metadata.uid, '0xc000000000000000', '0x10000000000000000')"
/// );
/// ```
pub fn shard_selector(field: ShardField, owned: &BTreeSet<u32>, shards: u32) -> String {
    let mut runs: Vec<(u32, u32)> = Vec::new();
    for &shard in owned.iter().filter(|&&shard| shard < shards) {
        match runs.last_mut() {
            Some((_, end)) if *end == shard => *end = shard + 1,
            _ => runs.push((shard, shard + 1)),
        }
    }
    let ranges: Vec<String> = runs
        .iter()
        .map(|&(start, end)| {
            format!(
                "shardRange({}, '{:#018x}', '{:#018x}')",
                field.path(),
                range_start(start, shards),
                range_start(end, shards)
            )
        })
        .collect();
    ranges.join(" || ")
}

/// Whether the server behind `api` filters lists and watches by a shard selector
/// (KEP-5866, the `ShardedListAndWatch` feature, alpha and off by default in 1.36): one
/// list of at most one object, whose `metadata.shardInfo` is there only when the
/// server applied the selector. A server without the feature ignores the parameter.
///
/// # Errors
/// The list failed (the error of kube's client, with its source).
pub async fn shard_selector_supported<K: Resource + Clone>(
    api: &Api<K>,
) -> lock_core::Result<bool> {
    let selector = shard_selector(ShardField::Uid, &BTreeSet::from([0]), 1);
    let path = format!(
        "{}?limit=1&{}",
        api.resource_url(),
        form_urlencoded::Serializer::new(String::new())
            .append_pair("shardSelector", &selector)
            .finish()
    );
    let request = http::Request::get(path).body(Vec::new()).map_err(|error| {
        lock_core::Error::backend("build the shard selector probe", false, error)
    })?;
    let listed: serde_json::Value =
        api.clone()
            .into_client()
            .request(request)
            .await
            .map_err(|error| {
                let transient = crate::error::is_transient(&error);
                lock_core::Error::backend(
                    "probe the apiserver for shard selectors",
                    transient,
                    error,
                )
            })?;
    // Present only when the server applied a selector (it echoes it, possibly in a
    // normalised form).
    Ok(listed.pointer("/metadata/shardInfo").is_some())
}

/// The watch of a member's own objects, server-side mode: the objects of the `Api`
/// that `api` makes (from the client it is given) whose `field` hashes into a shard
/// this member owns now (contiguous ranges of the FNV-1a-64 hash: see
/// [`ShardField::shard_of`]), filtered by the apiserver itself with a shard selector
/// (KEP-5866). Like [`shard_watch`], it starts again with each new set of owned shards,
/// and a reflector over it drops a shard's objects with the shard; objects are never
/// written.
///
/// Before each start it asks the server whether it applies shard selectors
/// ([`shard_selector_supported`]); a server that does not (the feature is alpha in
/// 1.36 and off by default) gets an unrestricted watch that this stream filters on the
/// client (it still lists and receives every object; only its own reach the stream),
/// logged as a warning. A probe that fails or takes over 10 s is tried again with
/// backoff, not taken for "no". Events of other shards' objects are dropped on the
/// client in either case, so a server that stops applying the selector cannot fill the
/// cache with them. Each list's objects are announced again after its `InitDone`, as
/// [`shard_watch`]'s are.
///
/// `api` is given a client that adds the selector to every request it sends, so build
/// the `Api` with it and nothing else: for example `|client| Api::namespaced(client, "default")`.
///
/// Reconcile through [`ShardField::work_on`] (the server-side shard of the object, with
/// its token), not `ElectedShards::work_on(&shard_key(..))`, whose shards are label
/// mode's: an object would then wait on a shard this member may not own.
///
/// ```no_run
/// use futures::StreamExt;
/// use k8s_openapi::api::core::v1::ConfigMap;
/// use kube::{Api, Client, runtime::{Controller, WatchStreamExt, reflector, watcher}};
/// use lock_core::ElectedShards;
/// use lock_kube::ShardField;
///
/// # async fn run(client: Client, shards: ElectedShards) {
/// let (store, writer) = reflector::store();
/// let objects = lock_kube::server_shard_watch(
///     client,
///     |client| Api::<ConfigMap>::namespaced(client, "default"),
///     watcher::Config::default(),
///     &shards,
///     ShardField::Uid,
/// )
/// .reflect(writer)
/// .applied_objects();
/// Controller::for_stream(objects, store);
/// # }
/// ```
///
/// The stream ends when the member has left the group for good.
pub fn server_shard_watch<K>(
    client: Client,
    api: impl Fn(Client) -> Api<K> + Send + Sync + 'static,
    config: watcher::Config,
    shards: &ElectedShards,
    field: ShardField,
) -> impl Stream<Item = watcher::Result<watcher::Event<K>>> + Send + 'static
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let count = shards.shards();
    let api = std::sync::Arc::new(api);
    let watches = shards.owned_changes().then(move |owned| {
        let (client, api, config) = (client.clone(), api.clone(), config.clone());
        async move {
            if owned.is_empty() {
                return nothing_to_watch();
            }
            let plain = api(client.clone());
            let applied = probe_until_answered(&plain).await;
            let selector = shard_selector(field, &owned, count);
            // Filtered here too, even when the server filters: a server that stops
            // applying the selector (another apiserver, a rollback) cannot fill the cache
            // with others' objects. One hash per event.
            let mine = move |event: &watcher::Result<watcher::Event<K>>| {
                let of_ours = |object: &K| {
                    field
                        .shard_of(object, count)
                        .is_some_and(|shard| owned.contains(&shard))
                };
                std::future::ready(match event {
                    Ok(
                        watcher::Event::Apply(object)
                        | watcher::Event::InitApply(object)
                        | watcher::Event::Delete(object),
                    ) => of_ours(object),
                    _ => true,
                })
            };
            if applied {
                return watcher(api(selecting(client, selector)), config)
                    .default_backoff()
                    .filter(mine)
                    .boxed();
            }
            tracing::warn!(
                "the apiserver does not apply shard selectors (ShardedListAndWatch is off): \
                 watching every object and filtering on the client"
            );
            watcher(plain, config)
                .default_backoff()
                .filter(mine)
                .boxed()
        }
    });
    announced_after_init(switch(watches))
}

/// Whether the server applies shard selectors, asked until it answers: a failed or
/// timed-out probe (an apiserver restarting, say) is tried again with backoff rather
/// than taken for "no", which would watch every object.
async fn probe_until_answered<K: Resource + Clone>(api: &Api<K>) -> bool {
    let mut pause = std::time::Duration::from_millis(100);
    loop {
        match tokio::time::timeout(PROBE_TIMEOUT, shard_selector_supported(api)).await {
            Ok(Ok(applied)) => return applied,
            Ok(Err(error)) => {
                tracing::warn!(%error, "probing the apiserver for shard selectors; trying again");
            }
            Err(_) => {
                tracing::warn!("probing the apiserver for shard selectors timed out; trying again")
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(std::time::Duration::from_secs(10));
    }
}

/// How long a probe for shard selectors may take.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// An empty list and no events, so that a reflector's cache empties.
fn nothing_to_watch<K: Send + 'static>()
-> futures::stream::BoxStream<'static, watcher::Result<watcher::Event<K>>> {
    stream::iter([Ok(watcher::Event::Init), Ok(watcher::Event::InitDone)])
        .chain(stream::pending())
        .boxed()
}

/// `client`, with `shardSelector=<selector>` added to the query of every request.
fn selecting(client: Client, selector: String) -> Client {
    let namespace = client.default_namespace().to_owned();
    let service = tower::service_fn(move |mut request: http::Request<kube::client::Body>| {
        let client = client.clone();
        let (path, query) = {
            let uri = request.uri();
            (uri.path().to_owned(), uri.query().map(str::to_owned))
        };
        let mut pairs = form_urlencoded::Serializer::new(query.unwrap_or_default());
        pairs.append_pair("shardSelector", &selector);
        let uri = format!("{path}?{}", pairs.finish());
        async move {
            *request.uri_mut() = uri
                .parse()
                .map_err(|error| kube::Error::Service(Box::new(error)))?;
            client.send(request).await
        }
    });
    Client::new(service, namespace)
}
