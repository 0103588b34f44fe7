//! Redis: a real redis-server with an fsynced append-only file; the fenced store is a
//! key written with `fenced_set`.

use std::sync::Arc;

use async_trait::async_trait;
use lock_core::{Error, FencingToken};
use lock_redis::{RedisBackend, fenced_set};
use lock_tests::{Persistence, Redis};
use redis::AsyncCommands;

use crate::{
    nemesis::Nemesis,
    system::{Connection, Process, Route, Store, System},
};

/// A redis-server of the suite's own, with `appendfsync always`.
pub struct RedisSystem {
    redis: Process,
}

impl RedisSystem {
    /// Starts Redis.
    pub async fn start() -> Self {
        let redis = Redis::start_with(Persistence::AppendOnly).await;
        let port = redis.port();
        Self {
            redis: Process::new("redis", redis, port),
        }
    }
}

async fn backend(port: u16) -> RedisBackend {
    RedisBackend::connect(&format!("redis://127.0.0.1:{port}"))
        .await
        .expect("connect to Redis")
}

/// The register of lock `name`: a key written with `fenced_set` on the server the
/// backend's locks are on (with Sentinel: the primary at the time of the write).
pub(crate) struct KeyStore {
    backend: RedisBackend,
    key: String,
}

impl KeyStore {
    pub(crate) fn new(backend: &RedisBackend, name: &str) -> Self {
        Self {
            backend: backend.clone(),
            key: format!("safety:{name}"),
        }
    }
}

#[async_trait]
impl Store for KeyStore {
    async fn write(&self, token: FencingToken, op: u64) -> lock_core::Result<()> {
        fenced_set(&mut self.backend.connection(), &self.key, op, token).await
    }

    async fn read(&self) -> lock_core::Result<Option<u64>> {
        self.backend
            .connection()
            .get(&self.key)
            .await
            .map_err(|error| Error::transient(format!("cannot read {}: {error}", self.key)))
    }
}

#[async_trait]
impl System for RedisSystem {
    fn process(&self) -> Option<&Process> {
        Some(&self.redis)
    }

    /// Every nemesis of a single server, data loss included: Redis' durability is the
    /// assumption the suite breaks on purpose.
    fn supports(&self, nemesis: Nemesis) -> bool {
        !nemesis.of_topology()
    }

    async fn connect(&self, route: Route, name: &str) -> Connection {
        let backend = backend(route.port()).await;
        let store = KeyStore::new(&backend, name);
        (Arc::new(backend), Some(Box::new(store)))
    }
}
