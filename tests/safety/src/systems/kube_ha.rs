//! Kubernetes as users run it: two kube-apiservers over a three-member etcd cluster.
//! Contenders alternate between the apiservers (contender `k` on apiserver `k % 2`),
//! each through a proxy of its own. The fenced store is a ConfigMap written with
//! `fenced_update`, through the contender's own apiserver.

use std::{
    collections::HashMap,
    sync::{Arc, PoisonError},
    time::Duration,
};

use async_trait::async_trait;
use lock_kube::{KubeBackend, nodelay_client};
use lock_tests::{APISERVERS, KubeHa, Proxy};
use tokio::sync::Mutex;

use crate::{
    Plan,
    nemesis::Nemesis,
    system::{Connection, Link, Route, Store, System},
    systems::{
        etcd_cluster::leader_fault,
        kube::{KubeStore, Written},
    },
};

/// Two apiservers and their etcd cluster, of the suite's own.
pub struct KubeHaSystem {
    control_plane: Mutex<KubeHa>,
    /// Each apiserver's admin configuration.
    configs: Vec<kube::Config>,
    /// Which apiserver each contender's proxy (by port) leads to.
    apiserver_behind: std::sync::Mutex<HashMap<u16, usize>>,
}

const NAMESPACE: &str = "default";

/// etcd's own bound on a request it cannot commit, at the default election timeout.
const ETCD_REQUEST_TIMEOUT: Duration = Duration::from_secs(7);

impl KubeHaSystem {
    /// Starts the control plane.
    pub async fn start() -> Self {
        let control_plane = KubeHa::start().await;
        let configs = (0..APISERVERS).map(|i| control_plane.config(i)).collect();
        Self {
            control_plane: Mutex::new(control_plane),
            configs,
            apiserver_behind: std::sync::Mutex::default(),
        }
    }

    /// A client of apiserver `index` through the proxy on `port`.
    fn client(&self, index: usize, port: u16) -> kube::Client {
        let mut config = self.configs[index].clone();
        config.cluster_url = format!("https://127.0.0.1:{port}")
            .parse()
            .expect("a valid URL");
        nodelay_client(config).expect("a kube client")
    }

    /// The apiserver a contender's route leads to, and the route's port.
    fn apiserver_of(&self, route: Route) -> (usize, u16) {
        let port = route.port();
        let behind = self
            .apiserver_behind
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        (behind[&port], port)
    }
}

#[async_trait]
impl System for KubeHaSystem {
    fn name(&self) -> &'static str {
        "kube-ha"
    }

    fn supports(&self, nemesis: Nemesis) -> bool {
        matches!(
            nemesis,
            Nemesis::None
                | Nemesis::HolderCut
                | Nemesis::HolderBlackhole
                | Nemesis::HolderPause
                | Nemesis::PauseAfterCheck
                | Nemesis::LeaderKilled
                | Nemesis::LeaderIsolated
                | Nemesis::ApiserverKilled
                | Nemesis::ApiserverPaused
                | Nemesis::ApiserverLagging
        )
    }

    /// A proxy to apiserver `contender % 2`.
    async fn link(&self, contender: usize) -> Link {
        let index = contender % APISERVERS;
        let apiserver = self.configs[index]
            .cluster_url
            .port_u16()
            .expect("the apiserver URL names its port");
        let proxy = Proxy::to_port(apiserver).await;
        self.apiserver_behind
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(proxy.port(), index);
        Link::Proxies(vec![proxy])
    }

    /// An apiserver's requests to an etcd member cut off from its peers wait out etcd's
    /// request timeout (5 s plus two election timeouts: 7 s) before it tries another
    /// member, so recovery after such a fault may take that much longer.
    fn plan(&self, plan: &Plan) -> Plan {
        Plan {
            recovery_margin: plan.recovery_margin + ETCD_REQUEST_TIMEOUT,
            ..plan.clone()
        }
    }

    async fn prepare(&self, name: &str) {
        let client = nodelay_client(self.configs[0].clone()).expect("a kube client");
        KubeStore::new(Written::Update, &client, NAMESPACE, name)
            .create()
            .await;
    }

    async fn connect(&self, route: Route, name: &str) -> Connection {
        let (index, port) = self.apiserver_of(route);
        let client = self.client(index, port);
        let store = KubeStore::new(Written::Update, &client, NAMESPACE, name);
        (
            Arc::new(KubeBackend::new(client, NAMESPACE)),
            Some(Box::new(store)),
        )
    }

    async fn store(&self, name: &str) -> Option<Box<dyn Store>> {
        let client = nodelay_client(self.configs[0].clone()).expect("a kube client");
        Some(Box::new(KubeStore::new(
            Written::Update,
            &client,
            NAMESPACE,
            name,
        )))
    }

    async fn topology_fault(&self, nemesis: Nemesis, holder: usize, lasting: Duration) {
        let mut control_plane = self.control_plane.lock().await;
        let apiserver = holder % APISERVERS;
        match nemesis {
            Nemesis::ApiserverKilled => {
                control_plane.kill(apiserver);
                tokio::time::sleep(lasting).await;
                control_plane.restart(apiserver).await;
            }
            Nemesis::ApiserverPaused => {
                control_plane.pause(apiserver);
                tokio::time::sleep(lasting).await;
                control_plane.resume(apiserver);
            }
            Nemesis::ApiserverLagging => {
                control_plane.lag(apiserver, Duration::from_secs(1));
                tokio::time::sleep(lasting).await;
                control_plane.heal();
            }
            Nemesis::LeaderKilled | Nemesis::LeaderIsolated => {
                leader_fault(control_plane.etcd_mut(), nemesis, lasting).await;
            }
            other => panic!("kube-ha does not suffer {other:?}"),
        }
    }
}
