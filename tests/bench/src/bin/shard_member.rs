//! One member of a sharded kube-runtime controller, for lock-bench's scaling table: a
//! process of its own, so that the bench reads its memory and sends it a real SIGTERM.
//!
//! `lock-bench-shard-member KUBECONFIG NAMESPACE GROUP RUN IDENTITY MODE`, MODE one of
//! - `label`: `lock_kube::shard_watch` (only its shards' objects, by their shard label);
//! - `server`: `lock_kube::server_shard_watch` by uid (only its shards' hash ranges,
//!   filtered by the apiserver where it applies shard selectors);
//! - `filter`: a watch of every object, reconciling only those it owns.
//!
//! The objects are the ConfigMaps labelled `lock-bench-scaling=RUN`. The reconcile of an
//! owned object waits `WORK` (its IO) and writes nothing, at most `CONCURRENCY` at once.
//! A line `resync` on stdin reconciles every object in the cache again.
//!
//! Prints on stdout, one line each, `NANOS EVENT [ARGS]` (NANOS from CLOCK_REALTIME):
//! `status OWNED CACHED EVENTS RECONCILES` every 50 ms (OWNED the owned shards, comma
//! separated, or `-`; EVENTS the objects its watch delivered; RECONCILES those that did
//! the work), and `left` once it has left the group after SIGTERM (then it exits).

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering::Relaxed},
    },
    time::Duration,
};

use futures::{StreamExt, future::ready};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api,
    runtime::{
        Controller, WatchStreamExt,
        controller::{Action, Config},
        reflector, watcher,
    },
};
use lock_core::{ElectedShards, ShardWork, Timing};
use lock_kube::{
    KubeBackend, ShardField, nodelay_client, server_shard_watch, shard_key, shard_label,
    shard_watch,
};
use lock_tests::Kube;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    signal::unix::{SignalKind, signal},
};

/// The scaling table's shards, label key and objects' label (as `scaling.rs` makes them).
const SHARDS: u32 = 16;
const LABEL_PREFIX: &str = "bench.example.com";
const RUN_LABEL: &str = "lock-bench-scaling";
/// The reconcile's IO, and how many reconciles run at once.
const WORK: Duration = Duration::from_millis(10);
const CONCURRENCY: u16 = 8;

#[path = "../replica_output.rs"]
mod replica_output;

use replica_output::{Never, emit};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Ok([kubeconfig, namespace, group, run, identity, mode]) = <[String; 6]>::try_from(args)
    else {
        eprintln!(
            "usage: lock-bench-shard-member KUBECONFIG NAMESPACE GROUP RUN IDENTITY label|server|filter"
        );
        std::process::exit(2);
    };
    let mut sigterm = signal(SignalKind::terminate()).expect("a SIGTERM handler");
    let kube = Kube::external(PathBuf::from(kubeconfig)).await;
    let client = nodelay_client(kube.config(false).await).expect("a client");
    let shards = ElectedShards::builder(
        KubeBackend::new(client.clone(), &namespace),
        group,
        identity,
        SHARDS,
    )
    .timing(Timing::default())
    .drain(Duration::from_secs(5))
    .build()
    .expect("valid shards");
    let config = watcher::Config::default().labels(&format!("{RUN_LABEL}={run}"));
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let watch = match mode.as_str() {
        "label" => shard_watch(maps, config, &shards, &shard_label(LABEL_PREFIX)).boxed(),
        "server" => {
            let namespace = namespace.clone();
            let api = move |client| Api::<ConfigMap>::namespaced(client, &namespace);
            server_shard_watch(client, api, config, &shards, ShardField::Uid).boxed()
        }
        "filter" => watcher(maps, config).default_backoff().boxed(),
        other => panic!("unknown mode {other:?}: label, server or filter"),
    };
    let work_on = move |shards: &ElectedShards, map: &ConfigMap| -> Option<ShardWork> {
        if mode == "server" {
            ShardField::Uid.work_on(shards, map)
        } else {
            shards.work_on(&shard_key(map))
        }
    };
    let (events, reconciles) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (store, writer) = reflector::store();
    let objects = {
        let events = events.clone();
        watch
            .reflect(writer)
            .applied_objects()
            .inspect(move |object| {
                if object.is_ok() {
                    events.fetch_add(1, Relaxed);
                }
            })
    };
    let resyncs = {
        let lines = BufReader::new(tokio::io::stdin()).lines();
        futures::stream::unfold(lines, |mut lines| async move {
            loop {
                match lines.next_line().await {
                    Ok(Some(line)) if line == "resync" => return Some(((), lines)),
                    Ok(Some(_)) => {}
                    _ => return None,
                }
            }
        })
    };
    let controller = {
        let (shards, reconciles) = (shards.clone(), reconciles.clone());
        Controller::for_stream(objects, store.clone())
            .with_config(Config::default().concurrency(CONCURRENCY))
            .reconcile_all_on(resyncs)
            .graceful_shutdown_on(async move {
                sigterm.recv().await;
            })
            .run(
                move |map: Arc<ConfigMap>, _: Arc<()>| {
                    let (shards, reconciles) = (shards.clone(), reconciles.clone());
                    let work = work_on(&shards, &map);
                    async move {
                        if let Some(_work) = work {
                            tokio::time::sleep(WORK).await;
                            reconciles.fetch_add(1, Relaxed);
                        }
                        Ok::<_, Never>(Action::await_change())
                    }
                },
                |_, _, _| Action::await_change(),
                Arc::new(()),
            )
            .for_each(|_| ready(()))
    };
    let status = {
        let (shards, store, events, reconciles) = (
            shards.clone(),
            store.clone(),
            events.clone(),
            reconciles.clone(),
        );
        async move {
            loop {
                let owned: Vec<String> =
                    shards.owned().borrow().iter().map(u32::to_string).collect();
                let owned = if owned.is_empty() {
                    "-".to_owned()
                } else {
                    owned.join(",")
                };
                emit(&format!(
                    "status {owned} {} {} {}",
                    store.len(),
                    events.load(Relaxed),
                    reconciles.load(Relaxed)
                ));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let member = {
        let shards = shards.clone();
        tokio::spawn(async move { shards.run().await })
    };
    tokio::spawn(status);
    // The controller ends at SIGTERM, once its reconciles in flight finished; then the
    // member leaves (its shards drained of work already).
    controller.await;
    shards.shutdown();
    match member.await {
        Ok(Ok(())) => emit("left"),
        Ok(Err(error)) => panic!("the member failed: {error}"),
        Err(error) => panic!("the member's task: {error}"),
    }
    // Not by returning: the runtime would wait for the blocking read of stdin.
    std::process::exit(0);
}
