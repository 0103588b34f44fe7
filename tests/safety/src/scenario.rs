//! One scenario: contenders on one backend, a nemesis injecting its fault, and the
//! checkers over what was recorded.

use std::{sync::Arc, time::Duration};

use tokio::time::{Instant, sleep};

use crate::{
    check::{Finals, Verdict, check},
    contender::{PausePoint, Shared, spawn},
    history::Fault,
    nemesis::{Bounds, Nemesis},
    system::{Link, System},
};

/// How long and how hard a scenario runs.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Contenders in the loop.
    pub contenders: usize,
    /// The lock's TTL.
    pub ttl: Duration,
    /// Faults injected, one after another.
    pub rounds: usize,
    /// Fault-free running before each fault and at the end.
    pub calm: Duration,
    /// How long each fault lasts (longer than the TTL).
    pub fault_for: Duration,
    /// How long a holder works after each write before its next check (zero: at once);
    /// longer than the renewal interval, terms outlive renewals.
    pub hold: Duration,
    /// How much longer than the TTL after a heal someone may take to hold the lock again.
    pub recovery_margin: Duration,
    /// How long one acquire call of a contender waits before its loop checks whether to
    /// stop: longer than one take, or nobody ever takes the lock.
    pub acquire_wait: Duration,
}

impl Plan {
    /// The version CI runs: one fault per scenario.
    pub fn short() -> Self {
        Self {
            contenders: 5,
            ttl: Duration::from_secs(2),
            rounds: 1,
            calm: Duration::from_secs(1),
            fault_for: Duration::from_secs(3),
            hold: Duration::ZERO,
            recovery_margin: Duration::from_secs(2),
            acquire_wait: Duration::from_millis(300),
        }
    }

    /// The longer version: five faults per scenario, with more calm between them.
    pub fn long() -> Self {
        Self {
            rounds: 5,
            calm: Duration::from_secs(3),
            fault_for: Duration::from_secs(4),
            ..Self::short()
        }
    }

    /// How soon after a fault heals someone must hold the lock again.
    pub fn recovery_bound(&self) -> Duration {
        self.ttl + self.recovery_margin
    }
}

/// What one scenario found.
#[derive(Clone, Debug)]
pub struct Row {
    /// The backend.
    pub backend: &'static str,
    /// The fault.
    pub nemesis: Nemesis,
    /// What the fault means for the guards on this backend.
    pub bounds: Bounds,
    /// The checkers' findings.
    pub verdict: Verdict,
}

impl Row {
    /// Whether the row shows what it must: someone acted; every safety property held;
    /// within bounds, guards never overlapped; in the demonstration, the overlap
    /// happened (the checker can fail) and only fencing stopped it (the unfenced log
    /// took a stale write); with the lock within bounds but not its store, the lock's
    /// properties and lock-core's register held; shown, nothing more.
    pub fn passed(&self) -> bool {
        let v = &self.verdict;
        // A row where nobody ever acted shows nothing.
        if v.terms == 0 {
            return false;
        }
        match self.bounds {
            Bounds::Within => v.safe() && v.overlaps == 0,
            Bounds::Beyond => v.safe(),
            Bounds::Demonstration => {
                v.safe() && v.overlaps > 0 && v.unfenced_stale > 0 && v.rejected > 0
            }
            Bounds::LockWithin => {
                v.overlaps == 0
                    && v.token_order == 0
                    && v.unrecovered == 0
                    && v.stale == v.store_stale
                    && v.lost == v.store_lost
            }
            Bounds::Shown => true,
        }
    }
}

