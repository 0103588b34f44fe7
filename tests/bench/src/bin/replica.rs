//! One replica of a leader-elected kube-runtime controller over labelled ConfigMaps, for
//! lock-bench's warm-standby table: a process of its own, so that the bench reads its
//! memory and sends it a real SIGTERM.
//!
//! `lock-bench-replica KUBECONFIG NAMESPACE LEASE LABEL IDENTITY MODE`, MODE one of
//! - `cold`: lock-core's `LeaderElector` over `KubeBackend`; each term builds
//!   `Controller::new` (it lists and caches every object first);
//! - `warm`: the same, with a `lock_kube::WarmCache` made at start (it campaigns at
//!   once) and each term's controller built by
//!   `Controller::for_shared_stream` from it;
//! - `klm`: kube-lease-manager 0.13's documented usage (`watch()`, its defaults), a
//!   `Controller::new` started when the channel says leader and stopped when it does not.
//!
//! On SIGTERM the controller shuts down gracefully (the reconciles in flight finish) and
//! the lease is released. The reconcile sleeps 1 ms (its work) and writes nothing.
//!
//! Prints one event a line on stdout, `NANOS EVENT [ARGS]`, NANOS from CLOCK_REALTIME:
//! `started`, `cache ready OBJECTS` (warm), `following LEADER`, `leading TOKEN`,
//! `reconcile NAME GEN` (GEN the object's `data.gen`), `sigterm`, `drained` (the
//! controller ended), `released` (the lease released; the process exits).

use std::{path::PathBuf, sync::Arc, time::Duration};

use futures::{StreamExt, future::ready};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api,
    runtime::{Controller, controller::Action, watcher},
};
use kube_lease_manager::LeaseManagerBuilder;
use lock_core::{LeaderElector, LeaderState, Leadership, Lock};
use lock_kube::{KubeBackend, WarmCache, nodelay_client};
use lock_tests::Kube;
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::oneshot,
};

/// The label key of the bench's objects; its value names the run.
const LABEL: &str = "lock-bench";
/// The reconcile's work.
const WORK: Duration = Duration::from_millis(1);

#[path = "../replica_output.rs"]
mod replica_output;

use replica_output::{Never, emit};

async fn reconcile(map: Arc<ConfigMap>, _: Arc<()>) -> Result<Action, Never> {
    let name = map.metadata.name.as_deref().unwrap_or("-");
    let generation = map
        .data
        .as_ref()
        .and_then(|data| data.get("gen"))
        .map_or("-", String::as_str);
    emit(&format!("reconcile {name} {generation}"));
    tokio::time::sleep(WORK).await;
    Ok(Action::await_change())
}

fn error_policy(_: Arc<ConfigMap>, _: &Never, _: Arc<()>) -> Action {
    Action::await_change()
}

/// Runs `controller` until `stop` resolves, the reconciles in flight finished.
async fn run(
    controller: Controller<ConfigMap>,
    stop: impl Future<Output = ()> + Send + Sync + 'static,
) {
    controller
        .graceful_shutdown_on(stop)
        .run(reconcile, error_policy, Arc::new(()))
        .for_each(|_| ready(()))
        .await;
    emit("drained");
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Ok([kubeconfig, namespace, lease, label, identity, mode]) = <[String; 6]>::try_from(args)
    else {
        eprintln!(
            "usage: lock-bench-replica KUBECONFIG NAMESPACE LEASE LABEL IDENTITY cold|warm|klm"
        );
        std::process::exit(2);
    };
    // Before anything else, so that an early SIGTERM is not fatal.
    let mut sigterm = signal(SignalKind::terminate()).expect("a SIGTERM handler");
    emit("started");
    let kube = Kube::external(PathBuf::from(kubeconfig)).await;
    let client = nodelay_client(kube.config(false).await).expect("a client");
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let config = watcher::Config::default().labels(&format!("{LABEL}={label}"));

    if mode == "klm" {
        kube_lease_manager(client, &namespace, &lease, &identity, maps, config, sigterm).await;
        return;
    }
    let warm = match mode.as_str() {
        "warm" => Some(Arc::new(WarmCache::spawn(maps.clone(), config.clone()))),
        "cold" => None,
        other => panic!("unknown mode {other:?}: cold, warm or klm"),
    };
    if let Some(warm) = warm.clone() {
        // It campaigns at once: a term that begins first waits for the first list.
        tokio::spawn(async move {
            warm.ready().await;
            emit(&format!("cache ready {}", warm.store().len()));
        });
    }
    let lock = Lock::new(KubeBackend::new(client, &namespace), lease, identity).expect("a lock");
    let elector = LeaderElector::new(lock);
    let mut state = elector.state();
    tokio::spawn(async move {
        loop {
            if let LeaderState::Following {
                leader: Some(leader),
            } = &*state.borrow_and_update()
            {
                emit(&format!("following {leader}"));
            }
            if state.changed().await.is_err() {
                return;
            }
        }
    });
    let shutdown = elector.shutdown_handle();
    tokio::spawn(async move {
        sigterm.recv().await;
        emit("sigterm");
        shutdown.shutdown();
    });
    elector
        .run(|leadership: Leadership| {
            emit(&format!("leading {}", leadership.token()));
            let controller = match &warm {
                Some(warm) => Controller::for_shared_stream(warm.trigger(), warm.store()),
                None => Controller::new(maps.clone(), config.clone()),
            };
            run(controller, leadership.stopped())
        })
        .await
        .expect("the campaign ends cleanly");
    emit("released");
}

/// kube-lease-manager's documented usage: `watch()`, a controller while the channel
/// says leader; on SIGTERM the controller drains and the channel is dropped, which
/// releases the lease.
async fn kube_lease_manager(
    client: kube::Client,
    namespace: &str,
    lease: &str,
    identity: &str,
    maps: Api<ConfigMap>,
    config: watcher::Config,
    mut sigterm: tokio::signal::unix::Signal,
) {
    let manager = LeaseManagerBuilder::new(client, lease)
        .with_namespace(namespace)
        .with_identity(identity)
        .build()
        .await
        .expect("a lease manager");
    emit("following -");
    let (mut channel, task) = manager.watch().await;
    let mut running: Option<(oneshot::Sender<()>, tokio::task::JoinHandle<()>)> = None;
    let stop = |running: &mut Option<(oneshot::Sender<()>, tokio::task::JoinHandle<()>)>| {
        let running = running.take();
        async move {
            if let Some((stop, controller)) = running {
                let _ = stop.send(());
                controller.await.expect("the controller ran");
            }
        }
    };
    loop {
        tokio::select! {
            _ = sigterm.recv() => {
                emit("sigterm");
                break;
            }
            changed = channel.changed() => {
                if changed.is_err() {
                    break;
                }
                let leading = *channel.borrow_and_update();
                if leading && running.is_none() {
                    emit("leading -");
                    let (tell, told) = oneshot::channel();
                    let controller = Controller::new(maps.clone(), config.clone());
                    let stopped = async move {
                        let _ = told.await;
                    };
                    running = Some((tell, tokio::spawn(run(controller, stopped))));
                } else if !leading {
                    stop(&mut running).await;
                }
            }
        }
    }
    stop(&mut running).await;
    drop(channel);
    task.await
        .expect("the lease manager ran")
        .expect("it released the lease");
    emit("released");
}
