//! A sharded kube-runtime controller: three replicas split twelve shards of 60
//! ConfigMaps, and each watches and caches only the objects of its own shards (label
//! mode: each ConfigMap carries its shard in a label, given when it is created). One
//! replica is killed (no release): after its TTL its shards move, with their objects,
//! to the other two. It comes back and the shares even out again. No object is written
//! to move a shard.
//!
//! Run: `cargo run --example sharded-controller` (starts a kube-apiserver with the test
//! harness: run `scripts/provision` once first).

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering::Relaxed},
    },
    time::Duration,
};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api,
    api::{ObjectMeta, PostParams},
    runtime::{Controller, WatchStreamExt, controller::Action, reflector, watcher},
};
use lock_core::{ElectedShards, Faulty, Timing};
use lock_kube::{
    KubeBackend, nodelay_client, shard_key, shard_label, shard_label_value, shard_watch,
};
use lock_tests::Kube;
use tokio::{task::JoinHandle, time::sleep};

const SHARDS: u32 = 12;
const OBJECTS: usize = 60;
const TTL: Duration = Duration::from_secs(3);
const LABEL_PREFIX: &str = "example.com";

/// One replica: its shards, its cache, and its controller.
struct Replica {
    name: &'static str,
    connection: Faulty<KubeBackend>,
    shards: ElectedShards,
    store: reflector::Store<ConfigMap>,
    reconciles: Arc<AtomicUsize>,
    tasks: Vec<JoinHandle<()>>,
}

async fn start(kube: &Kube, name: &'static str) -> Replica {
    let client = nodelay_client(kube.config(false).await).expect("a client");
    let connection = Faulty::new(KubeBackend::new(client.clone(), kube.namespace()));
    let shards = ElectedShards::builder(connection.clone(), "sharded-example", name, SHARDS)
        .timing(Timing::new(TTL))
        .drain(Duration::from_secs(5))
        .build()
        .expect("valid shards");
    let maps: Api<ConfigMap> = Api::namespaced(client, kube.namespace());
    let (store, writer) = reflector::store();
    let objects = shard_watch(
        maps,
        watcher::Config::default().labels("app=sharded-example"),
        &shards,
        &shard_label(LABEL_PREFIX),
    )
    .reflect(writer)
    .applied_objects();
    let reconciles = Arc::new(AtomicUsize::new(0));
    let controller = {
        let (shards, reconciles) = (shards.clone(), reconciles.clone());
        Controller::for_stream(objects, store.clone())
            .run(
                move |map: Arc<ConfigMap>, _: Arc<()>| {
                    let (shards, reconciles) = (shards.clone(), reconciles.clone());
                    async move {
                        // Held until this reconcile ends: a shard given up meanwhile is
                        // released only then. Its writes would carry `work.token()`.
                        if let Some(_work) = shards.work_on(&shard_key(map.as_ref())) {
                            reconciles.fetch_add(1, Relaxed);
                        }
                        Ok::<_, kube::Error>(Action::await_change())
                    }
                },
                |_, _, _| Action::await_change(),
                Arc::new(()),
            )
            .for_each(|_| futures::future::ready(()))
    };
    let running = {
        let shards = shards.clone();
        tokio::spawn(async move {
            if let Err(error) = shards.run().await {
                eprintln!("{name}: {error}");
            }
        })
    };
    Replica {
        name,
        connection,
        shards,
        store,
        reconciles,
        tasks: vec![running, tokio::spawn(controller)],
    }
}

fn show(moment: &str, replicas: &[&Replica]) {
    println!("--- {moment}");
    for replica in replicas {
        let owned = replica.shards.owned().borrow().clone();
        println!(
            "{:<10} owns {:>2} shards {owned:?}, watches {:>2} objects, reconciled {}",
            replica.name,
            owned.len(),
            replica.store.state().len(),
            replica.reconciles.load(Relaxed)
        );
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let kube = Kube::start().await;
    let maps: Api<ConfigMap> = Api::namespaced(kube.admin().await, kube.namespace());
    for i in 0..OBJECTS {
        let mut map = ConfigMap {
            metadata: ObjectMeta {
                name: Some(format!("object-{i}")),
                namespace: Some(kube.namespace().to_owned()),
                ..ObjectMeta::default()
            },
            ..ConfigMap::default()
        };
        // Whoever creates an object gives it its shard, once: it never changes.
        let shard = shard_label_value(&shard_key(&map), SHARDS);
        map.metadata.labels = Some(
            [
                ("app".to_owned(), "sharded-example".to_owned()),
                (shard_label(LABEL_PREFIX), shard),
            ]
            .into(),
        );
        maps.create(&PostParams::default(), &map).await?;
    }
    let (a, b, c) = (
        start(&kube, "replica-a").await,
        start(&kube, "replica-b").await,
        start(&kube, "replica-c").await,
    );
    sleep(Duration::from_secs(3)).await;
    show("three replicas", &[&a, &b, &c]);

    b.connection.partition(true); // killed: no release, its locks expire
    println!("--- replica-b is killed");
    sleep(TTL + Duration::from_secs(2)).await;
    show(
        "replica-b's shards and objects moved after its TTL",
        &[&a, &c],
    );
    for task in &b.tasks {
        task.abort();
    }

    let b = start(&kube, "replica-b").await;
    sleep(Duration::from_secs(5)).await;
    show("replica-b is back", &[&a, &b, &c]);

    for replica in [&a, &b, &c] {
        replica.shards.shutdown();
    }
    sleep(Duration::from_secs(1)).await;
    Ok(())
}
