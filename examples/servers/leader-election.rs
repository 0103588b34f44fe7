//! Two replicas of a kube-runtime controller; only the leader reconciles. The leader
//! gets SIGTERM: it stops taking work, finishes the reconciles in flight, releases its
//! Lease, and the standby reconciles at once.
//!
//! Run: `cargo run --example leader-election` (starts a kube-apiserver with the test
//! harness: run `scripts/provision` once first).

use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api,
    api::{ObjectMeta, PostParams},
    runtime::{Controller, controller::Action, watcher},
};
use lock_core::{Error, FencingToken, LeaderElector, Lock, Timing};
use lock_kube::{KubeBackend, fenced_update, nodelay_client};
use lock_tests::Kube;
use tokio::{
    signal::unix::{SignalKind, signal},
    time::{Instant, sleep},
};

/// What a term of a replica's controller needs.
struct Term {
    replica: &'static str,
    token: FencingToken,
    api: Api<ConfigMap>,
    started: Instant,
}

fn log(started: Instant, who: &str, what: impl std::fmt::Display) {
    println!(
        "[{:>7.3}s] {who:<10} {what}",
        started.elapsed().as_secs_f64()
    );
}

async fn reconcile(object: Arc<ConfigMap>, term: Arc<Term>) -> Result<Action, Error> {
    let name = object.metadata.name.clone().unwrap_or_default();
    log(
        term.started,
        term.replica,
        format!("reconciles {name} with token {}", term.token),
    );
    sleep(Duration::from_millis(300)).await; // the work
    fenced_update(&term.api, &name, term.token, |map| {
        map.data
            .get_or_insert_with(Default::default)
            .insert("owner".into(), term.replica.into());
    })
    .await?;
    Ok(Action::requeue(Duration::from_millis(700)))
}

fn error_policy(_: Arc<ConfigMap>, error: &Error, term: Arc<Term>) -> Action {
    log(
        term.started,
        term.replica,
        format!("reconcile failed: {error}"),
    );
    Action::requeue(Duration::from_secs(1))
}

/// One replica: campaigns, runs the controller while leading, steps down on `shutdown`.
async fn replica(
    kube: &Kube,
    replica: &'static str,
    started: Instant,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Box<dyn std::error::Error>> {
    let client = nodelay_client(kube.config(false).await)?;
    let lock = Lock::builder(
        KubeBackend::new(client.clone(), kube.namespace()),
        "example-controller",
        replica,
    )
    .timing(Timing::new(Duration::from_secs(15)))
    .build()?;
    let api: Api<ConfigMap> = Api::namespaced(client, kube.namespace());
    LeaderElector::new(lock)
        .run_until(
            |leadership| {
                log(
                    started,
                    replica,
                    format!("LEADING with token {}", leadership.token()),
                );
                let term = Arc::new(Term {
                    replica,
                    token: leadership.token(),
                    api: api.clone(),
                    started,
                });
                let stopping = leadership.stopped();
                async move {
                    Controller::new(
                        term.api.clone(),
                        watcher::Config::default().labels("app=example"),
                    )
                    .graceful_shutdown_on(async move {
                        stopping.await;
                        log(
                            started,
                            replica,
                            "stops taking work; finishing reconciles in flight",
                        );
                    })
                    .run(reconcile, error_policy, term)
                    .for_each(|_| futures::future::ready(()))
                    .await;
                    log(started, replica, "drained; releasing the Lease");
                }
            },
            shutdown,
        )
        .await?;
    log(started, replica, "stopped");
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let kube = Kube::start().await;
    log(started, "demo", "kube-apiserver ready");
    let api: Api<ConfigMap> = Api::namespaced(kube.admin().await, kube.namespace());
    for name in ["alpha", "beta"] {
        let labels = [("app".to_owned(), "example".to_owned())].into();
        let map = ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(labels),
                ..ObjectMeta::default()
            },
            ..ConfigMap::default()
        };
        api.create(&PostParams::default(), &map).await?;
    }
    let kube = Arc::new(kube);

    // replica-1 stops on SIGTERM, as a pod does.
    let mut terminate = signal(SignalKind::terminate())?;
    let first = {
        let kube = kube.clone();
        tokio::spawn(async move {
            let sigterm = async move {
                terminate.recv().await;
                log(started, "replica-1", "got SIGTERM");
            };
            replica(&kube, "replica-1", started, sigterm)
                .await
                .map_err(|e| e.to_string())
        })
    };
    sleep(Duration::from_millis(500)).await;
    let (stop_second, second_stopped) = tokio::sync::oneshot::channel::<()>();
    let second = {
        let kube = kube.clone();
        tokio::spawn(async move {
            let stop = async move {
                let _ = second_stopped.await;
            };
            replica(&kube, "replica-2", started, stop)
                .await
                .map_err(|e| e.to_string())
        })
    };
    sleep(Duration::from_secs(2)).await;

    log(
        started,
        "demo",
        "--- sending SIGTERM to this process: replica-1 steps down",
    );
    nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::Signal::SIGTERM)?;
    first.await??;
    sleep(Duration::from_secs(2)).await;
    let _ = stop_second.send(());
    second.await??;
    Ok(())
}
