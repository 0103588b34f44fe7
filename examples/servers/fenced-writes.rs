//! A paused leader's late write is rejected, on every backend.
//!
//! On each backend: the old leader holds the lock and writes with its token; it freezes
//! (its connection stops answering) past its TTL; a new leader takes over and writes
//! with a larger token; the old leader wakes up and writes with its old token, and the
//! store rejects it with `StaleToken`. The stores: an in-memory `FencedRegister`, a
//! ConfigMap written with `lock_kube::fenced_update`, an etcd transaction guarded by the
//! lock key (`lock_etcd::fenced_txn`) and a Redis key behind a Lua high-water mark
//! (`lock_redis::fenced_set`).
//!
//! Run: `cargo run --example fenced-writes` (starts etcd, Redis and a kube-apiserver
//! with the test harness: run `scripts/provision` once first), or name backends:
//! `cargo run --example fenced-writes -- memory redis`.

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api,
    api::{ObjectMeta, PostParams},
};
use lock_core::{Backend, Error, Faulty, FencedRegister, FencingToken, Lock, LockName, Timing};
use lock_tests::{Etcd, Kube, Redis};

const TTL: Duration = Duration::from_secs(2);

/// A fenced write of `value` with a token of lock `name` (only etcd's store needs the
/// name: its transaction is guarded by the lock key itself).
type Write = Box<
    dyn Fn(
            LockName,
            FencingToken,
            &'static str,
        ) -> Pin<Box<dyn Future<Output = Result<(), Error>> + Send>>
        + Send
        + Sync,
>;

/// The story, on one backend with one fenced store.
async fn story(label: &str, backend: Arc<dyn Backend>, write: Write) -> Result<(), Error> {
    let name = LockName::new(lock_core::conformance::unique_name("fenced-writes"))?;
    println!("--- {label}");
    let frozen = Faulty::new(backend.clone());
    let old = Lock::builder(frozen.clone(), name.as_str(), "old-leader")
        .timing(Timing::new(TTL))
        .build()?;
    let new = Lock::builder(backend, name.as_str(), "new-leader")
        .timing(Timing::new(TTL))
        .build()?;

    let old_guard = old.acquire().await?;
    let old_token = old_guard.token();
    write(name.clone(), old_token, "written by the old leader").await?;
    println!("old leader holds token {old_token} and writes: accepted");

    frozen.freeze(true);
    println!("old leader freezes for longer than its TTL ({TTL:?})");
    let new_guard = new.acquire_timeout(TTL * 4).await?;
    write(name.clone(), new_guard.token(), "written by the new leader").await?;
    println!(
        "new leader takes over with token {} and writes: accepted",
        new_guard.token()
    );

    frozen.freeze(false);
    match write(name.clone(), old_token, "written late by the old leader").await {
        Err(Error::StaleToken { presented, current }) => {
            println!(
                "old leader wakes up and writes with token {presented}: REJECTED (the store has seen {current})"
            )
        }
        Ok(()) => println!("old leader's late write was ACCEPTED: this must never happen"),
        Err(error) => return Err(error),
    }
    drop(old_guard);
    new_guard.release().await
}

async fn memory() -> Result<(), Error> {
    let register = Arc::new(FencedRegister::new(String::new()));
    let write: Write = Box::new(move |_, token, value| {
        let register = register.clone();
        Box::pin(async move { register.write(token, value.to_owned()) })
    });
    story(
        "in-memory backend, FencedRegister",
        Arc::new(lock_core::MemoryBackend::new()),
        write,
    )
    .await
}

async fn kubernetes(kube: &Kube) -> Result<(), Error> {
    let api: Api<ConfigMap> = Api::namespaced(kube.admin().await, kube.namespace());
    let object = lock_core::conformance::unique_name("fenced-object");
    let map = ConfigMap {
        metadata: ObjectMeta {
            name: Some(object.clone()),
            ..ObjectMeta::default()
        },
        ..ConfigMap::default()
    };
    api.create(&PostParams::default(), &map)
        .await
        .map_err(Error::permanent)?;
    let write: Write = Box::new(move |_, token, value| {
        let (api, object) = (api.clone(), object.clone());
        Box::pin(async move {
            lock_kube::fenced_update(&api, &object, token, |map| {
                map.data
                    .get_or_insert_with(Default::default)
                    .insert("state".into(), value.into());
            })
            .await
            .map(|_| ())
        })
    });
    let backend = lock_kube::KubeBackend::new(kube.admin().await, kube.namespace());
    story(
        "Kubernetes Lease, fenced_update on a ConfigMap",
        Arc::new(backend),
        write,
    )
    .await
}

async fn etcd(etcd: &Etcd) -> Result<(), Error> {
    let backend = lock_etcd::EtcdBackend::new(etcd.client().await);
    let fenced = backend.clone();
    let write: Write = Box::new(move |name, token, value| {
        let backend = fenced.clone();
        Box::pin(async move {
            let operation = etcd_client::TxnOp::put("fenced-writes/state", value, None);
            lock_etcd::fenced_txn(&backend, &name, token, vec![operation])
                .await
                .map(|_| ())
        })
    });
    story(
        "etcd, fenced_txn guarded by the lock key",
        Arc::new(backend),
        write,
    )
    .await
}

async fn redis(redis: &Redis) -> Result<(), Error> {
    let backend = lock_redis::RedisBackend::connect(&redis.url()).await?;
    let connection = backend.connection();
    let write: Write = Box::new(move |_, token, value| {
        let mut connection = connection.clone();
        Box::pin(async move {
            lock_redis::fenced_set(&mut connection, "fenced-writes:state", value, token).await
        })
    });
    story(
        "Redis, fenced_set with a Lua high-water mark",
        Arc::new(backend),
        write,
    )
    .await
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut backends: Vec<String> = std::env::args().skip(1).collect();
    if backends.is_empty() {
        backends = ["memory", "kube", "etcd", "redis"]
            .map(String::from)
            .to_vec();
    }
    for backend in backends {
        match backend.as_str() {
            "memory" => memory().await?,
            "kube" => kubernetes(&Kube::start().await).await?,
            "etcd" => etcd(&Etcd::start().await).await?,
            "redis" => redis(&Redis::start().await).await?,
            other => {
                return Err(
                    format!("unknown backend {other:?}: memory, kube, etcd or redis").into(),
                );
            }
        }
    }
    Ok(())
}
