//! The faults a scenario injects.

/// One kind of fault, injected while the workload runs and then healed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Nemesis {
    /// No fault: the baseline.
    None,
    /// The holder's connections are closed, and new ones refused.
    HolderCut,
    /// The holder's packets are dropped both ways: requests hang.
    HolderBlackhole,
    /// The holder's whole runtime stops (a stop-the-world pause, renewals included)
    /// for longer than the TTL; it checks its guard before acting again.
    HolderPause,
    /// The server is frozen with SIGSTOP for longer than the TTL.
    ServerPause,
    /// The server is killed with SIGKILL and started again on its data.
    ServerRestart,
    /// Every connection gets 150 ms of latency each way for longer than the TTL.
    Latency,
    /// The server is killed and started again with all its data lost.
    DataLoss,
    /// Out of bounds: the holder pauses for longer than the TTL *between* checking its
    /// guard and writing. Its guard cannot help; only fencing rejects the write.
    PauseAfterCheck,
    /// A cluster's etcd leader is killed (SIGKILL) and started again on its data once the
    /// others have elected a new one.
    LeaderKilled,
    /// A cluster's etcd leader is cut off from its peers, both ways, for longer than the
    /// TTL: a minority of one, which clients still reach.
    LeaderIsolated,
    /// The apiserver the holder talks to is killed, and started again after the fault.
    ApiserverKilled,
    /// The apiserver the holder talks to is frozen (SIGSTOP) for longer than the TTL.
    ApiserverPaused,
    /// The apiserver the holder talks to reaches etcd with 1 s of latency each way for
    /// longer than the TTL: its watch lags, and its writes are slow.
    ApiserverLagging,
    /// The Redis primary is killed; Sentinel promotes the replica, and the old primary
    /// comes back as a replica.
    PrimaryKilled,
}

impl Nemesis {
    /// Every nemesis, in table order.
    pub const ALL: [Nemesis; 15] = [
        Nemesis::None,
        Nemesis::HolderCut,
        Nemesis::HolderBlackhole,
        Nemesis::HolderPause,
        Nemesis::ServerPause,
        Nemesis::ServerRestart,
        Nemesis::Latency,
        Nemesis::DataLoss,
        Nemesis::PauseAfterCheck,
        Nemesis::LeaderKilled,
        Nemesis::LeaderIsolated,
        Nemesis::ApiserverKilled,
        Nemesis::ApiserverPaused,
        Nemesis::ApiserverLagging,
        Nemesis::PrimaryKilled,
    ];

    /// The faults of a topology of several servers (the rows CI runs on those topologies).
    pub const TOPOLOGY: [Nemesis; 6] = [
        Nemesis::LeaderKilled,
        Nemesis::LeaderIsolated,
        Nemesis::ApiserverKilled,
        Nemesis::ApiserverPaused,
        Nemesis::ApiserverLagging,
        Nemesis::PrimaryKilled,
    ];

    /// Whether this fault needs a topology of several servers.
    pub fn of_topology(self) -> bool {
        Self::TOPOLOGY.contains(&self)
    }

    /// A short name for the table.
    pub fn name(self) -> &'static str {
        match self {
            Nemesis::None => "none",
            Nemesis::HolderCut => "holder cut off",
            Nemesis::HolderBlackhole => "holder blackholed",
            Nemesis::HolderPause => "holder paused > TTL",
            Nemesis::ServerPause => "server paused > TTL",
            Nemesis::ServerRestart => "server killed, restarted",
            Nemesis::Latency => "latency 150 ms",
            Nemesis::DataLoss => "BEYOND BOUNDS: server restarted, data lost",
            Nemesis::PauseAfterCheck => "OUT OF BOUNDS: pause between check and write",
            Nemesis::LeaderKilled => "etcd leader killed, restarted",
            Nemesis::LeaderIsolated => "etcd leader cut from its peers > TTL",
            Nemesis::ApiserverKilled => "holder's apiserver killed, restarted",
            Nemesis::ApiserverPaused => "holder's apiserver paused > TTL",
            Nemesis::ApiserverLagging => "holder's apiserver 1 s from etcd > TTL",
            Nemesis::PrimaryKilled => "Redis primary killed, Sentinel failover",
        }
    }

    /// What the fault means for the guards (fencing must hold under every fault), unless
    /// the system says otherwise ([`System::bounds`](crate::System::bounds)).
    pub fn bounds(self) -> Bounds {
        match self {
            Nemesis::PauseAfterCheck => Bounds::Demonstration,
            // The lock's own record is gone, so a new holder can start while the old
            // one's guard still runs: Redis' durability assumption is broken on purpose.
            Nemesis::DataLoss => Bounds::Beyond,
            _ => Bounds::Within,
        }
    }
}

/// Whether a fault stays within the bounds under which guards never overlap: the
/// server keeps the lock's record, and no pause between a validity check and the action
/// it allows is longer than the drift margin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bounds {
    /// Guards must never overlap.
    Within,
    /// Guards may overlap (the fault breaks the backend's own assumptions); fencing must
    /// still reject every stale write.
    Beyond,
    /// Built to make guards overlap: the overlap must be found, and fencing must reject
    /// the late write that the unfenced log accepts.
    Demonstration,
    /// The lock's record survives the fault (guards never overlap, tokens stay in
    /// order), but the fenced store on the same server may lose writes: what the store
    /// suffered is shown, not asserted.
    LockWithin,
    /// Beyond what the backend promises: the row shows what happened (overlaps, lost
    /// writes, stale writes accepted, tokens out of order); nothing is asserted.
    Shown,
}
