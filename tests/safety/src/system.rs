//! What the suite needs from a backend: locks and fenced stores for contenders, links
//! the nemesis can cut, and control over the server.

use std::{path::Path, sync::Arc, time::Duration};

use async_trait::async_trait;
use lock_core::{Backend, Faulty, FencingToken, MemoryBackend};
use lock_tests::{Proxy, Served};
use tokio::sync::Mutex;

use crate::{
    nemesis::{Bounds, Nemesis},
    scenario::Plan,
};

/// A backend's own fenced store: a register on the server written with the backend's
/// fenced-write helper.
#[async_trait]
pub trait Store: Send + Sync {
    /// Writes `op` if `token` is not stale.
    async fn write(&self, token: FencingToken, op: u64) -> lock_core::Result<()>;
    /// The value last written, if any.
    async fn read(&self) -> lock_core::Result<Option<u64>>;
}

/// One contender's way to the server, which the nemesis can break.
pub enum Link {
    /// A TCP proxy in front of each server the contender reaches (one, or each member
    /// of a cluster).
    Proxies(Vec<Proxy>),
    /// The in-memory backend behind a fault switch of this contender's own.
    Memory(Faulty<MemoryBackend>),
}

/// What [`System::connect`] gives a contender: the backend for its lock, and the
/// backend's fenced store (`None` if it has none).
pub type Connection = (Arc<dyn Backend>, Option<Box<dyn Store>>);

/// Where a contender connects: what [`Link::route`] hands to its thread.
#[derive(Clone)]
pub enum Route {
    /// The ports of the contender's proxies, one per server it reaches.
    Ports(Vec<u16>),
    /// The contender's fault switch over the in-memory backend.
    Memory(Faulty<MemoryBackend>),
}

impl Route {
    /// The port of the contender's proxy to its one server; panics on a route to the
    /// in-memory backend, which has no server to proxy, or to several servers.
    pub fn port(self) -> u16 {
        match self.ports().as_slice() {
            [port] => *port,
            ports => panic!("one server, not {ports:?}"),
        }
    }

    /// The ports of the contender's proxies; panics on a route to the in-memory backend.
    pub fn ports(self) -> Vec<u16> {
        match self {
            Route::Ports(ports) => ports,
            Route::Memory(_) => panic!("a server is reached through a proxy"),
        }
    }
}

impl Link {
    /// Where the contender behind this link connects.
    pub fn route(&self) -> Route {
        match self {
            Link::Proxies(proxies) => Route::Ports(proxies.iter().map(Proxy::port).collect()),
            Link::Memory(faulty) => Route::Memory(faulty.clone()),
        }
    }

    /// Cuts the link: connections close and requests fail at once.
    pub fn cut(&self) {
        match self {
            Link::Proxies(proxies) => proxies.iter().for_each(Proxy::cut),
            Link::Memory(faulty) => faulty.partition(true),
        }
    }

    /// Blackholes the link: requests hang.
    pub fn blackhole(&self) {
        match self {
            Link::Proxies(proxies) => proxies.iter().for_each(Proxy::blackhole),
            Link::Memory(faulty) => faulty.freeze(true),
        }
    }

    /// Adds latency each way (proxied links only).
    pub fn set_latency(&self, latency: Duration) {
        if let Link::Proxies(proxies) = self {
            proxies.iter().for_each(|proxy| proxy.set_latency(latency));
        }
    }

    /// Back to normal.
    pub fn heal(&self) {
        match self {
            Link::Proxies(proxies) => proxies.iter().for_each(Proxy::heal),
            Link::Memory(faulty) => faulty.heal(),
        }
    }
}

