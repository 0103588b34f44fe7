//! Kubernetes: a real kube-apiserver (with its own etcd); the fenced store is a
//! ConfigMap written with `fenced_update`.

use std::sync::Arc;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Api, api::PostParams};
use lock_core::{Error, FencingToken};
use lock_kube::{KubeBackend, fenced_update, nodelay_client};
use lock_tests::Kube;

use crate::system::{Connection, Process, Route, Store, System};

/// A local apiserver of the suite's own. It keeps its data in etcd, so it does not
/// suffer [`DataLoss`](crate::Nemesis::DataLoss): losing it is etcd's scenario.
pub struct KubeSystem {
    apiserver: Process,
    config: kube::Config,
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
            apiserver: Process::new("kube", kube, port),
            config,
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
    fn process(&self) -> Option<&Process> {
        Some(&self.apiserver)
    }

    async fn prepare(&self, name: &str) {
        let map = ConfigMap {
            metadata: kube::api::ObjectMeta {
                name: Some(name.to_owned()),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::namespaced(self.client(self.apiserver.port()), &self.namespace)
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
}
