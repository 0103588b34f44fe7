//! Sharded controllers that scale their watch, not only their reconciles: N members of
//! one `ElectedShards` group over 10,000 labelled ConfigMaps, each watching either only
//! its own shards' objects (label mode, `lock_kube::shard_watch`) or every object and
//! filtering with `owns` (filter mode). Per member: the objects it caches, the watch
//! events it receives during a churn of updates, and the events of objects it owns. In
//! one process (so no per-member memory figure: the cached objects stand for it).

use std::{
    collections::BTreeSet,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering::Relaxed},
    },
    time::Duration,
};

use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api,
    api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams},
    runtime::{WatchStreamExt, reflector, watcher},
};
use lock_core::{ElectedShards, Timing};
use lock_kube::{
    KubeBackend, nodelay_client, shard_key, shard_label, shard_label_value, shard_watch,
};
use lock_tests::Kube;
use tokio::{
    task::JoinHandle,
    time::{Instant, sleep},
};

use crate::figures::Figure;

/// The objects, the shards, and the group sizes measured.
const OBJECTS: usize = 10_000;
const SHARDS: u32 = 16;
pub const MEMBERS: [u32; 3] = [1, 2, 4];
/// The churn: this many updates, spread over `CHURN_TIME`.
const UPDATES: usize = 400;
const CHURN_TIME: Duration = Duration::from_secs(10);
const LABEL_PREFIX: &str = "bench.example.com";
const RUN_LABEL: &str = "lock-bench-scaling";

/// How a member watches.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    Label,
    Filter,
}

pub const MODES: [Mode; 2] = [Mode::Label, Mode::Filter];

/// The run's labelled objects.
pub struct Objects {
    api: Api<ConfigMap>,
    run: String,
}

impl Objects {
    pub async fn create(kube: &Kube) -> Self {
        let client = nodelay_client(kube.config(false).await).expect("a client");
        let api: Api<ConfigMap> = Api::namespaced(client, kube.namespace());
        let run = lock_core::conformance::unique_name("scaling");
        let namespace = kube.namespace().to_owned();
        stream::iter(0..OBJECTS)
            .map(|i| {
                let (api, run, namespace) = (api.clone(), run.clone(), namespace.clone());
                async move {
                    let mut map = ConfigMap {
                        metadata: ObjectMeta {
                            name: Some(format!("{run}-{i}")),
                            namespace: Some(namespace),
                            ..ObjectMeta::default()
                        },
                        data: Some([("gen".to_owned(), "0".to_owned())].into()),
                        ..ConfigMap::default()
                    };
                    let shard = shard_label_value(&shard_key(&map), SHARDS);
                    map.metadata.labels = Some(
                        [
                            (RUN_LABEL.to_owned(), run),
                            (shard_label(LABEL_PREFIX), shard),
                        ]
                        .into(),
                    );
                    api.create(&PostParams::default(), &map).await.map(drop)
                }
            })
            .buffer_unordered(32)
            .try_collect::<()>()
            .await
            .expect("the ConfigMaps are created");
        Self { api, run }
    }

    pub async fn delete(self) {
        let selector = ListParams::default().labels(&format!("{RUN_LABEL}={}", self.run));
        if let Err(error) = self
            .api
            .delete_collection(&DeleteParams::default(), &selector)
            .await
        {
            eprintln!("deleting the ConfigMaps: {error}");
        }
    }
}

/// A member: its shards, its cache, and the events its watch delivered.
struct Member {
    shards: ElectedShards,
    store: reflector::Store<ConfigMap>,
    events: Arc<AtomicUsize>,
    owned_events: Arc<AtomicUsize>,
    tasks: Vec<JoinHandle<()>>,
}

async fn member(kube: &Kube, objects: &Objects, group: &str, name: String, mode: Mode) -> Member {
    let client = nodelay_client(kube.config(false).await).expect("a client");
    let shards = ElectedShards::builder(
        KubeBackend::new(client.clone(), kube.namespace()),
        group,
        name,
        SHARDS,
    )
    .timing(Timing::default())
    .build()
    .expect("valid shards");
    let maps: Api<ConfigMap> = Api::namespaced(client, kube.namespace());
    let config = watcher::Config::default().labels(&format!("{RUN_LABEL}={}", objects.run));
    let watch = match mode {
        Mode::Label => shard_watch(maps, config, &shards, &shard_label(LABEL_PREFIX)).boxed(),
        Mode::Filter => watcher(maps, config).default_backoff().boxed(),
    };
    let (store, writer) = reflector::store();
    let (events, owned_events) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let watching = {
        let (events, owned_events, shards) = (events.clone(), owned_events.clone(), shards.clone());
        watch
            .reflect(writer)
            .applied_objects()
            .for_each(move |object| {
                if let Ok(object) = object {
                    events.fetch_add(1, Relaxed);
                    if shards.owns(&shard_key(&object)) {
                        owned_events.fetch_add(1, Relaxed);
                    }
                }
                futures::future::ready(())
            })
    };
    let running = {
        let shards = shards.clone();
        async move {
            let _ = shards.run().await;
        }
    };
    Member {
        shards,
        store,
        events,
        owned_events,
        tasks: vec![tokio::spawn(watching), tokio::spawn(running)],
    }
}

