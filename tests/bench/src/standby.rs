//! Warm standby: two replicas of a kube-runtime controller over 10,000 ConfigMaps, each
//! a process of its own (`lock-bench-replica`); SIGTERM to the leader, one ConfigMap
//! changed right after, and what the standby does from then on, cold (its controller
//! lists everything when its term starts) and warm (`lock_kube::WarmCache`, filled while
//! following), with the standby's memory before and after.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api,
    api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams},
};
use lock_kube::nodelay_client;
use lock_tests::Kube;
use nix::{sys::signal::Signal, unistd::Pid};
use serde_json::json;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
    sync::mpsc,
    time::{Instant, timeout},
};

use crate::figures::Figure;

/// How many ConfigMaps the controller watches.
pub const OBJECTS: usize = 10_000;
/// Creates in flight while filling the namespace.
const CREATES_IN_FLIGHT: usize = 32;
/// The label key of the objects (as the replica selects them).
const LABEL: &str = "lock-bench";

/// How a replica elects and caches.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    /// lock-core's elector; `Controller::new` when the term starts.
    Cold,
    /// lock-core's elector; `Controller::for_shared_stream` from a `WarmCache`.
    Warm,
    /// kube-lease-manager's `watch()`, its defaults; `Controller::new` on leadership.
    KubeLeaseManager,
    /// kube-leader-election's README usage (15 s lease, polled every 5 s);
    /// `Controller::new` on leadership. A binary of its own (kube 4).
    KubeLeaderElection,
}

impl Mode {
    /// Every mode, in table order.
    pub const ALL: [Mode; 4] = [
        Mode::Cold,
        Mode::Warm,
        Mode::KubeLeaseManager,
        Mode::KubeLeaderElection,
    ];

    /// The mode of `name` (its replica argument): `cold`, `warm` or `klm`.
    pub fn named(name: &str) -> Mode {
        Mode::ALL
            .into_iter()
            .find(|mode| mode.argument() == name)
            .unwrap_or_else(|| panic!("no mode {name:?}: cold, warm, klm or kle"))
    }

    fn argument(self) -> &'static str {
        match self {
            Mode::Cold => "cold",
            Mode::Warm => "warm",
            Mode::KubeLeaseManager => "klm",
            Mode::KubeLeaderElection => "kle",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Mode::Cold => "lock-kube, cold (`Controller::new` on leadership)",
            Mode::Warm => "lock-kube, warm (`WarmCache`)",
            Mode::KubeLeaseManager => {
                "kube-lease-manager 0.13, defaults (30 s), `Controller::new` on leadership"
            }
            Mode::KubeLeaderElection => {
                "kube-leader-election 0.44, its README's 15 s lease polled every 5 s, \
                 `Controller::new` on leadership"
            }
        }
    }

    /// How long the standby may take to lead after the SIGTERM.
    fn lead_limit(self) -> Duration {
        match self {
            // It polls; a released lease is taken at its next look, within a lease.
            Mode::KubeLeaseManager | Mode::KubeLeaderElection => Duration::from_secs(75),
            Mode::Cold | Mode::Warm => Duration::from_secs(20),
        }
    }
}

/// One event a replica printed.
#[derive(Debug)]
struct Event {
    /// CLOCK_REALTIME nanoseconds.
    at: u128,
    kind: String,
    args: Vec<String>,
}

/// A replica process and its events.
struct Replica {
    name: String,
    child: Child,
    events: mpsc::UnboundedReceiver<Event>,
}

fn now() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos())
}

