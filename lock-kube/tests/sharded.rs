//! Label-mode sharding on a real apiserver: each member of an elected-shards group
//! watches and caches only the objects of the shards it owns, and its cache follows its
//! shards as they move.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api,
    api::{ObjectMeta, PostParams},
    runtime::{WatchStreamExt, reflector, watcher},
};
use lock_core::{ElectedShards, Timing, conformance::unique_name};
use lock_kube::{
    KubeBackend, ShardField, label_shards, nodelay_client, server_shard_watch, shard_key,
    shard_label, shard_label_value, shard_selector, shard_selector_supported, shard_watch,
};
use lock_tests::{Kube, KubeVersion, waited};
use tokio::task::JoinHandle;

const SHARDS: u32 = 4;
const OBJECTS: usize = 40;

/// A member: its shards, and the cache of its shard watch.
struct Member {
    shards: ElectedShards,
    store: reflector::Store<ConfigMap>,
    running: JoinHandle<lock_core::Result<()>>,
    watching: JoinHandle<()>,
}

/// How a member restricts its watch.
#[derive(Clone, Copy)]
enum Mode {
    Label,
    ServerSide,
}

impl Member {
    async fn start(
        kube: &Kube,
        group: &str,
        identity: &str,
        config: &watcher::Config,
        mode: Mode,
    ) -> Self {
        let client = nodelay_client(kube.config(false).await).expect("a client");
        let shards = ElectedShards::builder(
            KubeBackend::new(client.clone(), kube.namespace()),
            group,
            identity,
            SHARDS,
        )
        .timing(Timing::new(Duration::from_secs(3)))
        .max_members(2)
        .build()
        .expect("valid shards");
        let running = {
            let shards = shards.clone();
            tokio::spawn(async move { shards.run().await })
        };
        let (store, writer) = reflector::store();
        let events = match mode {
            Mode::Label => {
                let maps: Api<ConfigMap> = Api::namespaced(client, kube.namespace());
                let label = shard_label(LABEL_PREFIX);
                shard_watch(maps, config.clone(), &shards, &label).boxed()
            }
            Mode::ServerSide => {
                let namespace = kube.namespace().to_owned();
                let api = move |client| Api::<ConfigMap>::namespaced(client, &namespace);
                server_shard_watch(client, api, config.clone(), &shards, ShardField::Uid).boxed()
            }
        };
        let watching = tokio::spawn(
            events
                .reflect(writer)
                .for_each(|_| futures::future::ready(())),
        );
        Self {
            shards,
            store,
            running,
            watching,
        }
    }

    /// The names in its cache.
    fn cached(&self) -> BTreeSet<String> {
        self.store
            .state()
            .iter()
            .filter_map(|map| map.metadata.name.clone())
            .collect()
    }

    async fn stop(self) {
        self.shards.shutdown();
        self.running
            .await
            .expect("the member ran")
            .expect("it left cleanly");
        self.watching.abort();
    }
}

const LABEL_PREFIX: &str = "lock-test.example.com";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_member_caches_only_the_objects_of_its_own_shards_and_follows_them_as_they_move() {
    let kube = Kube::shared().await;
    let (group, run) = (unique_name("sharded"), unique_name("sharded-objects"));
    let maps: Api<ConfigMap> = Api::namespaced(kube.admin().await, kube.namespace());
    // Each object is labelled with its shard when it is created.
    let mut shard_of = BTreeMap::new();
    for i in 0..OBJECTS {
        let mut map = ConfigMap {
            metadata: ObjectMeta {
                name: Some(format!("{run}-{i}")),
                namespace: Some(kube.namespace().to_owned()),
                ..ObjectMeta::default()
            },
            ..ConfigMap::default()
        };
        let shard = shard_label_value(&shard_key(&map), SHARDS);
        map.metadata.labels = Some(
            [
                ("lock-test".to_owned(), run.clone()),
                (shard_label(LABEL_PREFIX), shard.clone()),
            ]
            .into(),
        );
        maps.create(&PostParams::default(), &map)
            .await
            .expect("create a ConfigMap");
        shard_of.insert(format!("{run}-{i}"), shard.parse::<u32>().expect("a shard"));
    }
    let objects_of = |owned: &BTreeSet<u32>| -> BTreeSet<String> {
        shard_of
            .iter()
            .filter(|(_, shard)| owned.contains(shard))
            .map(|(name, _)| name.clone())
            .collect()
    };
    let config = watcher::Config::default().labels(&format!("lock-test={run}"));
    let a = Member::start(kube, &group, "member-a", &config, Mode::Label).await;
    let b = Member::start(kube, &group, "member-b", &config, Mode::Label).await;
    split_then_one_takes_all(a, b, objects_of).await;
}