/// One repetition: per member (means), objects cached, watch events during the churn,
/// and those of objects it owns.
pub async fn once(kube: &Kube, objects: &Objects, mode: Mode, members: u32) -> [f64; 3] {
    let group = lock_core::conformance::unique_name("scaling-group");
    let mut group_members = Vec::new();
    for i in 0..members {
        group_members.push(member(kube, objects, &group, format!("member-{i}"), mode).await);
    }
    // Settled: shares even, every member's cache complete for its mode.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let owned: Vec<BTreeSet<u32>> = group_members
            .iter()
            .map(|m| m.shards.owned().borrow().clone())
            .collect();
        let shares: Vec<usize> = owned.iter().map(BTreeSet::len).collect();
        let balanced = shares.iter().sum::<usize>() == SHARDS as usize
            && shares.iter().max().unwrap_or(&0) - shares.iter().min().unwrap_or(&0) <= 1;
        let cached: usize = group_members.iter().map(|m| m.store.state().len()).sum();
        let complete = match mode {
            Mode::Label => cached == OBJECTS,
            Mode::Filter => cached == OBJECTS * members as usize,
        };
        if balanced && complete {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the group did not settle within 120 s"
        );
        sleep(Duration::from_millis(100)).await;
    }
    let cached: f64 = group_members
        .iter()
        .map(|m| m.store.state().len() as f64)
        .sum::<f64>()
        / f64::from(members);
    let before: Vec<(usize, usize)> = group_members
        .iter()
        .map(|m| (m.events.load(Relaxed), m.owned_events.load(Relaxed)))
        .collect();
    // The churn: updates spread evenly over the objects and the time.
    let pause = CHURN_TIME / UPDATES as u32;
    let churn = lock_core::conformance::unique_name("churn"); // every update changes the object
    for update in 0..UPDATES {
        let name = format!("{}-{}", objects.run, update * (OBJECTS / UPDATES));
        let patch = serde_json::json!({ "data": { "gen": format!("{churn}-{update}") } });
        objects
            .api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("an update");
        sleep(pause).await;
    }
    sleep(Duration::from_secs(1)).await; // the last events arrive
    let (events, owned): (f64, f64) = group_members.iter().zip(&before).fold(
        (0.0, 0.0),
        |(events, owned), (m, (events_before, owned_before))| {
            (
                events + (m.events.load(Relaxed) - events_before) as f64,
                owned + (m.owned_events.load(Relaxed) - owned_before) as f64,
            )
        },
    );
    for m in &group_members {
        m.shards.shutdown();
    }
    sleep(Duration::from_secs(1)).await;
    for m in group_members {
        for task in m.tasks {
            task.abort();
        }
    }
    [
        cached,
        events / f64::from(members),
        owned / f64::from(members),
    ]
}

/// The table: a row per mode and group size.
pub struct Table {
    rows: Vec<((Mode, u32), Vec<Figure>)>,
}

const COLUMNS: [&str; 3] = [
    "objects cached per member",
    "watch events per member during the churn",
    "of them, of objects it owns",
];

impl Table {
    pub fn new() -> Self {
        let rows = MODES
            .iter()
            .flat_map(|mode| {
                MEMBERS
                    .iter()
                    .map(move |members| ((*mode, *members), vec![Figure::default(); COLUMNS.len()]))
            })
            .collect();
        Self { rows }
    }

    pub fn record(&mut self, row: (Mode, u32), values: [f64; 3]) {
        if let Some((_, figures)) = self.rows.iter_mut().find(|(r, _)| *r == row) {
            for (figure, value) in figures.iter_mut().zip(values) {
                figure.push(value);
            }
        }
    }

    pub fn markdown(&self) -> String {
        let mut out = format!(
            "\n### Sharded controllers: {OBJECTS} ConfigMaps, {SHARDS} shards, {UPDATES} updates over {CHURN_TIME:?}\n\n| mode | members | {} |\n|---|---|{}\n",
            COLUMNS.join(" | "),
            "---|".repeat(COLUMNS.len())
        );
        for ((mode, members), figures) in &self.rows {
            let cells: Vec<String> = figures.iter().map(Figure::show).collect();
            let mode = match mode {
                Mode::Label => "label (`shard_watch`)",
                Mode::Filter => "filter (every object, `owns`)",
            };
            out += &format!("| {mode} | {members} | {} |\n", cells.join(" | "));
        }
        out
    }
}
