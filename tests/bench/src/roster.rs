//! What a group of elected shards costs the apiserver once settled: the group's Lease
//! requests per second, by verb, beside what its renewals alone need. Each member has a
//! client and backend of its own, as separate replicas would; the default timing (15 s
//! TTL, renewals every 5 s).

use std::time::Duration;

use lock_core::{ElectedShards, Timing};
use lock_kube::{KubeBackend, nodelay_client};
use lock_tests::Kube;
use tokio::time::{Instant, sleep};

use crate::{figures::Figure, subjects::kube_lease_requests_by_verb};

/// The groups measured: members, shards; `(0, 0)` is the apiserver alone (its own
/// Leases), what the other rows include besides the group.
pub const GROUPS: [(u32, u32); 3] = [(0, 0), (3, 12), (5, 32)];
/// How long the settled group is watched.
const STEADY: Duration = Duration::from_secs(30);

/// One repetition for `members` over `shards`: Lease requests per second in total, reads
/// (GET, LIST), writes (PUT, PATCH, POST, DELETE), and what the renewals alone need.
pub async fn once(kube: &Kube, members: u32, shards: u32) -> [f64; 4] {
    let group = lock_core::conformance::unique_name("roster");
    let timing = Timing::default();
    if members == 0 {
        let before = kube_lease_requests_by_verb(kube).await;
        sleep(STEADY).await;
        let after = kube_lease_requests_by_verb(kube).await;
        return rates(&before, &after, 0.0);
    }
    let mut group_members = Vec::new();
    for member in 0..members {
        let client = nodelay_client(kube.config(false).await).expect("a client");
        let shards = ElectedShards::builder(
            KubeBackend::new(client, kube.namespace()),
            group.clone(),
            format!("member-{member}"),
            shards,
        )
        .timing(timing)
        .build()
        .expect("valid shards");
        let running = {
            let shards = shards.clone();
            tokio::spawn(async move { shards.run().await })
        };
        group_members.push((shards, running));
    }
    let share = |m: &ElectedShards| m.owned().borrow().len();
    let deadline = Instant::now() + Duration::from_secs(60);
    let balanced = || {
        let owned: Vec<usize> = group_members.iter().map(|(m, _)| share(m)).collect();
        owned.iter().sum::<usize>() == shards as usize
            && owned.iter().max().unwrap_or(&0) - owned.iter().min().unwrap_or(&0) <= 1
    };
    while !balanced() {
        assert!(
            Instant::now() < deadline,
            "the group did not settle within 60 s"
        );
        sleep(Duration::from_millis(50)).await;
    }
    sleep(timing.ttl()).await; // settled into the renewal rhythm
    let before = kube_lease_requests_by_verb(kube).await;
    sleep(STEADY).await;
    let after = kube_lease_requests_by_verb(kube).await;
    assert!(balanced(), "the group stayed balanced");
    let renewals = f64::from(members + shards) / timing.renew_interval().as_secs_f64();
    for (member, _) in &group_members {
        member.shutdown();
    }
    for (_, running) in group_members {
        running
            .await
            .expect("the member ran")
            .expect("it left cleanly");
    }
    rates(&before, &after, renewals)
}

/// Requests per second between two readings of the counters: in total, reads (GET,
/// LIST), writes (PUT, PATCH, POST, DELETE); then `renewals`.
fn rates(before: &Counts, after: &Counts, renewals: f64) -> [f64; 4] {
    let rate = |verbs: Option<&[&str]>| {
        let sum = |counts: &Counts| -> f64 {
            counts
                .iter()
                .filter(|(verb, _)| verbs.is_none_or(|verbs| verbs.contains(&verb.as_str())))
                .map(|(_, count)| count)
                .sum()
        };
        (sum(after) - sum(before)) / STEADY.as_secs_f64()
    };
    [
        rate(None),
        rate(Some(&["GET", "LIST"])),
        rate(Some(&["PUT", "PATCH", "POST", "DELETE"])),
        renewals,
    ]
}

type Counts = std::collections::BTreeMap<String, f64>;

/// The table: a row per group, a figure per column.
pub struct Table {
    rows: Vec<((u32, u32), Vec<Figure>)>,
}

const COLUMNS: [&str; 5] = [
    "lease requests/s",
    "reads/s (GET, LIST)",
    "writes/s",
    "renewals alone need/s",
    "requests ÷ renewals",
];

impl Table {
    pub fn new() -> Self {
        let rows = GROUPS
            .iter()
            .map(|group| (*group, vec![Figure::default(); COLUMNS.len()]))
            .collect();
        Self { rows }
    }

    /// Records one repetition of `group`.
    pub fn record(&mut self, group: (u32, u32), values: [f64; 4]) {
        if let Some((_, figures)) = self.rows.iter_mut().find(|(row, _)| *row == group) {
            for (figure, value) in figures.iter_mut().zip(values) {
                figure.push(value);
            }
            if values[3] > 0.0 {
                figures[4].push(values[0] / values[3]);
            }
        }
    }

    pub fn markdown(&self) -> String {
        let mut out = format!(
            "\n### Elected shards, settled: the group's Lease requests (15 s TTL, {STEADY:?} \
             of the apiserver's own counters)\n\n| members × shards | {} |\n|---|{}\n",
            COLUMNS.join(" | "),
            "---|".repeat(COLUMNS.len())
        );
        for ((members, shards), figures) in &self.rows {
            let cells: Vec<String> = figures.iter().map(Figure::show).collect();
            let group = if *members == 0 {
                "the apiserver alone (no group)".to_owned()
            } else {
                format!("{members} × {shards}")
            };
            out += &format!("| {group} | {} |\n", cells.join(" | "));
        }
        out
    }
}
