//! A contender: a loop of acquire → fenced writes → release, on a thread and a
//! single-threaded runtime of its own, so that pausing the thread pauses everything it
//! does (renewals and connections included), as a stop-the-world pause would.

use std::{
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicU64, Ordering::SeqCst},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use lock_core::{Error, FencedRegister, FencingToken, Lock};

use crate::{
    check::Entry,
    history::{History, Outcome, Target, Term, Write},
    scenario::Plan,
    system::{Route, Store, System, timing},
};

/// Fenced writes per acquisition, each after a validity check.
const WRITES_PER_TERM: usize = 3;

/// The pause between one release and the next acquire.
const THINK: Duration = Duration::from_millis(1);

/// Where in its critical section the next holder pauses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PausePoint {
    /// Before checking its guard: in bounds, the check then fails.
    BeforeCheck,
    /// Between checking its guard and writing: out of bounds.
    AfterCheck,
}

#[derive(Clone, Copy, Debug)]
enum PauseState {
    Requested(PausePoint, Duration),
    Taken(Instant),
}

/// What all contenders of a scenario share: the history, the registers, and the
/// nemesis' handles on them.
#[derive(Default)]
pub struct Shared {
    /// Every write and term.
    pub history: History,
    /// lock-core's fenced register, keeping the log of every write it accepted.
    pub core: FencedRegister<Vec<Entry>>,
    /// A log that accepts every write.
    unfenced: Mutex<Vec<Entry>>,
    holder: Mutex<Option<usize>>,
    pause: Mutex<Option<PauseState>>,
    next_op: AtomicU64,
    stop: AtomicBool,
}

impl Shared {
    /// The contender acting as holder now, if any.
    pub fn holder(&self) -> Option<usize> {
        *self.holder.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set_holder(&self, holder: Option<usize>) {
        *self.holder.lock().unwrap_or_else(PoisonError::into_inner) = holder;
    }

    /// Asks the next contender that reaches `point` to pause its runtime for `duration`.
    pub fn request_pause(&self, point: PausePoint, duration: Duration) {
        *self.pause.lock().unwrap_or_else(PoisonError::into_inner) =
            Some(PauseState::Requested(point, duration));
    }

    /// When the requested pause began, once a contender took it.
    pub fn pause_taken(&self) -> Option<Instant> {
        match *self.pause.lock().unwrap_or_else(PoisonError::into_inner) {
            Some(PauseState::Taken(at)) => Some(at),
            _ => None,
        }
    }

    fn take_pause(&self, point: PausePoint) -> Option<Duration> {
        let mut pause = self.pause.lock().unwrap_or_else(PoisonError::into_inner);
        match *pause {
            Some(PauseState::Requested(at, duration)) if at == point => {
                *pause = Some(PauseState::Taken(Instant::now()));
                Some(duration)
            }
            _ => None,
        }
    }

    /// A copy of the unfenced log.
    pub fn unfenced_log(&self) -> Vec<Entry> {
        self.unfenced
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Tells every contender to finish its current cycle and stop.
    pub fn stop(&self) {
        self.stop.store(true, SeqCst);
    }

    fn stopped(&self) -> bool {
        self.stop.load(SeqCst)
    }

    fn pause_here(&self, point: PausePoint) {
        if let Some(duration) = self.take_pause(point) {
            // Blocks the runtime: nothing of this contender runs meanwhile.
            std::thread::sleep(duration);
        }
    }
}

/// Starts contender `index` on its own thread and runtime, where it connects to
/// `system` through `route` and loops on lock `name` until told to stop.
pub fn spawn(
    index: usize,
    system: Arc<dyn System>,
    route: Route,
    name: String,
    plan: &Plan,
    shared: Arc<Shared>,
) -> JoinHandle<()> {
    let (ttl, hold, wait) = (plan.ttl, plan.hold, plan.acquire_wait);
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            let (backend, store) = system.connect(route, &name).await;
            let lock = Lock::builder(backend, &name, format!("contender-{index}"))
                .timing(timing(ttl))
                .build()
                .expect("a valid lock");
            run(index, &lock, store.as_deref(), hold, wait, &shared).await;
        });
    })
}

/// The contender's loop on `lock`, writing to the backend's `store` too if it has one.
async fn run(
    index: usize,
    lock: &Lock,
    store: Option<&dyn Store>,
    hold: Duration,
    wait: Duration,
    shared: &Shared,
) {
    let ttl = lock.timing().ttl();
    while !shared.stopped() {
        let guard = match lock.acquire_timeout(wait).await {
            Ok(guard) => guard,
            Err(Error::Timeout { .. }) => continue,
            Err(_) => {
                shared.history.acquire_error();
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        shared.set_holder(Some(index));
        let token = guard.token();
        let mut term: Option<Term> = None;
        for _ in 0..WRITES_PER_TERM {
            shared.pause_here(PausePoint::BeforeCheck);
            if !guard.is_valid() {
                break;
            }
            let checked = Instant::now();
            let term = term.get_or_insert(Term {
                contender: index,
                token: token.get(),
                from: checked,
                to: checked,
            });
            shared.pause_here(PausePoint::AfterCheck);
            // Acting now, on the strength of the check above.
            term.to = Instant::now();
            write(shared, index, token, store, ttl).await;
            if !hold.is_zero() {
                tokio::time::sleep(hold).await;
            }
        }
        if shared.holder() == Some(index) {
            shared.set_holder(None);
        }
        if let Some(term) = term {
            shared.history.term(term);
        }
        let _ = guard.release().await;
        // A moment between cycles, as real work would leave: it keeps five spinning
        // threads from starving the servers of CPU.
        tokio::time::sleep(THINK).await;
    }
}

/// One fenced write of a new value to every store.
async fn write(
    shared: &Shared,
    contender: usize,
    token: FencingToken,
    store: Option<&dyn Store>,
    ttl: Duration,
) {
    let op = shared.next_op.fetch_add(1, SeqCst);
    let record = |target, started, outcome| {
        shared.history.write(Write {
            contender,
            token: token.get(),
            op,
            target,
            started,
            ended: Instant::now(),
            outcome,
        });
    };
    let started = Instant::now();
    let entry = (token.get(), op);
    shared
        .unfenced
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(entry);
    record(Target::Unfenced, started, Outcome::Accepted);

    let started = Instant::now();
    let result = shared.core.update(token, |log| log.push(entry));
    record(Target::Core, started, outcome(result));

    if let Some(store) = store {
        let started = Instant::now();
        let result = tokio::time::timeout(ttl, store.write(token, op))
            .await
            .unwrap_or_else(|_| Err(Error::transient("the write timed out")));
        record(Target::Backend, started, outcome(result));
    }
}

fn outcome(result: lock_core::Result<()>) -> Outcome {
    match result {
        Ok(()) => Outcome::Accepted,
        Err(Error::StaleToken { .. }) => Outcome::Rejected,
        Err(_) => Outcome::Unknown,
    }
}
