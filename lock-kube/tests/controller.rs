//! A kube-runtime controller run only while leading, on a real kube-apiserver: one
//! replica reconciles at a time, SIGTERM hands over after the in-flight reconciles
//! finish, and a frozen former leader's fenced writes (server-side apply of an owned
//! object, a status write, an update) are rejected.

use std::{
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicUsize, Ordering::SeqCst},
    },
    time::Duration,
};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api,
    api::{ObjectMeta, PatchParams, PostParams},
    runtime::{Controller, controller::Action, watcher},
};
use lock_core::{
    Error, Faulty, FencingToken, LeaderElector, Lock, Timing, conformance::unique_name,
};
use lock_kube::{
    KubeBackend, WarmCache, fenced_apply, fenced_status, fenced_update, nodelay_client,
};
use lock_tests::{Kube, Proxy, Widget, eventually, waited};
use serde_json::json;
use tokio::{
    task::JoinHandle,
    time::{Instant, sleep},
};

const TTL: Duration = Duration::from_secs(3);
const RECONCILE_TIME: Duration = Duration::from_millis(300);

/// What one replica did, across its terms.
#[derive(Default)]
struct Activity {
    reconciling: AtomicUsize,
    started: AtomicUsize,
    finished: AtomicUsize,
    stale_writes: AtomicUsize,
    first_start: Mutex<Option<Instant>>,
    last_end: Mutex<Option<Instant>>,
    /// Each widget reconciled, with the `spec.size` it had then.
    seen: Mutex<Vec<(String, i64)>>,
}

/// The reconciler's context for one term.
struct Term {
    widgets: Api<Widget>,
    children: Api<ConfigMap>,
    token: FencingToken,
    activity: Arc<Activity>,
}

/// The field manager of the controller's server-side applies.
const MANAGER: &str = "widget-controller";

/// The two writes a controller makes for a widget, fenced with `token`: its child
/// ConfigMap by server-side apply, and its status.
async fn write_widget(
    widgets: &Api<Widget>,
    children: &Api<ConfigMap>,
    name: &str,
    token: FencingToken,
    writer: &str,
) -> Result<(), Error> {
    let child = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "data": { "writer": writer, "token": token.to_string() },
    });
    let params = PatchParams::apply(MANAGER).force();
    fenced_apply(children, &format!("{name}-child"), token, &params, &child).await?;
    let status = json!({ "writer": writer, "token": token.to_string() });
    fenced_status(widgets, name, token, &status).await?;
    Ok(())
}

async fn reconcile(object: Arc<Widget>, term: Arc<Term>) -> Result<Action, Error> {
    let activity = &term.activity;
    activity.reconciling.fetch_add(1, SeqCst);
    activity.started.fetch_add(1, SeqCst);
    activity
        .first_start
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get_or_insert_with(Instant::now);
    let name = object.metadata.name.clone().unwrap_or_default();
    let size = object.spec["size"].as_i64().unwrap_or(-1);
    activity
        .seen
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push((name.clone(), size));
    sleep(RECONCILE_TIME).await; // the work
    let writer = term.token.to_string();
    let written = write_widget(&term.widgets, &term.children, &name, term.token, &writer).await;
    if matches!(written, Err(Error::StaleToken { .. })) {
        activity.stale_writes.fetch_add(1, SeqCst);
    }
    *activity
        .last_end
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
    activity.finished.fetch_add(1, SeqCst);
    activity.reconciling.fetch_sub(1, SeqCst);
    written.map(|_| Action::requeue(Duration::from_millis(50)))
}

fn error_policy(_: Arc<Widget>, _: &Error, _: Arc<Term>) -> Action {
    Action::requeue(Duration::from_millis(100))
}

/// One replica of the controller: an elector whose work is a kube-runtime Controller
/// that shuts down gracefully when the replica steps down.
struct Replica {
    elector: Arc<LeaderElector>,
    activity: Arc<Activity>,
    warm: Option<Arc<WarmCache<Widget>>>,
    running: JoinHandle<lock_core::Result<()>>,
    /// The slow connection of a [`Cache::WarmSlowList`] cache.
    _proxy: Option<Proxy>,
}

