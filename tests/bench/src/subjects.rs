//! The four backends under test, each on its real server (memory: in-process), and how
//! many requests their servers have served.

use std::{sync::Arc, time::Duration};

use lock_core::{Backend, Lock, MemoryBackend, Timing};
use lock_tests::{Etcd, Kube, Redis};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A backend under test.
pub enum Subject<'a> {
    /// lock-core's in-memory backend.
    Memory(MemoryBackend),
    /// Kubernetes Leases on the harness's kube-apiserver, with `nodelay_client`.
    Kube(&'a Kube),
    /// The same with kube's default client (Nagle's algorithm on).
    KubeDefaultClient(&'a Kube),
    /// etcd.
    Etcd(&'a Etcd),
    /// Redis.
    Redis(&'a Redis),
}

impl Subject<'_> {
    /// The backend's name in the tables.
    pub fn name(&self) -> &'static str {
        match self {
            Subject::Memory(_) => "memory",
            Subject::Kube(_) => "kube",
            Subject::KubeDefaultClient(_) => "kube, kube's default client (Nagle on)",
            Subject::Etcd(_) => "etcd",
            Subject::Redis(_) => "redis",
        }
    }

    /// A backend on a connection of its own.
    pub async fn backend(&self) -> Arc<dyn Backend> {
        match self {
            Subject::Memory(memory) => Arc::new(memory.clone()),
            Subject::Kube(kube) => {
                let client = lock_kube::nodelay_client(kube.config(false).await).expect("a client");
                Arc::new(lock_kube::KubeBackend::new(client, kube.namespace()))
            }
            Subject::KubeDefaultClient(kube) => {
                let client = kube::Client::try_from(kube.config(false).await).expect("a client");
                Arc::new(lock_kube::KubeBackend::new(client, kube.namespace()))
            }
            Subject::Etcd(etcd) => Arc::new(lock_etcd::EtcdBackend::new(etcd.client().await)),
            Subject::Redis(redis) => Arc::new(
                lock_redis::RedisBackend::connect(&redis.url())
                    .await
                    .expect("connect"),
            ),
        }
    }

    /// A lock on a connection of its own.
    pub async fn lock(&self, name: &str, identity: &str, ttl: Duration) -> Lock {
        Lock::builder(self.backend().await, name, identity)
            .timing(Timing::new(ttl))
            .build()
            .expect("a valid lock")
    }

    /// Requests the server has served so far, where it counts them: lease requests for
    /// the apiserver, gRPC calls for etcd, scripts and (un)subscriptions for Redis.
    pub async fn requests(&self) -> Option<f64> {
        match self {
            Subject::Memory(_) => None,
            Subject::Kube(kube) | Subject::KubeDefaultClient(kube) => {
                Some(kube_lease_requests(kube).await)
            }
            Subject::Etcd(etcd) => Some(etcd_grpc_calls(etcd.port()).await),
            Subject::Redis(redis) => {
                // Scripts' own calls count in total_commands_processed; client requests
                // are what the client sent: scripts, and (un)subscriptions for waiting.
                let mut connection = redis.connection().await;
                let stats: String = redis::cmd("INFO")
                    .arg("commandstats")
                    .query_async(&mut connection)
                    .await
                    .expect("INFO commandstats");
                Some(
                    stats
                        .lines()
                        .filter(|line| {
                            ["evalsha", "eval", "subscribe", "unsubscribe"]
                                .iter()
                                .any(|command| line.starts_with(&format!("cmdstat_{command}:")))
                        })
                        .filter_map(|line| {
                            let calls = line.split_once("calls=")?.1;
                            calls.split(',').next()?.parse::<f64>().ok()
                        })
                        .sum(),
                )
            }
        }
    }
}

/// Lease requests the apiserver has served, from its own metrics.
pub async fn kube_lease_requests(kube: &Kube) -> f64 {
    kube_lease_requests_by_verb(kube).await.values().sum()
}

/// Lease requests the apiserver has served, by verb (`GET`, `LIST`, `PUT`, ...), from its
/// own metrics.
pub async fn kube_lease_requests_by_verb(kube: &Kube) -> std::collections::BTreeMap<String, f64> {
    let metrics = crate::measure::apiserver_metrics(kube).await;
    let mut by_verb = std::collections::BTreeMap::new();
    for line in metrics.lines().filter(|line| {
        line.starts_with("apiserver_request_total{") && line.contains("resource=\"leases\"")
    }) {
        let verb = line
            .split_once("verb=\"")
            .and_then(|(_, rest)| rest.split('"').next())
            .unwrap_or("?");
        if let Some(count) = line.rsplit(' ').next().and_then(|n| n.parse::<f64>().ok()) {
            *by_verb.entry(verb.to_owned()).or_insert(0.0) += count;
        }
    }
    by_verb
}

/// gRPC calls etcd has handled, from its `/metrics` on the client port.
async fn etcd_grpc_calls(port: u16) -> f64 {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("etcd metrics");
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .expect("request");
    let mut body = String::new();
    stream.read_to_string(&mut body).await.expect("response");
    body.lines()
        .filter(|line| line.starts_with("grpc_server_handled_total{"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
