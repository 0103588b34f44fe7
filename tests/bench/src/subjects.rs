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
        let served = self.served().await;
        (!served.requests.is_nan()).then_some(served.requests)
    }

    /// Requests the server has served so far, and the reads among them, where it counts
    /// them: see [`requests`](Self::requests); reads are the apiserver's lease GETs and
    /// LISTs and etcd's Range calls (Redis scripts read and write alike).
    pub async fn served(&self) -> Served {
        match self {
            Subject::Memory(_) => Served::NONE,
            Subject::Kube(kube) | Subject::KubeDefaultClient(kube) => kube_served(kube).await,
            Subject::Etcd(etcd) => {
                let calls = etcd_grpc_calls(etcd.port()).await;
                Served {
                    requests: calls.values().sum(),
                    reads: calls.get("Range").copied().unwrap_or(0.0),
                }
            }
            Subject::Redis(redis) => {
                // Scripts' own calls count in total_commands_processed; client requests
                // are what the client sent: scripts, and (un)subscriptions for waiting.
                let mut connection = redis.connection().await;
                let stats: String = redis::cmd("INFO")
                    .arg("commandstats")
                    .query_async(&mut connection)
                    .await
                    .expect("INFO commandstats");
                let requests = stats
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
                    .sum();
                Served {
                    requests,
                    reads: f64::NAN,
                }
            }
        }
    }
}

/// Requests a server has served, and the reads among them (`NaN` where it does not
/// count them or tell reads apart); or the same per second.
#[derive(Clone, Copy, Debug)]
pub struct Served {
    pub requests: f64,
    pub reads: f64,
}

impl Served {
    /// Nothing counted.
    pub const NONE: Served = Served {
        requests: f64::NAN,
        reads: f64::NAN,
    };

    /// The apiserver's lease requests counted by verb: reads are GETs and LISTs (a
    /// watch is neither).
    pub fn by_verb(by_verb: &std::collections::BTreeMap<String, f64>) -> Self {
        Served {
            requests: by_verb.values().sum(),
            reads: ["GET", "LIST"]
                .iter()
                .filter_map(|verb| by_verb.get(*verb))
                .sum(),
        }
    }

    /// What was served per second between `before` and this, over `over`.
    pub fn per_second_since(self, before: Served, over: Duration) -> Served {
        Served {
            requests: (self.requests - before.requests) / over.as_secs_f64(),
            reads: (self.reads - before.reads) / over.as_secs_f64(),
        }
    }

    /// The table's figures: requests, reads.
    pub fn figures(self) -> Vec<f64> {
        vec![self.requests, self.reads]
    }
}

/// Lease requests the apiserver has served, and the reads among them.
pub async fn kube_served(kube: &Kube) -> Served {
    Served::by_verb(&kube_lease_requests_by_verb(kube).await)
}

/// Lease requests the apiserver has served, from its own metrics.
pub async fn kube_lease_requests(kube: &Kube) -> f64 {
    kube_lease_requests_by_verb(kube).await.values().sum()
}

/// Lease requests the apiserver has served, by verb (`GET`, `LIST`, `PUT`, ...), from its
/// own metrics.
pub async fn kube_lease_requests_by_verb(kube: &Kube) -> std::collections::BTreeMap<String, f64> {
    let metrics = crate::measure::apiserver_metrics(kube).await;
    let leases: String = metrics
        .lines()
        .filter(|line| line.contains("resource=\"leases\""))
        .map(|line| format!("{line}\n"))
        .collect();
    counts_by(&leases, "apiserver_request_total", "verb")
}

/// gRPC calls etcd has handled by method, from its `/metrics` on the client port.
async fn etcd_grpc_calls(port: u16) -> std::collections::BTreeMap<String, f64> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("etcd metrics");
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .expect("request");
    let mut body = String::new();
    stream.read_to_string(&mut body).await.expect("response");
    counts_by(&body, "grpc_server_handled_total", "grpc_method")
}

/// The samples of Prometheus counter `metric` in `text`, summed by the value of `label`.
fn counts_by(text: &str, metric: &str, label: &str) -> std::collections::BTreeMap<String, f64> {
    let (series, label) = (format!("{metric}{{"), format!("{label}=\""));
    let mut by_label = std::collections::BTreeMap::new();
    for line in text.lines().filter(|line| line.starts_with(&series)) {
        let value = line
            .split_once(&label)
            .and_then(|(_, rest)| rest.split('"').next())
            .unwrap_or("?");
        if let Some(count) = line.rsplit(' ').next().and_then(|n| n.parse::<f64>().ok()) {
            *by_label.entry(value.to_owned()).or_insert(0.0) += count;
        }
    }
    by_label
}