impl Replica {
    /// What the replica is doing, for failure messages.
    fn state(&self) -> String {
        format!(
            "leading: {}, reconciles started: {}, cache: {:?}, running: {}",
            self.elector.is_leader(),
            self.activity.started.load(SeqCst),
            self.warm,
            !self.running.is_finished()
        )
    }
}

/// How a replica's controller gets its cache.
#[derive(Clone, Copy, PartialEq)]
enum Cache {
    /// Built when the term starts: a list of every object first.
    Cold,
    /// A [`WarmCache`] filled while following.
    Warm,
    /// A [`WarmCache`] whose watch has 500 ms of latency each way, so that its first
    /// list ends seconds after the replica's first term began.
    WarmSlowList,
}

/// Creates `count` widgets labelled `lock-test=<label>` (`<label>-<i>`, size `i`), the
/// objects a replica's controller watches; returns the API and their names.
async fn labelled_widgets(kube: &Kube, label: &str, count: usize) -> (Api<Widget>, Vec<String>) {
    kube.widgets(true).await;
    let widgets: Api<Widget> = Api::namespaced(kube.admin().await, kube.namespace());
    let names: Vec<String> = (0..count).map(|i| format!("{label}-{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        let mut widget = Widget::new(name, json!({ "size": i }));
        widget.metadata.labels = Some([("lock-test".to_owned(), label.to_owned())].into());
        widgets
            .create(&PostParams::default(), &widget)
            .await
            .expect("create a widget");
    }
    (widgets, names)
}

async fn replica(kube: &Kube, lease: &str, label: &str, identity: &str, cache: Cache) -> Replica {
    let client = nodelay_client(kube.config(false).await).expect("a client");
    let lock = Lock::builder(
        KubeBackend::new(client.clone(), kube.namespace()),
        lease,
        identity,
    )
    .timing(Timing::new(TTL))
    .build()
    .expect("a valid lock");
    let elector = Arc::new(LeaderElector::new(lock).with_drain_timeout(Duration::from_secs(5)));
    let activity = Arc::new(Activity::default());
    let widgets: Api<Widget> = Api::namespaced(client.clone(), kube.namespace());
    let config = watcher::Config::default().labels(&format!("lock-test={label}"));
    let (warm, proxy) = match cache {
        Cache::Cold => (None, None),
        Cache::Warm => (
            Some(WarmCache::spawn(widgets.clone(), config.clone())),
            None,
        ),
        Cache::WarmSlowList => {
            let (slow, proxy) = kube.proxied_config().await;
            proxy.set_latency(Duration::from_millis(500));
            let slow = kube::Client::try_from(slow).expect("a client");
            let widgets = Api::namespaced(slow, kube.namespace());
            (Some(WarmCache::spawn(widgets, config.clone())), Some(proxy))
        }
    };
    let warm = warm.map(Arc::new);
    let running = {
        let (elector, activity, warm) = (elector.clone(), activity.clone(), warm.clone());
        let children: Api<ConfigMap> = Api::namespaced(client, kube.namespace());
        tokio::spawn(async move {
            elector
                .run(|leadership| {
                    let term = Arc::new(Term {
                        widgets: widgets.clone(),
                        children: children.clone(),
                        token: leadership.token(),
                        activity: activity.clone(),
                    });
                    let controller = match &warm {
                        Some(warm) => Controller::for_shared_stream(warm.trigger(), warm.store()),
                        None => Controller::new(widgets.clone(), config.clone()),
                    };
                    controller
                        .graceful_shutdown_on(leadership.stopped())
                        .run(reconcile, error_policy, term)
                        .for_each(|_| futures::future::ready(()))
                })
                .await
        })
    };
    Replica {
        elector,
        activity,
        warm,
        running,
        _proxy: proxy,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_reconciles_at_a_time_and_sigterm_hands_over_after_draining() {
    let kube = Kube::shared().await;
    let (lease, label) = (unique_name("controller"), unique_name("objects"));
    labelled_widgets(kube, &label, 2).await;

    let first = replica(kube, &lease, &label, "replica-1", Cache::Cold).await;
    eventually(
        "the first replica reconciles",
        Duration::from_secs(10),
        || first.activity.started.load(SeqCst) > 0,
    )
    .await;
    let second = replica(kube, &lease, &label, "replica-2", Cache::Cold).await;

    let sampling = {
        let (a, b) = (first.activity.clone(), second.activity.clone());
        tokio::spawn(async move {
            let (mut samples, mut most) = (0, 0);
            let deadline = Instant::now() + Duration::from_secs(4);
            while Instant::now() < deadline {
                let reconciling = usize::from(a.reconciling.load(SeqCst) > 0)
                    + usize::from(b.reconciling.load(SeqCst) > 0);
                (samples, most) = (samples + 1, most.max(reconciling));
                sleep(Duration::from_millis(5)).await;
            }
            (samples, most)
        })
    };
    sleep(Duration::from_secs(1)).await;
    assert_eq!(
        second.activity.started.load(SeqCst),
        0,
        "the standby does not reconcile"
    );

    // SIGTERM to the leader: its controller stops taking work, finishes the reconciles
    // in flight, the lease is released, and the standby starts reconciling.
    eventually(
        "the leader is in the middle of a reconcile",
        Duration::from_secs(2),
        || first.activity.reconciling.load(SeqCst) > 0,
    )
    .await;
    let terminated_at = Instant::now();
    first.elector.shutdown();
    let handover = eventually("the standby reconciles", Duration::from_secs(5), || {
        second.activity.started.load(SeqCst) > 0
    })
    .await;
    first
        .running
        .await
        .expect("the first replica ran")
        .expect("it stopped cleanly");
    println!("SIGTERM → the standby reconciles: {handover:?}");
    // Speed is lock-bench's to measure; here only that the hand-over followed the
    // release, not the lease's expiry.
    assert!(
        handover < TTL,
        "the standby took {handover:?} to start reconciling: it waited for the lease to expire"
    );
    let (started, finished) = (
        first.activity.started.load(SeqCst),
        first.activity.finished.load(SeqCst),
    );
    assert_eq!(
        started, finished,
        "every reconcile in flight at SIGTERM completed"
    );
    let last_end = first
        .activity
        .last_end
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .expect("it reconciled");
    let first_start = second
        .activity
        .first_start
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .expect("it reconciled");
    assert!(
        last_end > terminated_at,
        "the reconcile in flight at SIGTERM finished after it"
    );
    assert!(
        last_end < first_start,
        "the old leader's last reconcile ended {:?} after SIGTERM, the new one's first began {:?} after",
        last_end.saturating_duration_since(terminated_at),
        first_start.saturating_duration_since(terminated_at)
    );

    let (samples, most) = sampling.await.expect("the sampler");
    assert!(samples > 100, "only {samples} samples");
    assert!(most <= 1, "{most} replicas reconciled at once");
    assert_eq!(
        first.activity.stale_writes.load(SeqCst) + second.activity.stale_writes.load(SeqCst),
        0
    );
    second.elector.shutdown();
    second
        .running
        .await
        .expect("the second replica ran")
        .expect("it stopped cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_former_leader_frozen_past_its_lease_gets_stale_token_and_the_new_write_stands() {
    let kube = Kube::shared().await;
    let (lease, object) = (unique_name("frozen"), unique_name("state"));
    let api: Api<ConfigMap> = Api::namespaced(kube.admin().await, kube.namespace());
    let map = ConfigMap {
        metadata: ObjectMeta {
            name: Some(object.clone()),
            ..ObjectMeta::default()
        },
        ..ConfigMap::default()
    };
    api.create(&PostParams::default(), &map)
        .await
        .expect("create");
    let set = |value: &'static str| {
        move |map: &mut ConfigMap| {
            map.data
                .get_or_insert_with(Default::default)
                .insert("writer".into(), value.into());
        }
    };

    let connection = Faulty::new(KubeBackend::new(kube.admin().await, kube.namespace()));
    let old = Lock::builder(connection.clone(), &lease, "old")
        .timing(Timing::new(TTL))
        .build()
        .expect("valid");
    let old_guard = old.acquire().await.expect("the old leader acquires");
    let old_token = old_guard.token();
    fenced_update(&api, &object, old_token, set("old"))
        .await
        .expect("the old leader writes");
    kube.widgets(true).await;
    let widgets: Api<Widget> = Api::namespaced(kube.admin().await, kube.namespace());
    let widget = Widget::new(&object, json!({ "size": 1 }));
    widgets
        .create(&PostParams::default(), &widget)
        .await
        .expect("create a widget");
    write_widget(&widgets, &api, &object, old_token, "old")
        .await
        .expect("the old leader applies its child and writes the status");

    // The old leader freezes: nothing it sends arrives, and it does not look at its guard.
    connection.freeze(true);
    let new = Lock::builder(
        KubeBackend::new(kube.admin().await, kube.namespace()),
        &lease,
        "new",
    )
    .timing(Timing::new(TTL))
    .build()
    .expect("valid");
    let new_guard = new
        .acquire_timeout(TTL * 3)
        .await
        .expect("the new leader takes over after the lease duration");
    fenced_update(&api, &object, new_guard.token(), set("new"))
        .await
        .expect("the new leader writes");
    write_widget(&widgets, &api, &object, new_guard.token(), "new")
        .await
        .expect("the new leader applies its child and writes the status");

    // It wakes up and writes with its old token: rejected.
    connection.freeze(false);
    match fenced_update(&api, &object, old_token, set("old, late")).await {
        Err(Error::StaleToken { presented, current }) => {
            assert_eq!((presented, current), (old_token, new_guard.token()))
        }
        other => panic!("expected StaleToken, got {other:?}"),
    }
    let stands = api
        .get(&object)
        .await
        .expect("get")
        .data
        .and_then(|d| d.get("writer").cloned());
    assert_eq!(stands.as_deref(), Some("new"));
    // Its server-side apply and its status write, late: rejected too.
    match write_widget(&widgets, &api, &object, old_token, "old, late").await {
        Err(Error::StaleToken { presented, current }) => {
            assert_eq!((presented, current), (old_token, new_guard.token()))
        }
        other => panic!("expected StaleToken for the apply, got {other:?}"),
    }
    match fenced_status(
        &widgets,
        &object,
        old_token,
        &json!({ "writer": "old, late" }),
    )
    .await
    {
        Err(Error::StaleToken { presented, current }) => {
            assert_eq!((presented, current), (old_token, new_guard.token()))
        }
        other => panic!("expected StaleToken for the status write, got {other:?}"),
    }
    let child = api
        .get(&format!("{object}-child"))
        .await
        .expect("the child");
    let writer = child.data.and_then(|d| d.get("writer").cloned());
    assert_eq!(
        writer.as_deref(),
        Some("new"),
        "the new leader's apply stands"
    );
    let status = widgets.get(&object).await.expect("the widget").status;
    let status = status
        .map(|status| status["writer"].clone())
        .unwrap_or_default();
    assert_eq!(status, json!("new"), "the new leader's status stands");
    assert!(!old_guard.is_valid());
    new_guard.release().await.expect("release");
}

/// Warm standby: the standby's cache is filled while it follows, so on SIGTERM its
/// controller starts from it, without a list. Its first reconcile still comes after the
/// old leader's last one ended, and a widget changed during the hand-over is reconciled
/// by the new leader with the change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_standby_reconciles_after_the_drain_and_sees_a_change_made_during_the_hand_over() {
    let kube = Kube::shared().await;
    let (lease, label) = (unique_name("warm"), unique_name("warm-objects"));
    let (widgets, names) = labelled_widgets(kube, &label, 3).await;
    let first = replica(kube, &lease, &label, "warm-1", Cache::Warm).await;
    // Its first term may begin before its cache's first list: it waits for it.
    if waited(Duration::from_secs(30), || {
        first.activity.started.load(SeqCst) > 0
    })
    .await
    .is_none()
    {
        panic!(
            "the first replica did not reconcile within 30 s: {}",
            first.state()
        );
    }
    let second = replica(kube, &lease, &label, "warm-2", Cache::Warm).await;
    sleep(Duration::from_secs(1)).await; // the standby's cache fills meanwhile
    assert_eq!(
        second.activity.started.load(SeqCst),
        0,
        "the standby does not reconcile"
    );

    eventually(
        "the leader is mid-reconcile",
        Duration::from_secs(2),
        || first.activity.reconciling.load(SeqCst) > 0,
    )
    .await;
    let terminated_at = Instant::now();
    first.elector.shutdown();
    // Changed right after SIGTERM, while the old leader drains.
    let changed = &names[0];
    widgets
        .patch(
            changed,
            &PatchParams::default(),
            &kube::api::Patch::Merge(json!({ "spec": { "size": 99 } })),
        )
        .await
        .expect("change a widget");
    let first_reconcile = eventually("the standby reconciles", Duration::from_secs(5), || {
        second.activity.started.load(SeqCst) > 0
    })
    .await;
    println!("SIGTERM → the warm standby's first reconcile: {first_reconcile:?}");
    let saw_change = eventually(
        "the new leader reconciles the changed widget",
        Duration::from_secs(5),
        || {
            second
                .activity
                .seen
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .any(|(name, size)| name == changed && *size == 99)
        },
    )
    .await;
    println!("SIGTERM → the changed widget reconciled: {saw_change:?}");
    first
        .running
        .await
        .expect("the first replica ran")
        .expect("it stopped cleanly");
    let last_end = first
        .activity
        .last_end
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .expect("it reconciled");
    let first_start = second
        .activity
        .first_start
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .expect("it reconciled");
    assert!(
        last_end > terminated_at,
        "the reconcile in flight finished after SIGTERM"
    );
    assert!(
        last_end < first_start,
        "the new leader began {:?} after SIGTERM, before the old one's last reconcile ended ({:?})",
        first_start.saturating_duration_since(terminated_at),
        last_end.saturating_duration_since(terminated_at)
    );
    let expected: std::collections::BTreeSet<String> = names.iter().cloned().collect();
    eventually(
        "the new leader reconciles every widget",
        Duration::from_secs(5),
        || {
            let seen: std::collections::BTreeSet<String> = second
                .activity
                .seen
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .map(|(name, _)| name.clone())
                .collect();
            seen == expected
        },
    )
    .await;
    second.elector.shutdown();
    second
        .running
        .await
        .expect("the second replica ran")
        .expect("it stopped cleanly");
}

/// A warm replica may campaign before its cache is filled: a term that begins before the
/// first list is in waits for it, then reconciles every object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_leader_whose_term_begins_before_the_first_list_reconciles_every_object() {
    let kube = Kube::shared().await;
    let (lease, label) = (unique_name("warm-early"), unique_name("warm-early-objects"));
    let (_, names) = labelled_widgets(kube, &label, 3).await;
    let names: std::collections::BTreeSet<String> = names.into_iter().collect();
    let replica = replica(kube, &lease, &label, "warm-early", Cache::WarmSlowList).await;
    eventually("the replica leads", Duration::from_secs(10), || {
        replica.elector.is_leader()
    })
    .await;
    let warm = replica.warm.as_ref().expect("a warm cache");
    assert!(
        warm.store().is_empty(),
        "the term began before the first list was in: {warm:?}"
    );
    let every_widget = || {
        let seen = replica
            .activity
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let seen: std::collections::BTreeSet<String> =
            seen.iter().map(|(name, _)| name.clone()).collect();
        seen == names
    };
    if waited(Duration::from_secs(30), every_widget)
        .await
        .is_none()
    {
        panic!(
            "the leader did not reconcile every widget within 30 s: {}",
            replica.state()
        );
    }
    replica.elector.shutdown();
    replica
        .running
        .await
        .expect("the replica ran")
        .expect("it stopped cleanly");
}