/// A backend under test, with its server.
///
/// A system that one process of the harness serves (etcd, Redis, an apiserver) names
/// it as its [`process`](System::process) and takes the defaults: the process' name, a
/// proxy of its own to the server for each contender, the store of a connection
/// straight to the server, and the nemesis' controls on the process. A system without
/// one overrides them all.
#[async_trait]
pub trait System: Send + Sync + 'static {
    /// The harness process serving this system, for the defaults; `None` by default.
    fn process(&self) -> Option<&Process> {
        None
    }

    /// The backend's name for the table: by default, the one its process was given.
    fn name(&self) -> &'static str {
        process(self).name
    }

    /// Whether this backend can suffer `nemesis` (the in-memory backend has no server
    /// to restart, for one). By default every nemesis of a single server but
    /// [`Nemesis::DataLoss`]: losing its data is not a fault a server of record promises
    /// to survive.
    fn supports(&self, nemesis: Nemesis) -> bool {
        nemesis != Nemesis::DataLoss && !nemesis.of_topology()
    }

    /// The plan this backend runs `plan` as: by default `plan` itself.
    fn plan(&self, plan: &Plan) -> Plan {
        plan.clone()
    }

    /// What `nemesis` means for the guards on this backend: by default the nemesis' own
    /// [`bounds`](Nemesis::bounds).
    fn bounds(&self, nemesis: Nemesis) -> Bounds {
        nemesis.bounds()
    }

    /// A new link to the server for contender number `contender`.
    async fn link(&self, _contender: usize) -> Link {
        Link::Proxies(vec![Proxy::to_port(process(self).port()).await])
    }

    /// Injects a fault of the topology ([`Nemesis::of_topology`]) that lasts about
    /// `lasting`, and heals it; `holder` is the contender holding the lock when it
    /// starts. Only systems of several servers support these.
    async fn topology_fault(&self, nemesis: Nemesis, _holder: usize, _lasting: Duration) {
        panic!("{} does not suffer {nemesis:?}", self.name());
    }

    /// Prepares the fenced store of lock `name` (e.g. creates the object it writes).
    async fn prepare(&self, _name: &str) {}

    /// The backend for a contender's lock `name`, and the backend's fenced store of
    /// it, connected through `route`; the contender builds the lock itself, the same
    /// way for every system. Runs on the contender's own runtime, so its connections
    /// stop when that runtime is paused.
    async fn connect(&self, route: Route, name: &str) -> Connection;

    /// The backend's fenced store of lock `name`, connected directly, to read the end
    /// state; `None` if the backend has no store of its own.
    async fn store(&self, name: &str) -> Option<Box<dyn Store>> {
        let (_, store) = self
            .connect(Route::Ports(vec![process(self).port()]), name)
            .await;
        store
    }

    /// Freezes the server (SIGSTOP).
    async fn pause_server(&self) {
        process(self).server.pause().await;
    }

    /// Thaws the server (SIGCONT).
    async fn resume_server(&self) {
        process(self).server.resume().await;
    }

    /// Kills the server (SIGKILL) and starts it again, with or without its data; returns
    /// once it answers.
    async fn restart_server(&self, lose_data: bool) {
        assert!(
            !lose_data || self.supports(Nemesis::DataLoss),
            "{} does not suffer losing its data",
            self.name()
        );
        process(self).server.restart(lose_data).await;
    }
}

/// The harness process serving a system: the backend's name for the table, its server
/// (behind a lock for the nemesis), and the port contenders reach it on.
pub struct Process {
    name: &'static str,
    server: Box<dyn Control>,
    port: u16,
}

impl Process {
    /// `server` of backend `name`, listening on `port`.
    pub fn new(name: &'static str, server: impl Served + 'static, port: u16) -> Self {
        Self {
            name,
            server: Box::new(Mutex::new(server)),
            port,
        }
    }

    /// The port contenders reach the server on (each through a proxy of its own).
    pub fn port(&self) -> u16 {
        self.port
    }
}

fn process<S: System + ?Sized>(system: &S) -> &Process {
    system
        .process()
        .expect("a system without a server process overrides what needs one")
}

/// What the nemesis does to a harness server.
#[async_trait]
trait Control: Send + Sync {
    async fn pause(&self);
    async fn resume(&self);
    async fn restart(&self, lose_data: bool);
}

#[async_trait]
impl<S: Served + 'static> Control for Mutex<S> {
    async fn pause(&self) {
        self.lock().await.server().pause();
    }

    async fn resume(&self) {
        self.lock().await.server().resume();
    }

    async fn restart(&self, lose_data: bool) {
        let mut server = self.lock().await;
        server.kill();
        if lose_data {
            remove_data(server.server().dir());
        }
        server.restart().await;
    }
}

/// Removes everything in a killed server's folder but its log.
fn remove_data(dir: &Path) {
    for entry in std::fs::read_dir(dir)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", dir.display()))
        .flatten()
    {
        let path = entry.path();
        if path.extension().is_some_and(|ext| ext == "log") {
            continue; // the server's log, not its data
        }
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.unwrap_or_else(|error| panic!("cannot remove {}: {error}", path.display()));
    }
}

/// The timing every scenario uses: the drift margin is the declared bound on a pause
/// between a validity check and the action it allows.
pub fn timing(ttl: Duration) -> lock_core::Timing {
    lock_core::Timing::new(ttl).with_drift_margin(Duration::from_millis(100))
}