/// Runs `nemesis` against `system` and checks the history.
pub async fn run(system: Arc<dyn System>, nemesis: Nemesis, plan: &Plan) -> Row {
    let plan = &system.plan(plan);
    let name = lock_core::conformance::unique_name("safety");
    system.prepare(&name).await;
    let shared = Arc::new(Shared::default());
    let mut links = Vec::new();
    for contender in 0..plan.contenders {
        links.push(system.link(contender).await);
    }
    let threads: Vec<_> = links
        .iter()
        .enumerate()
        .map(|(index, link)| {
            let (system, shared) = (system.clone(), shared.clone());
            spawn(index, system, link.route(), name.clone(), plan, shared)
        })
        .collect();

    for _ in 0..plan.rounds {
        sleep(plan.calm).await;
        if let Some(fault) = inject(nemesis, &*system, &links, &shared, plan).await {
            shared.history.fault(fault);
            // Give the recovery its bound before the next fault or the end.
            let deadline = Instant::now() + plan.recovery_bound();
            while shared.holder().is_none() && Instant::now() < deadline {
                sleep(Duration::from_millis(10)).await;
            }
        }
    }
    sleep(plan.calm).await;
    shared.stop();
    for link in &links {
        link.heal();
    }
    for thread in threads {
        tokio::task::spawn_blocking(move || thread.join())
            .await
            .expect("join")
            .expect("a contender panicked");
    }

    let finals = Finals {
        core: shared.core.read(),
        unfenced: shared.unfenced_log(),
        backend: match system.store(&name).await {
            Some(store) => Some(store.read().await.expect("read the store's final value")),
            None => None,
        },
    };
    Row {
        backend: system.name(),
        nemesis,
        bounds: system.bounds(nemesis),
        verdict: check(&shared.history.record(), &finals, plan.recovery_bound()),
    }
}

/// Injects one fault and heals it; `None` for the baseline.
async fn inject(
    nemesis: Nemesis,
    system: &dyn System,
    links: &[Link],
    shared: &Shared,
    plan: &Plan,
) -> Option<Fault> {
    let injected = std::time::Instant::now();
    match nemesis {
        Nemesis::None => return None,
        Nemesis::HolderCut | Nemesis::HolderBlackhole => {
            let link = &links[holder(shared).await];
            if nemesis == Nemesis::HolderCut {
                link.cut();
            } else {
                link.blackhole();
            }
            sleep(plan.fault_for).await;
            link.heal();
        }
        Nemesis::HolderPause | Nemesis::PauseAfterCheck => {
            let point = if nemesis == Nemesis::HolderPause {
                PausePoint::BeforeCheck
            } else {
                PausePoint::AfterCheck
            };
            shared.request_pause(point, plan.fault_for);
            let deadline = Instant::now() + plan.recovery_bound();
            let taken = loop {
                match shared.pause_taken() {
                    Some(taken) => break taken,
                    None if Instant::now() > deadline => panic!("no holder took the pause"),
                    None => sleep(Duration::from_millis(5)).await,
                }
            };
            let healed = taken + plan.fault_for;
            sleep(healed.saturating_duration_since(std::time::Instant::now())).await;
            return Some(Fault {
                injected: taken,
                healed,
            });
        }
        Nemesis::ServerPause => {
            system.pause_server().await;
            sleep(plan.fault_for).await;
            system.resume_server().await;
        }
        Nemesis::ServerRestart => system.restart_server(false).await,
        Nemesis::DataLoss => system.restart_server(true).await,
        Nemesis::LeaderKilled
        | Nemesis::LeaderIsolated
        | Nemesis::ApiserverKilled
        | Nemesis::ApiserverPaused
        | Nemesis::ApiserverLagging
        | Nemesis::PrimaryKilled => {
            let holder = holder(shared).await;
            system.topology_fault(nemesis, holder, plan.fault_for).await;
        }
        Nemesis::Latency => {
            for link in links {
                link.set_latency(Duration::from_millis(150));
            }
            sleep(plan.fault_for).await;
            for link in links {
                link.heal();
            }
        }
    }
    Some(Fault {
        injected,
        healed: std::time::Instant::now(),
    })
}

/// The contender holding the lock now, waiting a little for one.
async fn holder(shared: &Shared) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(holder) = shared.holder() {
            return holder;
        }
        assert!(Instant::now() < deadline, "nobody held the lock for 10 s");
        sleep(Duration::from_millis(2)).await;
    }
}
