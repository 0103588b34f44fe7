//! One replica of a kube-runtime controller on kube-leader-election, for lock-bench's
//! warm-standby table: its README's usage (`try_acquire_or_renew` every third of a 15 s
//! lease), a `Controller::new` started when it acquires and stopped when it does not.
//! On SIGTERM the controller shuts down gracefully and the lease is stepped down from.
//!
//! `kle-replica KUBECONFIG NAMESPACE LEASE LABEL IDENTITY`; prints the events of
//! lock-bench's own replica (`NANOS EVENT [ARGS]`, CLOCK_REALTIME): `started`,
//! `following -`, `leading -`, `reconcile NAME GEN`, `sigterm`, `drained`, `released`.

use std::{
    io::Write,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use futures::{StreamExt, future::ready};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api,
    runtime::{Controller, controller::Action, watcher},
};
use kube_leader_election::{LeaseLock, LeaseLockParams, LeaseLockResult};
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::oneshot,
    task::JoinHandle,
};

/// The label key of the bench's objects; its value names the run.
const LABEL: &str = "lock-bench";
/// The lease of kube-leader-election's README, renewed every third of it.
const TTL: Duration = Duration::from_secs(15);
/// The reconcile's work.
const WORK: Duration = Duration::from_millis(1);

fn emit(event: &str) {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{nanos} {event}").is_err() {
        std::process::exit(1);
    }
}

#[derive(Debug)]
struct Never;

impl std::fmt::Display for Never {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("never")
    }
}

impl std::error::Error for Never {}

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

/// A controller running until told to stop.
struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Running {
    fn start(maps: &Api<ConfigMap>, config: &watcher::Config) -> Self {
        let (stop, stopped) = oneshot::channel::<()>();
        let controller = Controller::new(maps.clone(), config.clone())
            .graceful_shutdown_on(async move {
                let _ = stopped.await;
            });
        let task = tokio::spawn(async move {
            controller
                .run(reconcile, error_policy, Arc::new(()))
                .for_each(|_| ready(()))
                .await;
            emit("drained");
        });
        Self { stop, task }
    }

    /// Stops it once the reconciles in flight finished.
    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.expect("the controller ran");
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [kubeconfig, namespace, lease, label, identity] = args.as_slice() else {
        panic!("usage: kle-replica KUBECONFIG NAMESPACE LEASE LABEL IDENTITY");
    };
    let mut sigterm = signal(SignalKind::terminate()).expect("a SIGTERM handler");
    emit("started");
    let kubeconfig = kube::config::Kubeconfig::read_from(kubeconfig).expect("a kubeconfig");
    let options = kube::config::KubeConfigOptions::default();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .expect("a client configuration");
    let client = kube::Client::try_from(config).expect("a client");
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let watch = watcher::Config::default().labels(&format!("{LABEL}={label}"));
    let lock = LeaseLock::new(
        client,
        namespace,
        LeaseLockParams {
            lease_name: lease.clone(),
            holder_id: identity.clone(),
            lease_ttl: TTL,
        },
    );
    let (mut running, mut followed) = (None::<Running>, false);
    loop {
        match lock.try_acquire_or_renew().await {
            Ok(LeaseLockResult::Acquired(_)) => {
                if running.is_none() {
                    emit("leading -");
                    running = Some(Running::start(&maps, &watch));
                }
            }
            Ok(LeaseLockResult::NotAcquired(_)) | Err(_) => {
                if let Some(running) = running.take() {
                    running.stop().await;
                }
                if !followed {
                    followed = true;
                    emit("following -");
                }
            }
        }
        tokio::select! {
            _ = sigterm.recv() => break,
            () = tokio::time::sleep(TTL / 3) => {}
        }
    }
    emit("sigterm");
    if let Some(running) = running.take() {
        running.stop().await;
    }
    lock.step_down().await.expect("step down");
    emit("released");
}