/// Two members split the shards and each caches exactly its shards' objects; one
/// leaves, and the other takes every shard and caches every object.
async fn split_then_one_takes_all(
    a: Member,
    b: Member,
    objects_of: impl Fn(&BTreeSet<u32>) -> BTreeSet<String>,
) {
    // Two members: half the shards each, and each caches exactly its shards' objects.
    let split = || {
        let (owned_a, owned_b) = (
            a.shards.owned().borrow().clone(),
            b.shards.owned().borrow().clone(),
        );
        owned_a.len() == 2
            && owned_b.len() == 2
            && owned_a.is_disjoint(&owned_b)
            && a.cached() == objects_of(&owned_a)
            && b.cached() == objects_of(&owned_b)
    };
    if waited(Duration::from_secs(30), &split).await.is_none() {
        panic!(
            "not split within 30 s: a owns {:?} and caches {}, b owns {:?} and caches {}",
            a.shards.owned().borrow(),
            a.cached().len(),
            b.shards.owned().borrow(),
            b.cached().len()
        );
    }

    // b leaves: a takes every shard, and its cache every object.
    b.stop().await;
    let everything =
        || a.shards.owned().borrow().len() == SHARDS as usize && a.cached().len() == OBJECTS;
    if waited(Duration::from_secs(30), everything).await.is_none() {
        panic!(
            "a did not take over within 30 s: owns {:?}, caches {}",
            a.shards.owned().borrow(),
            a.cached().len()
        );
    }
    a.stop().await;
}

/// The labeler gives every unlabelled object its shard label once, existing objects and
/// new ones, and writes nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_labeler_gives_every_unlabelled_object_its_shard_once() {
    let kube = Kube::shared().await;
    let run = unique_name("labeled-objects");
    let maps: Api<ConfigMap> = Api::namespaced(kube.admin().await, kube.namespace());
    let new_map = |name: String| ConfigMap {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(kube.namespace().to_owned()),
            labels: Some([("lock-test".to_owned(), run.clone())].into()),
            ..ObjectMeta::default()
        },
        ..ConfigMap::default()
    };
    for i in 0..10 {
        maps.create(&PostParams::default(), &new_map(format!("{run}-{i}")))
            .await
            .expect("create a ConfigMap");
    }
    let label = shard_label(LABEL_PREFIX);
    let labeling = {
        let (maps, label) = (maps.clone(), label.clone());
        let config = watcher::Config::default().labels(&format!("lock-test={run}"));
        tokio::spawn(async move { label_shards(maps, config, &label, SHARDS, shard_key).await })
    };
    maps.create(&PostParams::default(), &new_map(format!("{run}-late")))
        .await
        .expect("create a ConfigMap");
    let mut labelled = BTreeMap::new();
    for _ in 0..300 {
        let listed = maps
            .list(&kube::api::ListParams::default().labels(&format!("lock-test={run}")))
            .await
            .expect("list");
        labelled = listed
            .items
            .iter()
            .map(|map| {
                let value = map
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(&label))
                    .cloned();
                (
                    shard_key(map),
                    (value, map.metadata.resource_version.clone()),
                )
            })
            .collect();
        if labelled.values().all(|(value, _)| value.is_some()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(labelled.len(), 11);
    for (key, (value, _)) in &labelled {
        assert_eq!(
            value.as_deref(),
            Some(shard_label_value(key, SHARDS).as_str()),
            "{key} is labelled with its shard"
        );
    }
    // Written once: a second of watching later, nothing changed.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let listed = maps
        .list(&kube::api::ListParams::default().labels(&format!("lock-test={run}")))
        .await
        .expect("list");
    for map in &listed.items {
        let (_, version) = &labelled[&shard_key(map)];
        assert_eq!(&map.metadata.resource_version, version, "labelled once");
    }
    labeling.abort();
}

