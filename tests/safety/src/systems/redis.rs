//! Redis: a real redis-server with an fsynced append-only file; the fenced store is a
//! key written with `fenced_set`.

use std::sync::Arc;

use async_trait::async_trait;
use lock_core::{Error, FencingToken};
use lock_redis::{RedisBackend, fenced_set};
use lock_tests::{Persistence, Proxy, Redis};
use redis::{AsyncCommands, aio::ConnectionManager};
use tokio::sync::Mutex;

use crate::{
    nemesis::Nemesis,
    system::{Connection, Link, Route, Store, System},
};

/// A redis-server of the suite's own, with `appendfsync always`.
pub struct RedisSystem {
    redis: Mutex<Redis>,
    port: u16,
}

impl RedisSystem {
    /// Starts Redis.
    pub async fn start() -> Self {
        let redis = Redis::start_with(Persistence::AppendOnly).await;
        let port = redis.port();
        Self {
            redis: Mutex::new(redis),
            port,
        }
    }
}

async fn backend(port: u16) -> RedisBackend {
    RedisBackend::connect(&format!("redis://127.0.0.1:{port}"))
        .await
        .expect("connect to Redis")
}

struct KeyStore {
    connection: ConnectionManager,
    key: String,
}

impl KeyStore {
    fn new(backend: &RedisBackend, name: &str) -> Self {
        Self {
            connection: backend.connection(),
            key: format!("safety:{name}"),
        }
    }
}

#[async_trait]
impl Store for KeyStore {
    async fn write(&self, token: FencingToken, op: u64) -> lock_core::Result<()> {
        fenced_set(&mut self.connection.clone(), &self.key, op, token).await
    }

    async fn read(&self) -> lock_core::Result<Option<u64>> {
        self.connection
            .clone()
            .get(&self.key)
            .await
            .map_err(|error| Error::transient(format!("cannot read {}: {error}", self.key)))
    }
}

#[async_trait]
impl System for RedisSystem {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn supports(&self, _nemesis: Nemesis) -> bool {
        true
    }

    async fn link(&self) -> Link {
        Link::Proxy(Proxy::to_port(self.port).await)
    }

    async fn connect(&self, route: Route, name: &str) -> Connection {
        let backend = backend(route.port()).await;
        let store = KeyStore::new(&backend, name);
        (Arc::new(backend), Some(Box::new(store)))
    }

    async fn store(&self, name: &str) -> Option<Box<dyn Store>> {
        Some(Box::new(KeyStore::new(&backend(self.port).await, name)))
    }

    async fn pause_server(&self) {
        self.redis.lock().await.server().pause();
    }

    async fn resume_server(&self) {
        self.redis.lock().await.server().resume();
    }

    async fn restart_server(&self, lose_data: bool) {
        let mut redis = self.redis.lock().await;
        redis.kill();
        if lose_data {
            let dir = redis.server().dir().to_owned();
            for entry in std::fs::read_dir(&dir)
                .expect("read the Redis folder")
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
        redis.restart().await;
    }
}
