//! Sharded controllers that scale their watch, not only their reconciles: N members of
//! one `ElectedShards` group over 10,000 labelled ConfigMaps, each a process of its own
//! (`lock-bench-shard-member`) watching only its own shards' objects (label mode,
//! `lock_kube::shard_watch`; server-side mode, `lock_kube::server_shard_watch`) or every
//! object, reconciling those it owns (filter mode). Per member: resident memory, the
//! objects it caches, the watch events it receives during a churn of updates; for the
//! group: reconciles per second of an IO-bound reconcile (every object reconciled once
//! more), lease requests per second, and how long a join and a leave take to move the
//! shards, with the objects written meanwhile.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api,
    api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams},
};
use lock_core::Timing;
use lock_kube::{nodelay_client, shard_key, shard_label, shard_label_value};
use lock_tests::Kube;
use nix::{sys::signal::Signal, unistd::Pid};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    process::{Child, ChildStdin, Command},
    sync::watch,
    time::{Instant, sleep, timeout},
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

/// The drain of a member (as `lock-bench-shard-member` sets it): a join or a leave
/// should move the shards within it plus one second.
const DRAIN: Duration = Duration::from_secs(5);

/// How a member watches.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    Label,
    Server,
    Filter,
}

impl Mode {
    fn argument(self) -> &'static str {
        match self {
            Mode::Label => "label",
            Mode::Server => "server",
            Mode::Filter => "filter",
        }
    }

    /// Whether each member caches only its own shards' objects.
    fn restricted(self) -> bool {
        self != Mode::Filter
    }
}

pub const MODES: [Mode; 3] = [Mode::Label, Mode::Server, Mode::Filter];

/// The run's labelled objects.
pub struct Objects {
    api: Api<ConfigMap>,
    pub run: String,
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

/// Builds `lock-bench-shard-member` (release) and returns its path.
pub fn build() -> PathBuf {
    let status = crate::cargo::cargo()
        .args(["build", "--release", "--quiet", "-p", "lock-bench"])
        .args(["--bin", "lock-bench-shard-member", "--manifest-path"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
        .status()
        .expect("cargo runs");
    assert!(status.success(), "lock-bench-shard-member did not build");
    let here = std::env::current_exe().expect("the bench's path");
    here.with_file_name("lock-bench-shard-member")
}

/// What a member last printed (its lines' times are not needed: the bench times what
/// it sees).
#[derive(Clone, Debug, Default)]
struct Status {
    owned: BTreeSet<u32>,
    cached: usize,
    events: usize,
    reconciles: usize,
    left: bool,
}

/// A member process and its latest status.
struct Member {
    name: String,
    child: Child,
    stdin: ChildStdin,
    status: watch::Receiver<Status>,
}

impl Member {
    fn start(binary: &Path, kube: &Kube, group: &str, run: &str, name: &str, mode: Mode) -> Self {
        let mut child = Command::new(binary)
            .arg(kube.kubeconfig().expect("a kubeconfig"))
            .args([kube.namespace(), group, run, name, mode.argument()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the member starts");
        let stdin = child.stdin.take().expect("piped");
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        let (send, status) = watch::channel(Status::default());
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let words: Vec<&str> = line.split(' ').collect();
                match words.get(1..) {
                    Some(["status", owned, cached, events, reconciles]) => {
                        let number = |word: &str| word.parse().unwrap_or(0);
                        let owned = owned
                            .split(',')
                            .filter_map(|shard| shard.parse().ok())
                            .collect();
                        send.send_modify(|status| {
                            status.owned = owned;
                            status.cached = number(cached);
                            status.events = number(events);
                            status.reconciles = number(reconciles);
                        });
                    }
                    Some(["left"]) => send.send_modify(|status| status.left = true),
                    _ => panic!("a member printed {line:?}"),
                }
            }
        });
        Self {
            name: name.to_owned(),
            child,
            stdin,
            status,
        }
    }

    fn now(&self) -> Status {
        self.status.borrow().clone()
    }

    fn pid(&self) -> Pid {
        let pid = self.child.id().expect("the member runs");
        Pid::from_raw(i32::try_from(pid).expect("a pid"))
    }

    /// Resident memory now, in MiB.
    fn rss(&self) -> f64 {
        crate::measure::rss_mib(self.pid(), &self.name)
    }

    async fn resync(&mut self) {
        self.stdin
            .write_all(b"resync\n")
            .await
            .expect("the member reads its stdin");
    }

    /// SIGTERM, then its exit after leaving, within 30 s.
    async fn stop(mut self) {
        if self.child.id().is_some() {
            nix::sys::signal::kill(self.pid(), Signal::SIGTERM).expect("SIGTERM sent");
        }
        let status = timeout(Duration::from_secs(30), self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("{}: still running 30 s after SIGTERM", self.name))
            .expect("waited for");
        assert!(status.success(), "{}: exited with {status}", self.name);
    }
}

/// Waits (at most 120 s) until `members` own every shard in even shares; with
/// `caches`, also until every cache is complete for `mode`. Returns when it held.
async fn settled(members: &[Member], mode: Mode, caches: bool) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let now: Vec<Status> = members.iter().map(Member::now).collect();
        let shares: Vec<usize> = now.iter().map(|status| status.owned.len()).collect();
        let union: BTreeSet<u32> = now.iter().flat_map(|status| status.owned.clone()).collect();
        let balanced = shares.iter().sum::<usize>() == SHARDS as usize
            && union.len() == SHARDS as usize
            && shares.iter().max().unwrap_or(&0) - shares.iter().min().unwrap_or(&0) <= 1;
        let cached: usize = now.iter().map(|status| status.cached).sum();
        let complete = if mode.restricted() {
            cached == OBJECTS
        } else {
            now.iter().all(|status| status.cached == OBJECTS)
        };
        if balanced && (complete || !caches) {
            return Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "the group did not settle within 120 s: {now:?}"
        );
        sleep(Duration::from_millis(10)).await;
    }
}

