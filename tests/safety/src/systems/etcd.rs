//! etcd: a real etcd; the fenced store is a key written with `fenced_put`.

use std::sync::Arc;

use async_trait::async_trait;
use etcd_client::Client;
use lock_core::{Error, FencingToken};
use lock_etcd::{EtcdBackend, fenced_put};
use lock_tests::Etcd;

use crate::system::{Connection, Process, Route, Store, System};

/// An etcd of the suite's own. etcd is the store of record: losing its data is not a
/// fault it promises to survive, so it does not suffer [`DataLoss`](crate::Nemesis::DataLoss).
pub struct EtcdSystem {
    etcd: Process,
}

impl EtcdSystem {
    /// Starts etcd.
    pub async fn start() -> Self {
        let etcd = Etcd::start().await;
        let port = etcd.port();
        Self {
            etcd: Process::new("etcd", etcd, port),
        }
    }
}

async fn connect(port: u16) -> Client {
    Client::connect([format!("127.0.0.1:{port}")], None)
        .await
        .expect("connect to etcd")
}

/// The register of lock `name`: a key written with `fenced_put` through the backend's
/// member in use.
pub(crate) struct KeyStore {
    backend: EtcdBackend,
    key: String,
}

impl KeyStore {
    pub(crate) fn new(backend: EtcdBackend, name: &str) -> Self {
        Self {
            backend,
            key: format!("safety/{name}"),
        }
    }
}

#[async_trait]
impl Store for KeyStore {
    async fn write(&self, token: FencingToken, op: u64) -> lock_core::Result<()> {
        fenced_put(self.backend.client(), &self.key, op.to_string(), token).await
    }

    async fn read(&self) -> lock_core::Result<Option<u64>> {
        let response = self
            .backend
            .client()
            .clone()
            .get(self.key.as_str(), None)
            .await
            .map_err(|error| Error::transient(format!("cannot read {}: {error}", self.key)))?;
        Ok(response
            .kvs()
            .first()
            .and_then(|kv| std::str::from_utf8(kv.value()).ok()?.parse().ok()))
    }
}

#[async_trait]
impl System for EtcdSystem {
    fn process(&self) -> Option<&Process> {
        Some(&self.etcd)
    }

    async fn connect(&self, route: Route, name: &str) -> Connection {
        let backend = EtcdBackend::new(connect(route.port()).await);
        let store = KeyStore::new(backend.clone(), name);
        (Arc::new(backend), Some(Box::new(store)))
    }
}
