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
    KubeBackend, label_shards, nodelay_client, shard_key, shard_label, shard_label_value,
    shard_watch,
};
use lock_tests::{Kube, waited};
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

impl Member {
    async fn start(kube: &Kube, group: &str, identity: &str, config: &watcher::Config) -> Self {
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
        let maps: Api<ConfigMap> = Api::namespaced(client, kube.namespace());
        let (store, writer) = reflector::store();
        let label = shard_label(LABEL_PREFIX);
        let events = shard_watch(maps, config.clone(), &shards, &label).reflect(writer);
        let watching = tokio::spawn(events.for_each(|_| futures::future::ready(())));
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
    let a = Member::start(kube, &group, "member-a", &config).await;
    let b = Member::start(kube, &group, "member-b", &config).await;

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
    if waited(Duration::from_secs(30), split).await.is_none() {
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
