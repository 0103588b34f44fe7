//! A leader-elected kube-runtime controller over ConfigMaps, as a user writes one.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api, Client,
    runtime::{Controller, controller::Action, watcher},
};
use lock_core::{FencingToken, LeaderElector, Lock};
use lock_kube::{KubeBackend, default_identity, nodelay_client};

async fn reconcile(_: Arc<ConfigMap>, _token: Arc<FencingToken>) -> Result<Action, kube::Error> {
    Ok(Action::await_change())
}

fn error_policy(_: Arc<ConfigMap>, _: &kube::Error, _: Arc<FencingToken>) -> Action {
    Action::await_change()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let client: Client = nodelay_client(kube::Config::infer().await?)?;
    let backend = KubeBackend::default_namespaced(client.clone())
        .with_labels([("app.kubernetes.io/name", "outside-controller")]);
    let lock = Lock::new(backend, "outside-controller", default_identity())?;
    let maps: Api<ConfigMap> = Api::default_namespaced(client);
    LeaderElector::new(lock)
        .run(|leadership| {
            Controller::new(maps.clone(), watcher::Config::default())
                .graceful_shutdown_on(leadership.stopped())
                .run(reconcile, error_policy, Arc::new(leadership.token()))
                .for_each(|_| futures::future::ready(()))
        })
        .await?;
    Ok(())
}