impl Replica {
    fn start(
        binaries: &Binaries,
        kube: &Kube,
        lease: &str,
        label: &str,
        name: &str,
        mode: Mode,
    ) -> Self {
        let kubeconfig = kube.kubeconfig().expect("a kubeconfig");
        let mut command = match mode {
            Mode::KubeLeaderElection => Command::new(&binaries.kle),
            Mode::Cold | Mode::Warm | Mode::KubeLeaseManager => Command::new(&binaries.ours),
        };
        command
            .arg(kubeconfig)
            .args([kube.namespace(), lease, label, name]);
        if mode != Mode::KubeLeaderElection {
            command.arg(mode.argument());
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the replica starts");
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        let (send, events) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let mut words = line.split(' ').map(str::to_owned);
                let at = words.next().and_then(|at| at.parse().ok());
                let (Some(at), Some(kind)) = (at, words.next()) else {
                    panic!("a replica printed {line:?}");
                };
                let event = Event {
                    at,
                    kind,
                    args: words.collect(),
                };
                if send.send(event).is_err() {
                    return;
                }
            }
        });
        Self {
            name: name.to_owned(),
            child,
            events,
        }
    }

    fn pid(&self) -> Pid {
        let pid = self.child.id().expect("the replica runs");
        Pid::from_raw(i32::try_from(pid).expect("a pid"))
    }

    /// Hands each event to `done` until it says so, within `limit`; returns that event.
    async fn until(
        &mut self,
        what: &str,
        limit: Duration,
        mut done: impl FnMut(&Event) -> bool,
    ) -> Event {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match timeout(left, self.events.recv()).await {
                Err(_) => panic!("{}: no {what} within {limit:?}", self.name),
                Ok(None) => panic!("{}: it exited before {what}", self.name),
                Ok(Some(event)) if done(&event) => return event,
                Ok(Some(_)) => {}
            }
        }
    }

    /// Waits for reconciles of `OBJECTS` different objects.
    async fn until_all_reconciled(&mut self, limit: Duration) {
        let mut seen = HashSet::with_capacity(OBJECTS);
        let deadline = Instant::now() + limit;
        while seen.len() < OBJECTS {
            let left = deadline.saturating_duration_since(Instant::now());
            match timeout(left, self.events.recv()).await {
                Err(_) => panic!(
                    "{}: {} of {OBJECTS} reconciled within {limit:?}",
                    self.name,
                    seen.len()
                ),
                Ok(None) => panic!("{}: it exited before reconciling all", self.name),
                Ok(Some(event)) if event.kind == "reconcile" => {
                    seen.insert(event.args[0].clone());
                }
                Ok(Some(_)) => {}
            }
        }
    }

    /// The resident memory now, in MiB.
    fn rss(&self) -> f64 {
        crate::measure::rss_mib(self.pid(), &self.name)
    }

    fn sigterm(&self) {
        nix::sys::signal::kill(self.pid(), Signal::SIGTERM).expect("SIGTERM sent");
    }

    /// SIGTERM, then its exit, within `limit`.
    async fn stop(mut self, limit: Duration) {
        if self.child.id().is_some() {
            self.sigterm();
        }
        let status = timeout(limit, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("{}: still running {limit:?} after SIGTERM", self.name))
            .expect("waited for");
        assert!(status.success(), "{}: exited with {status}", self.name);
    }
}

/// The replica binaries: lock-bench's own and kube-leader-election's (kube 4).
pub struct Binaries {
    ours: PathBuf,
    kle: PathBuf,
}

