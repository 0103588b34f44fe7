//! Kubernetes: a real kube-apiserver (with its own etcd). The fenced store is a
//! register on the server written by one kind of fenced write: a ConfigMap written
//! with `fenced_update` (system `kube`) or by server-side apply with `fenced_apply`
//! (`kube-apply`), or a custom resource's status written with `fenced_status`
//! (`kube-status`).

use std::sync::Arc;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api,
    api::{DynamicObject, PatchParams, PostParams},
};
use lock_core::{Error, FencingToken};
use lock_kube::{KubeBackend, fenced_apply, fenced_status, fenced_update, nodelay_client};
use lock_tests::{Kube, widget_resource};
use serde_json::json;

use crate::Nemesis;

use crate::system::{Connection, Process, Route, Store, System};

/// A local apiserver of the suite's own. It keeps its data in etcd, so it does not
/// suffer [`DataLoss`](crate::Nemesis::DataLoss): losing it is etcd's scenario.
pub struct KubeSystem {
    apiserver: Process,
    config: kube::Config,
    namespace: String,
    store: Written,
}

/// Which kind of fenced write the store is written by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    /// `fenced_update`: a GET, then a PUT of the changed ConfigMap.
    Update,
    /// `fenced_apply`: server-side apply of the ConfigMap's data.
    Apply,
    /// `fenced_status`: the status of a custom resource.
    Status,
}

impl KubeSystem {
    /// Starts the apiserver; the store is written by `store`.
    pub async fn start(store: Written) -> Self {
        let kube = Kube::start().await;
        if store == Written::Status {
            kube.widgets(true).await;
        }
        let config = kube.config(false).await;
        let port = config
            .cluster_url
            .port_u16()
            .expect("the apiserver URL names its port");
        let namespace = kube.namespace().to_owned();
        let name = match store {
            Written::Update => "kube",
            Written::Apply => "kube-apply",
            Written::Status => "kube-status",
        };
        Self {
            apiserver: Process::new(name, kube, port),
            config,
            namespace,
            store,
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

/// The register: the ConfigMap's `value`, or the widget's `status.value`.
pub(crate) struct KubeStore {
    kind: Written,
    maps: Api<ConfigMap>,
    widgets: Api<DynamicObject>,
    name: String,
}

const VALUE: &str = "value";

impl KubeStore {
    /// The register of lock `name`, written by `kind` through `client`.
    pub(crate) fn new(kind: Written, client: &kube::Client, namespace: &str, name: &str) -> Self {
        Self {
            kind,
            maps: Api::namespaced(client.clone(), namespace),
            widgets: Api::namespaced_with(client.clone(), namespace, &widget_resource(true)),
            name: name.to_owned(),
        }
    }

    /// Creates the register's object.
    pub(crate) async fn create(&self) {
        if self.kind == Written::Status {
            let mut widget = DynamicObject::new(&self.name, &widget_resource(true));
            widget.data = json!({ "spec": {} });
            self.widgets
                .create(&PostParams::default(), &widget)
                .await
                .expect("create the fenced widget");
            return;
        }
        let map = ConfigMap {
            metadata: kube::api::ObjectMeta {
                name: Some(self.name.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        self.maps
            .create(&PostParams::default(), &map)
            .await
            .expect("create the fenced ConfigMap");
    }
}

#[async_trait]
impl Store for KubeStore {
    async fn write(&self, token: FencingToken, op: u64) -> lock_core::Result<()> {
        let (name, value) = (&self.name, op.to_string());
        match self.kind {
            Written::Update => fenced_update(&self.maps, name, token, |map| {
                let data = map.data.get_or_insert_with(Default::default);
                data.insert(VALUE.to_owned(), value.clone());
            })
            .await
            .map(drop),
            Written::Apply => {
                let config =
                    json!({ "apiVersion": "v1", "kind": "ConfigMap", "data": { VALUE: value } });
                let params = PatchParams::apply("lock-safety").force();
                fenced_apply(&self.maps, name, token, &params, &config)
                    .await
                    .map(drop)
            }
            Written::Status => fenced_status(&self.widgets, name, token, &json!({ VALUE: value }))
                .await
                .map(drop),
        }
    }

    async fn read(&self) -> lock_core::Result<Option<u64>> {
        let unreadable = |error| Error::backend("cannot read the fenced store", true, error);
        let value = match self.kind {
            Written::Update | Written::Apply => {
                let map = self.maps.get(&self.name).await.map_err(unreadable)?;
                map.data.and_then(|data| data.get(VALUE).cloned())
            }
            Written::Status => {
                let widget = self.widgets.get(&self.name).await.map_err(unreadable)?;
                widget.data["status"][VALUE].as_str().map(str::to_owned)
            }
        };
        Ok(value.and_then(|value| value.parse().ok()))
    }
}

#[async_trait]
impl System for KubeSystem {
    fn process(&self) -> Option<&Process> {
        Some(&self.apiserver)
    }

    /// `kube` runs every scenario; the rows of the other kinds of write are those where
    /// a former holder does write late: paused past the TTL, and paused between its
    /// check and its write.
    fn supports(&self, nemesis: Nemesis) -> bool {
        match self.store {
            Written::Update => nemesis != Nemesis::DataLoss && !nemesis.of_topology(),
            Written::Apply | Written::Status => {
                matches!(nemesis, Nemesis::HolderPause | Nemesis::PauseAfterCheck)
            }
        }
    }

    async fn prepare(&self, name: &str) {
        let client = self.client(self.apiserver.port());
        KubeStore::new(self.store, &client, &self.namespace, name)
            .create()
            .await;
    }

    async fn connect(&self, route: Route, name: &str) -> Connection {
        let client = self.client(route.port());
        let store = KubeStore::new(self.store, &client, &self.namespace, name);
        (
            Arc::new(KubeBackend::new(client, &self.namespace)),
            Some(Box::new(store)),
        )
    }
}
