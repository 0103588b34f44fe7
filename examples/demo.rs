//! The main demo: leader election with fencing tokens, on the in-memory backend.
//!
//! Three replicas of a "controller" campaign for one lock and write reports into a
//! fenced store. The leader is stopped as on SIGTERM (it drains and releases, and a
//! standby takes over at once); then the new leader freezes in the middle of a write,
//! for longer than its TTL: a third replica takes over, and when the frozen write finally
//! arrives, the store rejects its stale token.
//!
//! Run: `cargo run --example demo` (Ctrl-C stops it early, gracefully).

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use futures::future::select_all;
use lock_core::{
    Error, Faulty, FencedRegister, FencingToken, LeaderElector, LeaderState, Leadership, Lock,
    MemoryBackend, Timing,
};
use tokio::{
    sync::watch,
    time::{Instant, sleep, timeout},
};

const TTL: Duration = Duration::from_secs(2);
const REPLICAS: usize = 3;

static START: OnceLock<Instant> = OnceLock::new();

/// Prints one line of the demo's log: time since start, who, what.
fn log(who: &str, what: impl std::fmt::Display) {
    let elapsed = START.get_or_init(Instant::now).elapsed();
    println!("[{:>7.3}s] {who:<10} {what}", elapsed.as_secs_f64());
}

/// The store the controller writes to: it accepts a write only with the newest token.
type Store = Arc<FencedRegister<String>>;

/// One replica: an elector over its own connection to the lock server.
struct Replica {
    name: String,
    connection: Faulty<MemoryBackend>,
    elector: Arc<LeaderElector>,
    /// While true, the replica's work stands still, as in a stop-the-world pause.
    paused: Arc<watch::Sender<bool>>,
}

impl Replica {
    fn new(server: &MemoryBackend, index: usize) -> Result<Self, Error> {
        let name = format!("replica-{index}");
        let connection = Faulty::new(server.clone());
        let lock = Lock::builder(connection.clone(), "demo-controller", &name)
            .timing(Timing::new(TTL))
            .build()?;
        let elector = Arc::new(LeaderElector::new(lock).with_drain_timeout(Duration::from_secs(1)));
        Ok(Self {
            name,
            connection,
            elector,
            paused: Arc::new(watch::Sender::new(false)),
        })
    }

    /// Campaigns; while leading, writes a report every 300 ms with its token.
    fn start(&self, store: Store) -> tokio::task::JoinHandle<()> {
        let (name, elector, paused) =
            (self.name.clone(), self.elector.clone(), self.paused.clone());
        tokio::spawn(async move {
            let work = |leadership: Leadership| {
                reconcile(name.clone(), leadership, store.clone(), paused.subscribe())
            };
            if let Err(error) = elector.run(work).await {
                log(&name, format!("elector failed: {error}"));
            }
        })
    }

    /// Logs every change of this replica's state.
    fn narrate(&self) {
        let (name, mut state) = (self.name.clone(), self.elector.state());
        tokio::spawn(async move {
            let mut was_leading = false;
            while state.changed().await.is_ok() {
                let line = match &*state.borrow_and_update() {
                    LeaderState::Leading { token } => format!("LEADING with fencing token {token}"),
                    LeaderState::Following {
                        leader: Some(leader),
                    } => format!("following {leader}"),
                    LeaderState::Following { leader: None } if was_leading => {
                        "no longer leading (its lock lapsed or was released); campaigning"
                            .to_owned()
                    }
                    LeaderState::Following { leader: None } => "campaigning".to_owned(),
                    LeaderState::Stopped => "stopped".to_owned(),
                    _ => continue,
                };
                was_leading = matches!(*state.borrow(), LeaderState::Leading { .. });
                log(&name, line);
            }
        });
    }

    fn token(&self) -> Option<FencingToken> {
        match *self.elector.state().borrow() {
            LeaderState::Leading { token } => Some(token),
            _ => None,
        }
    }

    /// Freezes or thaws the whole replica: its connection and its work.
    fn pause(&self, on: bool) {
        self.connection.freeze(on);
        self.paused.send_replace(on);
    }
}

/// The leader's work: write reports until asked to drain.
async fn reconcile(
    name: String,
    leadership: Leadership,
    store: Store,
    mut paused: watch::Receiver<bool>,
) {
    for round in 1.. {
        let _ = paused.wait_for(|paused| !paused).await;
        let report = format!("report #{round} by {name}");
        match store.write(leadership.token(), report.clone()) {
            Ok(()) => log(
                &name,
                format!("wrote {report:?} with token {}", leadership.token()),
            ),
            Err(error) => log(&name, format!("write rejected: {error}")),
        }
        tokio::select! {
            () = leadership.stopping() => break,
            () = sleep(Duration::from_millis(300)) => {}
        }
    }
    log(&name, "draining: finishing in-flight work before releasing");
    sleep(Duration::from_millis(100)).await;
}

