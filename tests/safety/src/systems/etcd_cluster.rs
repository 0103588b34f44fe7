//! etcd as users run it: a three-member cluster, each contender connected to every
//! member through a proxy of its own (`EtcdBackend::connect`, failing over between
//! members). The fenced store is a key written with `fenced_put`.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use lock_etcd::EtcdBackend;
use lock_tests::{EtcdCluster, Proxy};
use tokio::sync::Mutex;

use crate::{
    Plan,
    nemesis::Nemesis,
    system::{Connection, Link, Route, Store, System},
    systems::etcd::KeyStore,
};

/// A three-member etcd cluster of the suite's own.
pub struct EtcdClusterSystem {
    cluster: Mutex<EtcdCluster>,
    ports: Vec<u16>,
}

impl EtcdClusterSystem {
    /// Starts the cluster.
    pub async fn start() -> Self {
        let cluster = EtcdCluster::start().await;
        let ports = cluster.client_ports();
        Self {
            cluster: Mutex::new(cluster),
            ports,
        }
    }
}

async fn backend(ports: Vec<u16>) -> EtcdBackend {
    let urls: Vec<String> = ports
        .into_iter()
        .map(|port| format!("http://127.0.0.1:{port}"))
        .collect();
    EtcdBackend::connect(urls, None)
        .await
        .expect("connect to the etcd cluster")
}

#[async_trait]
impl System for EtcdClusterSystem {
    fn name(&self) -> &'static str {
        "etcd-cluster"
    }

    /// The faults of one contender, and of the cluster's leader; a single server's
    /// pause, restart and data loss are the single etcd's rows.
    fn supports(&self, nemesis: Nemesis) -> bool {
        matches!(
            nemesis,
            Nemesis::None
                | Nemesis::HolderCut
                | Nemesis::HolderBlackhole
                | Nemesis::HolderPause
                | Nemesis::Latency
                | Nemesis::PauseAfterCheck
                | Nemesis::LeaderKilled
                | Nemesis::LeaderIsolated
        )
    }

    /// After the leader is cut off, recovery on a loaded machine (CI's, with every other
    /// test running) took longer than TTL + 2 s: the majority's election, and the
    /// contenders' moves off the cut-off member, each take rounds of timeouts.
    fn plan(&self, plan: &Plan) -> Plan {
        Plan {
            recovery_margin: plan.recovery_margin + Duration::from_secs(5),
            ..plan.clone()
        }
    }

    async fn link(&self, _contender: usize) -> Link {
        let mut proxies = Vec::new();
        for &port in &self.ports {
            proxies.push(Proxy::to_port(port).await);
        }
        Link::Proxies(proxies)
    }

    async fn connect(&self, route: Route, name: &str) -> Connection {
        let backend = backend(route.ports()).await;
        let store = KeyStore::new(backend.clone(), name);
        (Arc::new(backend), Some(Box::new(store)))
    }

    async fn store(&self, name: &str) -> Option<Box<dyn Store>> {
        Some(Box::new(KeyStore::new(
            backend(self.ports.clone()).await,
            name,
        )))
    }

    async fn topology_fault(&self, nemesis: Nemesis, _holder: usize, lasting: Duration) {
        leader_fault(&mut *self.cluster.lock().await, nemesis, lasting).await;
    }
}

/// Kills the cluster's leader and restarts it after `lasting`, or cuts it off from its
/// peers that long: the etcd faults of every system over an etcd cluster.
pub(crate) async fn leader_fault(cluster: &mut EtcdCluster, nemesis: Nemesis, lasting: Duration) {
    let leader = cluster.leader().await;
    match nemesis {
        Nemesis::LeaderKilled => {
            cluster.kill(leader);
            tokio::time::sleep(lasting).await;
            cluster.restart(leader).await;
        }
        Nemesis::LeaderIsolated => {
            cluster.isolate(leader);
            tokio::time::sleep(lasting).await;
            cluster.heal();
        }
        other => panic!("not a fault of an etcd cluster's leader: {other:?}"),
    }
}