/// Builds the replica binaries (release) and returns their paths.
pub fn build() -> Binaries {
    let status = crate::cargo::cargo()
        .args(["build", "--release", "--quiet", "-p", "lock-bench"])
        .args(["--bin", "lock-bench-replica", "--manifest-path"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
        .status()
        .expect("cargo runs");
    assert!(status.success(), "lock-bench-replica did not build");
    let here = std::env::current_exe().expect("the bench's path");
    Binaries {
        ours: here.with_file_name("lock-bench-replica"),
        kle: crate::kle::build_replica(),
    }
}

/// The run's objects: `OBJECTS` ConfigMaps labelled `lock-bench=LABEL`.
pub struct Objects {
    api: Api<ConfigMap>,
    label: String,
    changed: String,
}

impl Objects {
    /// Creates them, `CREATES_IN_FLIGHT` at a time.
    pub async fn create(kube: &Kube) -> Self {
        let client = nodelay_client(kube.config(false).await).expect("a client");
        let api: Api<ConfigMap> = Api::namespaced(client, kube.namespace());
        let label = lock_core::conformance::unique_name("standby");
        let started = Instant::now();
        stream::iter(0..OBJECTS)
            .map(|i| {
                let (api, label) = (api.clone(), label.clone());
                async move {
                    let map = ConfigMap {
                        metadata: ObjectMeta {
                            name: Some(format!("{label}-{i}")),
                            labels: Some([(LABEL.to_owned(), label.clone())].into()),
                            ..ObjectMeta::default()
                        },
                        data: Some([("gen".to_owned(), "0".to_owned())].into()),
                        ..ConfigMap::default()
                    };
                    api.create(&PostParams::default(), &map).await.map(drop)
                }
            })
            .buffer_unordered(CREATES_IN_FLIGHT)
            .try_collect::<()>()
            .await
            .expect("the ConfigMaps are created");
        eprintln!(
            "created {OBJECTS} ConfigMaps in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let changed = format!("{label}-{}", OBJECTS / 2);
        Self {
            api,
            label,
            changed,
        }
    }

    /// Deletes them. A timeout (the apiserver's 34 s on 10,000 objects) is only
    /// reported: the deletion goes on on the server.
    pub async fn delete(self) {
        let selector = ListParams::default().labels(&format!("{LABEL}={}", self.label));
        match self
            .api
            .delete_collection(&DeleteParams::default(), &selector)
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 504 => {
                eprintln!("deleting the ConfigMaps goes on on the server: {status:?}");
            }
            Err(error) => panic!("the ConfigMaps are not deleted: {error}"),
        }
    }
}

/// One repetition's figures, in table order: ms after the SIGTERM to the old leader's
/// drain, (1) the standby leads, (2) its first reconcile, (3) its reconcile of the
/// object changed, (4) all reconciled; then the standby's RSS in MiB following and
/// after (4).
pub async fn once(binaries: &Binaries, kube: &Kube, objects: &Objects, mode: Mode) -> [f64; 7] {
    let lease = lock_core::conformance::unique_name("standby-lease");
    let start = |name| Replica::start(binaries, kube, &lease, &objects.label, name, mode);
    let mut leader = start("replica-1");
    leader
        .until("leading", Duration::from_secs(60), |e| e.kind == "leading")
        .await;
    leader.until_all_reconciled(Duration::from_secs(60)).await;
    let mut standby = start("replica-2");
    // Following, and (warm) with its cache filled: in either order.
    let (mut following, mut cached) = (false, mode != Mode::Warm);
    standby
        .until(
            "following (warm: and its cache filled)",
            Duration::from_secs(60),
            |e| {
                match e.kind.as_str() {
                    "following" => following = true,
                    "cache" => {
                        assert_eq!(
                            e.args.get(1).map(String::as_str),
                            Some(OBJECTS.to_string().as_str()),
                            "the warm cache holds every object"
                        );
                        cached = true;
                    }
                    _ => {}
                }
                following && cached
            },
        )
        .await;
    // Settled: the first list's garbage returned, the watch idle.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_following = standby.rss();

    let generation = lock_core::conformance::unique_name("changed");
    let terminated_at = now();
    leader.sigterm();
    objects
        .api
        .patch(
            &objects.changed,
            &PatchParams::default(),
            &Patch::Merge(json!({ "data": { "gen": generation } })),
        )
        .await
        .expect("the ConfigMap is changed");
    let since = |event: &Event| (event.at.saturating_sub(terminated_at)) as f64 / 1e6;

    let drained = leader
        .until("drained", Duration::from_secs(20), |e| e.kind == "drained")
        .await;
    let leading = standby
        .until("leading", mode.lead_limit(), |e| e.kind == "leading")
        .await;
    // After `leading`, in order: the first reconcile, the changed one, the last new one.
    let (mut first, mut changed, mut all) = (None, None, None);
    let mut seen = HashSet::with_capacity(OBJECTS);
    standby
        .until("every reconcile", Duration::from_secs(60), |event| {
            if event.kind != "reconcile" {
                return false;
            }
            first.get_or_insert(since(event));
            if event.args[0] == objects.changed && event.args[1] == generation {
                changed = Some(since(event));
            }
            if seen.insert(event.args[0].clone()) && seen.len() == OBJECTS {
                all = Some(since(event));
            }
            changed.is_some() && all.is_some()
        })
        .await;
    let rss_after = standby.rss();
    leader.stop(Duration::from_secs(30)).await;
    standby.stop(Duration::from_secs(30)).await;
    let value = |figure: Option<f64>| figure.expect("seen");
    [
        since(&drained),
        since(&leading),
        value(first),
        value(changed),
        value(all),
        rss_following,
        rss_after,
    ]
}

/// The table's columns.
const COLUMNS: [&str; 7] = [
    "old leader drained",
    "(1) standby leads",
    "(2) its first reconcile",
    "(3) the changed object reconciled",
    "(4) all 10,000 reconciled",
    "standby RSS following",
    "standby RSS after (4)",
];

/// The table: a row per mode, a figure per column.
pub struct Table {
    rows: Vec<(Mode, Vec<Figure>)>,
}

impl Table {
    /// A table of `modes`.
    pub fn new(modes: &[Mode]) -> Self {
        let rows = modes
            .iter()
            .map(|&mode| (mode, vec![Figure::default(); COLUMNS.len()]))
            .collect();
        Self { rows }
    }

    /// The modes, in order.
    pub fn modes(&self) -> Vec<Mode> {
        self.rows.iter().map(|(mode, _)| *mode).collect()
    }

    /// Records one repetition of `mode`.
    pub fn record(&mut self, mode: Mode, values: &[f64]) {
        let (_, figures) = self
            .rows
            .iter_mut()
            .find(|(row, _)| *row == mode)
            .expect("a row of the mode");
        for (figure, value) in figures.iter_mut().zip(values) {
            figure.push(*value);
        }
    }

    /// Markdown.
    pub fn markdown(&self) -> String {
        let mut out = format!(
            "\n### Warm standby: SIGTERM to the leader of a controller over 10,000 ConfigMaps \
             → the standby (ms after the SIGTERM; RSS in MiB)\n\n| | {} |\n|---|{}\n",
            COLUMNS.join(" | "),
            "---|".repeat(COLUMNS.len())
        );
        for (mode, figures) in &self.rows {
            let cells: Vec<String> = figures.iter().map(Figure::show).collect();
            out += &format!("| {} | {} |\n", mode.label(), cells.join(" | "));
        }
        out += "\nTwo replicas, each a process (`lock-bench-replica`); the reconcile sleeps 1 ms \
                and writes nothing. One ConfigMap is patched right after the SIGTERM; (3) is \
                its reconcile with the change. RSS: VmRSS of the standby, 1 s after it follows \
                (warm: with its cache filled) and after (4).\n";
        out
    }
}