/// Server-side mode: the apiserver filters each member's watch by the hash ranges of its
/// shards where it can (1.36 with `ShardedListAndWatch` on, as the harness runs it), and
/// the watch filters on the client where it cannot (1.20): the caches are the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_members_cache_only_their_hash_ranges_filtered_by_the_server_where_it_can() {
    let kube = Kube::shared().await;
    let (group, run) = (unique_name("server-sharded"), unique_name("server-objects"));
    let maps: Api<ConfigMap> = Api::namespaced(kube.admin().await, kube.namespace());
    let supported = shard_selector_supported(&maps)
        .await
        .expect("the probe answers");
    assert_eq!(
        supported,
        kube.version() == KubeVersion::V1_36,
        "the harness's 1.36 applies shard selectors, 1.20 ignores them"
    );
    let mut shard_of = BTreeMap::new();
    for i in 0..OBJECTS {
        let map = ConfigMap {
            metadata: ObjectMeta {
                name: Some(format!("{run}-{i}")),
                labels: Some([("lock-test".to_owned(), run.clone())].into()),
                ..ObjectMeta::default()
            },
            ..ConfigMap::default()
        };
        let created = maps
            .create(&PostParams::default(), &map)
            .await
            .expect("create a ConfigMap");
        let shard = ShardField::Uid.shard_of(&created, SHARDS).expect("a uid");
        shard_of.insert(format!("{run}-{i}"), shard);
    }
    let objects_of = |owned: &BTreeSet<u32>| -> BTreeSet<String> {
        shard_of
            .iter()
            .filter(|(_, shard)| owned.contains(shard))
            .map(|(name, _)| name.clone())
            .collect()
    };
    if supported {
        // The server's own answer to a selector is exactly those shards' objects: one
        // shard, two runs joined by `||`, and the last shard (up to 2^64).
        for owned in [
            BTreeSet::from([1]),
            BTreeSet::from([0, 3]),
            BTreeSet::from([3]),
        ] {
            let selector = shard_selector(ShardField::Uid, &owned, SHARDS);
            let path = format!(
                "{}?labelSelector=lock-test%3D{run}&shardSelector={}",
                maps.resource_url(),
                form_urlencoded::byte_serialize(selector.as_bytes()).collect::<String>()
            );
            let listed: kube::core::ObjectList<ConfigMap> = kube
                .admin()
                .await
                .request(
                    http::Request::get(path)
                        .body(Vec::new())
                        .expect("a request"),
                )
                .await
                .expect("a sharded list");
            let names: BTreeSet<String> = listed
                .items
                .iter()
                .filter_map(|map| map.metadata.name.clone())
                .collect();
            assert_eq!(
                names,
                objects_of(&owned),
                "the server filters by {selector}"
            );
        }
    }
    let config = watcher::Config::default().labels(&format!("lock-test={run}"));
    let a = Member::start(kube, &group, "member-a", &config, Mode::ServerSide).await;
    let b = Member::start(kube, &group, "member-b", &config, Mode::ServerSide).await;
    split_then_one_takes_all(a, b, objects_of).await;
}

#[test]
fn a_shard_selector_covers_the_hash_space_in_runs_of_owned_shards() {
    let all: BTreeSet<u32> = (0..SHARDS).collect();
    assert_eq!(
        shard_selector(ShardField::Uid, &all, SHARDS),
        "shardRange(object.metadata.uid, '0x0000000000000000', '0x10000000000000000')"
    );
    assert_eq!(
        shard_selector(ShardField::Namespace, &[1, 2].into(), 3),
        "shardRange(object.metadata.namespace, '0x5555555555555556', '0x10000000000000000')"
    );
    assert_eq!(
        shard_selector(ShardField::Uid, &BTreeSet::new(), SHARDS),
        ""
    );
}

#[test]
fn the_hash_ranges_split_the_hash_space_exactly() {
    // Every range holds values (uid-like ones: random hex, as the server hashes)...
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut random = || {
        // splitmix64
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let uids: Vec<String> = (0..2_000)
        .map(|_| format!("{:016x}-{:016x}", random(), random()))
        .collect();
    for shards in [1, 3, 4, 7, 16] {
        let seen: BTreeSet<u32> = uids
            .iter()
            .map(|uid| lock_kube::hash_range_of(uid, shards))
            .collect();
        assert_eq!(
            seen,
            (0..shards).collect(),
            "every range is used ({shards} shards)"
        );
    }
    // ...and the selectors of the shards one by one tile the space: each one's end is
    // the next one's start.
    let selectors: Vec<String> = (0..7)
        .map(|shard| shard_selector(ShardField::Uid, &BTreeSet::from([shard]), 7))
        .collect();
    for pair in selectors.windows(2) {
        let end_of_first = pair[0].rsplit('\'').nth(1).expect("an end");
        let start_of_second = pair[1].split('\'').nth(1).expect("a start");
        assert_eq!(end_of_first, start_of_second);
    }
}