/// Writes to ConfigMaps the apiserver has served (PUT, PATCH, POST, DELETE).
async fn configmap_writes(kube: &Kube) -> f64 {
    crate::measure::apiserver_metrics(kube)
        .await
        .lines()
        .filter(|line| {
            line.starts_with("apiserver_request_total{")
                && line.contains("resource=\"configmaps\"")
                && ["PUT", "PATCH", "POST", "DELETE"]
                    .iter()
                    .any(|verb| line.contains(&format!("verb=\"{verb}\"")))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn lease_requests(counts: &std::collections::BTreeMap<String, f64>) -> f64 {
    counts.values().sum()
}

/// The figures of one repetition, in `COLUMNS` order.
pub async fn once(
    kube: &Kube,
    binary: &Path,
    objects: &Objects,
    mode: Mode,
    members: u32,
) -> [f64; 10] {
    let group = lock_core::conformance::unique_name("scaling-group");
    let start = |i: u32| {
        Member::start(
            binary,
            kube,
            &group,
            &objects.run,
            &format!("member-{i}"),
            mode,
        )
    };
    let mut group_members: Vec<Member> = (0..members - 1).map(start).collect();
    if !group_members.is_empty() {
        settled(&group_members, mode, true).await;
    }
    // The last one joins.
    let writes_before = configmap_writes(kube).await;
    let joining = Instant::now();
    group_members.push(start(members - 1));
    let join = settled(&group_members, mode, false).await - joining;
    settled(&group_members, mode, true).await;
    let join_writes = configmap_writes(kube).await - writes_before;

    sleep(Duration::from_secs(1)).await;
    let mean = |values: &mut dyn Iterator<Item = f64>| values.sum::<f64>() / f64::from(members);
    // The member that joined last only ever held its share; the others held more while
    // the group was smaller, and a process keeps memory it freed.
    let last_rss = group_members.last().map_or(f64::NAN, Member::rss);
    let rss = mean(&mut group_members.iter().map(Member::rss));
    let cached = mean(&mut group_members.iter().map(|m| m.now().cached as f64));

    // The churn: updates spread evenly over the objects and the time.
    let events_before: Vec<usize> = group_members.iter().map(|m| m.now().events).collect();
    let leases_before = crate::subjects::kube_lease_requests_by_verb(kube).await;
    let churning = Instant::now();
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
    let leases = (lease_requests(&crate::subjects::kube_lease_requests_by_verb(kube).await)
        - lease_requests(&leases_before))
        / churning.elapsed().as_secs_f64();
    let timing = Timing::default();
    let renewals = f64::from(members + SHARDS) / timing.renew_interval().as_secs_f64();
    let events = mean(
        &mut group_members
            .iter()
            .zip(&events_before)
            .map(|(m, before)| (m.now().events - before) as f64),
    );

    // Every object reconciled once more: the group's throughput.
    let before: usize = group_members.iter().map(|m| m.now().reconciles).sum();
    let resyncing = Instant::now();
    for member in &mut group_members {
        member.resync().await;
    }
    let deadline = resyncing + Duration::from_secs(120);
    while group_members
        .iter()
        .map(|m| m.now().reconciles)
        .sum::<usize>()
        < before + OBJECTS
    {
        assert!(
            Instant::now() < deadline,
            "the resync did not end within 120 s"
        );
        sleep(Duration::from_millis(5)).await;
    }
    let reconciles_per_second = OBJECTS as f64 / resyncing.elapsed().as_secs_f64();

    // One leaves (SIGTERM: its reconciles finish, its shards drain and are released).
    let (leave, leave_writes) = if members > 1 {
        let writes_before = configmap_writes(kube).await;
        let leaving = Instant::now();
        let last = group_members.pop().expect("a member");
        let stopped = tokio::spawn(last.stop());
        let leave = settled(&group_members, mode, false).await - leaving;
        stopped.await.expect("the member stopped");
        settled(&group_members, mode, true).await;
        (
            leave.as_secs_f64(),
            configmap_writes(kube).await - writes_before,
        )
    } else {
        (f64::NAN, 0.0)
    };
    for member in group_members {
        member.stop().await;
    }
    [
        last_rss,
        rss,
        cached,
        events,
        reconciles_per_second,
        leases,
        renewals,
        join.as_secs_f64(),
        leave,
        join_writes + leave_writes,
    ]
}

/// The resident memory of one member over no objects at all: the fixed cost of a
/// process, subtracted before comparing members' memory.
pub async fn fixed_cost(kube: &Kube, binary: &Path) -> f64 {
    let group = lock_core::conformance::unique_name("scaling-empty");
    let empty = lock_core::conformance::unique_name("no-objects");
    let member = Member::start(binary, kube, &group, &empty, "member-0", Mode::Label);
    let members = [member];
    settled(&members, Mode::Label, false).await;
    sleep(Duration::from_secs(2)).await; // its (empty) watch listed
    let rss = members[0].rss();
    let [member] = members;
    member.stop().await;
    rss
}

/// Lease requests per second with no member running: the apiserver's own (1.36 renews
/// its identity Leases), subtracted before comparing a group's with its renewals.
pub async fn idle_lease_rate(kube: &Kube) -> f64 {
    let before = crate::subjects::kube_lease_requests_by_verb(kube).await;
    let started = Instant::now();
    sleep(CHURN_TIME).await;
    let after = crate::subjects::kube_lease_requests_by_verb(kube).await;
    (lease_requests(&after) - lease_requests(&before)) / started.elapsed().as_secs_f64()
}

/// The table: a row per mode and group size.
pub struct Table {
    rows: Vec<((Mode, u32), Vec<Figure>)>,
    fixed: Figure,
    idle: Figure,
    version: String,
}

const COLUMNS: [&str; 10] = [
    "RSS MiB, the member that joined last",
    "RSS MiB, mean of members",
    "objects cached per member",
    "watch events per member during the churn",
    "reconciles/s (group)",
    "lease requests/s",
    "renewals alone need/s",
    "join s",
    "leave s",
    "objects written in join + leave",
];

impl Table {
    pub fn new(version: String) -> Self {
        let rows = MODES
            .iter()
            .flat_map(|mode| {
                MEMBERS
                    .iter()
                    .map(move |members| ((*mode, *members), vec![Figure::default(); COLUMNS.len()]))
            })
            .collect();
        Self {
            rows,
            fixed: Figure::default(),
            idle: Figure::default(),
            version,
        }
    }

    pub fn record_fixed(&mut self, rss: f64, idle_leases: f64) {
        self.fixed.push(rss);
        self.idle.push(idle_leases);
    }

    pub fn record(&mut self, row: (Mode, u32), values: [f64; 10]) {
        if let Some((_, figures)) = self.rows.iter_mut().find(|(r, _)| *r == row) {
            for (figure, value) in figures.iter_mut().zip(values) {
                figure.push(value);
            }
        }
    }

    fn median(&self, mode: Mode, members: u32, column: usize) -> f64 {
        self.rows
            .iter()
            .find(|(row, _)| *row == (mode, members))
            .map_or(f64::NAN, |(_, figures)| figures[column].median())
    }

    /// The targets, each checked on the medians: met or missed, with the figures.
    fn targets(&self) -> String {
        let mut out = String::from("\nTargets (on the medians):\n\n");
        let fixed = self.fixed.median();
        let mut line = |met: bool, what: String| {
            out += &format!("- {}: {what}\n", if met { "met" } else { "MISSED" });
        };
        for mode in MODES.into_iter().filter(|mode| mode.restricted()) {
            let one_rss = self.median(mode, 1, 0) - fixed;
            let one_events = self.median(mode, 1, 3);
            let one_rate = self.median(mode, 1, 4);
            for members in MEMBERS.into_iter().filter(|members| *members > 1) {
                let n = f64::from(members);
                let rss = self.median(mode, members, 0) - fixed;
                line(
                    rss <= 1.25 * one_rss / n,
                    format!(
                        "{mode:?}, {members} members: memory above the fixed {fixed:.1} MiB is \
                         {rss:.1} MiB for the member that joined last, at most 1.25 × \
                         {one_rss:.1} / {members} = {:.1}",
                        1.25 * one_rss / n
                    ),
                );
                let events = self.median(mode, members, 3);
                line(
                    events <= 1.25 * one_events / n,
                    format!(
                        "{mode:?}, {members} members: {events:.0} watch events per member, \
                         at most 1.25 × {one_events:.0} / {members} = {:.0}",
                        1.25 * one_events / n
                    ),
                );
                let rate = self.median(mode, members, 4);
                line(
                    rate >= 0.8 * n * one_rate,
                    format!(
                        "{mode:?}, {members} members: {rate:.0} reconciles/s, at least \
                         0.8 × {members} × {one_rate:.0} = {:.0}",
                        0.8 * n * one_rate
                    ),
                );
            }
        }
        let idle = self.idle.median();
        for ((mode, members), figures) in &self.rows {
            let (leases, renewals) = (figures[5].median() - idle, figures[6].median());
            line(
                leases <= 1.2 * renewals,
                format!(
                    "{mode:?}, {members} members: {leases:.2} lease requests/s above the \
                     apiserver's own {idle:.2}, at most 1.2 × {renewals:.2}"
                ),
            );
            let limit = (DRAIN + Duration::from_secs(1)).as_secs_f64();
            let (join, leave) = (figures[7].median(), figures[8].median());
            line(
                join <= limit && (leave.is_nan() || leave <= limit),
                format!(
                    "{mode:?}, {members} members: join {join:.2} s, leave {} within the \
                     drain + 1 s = {limit:.0} s",
                    if leave.is_nan() {
                        "–".to_owned()
                    } else {
                        format!("{leave:.2} s")
                    }
                ),
            );
            if *mode == Mode::Label {
                let written = figures[9].median();
                line(
                    written == 0.0,
                    format!(
                        "label, {members} members: {written:.0} objects written in a join and a leave"
                    ),
                );
            }
        }
        out
    }

    pub fn markdown(&self) -> String {
        let mut out = format!(
            "\n### Sharded controllers: {OBJECTS} ConfigMaps, {SHARDS} shards, {UPDATES} updates over {CHURN_TIME:?} ({})\n\n\
             A member process over no objects (the fixed cost): {} MiB; the apiserver's own \
             Lease requests, with no member: {}/s.\n\n| mode | members | {} |\n|---|---|{}\n",
            self.version,
            self.fixed.show(),
            self.idle.show(),
            COLUMNS.join(" | "),
            "---|".repeat(COLUMNS.len())
        );
        for ((mode, members), figures) in &self.rows {
            let cells: Vec<String> = figures.iter().map(Figure::show).collect();
            let mode = match mode {
                Mode::Label => "label (`shard_watch`)",
                Mode::Server => "server-side (`server_shard_watch`)",
                Mode::Filter => "filter (every object, `owns`)",
            };
            out += &format!("| {mode} | {members} | {} |\n", cells.join(" | "));
        }
        out + &self.targets()
    }
}
