//! The history of a sharded controller on a real apiserver: members of an elected-shards
//! group reconcile 1,000 ConfigMaps in label mode while the objects keep changing and
//! members join, leave gracefully, are killed and are cut off from the apiserver. Every
//! reconcile that wrote is recorded, and the history must show that no object was
//! reconciled by two members at overlapping times, that every object's last change was
//! reconciled by the owner of its shard, and that a member cut off past its lease has
//! its fenced write rejected.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api, ResourceExt,
    api::{ListParams, ObjectMeta, Patch, PatchParams, PostParams},
    runtime::{Controller, WatchStreamExt, controller::Action, reflector, watcher},
};
use lock_core::{ElectedShards, Error, Faulty, FencingToken, Timing, conformance::unique_name};
use lock_kube::{
    FencedPatch, KubeBackend, fenced_patch, nodelay_client, recorded_token, shard_key, shard_label,
    shard_label_value, shard_watch,
};
use lock_tests::{Kube, Proxy, waited};
use tokio::{task::JoinHandle, time::Instant};

const SHARDS: u32 = 12;
const OBJECTS: usize = 1_000;
const TTL: Duration = Duration::from_secs(3);
const LABEL_PREFIX: &str = "history.example.com";

/// One reconcile that sent a write: which member, under which token, and when it began
/// and when its write was acknowledged (`None`: abandoned at the shard's validity,
/// failed, or dropped with a killed member; such a write may still reach the server
/// later, where fencing and its resourceVersion precondition keep it from overwriting a
/// newer owner's write).
#[derive(Clone, Debug)]
struct Reconciled {
    object: String,
    member: &'static str,
    token: FencingToken,
    value: String,
    began: Instant,
    acknowledged: Option<Instant>,
    /// When the server answered the write, success or not (`None`: abandoned at the
    /// shard's validity, or dropped with a killed member).
    answered: Option<Instant>,
    /// When the shard's validity ended, as the write was sent: a write never answered may
    /// have acted until then (no other member may take the shard before).
    deadline: Instant,
}

impl Reconciled {
    /// Until when this reconcile may have been acting on the object.
    fn end(&self) -> Instant {
        self.answered.unwrap_or(self.deadline)
    }
}

type History = Arc<Mutex<Vec<Reconciled>>>;

/// A member, with its own connection to the apiserver through a proxy that can cut it
/// off, and a kube-runtime controller over its shard watch.
struct Member {
    name: &'static str,
    shards: ElectedShards,
    store: reflector::Store<ConfigMap>,
    maps: Api<ConfigMap>,
    proxy: Proxy,
    connection: Faulty<KubeBackend>,
    tasks: Vec<JoinHandle<()>>,
}