/// Waits until a replica other than `not` leads, and returns its index.
async fn next_leader(replicas: &[Replica], not: usize) -> Option<usize> {
    let candidates = replicas.iter().enumerate().filter(|(i, _)| *i != not);
    let leads = candidates.map(|(i, replica)| {
        let mut state = replica.elector.state();
        Box::pin(async move {
            let leading = |s: &LeaderState| matches!(s, LeaderState::Leading { .. });
            // Drop the borrowed state at once: it holds a read lock.
            state.wait_for(leading).await.is_ok().then_some(i)
        })
    });
    let (first, _, _) = timeout(TTL * 5, select_all(leads)).await.ok()?;
    first
}

async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    let server = MemoryBackend::new();
    let store: Store = Arc::new(FencedRegister::new(String::new()));
    log(
        "demo",
        format!(
            "{REPLICAS} replicas campaign for lock \"demo-controller\" (TTL {TTL:?}, in-memory backend)"
        ),
    );

    let replicas = (1..=REPLICAS)
        .map(|i| Replica::new(&server, i))
        .collect::<Result<Vec<_>, _>>()?;
    let mut runs = Vec::new();
    for replica in &replicas {
        replica.narrate();
        runs.push(replica.start(store.clone()));
        sleep(Duration::from_millis(20)).await;
    }
    let first = next_leader(&replicas, usize::MAX)
        .await
        .ok_or("nobody leads")?;
    sleep(Duration::from_millis(700)).await;

    // 1. Graceful step-down, as on SIGTERM.
    log(
        "demo",
        format!(
            "--- SIGTERM to {}: it drains, releases, and a standby takes over at once",
            replicas[first].name
        ),
    );
    let stopped_at = Instant::now();
    replicas[first].elector.shutdown();
    let second = next_leader(&replicas, first)
        .await
        .ok_or("no standby took over")?;
    let handover = stopped_at.elapsed().as_secs_f64() * 1e3;
    log(
        "demo",
        format!(
            "hand-over: the standby led {handover:.1} ms after SIGTERM, 100 ms of it the old leader's drain (TTL {TTL:?})"
        ),
    );
    sleep(Duration::from_millis(700)).await;

    // 2. The new leader freezes mid-write for longer than its TTL.
    let frozen = &replicas[second];
    let stale_token = frozen.token().ok_or("the new leader lost its lead")?;
    let pause = TTL * 2;
    log(
        "demo",
        format!(
            "--- {} freezes for {pause:?} (a stop-the-world pause) while its write with token {stale_token} is in flight",
            frozen.name
        ),
    );
    frozen.pause(true);
    let late_write = {
        let (store, name) = (store.clone(), frozen.name.clone());
        tokio::spawn(async move {
            sleep(pause).await;
            log(
                &name,
                format!("wakes up and its write with token {stale_token} arrives"),
            );
            match store.write(stale_token, format!("late report by {name}")) {
                Err(error @ Error::StaleToken { .. }) => log("store", format!("REJECTED: {error}")),
                Err(error) => log("store", format!("rejected: {error}")),
                Ok(()) => log("store", "ACCEPTED a stale write: this must never happen"),
            }
        })
    };
    let third = next_leader(&replicas, second)
        .await
        .ok_or("nobody took over from the frozen leader")?;
    log(
        "demo",
        format!(
            "{} took over after the frozen leader's TTL ran out",
            replicas[third].name
        ),
    );
    late_write.await?;
    frozen.pause(false);
    log(
        "demo",
        format!("--- {} recovers and rejoins as a follower", frozen.name),
    );
    sleep(Duration::from_millis(500)).await;

    log("demo", "--- shutting everything down");
    for replica in &replicas {
        replica.elector.shutdown();
    }
    for run in runs {
        run.await?;
    }
    log(
        "demo",
        format!(
            "the store holds {:?}, written with token {}",
            store.read(),
            store
                .highest_token()
                .map_or("none".into(), |t| t.to_string())
        ),
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    START.get_or_init(Instant::now);
    if let Some(backend) = std::env::args().nth(1).filter(|a| a != "memory") {
        return Err(format!("unknown backend {backend:?}: this demo runs on \"memory\"").into());
    }
    tokio::select! {
        result = timeout(TTL * 20, demo()) => result.map_err(|_| "the demo did not finish in time")?,
        _ = tokio::signal::ctrl_c() => {
            log("demo", "interrupted");
            Ok(())
        }
    }
}
