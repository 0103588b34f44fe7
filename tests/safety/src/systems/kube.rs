//! Kubernetes: a real kube-apiserver (with its own etcd); the fenced store is a
//! ConfigMap written with `fenced_update`.

use std::sync::Arc;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Api, api::PostParams};
use lock_core::{Error, FencingToken};
use lock_kube::{KubeBackend, fenced_update, nodelay_client};
use lock_tests::{Kube, Proxy};
use tokio::sync::Mutex;

use crate::{
    nemesis::Nemesis,
    system::{Connection, Link, Route, Store, System},
};

/// A local apiserver of the suite's own.
pub struct KubeSystem {
    kube: Mutex<Kube>,
    config: kube::Config,
    port: u16,
    namespace: String,
}

impl KubeSystem {
    /// Starts the apiserver.
    pub async fn start() -> Self {
        let kube = Kube::start().await;
        let config = kube.config(false).await;
        let port = config
            .cluster_url
            .port_u16()
            .expect("the apiserver URL names its port");
        let namespace = kube.namespace().to_owned();
        Self {
            kube: Mutex::new(kube),
            config,
            port,
            namespace,
        }
    }

    fn client(&self, port: u16) -> kube::Client {
        let mut config = self.config.clone();
        config.cluster_url = format!("https://127.0.0.1:{port}")
            .parse()
            .expect("a valid URL");
        nodelay_client(config).expect("a kube client")
    }

    fn config_maps(&self, port: u16) -> Api<ConfigMap> {
        Api::namespaced(self.client(port), &self.namespace)
    }
}

struct ConfigMapStore {
    api: Api<ConfigMap>,
    name: String,
}

const VALUE: &str = "value";

#[async_trait]
impl Store for ConfigMapStore {
    async fn write(&self, token: FencingToken, op: u64) -> lock_core::Result<()> {
        fenced_update(&self.api, &self.name, token, |map| {
            let data = map.data.get_or_insert_with(Default::default);
            data.insert(VALUE.to_owned(), op.to_string());
        })
        .await
        .map(drop)
    }

    async fn read(&self) -> lock_core::Result<Option<u64>> {
        let map = self
            .api
            .get(&self.name)
            .await
            .map_err(|error| Error::transient(format!("cannot read the ConfigMap: {error}")))?;
        Ok(map.data.and_then(|data| data.get(VALUE)?.parse().ok()))
    }
}

#[async_trait]
impl System for KubeSystem {
    fn name(&self) -> &'static str {
        "kube"
    }

    fn supports(&self, nemesis: Nemesis) -> bool {
        // The apiserver keeps its data in etcd; losing it is etcd's scenario.
        nemesis != Nemesis::DataLoss
    }

    async fn link(&self) -> Link {
        Link::Proxy(Proxy::to_port(self.port).await)
    }

    async fn prepare(&self, name: &str) {
        let map = ConfigMap {
            metadata: kube::api::ObjectMeta {
                name: Some(name.to_owned()),
                ..Default::default()
            },
            ..Default::default()
        };
        self.config_maps(self.port)
            .create(&PostParams::default(), &map)
            .await
            .expect("create the fenced ConfigMap");
    }

    async fn connect(&self, route: Route, name: &str) -> Connection {
        let client = self.client(route.port());
        let store = ConfigMapStore {
            api: Api::namespaced(client.clone(), &self.namespace),
            name: name.to_owned(),
        };
        (
            Arc::new(KubeBackend::new(client, &self.namespace)),
            Some(Box::new(store)),
        )
    }

    async fn store(&self, name: &str) -> Option<Box<dyn Store>> {
        Some(Box::new(ConfigMapStore {
            api: self.config_maps(self.port),
            name: name.to_owned(),
        }))
    }

    async fn pause_server(&self) {
        let kube = self.kube.lock().await;
        kube.apiserver().expect("a local apiserver").pause();
    }

    async fn resume_server(&self) {
        let kube = self.kube.lock().await;
        kube.apiserver().expect("a local apiserver").resume();
    }

    async fn restart_server(&self, _lose_data: bool) {
        self.kube.lock().await.restart_apiserver().await;
    }
}