impl Member {
    async fn start(
        kube: &Kube,
        group: &str,
        run: &str,
        name: &'static str,
        history: &History,
    ) -> Self {
        let (config, proxy) = kube.proxied_config().await;
        let client = nodelay_client(config).expect("a client");
        let connection = Faulty::new(KubeBackend::new(client.clone(), kube.namespace()));
        let shards = ElectedShards::builder(connection.clone(), group, name, SHARDS)
            .timing(Timing::new(TTL))
            .max_members(4)
            .drain(Duration::from_secs(5))
            .build()
            .expect("valid shards");
        let maps: Api<ConfigMap> = Api::namespaced(client, kube.namespace());
        let (store, writer) = reflector::store();
        let config = watcher::Config::default().labels(&format!("lock-test={run}"));
        let objects = shard_watch(maps.clone(), config, &shards, &shard_label(LABEL_PREFIX))
            .reflect(writer)
            .applied_objects();
        let controller = {
            let (shards, maps, history) = (shards.clone(), maps.clone(), history.clone());
            Controller::for_stream(objects, store.clone())
                .run(
                    move |map: Arc<ConfigMap>, _: Arc<()>| {
                        let (shards, maps, history) =
                            (shards.clone(), maps.clone(), history.clone());
                        async move {
                            reconcile(name, &shards, &maps, &map, &history).await?;
                            Ok(Action::await_change())
                        }
                    },
                    // As a controller would: a write that failed is tried again.
                    |_, _: &Unfinished, _| Action::requeue(Duration::from_millis(200)),
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
        Self {
            name,
            shards,
            store,
            maps,
            proxy,
            connection,
            tasks: vec![running, tokio::spawn(controller)],
        }
    }

    fn owned(&self) -> BTreeSet<u32> {
        self.shards.owned().borrow().clone()
    }

    fn cached(&self) -> BTreeSet<String> {
        self.store
            .state()
            .iter()
            .filter_map(|map| map.metadata.name.clone())
            .collect()
    }

    /// Killed: nothing more reaches the server, not even the release of its locks.
    fn kill(self) {
        self.connection.partition(true);
        self.proxy.cut();
        for task in &self.tasks {
            task.abort();
        }
    }

    async fn leave(self) {
        self.shards.shutdown();
        let (running, rest) = self.tasks.split_first().expect("the member's tasks");
        for _ in 0..200 {
            if running.is_finished() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(running.is_finished(), "{} left within 20 s", self.name);
        for task in rest {
            task.abort();
        }
    }
}

/// A reconcile whose write did not go through: tried again shortly, if the object is
/// still this member's then.
#[derive(Debug, thiserror::Error)]
#[error("the write did not go through")]
struct Unfinished;

/// Brings the object's `seen` up to its `value`, fenced with its shard's token and
/// bounded by the shard's validity; records the write if it was acknowledged.
async fn reconcile(
    member: &'static str,
    shards: &ElectedShards,
    maps: &Api<ConfigMap>,
    map: &ConfigMap,
    history: &History,
) -> Result<(), Unfinished> {
    let Some(work) = shards.work_on(&shard_key(map)) else {
        return Ok(()); // not (or no longer) this member's
    };
    let began = Instant::now();
    let data = map.data.clone().unwrap_or_default();
    let Some(value) = data.get("value").cloned() else {
        return Ok(());
    };
    if data.get("seen") == Some(&value) {
        return Ok(());
    }
    let Some(deadline) = work.validity().valid_until() else {
        return Err(Unfinished);
    };
    let name = map.metadata.name.clone().expect("a name");
    let patch = FencedPatch::Merge(serde_json::json!({ "data": { "seen": value } }));
    // Recorded as sent before it is sent: a member killed meanwhile drops the write's
    // future, but the write may have reached the server.
    let sent = {
        let mut history = history.lock().unwrap_or_else(PoisonError::into_inner);
        history.push(Reconciled {
            object: name.clone(),
            member,
            token: work.token(),
            value,
            began,
            acknowledged: None,
            answered: None,
            deadline,
        });
        history.len() - 1
    };
    let write = fenced_patch(maps, &name, work.token(), &patch);
    let outcome = tokio::time::timeout_at(deadline, write).await;
    let written = matches!(outcome, Ok(Ok(_)));
    if let Ok(answer) = &outcome {
        let now = Instant::now();
        let mut history = history.lock().unwrap_or_else(PoisonError::into_inner);
        history[sent].answered = Some(now);
        if answer.is_ok() {
            history[sent].acknowledged = Some(now);
        }
    }
    if written {
        return Ok(());
    }
    Err(Unfinished)
}

/// The shard of each object, by name.
async fn create_objects(
    maps: &Api<ConfigMap>,
    namespace: &str,
    run: &str,
) -> BTreeMap<String, u32> {
    stream::iter(0..OBJECTS)
        .map(|i| async move {
            let name = format!("{run}-{i}");
            let mut map = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(namespace.to_owned()),
                    ..ObjectMeta::default()
                },
                data: Some(
                    [("value", "0"), ("seen", "0")]
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .into(),
                ),
                ..ConfigMap::default()
            };
            let shard = shard_label_value(&shard_key(&map), SHARDS);
            map.metadata.labels = Some(
                [
                    ("lock-test".to_owned(), run.to_owned()),
                    (shard_label(LABEL_PREFIX), shard.clone()),
                ]
                .into(),
            );
            maps.create(&PostParams::default(), &map).await?;
            Ok::<_, kube::Error>((name, shard.parse::<u32>().expect("a shard")))
        })
        .buffer_unordered(16)
        .try_collect()
        .await
        .expect("create the objects")
}

/// Keeps changing random objects' `value` (about 50 a second) until aborted; returns
/// each object's last value, by name.
fn churn(
    maps: Api<ConfigMap>,
    names: Vec<String>,
    changed: Arc<Mutex<BTreeMap<String, String>>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        for step in 1_u64.. {
            let name = &names[usize::try_from(step * 7919).unwrap_or(0) % names.len()];
            let value = step.to_string();
            let patch = serde_json::json!({ "data": { "value": value } });
            if maps
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .is_ok()
            {
                changed
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(name.clone(), value);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
}

/// Waits until `members` split the shards fairly and disjointly, each caching exactly
/// its shards' objects.
async fn settled(members: &[&Member], shard_of: &BTreeMap<String, u32>, moment: &str) {
    let objects_of = |owned: &BTreeSet<u32>| -> BTreeSet<String> {
        shard_of
            .iter()
            .filter(|(_, shard)| owned.contains(shard))
            .map(|(name, _)| name.clone())
            .collect()
    };
    let fair = |members: &[&Member]| {
        let owned: Vec<BTreeSet<u32>> = members.iter().map(|member| member.owned()).collect();
        let all: BTreeSet<u32> = owned.iter().flatten().copied().collect();
        let total: usize = owned.iter().map(BTreeSet::len).sum();
        let (least, most) = (
            owned.iter().map(BTreeSet::len).min().unwrap_or(0),
            owned.iter().map(BTreeSet::len).max().unwrap_or(0),
        );
        total == SHARDS as usize
            && all.len() == SHARDS as usize
            && most - least <= 1
            && members
                .iter()
                .zip(&owned)
                .all(|(member, owned)| member.cached() == objects_of(owned))
    };
    if waited(Duration::from_secs(30), || fair(members))
        .await
        .is_none()
    {
        let state: Vec<String> = members
            .iter()
            .map(|member| {
                format!(
                    "{} owns {:?}, caches {}",
                    member.name,
                    member.owned(),
                    member.cached().len()
                )
            })
            .collect();
        panic!("{moment}: not settled within 30 s: {state:?}");
    }
    println!(
        "{moment}: {}",
        members
            .iter()
            .map(|member| format!(
                "{} {} shards {} objects",
                member.name,
                member.owned().len(),
                member.cached().len()
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_joining_leaving_killed_and_cut_off_never_reconcile_an_object_at_once() {
    let kube = Kube::shared().await;
    let (group, run) = (unique_name("history"), unique_name("history-objects"));
    let admin: Api<ConfigMap> = Api::namespaced(kube.admin().await, kube.namespace());
    let shard_of = create_objects(&admin, kube.namespace(), &run).await;
    let history = History::default();
    let changed = Arc::new(Mutex::new(BTreeMap::new()));

    let a = Member::start(kube, &group, &run, "member-a", &history).await;
    let b = Member::start(kube, &group, &run, "member-b", &history).await;
    let c = Member::start(kube, &group, &run, "member-c", &history).await;
    settled(&[&a, &b, &c], &shard_of, "three members").await;
    let churning = churn(
        admin.clone(),
        shard_of.keys().cloned().collect(),
        changed.clone(),
    );

    // A fourth joins.
    let d = Member::start(kube, &group, &run, "member-d", &history).await;
    settled(&[&a, &b, &c, &d], &shard_of, "member-d joined").await;

    // One leaves gracefully: its reconciles drain before its shards are released.
    b.leave().await;
    settled(&[&a, &c, &d], &shard_of, "member-b left").await;

    // One is killed: its shards are taken over after their TTL.
    c.kill();
    settled(&[&a, &d], &shard_of, "member-c killed").await;

    // One is cut off from the apiserver past its TTL, keeping what it last knew.
    let shard = *a.owned().first().expect("a owns a shard");
    let stale = a.shards.token(shard).expect("a holds its shard");
    let object = shard_of
        .iter()
        .find(|(_, of)| **of == shard)
        .map(|(name, _)| name.clone())
        .expect("an object of the shard");
    a.proxy.blackhole();
    let taken = || d.shards.token(shard).is_some_and(|token| token > stale);
    assert!(
        waited(TTL * 4, taken).await.is_some(),
        "member-d took shard {shard} over from the cut-off member-a"
    );
    // The new owner reconciles a change of the object, recording its token on it...
    let patch = serde_json::json!({ "data": { "value": "after-the-cut" } });
    admin
        .patch(&object, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("change the object");
    changed
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(object.clone(), "after-the-cut".to_owned());
    let recorded = || async {
        let map = admin.get(&object).await.ok()?;
        recorded_token(&map, &object)
            .ok()?
            .filter(|token| *token > stale)
    };
    let mut newer = None;
    for _ in 0..100 {
        newer = recorded().await;
        if newer.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let Some(newer) = newer else {
        let map = admin.get(&object).await.expect("get");
        let cached = d
            .store
            .state()
            .into_iter()
            .find(|m| m.metadata.name.as_deref() == Some(&object));
        panic!(
            "member-d did not reconcile {object} (shard {shard}, stale {stale}) within 10 s: it is {:?} {:?}; d owns {:?} with token {:?}, caches it as {:?}",
            map.metadata.annotations,
            map.data,
            d.owned(),
            d.shards.token(shard),
            cached.map(|m| m.data.clone())
        );
    };
    // ...and the cut-off member's write with its old token, once it reaches the server,
    // is rejected.
    a.proxy.heal();
    let write = FencedPatch::Merge(serde_json::json!({ "data": { "seen": "stale" } }));
    match fenced_patch(&a.maps, &object, stale, &write).await {
        Err(Error::StaleToken { presented, current }) => {
            assert_eq!((presented, current), (stale, newer));
        }
        other => panic!("a stale member's fenced write must be rejected, got {other:?}"),
    }
    // It rejoins by itself.
    settled(&[&a, &d], &shard_of, "member-a back").await;

    // Every change is reconciled.
    churning.abort();
    let _ = churning.await;
    let changed = changed
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let caught_up = || async {
        let listed = admin
            .list(&ListParams::default().labels(&format!("lock-test={run}")))
            .await
            .ok()?;
        let behind = listed
            .items
            .iter()
            .filter(|map| {
                let data = map.data.clone().unwrap_or_default();
                data.get("seen") != data.get("value")
            })
            .count();
        (behind == 0).then_some(listed.items)
    };
    let mut last = None;
    for _ in 0..60 {
        last = caught_up().await;
        if last.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let Some(objects) = last else {
        let listed = admin
            .list(&ListParams::default().labels(&format!("lock-test={run}")))
            .await
            .expect("list");
        let behind: Vec<String> = listed
            .items
            .iter()
            .filter(|map| {
                let data = map.data.clone().unwrap_or_default();
                data.get("seen") != data.get("value")
            })
            .map(|map| {
                format!(
                    "{:?} (shard {:?}): {:?}",
                    map.metadata.name,
                    map.labels().get(&shard_label(LABEL_PREFIX)),
                    map.data
                )
            })
            .collect();
        panic!(
            "not every change reconciled within 30 s: {} behind: {behind:?}; a owns {:?}, d owns {:?}",
            behind.len(),
            a.owned(),
            d.owned()
        );
    };
    let history = history
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    println!(
        "{} objects changed of {}; {} reconciles wrote, {} more abandoned, failed or dropped their write",
        changed.len(),
        objects.len(),
        history.iter().filter(|r| r.acknowledged.is_some()).count(),
        history.iter().filter(|r| r.acknowledged.is_none()).count(),
    );

    // Each changed object's last value was written by a reconcile under the token
    // recorded on it: the owner of its shard then (acknowledged, or sent by the member
    // that was cut off and reaching the server when the cut healed).
    for map in &objects {
        let name = map.metadata.name.clone().expect("a name");
        if !changed.contains_key(&name) {
            continue;
        }
        // The value the object ended with (the churn's last patch may have landed as it
        // was stopped, after `changed` was last written).
        let data = map.data.clone().unwrap_or_default();
        let value = &data["value"];
        let token = recorded_token(map, &name).expect("a well-formed token");
        let of_it: Vec<&Reconciled> = history.iter().filter(|r| r.object == name).collect();
        assert!(
            of_it
                .iter()
                .any(|r| &r.value == value && Some(r.token) == token),
            "{name}'s last change ({value}) was reconciled by its shard's owner: it is {:?}, \
             recorded token {token:?}, reconciled {of_it:?}",
            map.data
        );
    }
    // No object was reconciled by two members at overlapping times: each reconcile's
    // time runs from its start to its acknowledgement, or, for a write never
    // acknowledged (abandoned, failed, or dropped with a killed member), to the end of
    // its shard's validity.
    let mut by_object: BTreeMap<&str, Vec<&Reconciled>> = BTreeMap::new();
    for reconciled in &history {
        by_object
            .entry(&reconciled.object)
            .or_default()
            .push(reconciled);
    }
    for (object, reconciles) in by_object {
        for (i, first) in reconciles.iter().enumerate() {
            for second in &reconciles[i + 1..] {
                let overlap = first.began < second.end() && second.began < first.end();
                assert!(
                    first.member == second.member || !overlap,
                    "{object} reconciled at once by {first:?} and {second:?}"
                );
            }
        }
    }
    a.leave().await;
    d.leave().await;
}
