//! The libraries measured: ours on each backend, and the ones users would pick instead.

use std::path::Path;

use lock_tests::{Etcd, Redis};

use crate::{baselines::Settings, subjects::Subject};

/// One row of a table: a library with the settings it runs with.
pub enum Library<'a> {
    /// Ours, on one backend.
    Ours(&'a Subject<'a>),
    /// Ours, on one backend, with a standby waiting for the lock held.
    OursWithStandby(&'a Subject<'a>),
    /// kube-lease-manager 0.13.
    KubeLeaseManager(Settings),
    /// kubert 0.25's lease module, with a lease of this many seconds (it has no defaults).
    Kubert(u64),
    /// kube-leader-election 0.44 in processes of its own (the binary), with a lease of
    /// this many seconds (it has no defaults).
    KubeLeaderElection(&'a Path, u64),
    /// etcd's own Lock RPC.
    EtcdLockRpc(&'a Etcd),
    /// rslock 0.10 (Redlock on one Redis).
    Rslock(&'a Redis),
}

impl Library<'_> {
    /// How the tables name it.
    pub fn label(&self) -> String {
        match self {
            Library::Ours(subject) => format!("lock-{}", subject.name()),
            Library::OursWithStandby(subject) => {
                format!("lock-{}, leader + standby waiting", subject.name())
            }
            Library::KubeLeaseManager(settings) => settings.label(),
            Library::Kubert(15) => "kubert 0.25 lease, 15 s lease (it has no defaults)".to_owned(),
            Library::Kubert(seconds) => format!("kubert 0.25 lease, {seconds} s lease"),
            Library::KubeLeaderElection(_, 15) => {
                "kube-leader-election 0.44, 15 s lease polled every 5 s (its README's; no defaults)"
                    .to_owned()
            }
            Library::KubeLeaderElection(_, seconds) => {
                format!("kube-leader-election 0.44, {seconds} s lease")
            }
            Library::EtcdLockRpc(_) => "etcd Lock RPC".to_owned(),
            Library::Rslock(_) => "rslock 0.10".to_owned(),
        }
    }
}
