//! Two replicas of a kube-runtime controller; only the leader reconciles. The leader
//! gets SIGTERM: it stops taking work, finishes the reconciles in flight, releases its
//! Lease, and the standby reconciles at once. The standby is warm: its cache of widgets
//! (`lock_kube::WarmCache`, kube-runtime's shared reflector) is filled while it follows,
//! so its controller starts without listing anything; the example prints the time from
//! SIGTERM to the new leader's first reconcile.
//!
//! The controller watches `Widget`s (a custom resource with a status subresource, which
//! the example defines and creates through the test harness). Every reconcile of a
//! widget writes with its term's fencing token: its child ConfigMap by a fenced
//! server-side apply (`lock_kube::fenced_apply`), then the widget's status by a fenced
//! status write (`lock_kube::fenced_status`). At the end the example reads back the
//! token each object records: the last leader's.
//!
//! Run: `cargo run --example leader-election` (starts a kube-apiserver with the test
//! harness: run `scripts/provision` once first).

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use futures::StreamExt;
use k8s_openapi::{api::core::v1::ConfigMap, serde_json::json};
use kube::{
    Api, Resource, ResourceExt,
    api::{PatchParams, PostParams},
    runtime::{Controller, controller::Action, watcher},
};
use lock_core::{Error, FencingToken, LeaderElector, Lock, Timing};
use lock_kube::{
    KubeBackend, WarmCache, fenced_apply, fenced_status, nodelay_client, recorded_token,
};
use lock_tests::{Kube, Widget};
use tokio::{
    signal::unix::{SignalKind, signal},
    time::{Instant, sleep},
};

/// The field manager of the controller's server-side applies.
const MANAGER: &str = "example-controller";

/// What a term of a replica's controller needs.
struct Term {
    replica: &'static str,
    token: FencingToken,
    widgets: Api<Widget>,
    children: Api<ConfigMap>,
    started: Instant,
}

/// When replica-1 got SIGTERM.
static SIGTERM_AT: OnceLock<Instant> = OnceLock::new();
/// Whether the new leader has reconciled yet.
static NEW_LEADER_RECONCILED: OnceLock<()> = OnceLock::new();

fn log(started: Instant, who: &str, what: impl std::fmt::Display) {
    println!(
        "[{:>7.3}s] {who:<10} {what}",
        started.elapsed().as_secs_f64()
    );
}

/// The child ConfigMap of widget `name`.
fn child_of(name: &str) -> String {
    format!("{name}-config")
}

async fn reconcile(widget: Arc<Widget>, term: Arc<Term>) -> Result<Action, Error> {
    let name = widget.name_any();
    if let Some(sigterm) = SIGTERM_AT.get()
        && term.replica == "replica-2"
        && NEW_LEADER_RECONCILED.set(()).is_ok()
    {
        log(
            term.started,
            term.replica,
            format!(
                "first reconcile, {:?} after SIGTERM (warm cache)",
                sigterm.elapsed()
            ),
        );
    }
    let child = child_of(&name);
    log(
        term.started,
        term.replica,
        format!(
            "reconciles {name} with token {}: applies {child}, writes its status",
            term.token
        ),
    );
    sleep(Duration::from_millis(300)).await; // the work
    // The child, owned by the widget: a server-side apply of the fields this controller
    // manages, rejected with StaleToken if a newer leader has written the child.
    let owner = widget.controller_owner_ref(&());
    let config = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": { "ownerReferences": owner.into_iter().collect::<Vec<_>>() },
        "data": { "owner": term.replica, "size": widget.spec["size"].to_string() },
    });
    let params = PatchParams::apply(MANAGER).force();
    fenced_apply(&term.children, &child, term.token, &params, &config).await?;
    // The widget's status (its /status subresource): the term's first status write
    // raises the token on the widget, so a former leader's late one is rejected too.
    let status = json!({ "child": child, "reconciledBy": term.replica });
    fenced_status(&term.widgets, &name, term.token, &status).await?;
    Ok(Action::requeue(Duration::from_millis(700)))
}

fn error_policy(_: Arc<Widget>, error: &Error, term: Arc<Term>) -> Action {
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
    let widgets: Api<Widget> = Api::namespaced(client.clone(), kube.namespace());
    let children: Api<ConfigMap> = Api::namespaced(client, kube.namespace());
    // Filled from now on, leader or not.
    let warm = WarmCache::spawn(
        widgets.clone(),
        watcher::Config::default().labels("app=example"),
    );
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
                    widgets: widgets.clone(),
                    children: children.clone(),
                    started,
                });
                let stopping = leadership.stopped();
                let controller = Controller::for_shared_stream(warm.trigger(), warm.store());
                async move {
                    controller
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

/// Who last wrote widget `name`'s status and its child, and the tokens they record.
async fn report(
    kube: &Kube,
    started: Instant,
    name: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let admin = kube.admin().await;
    let widget = Api::<Widget>::namespaced(admin.clone(), kube.namespace())
        .get(name)
        .await?;
    let child = Api::<ConfigMap>::namespaced(admin, kube.namespace())
        .get(&child_of(name))
        .await?;
    let token = |recorded: Option<FencingToken>| {
        recorded.map_or_else(|| "none".to_owned(), |token| token.to_string())
    };
    let owner = child.data.as_ref().and_then(|data| data.get("owner"));
    log(
        started,
        "demo",
        format!(
            "{name}: status by {} (token {}), {} by {} (token {})",
            widget
                .status
                .as_ref()
                .and_then(|status| status["reconciledBy"].as_str())
                .unwrap_or("nobody"),
            token(recorded_token(&widget, name)?),
            child_of(name),
            owner.map_or("nobody", String::as_str),
            token(recorded_token(&child, &child_of(name))?),
        ),
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let kube = Kube::start().await;
    kube.widgets(true).await;
    let widgets: Api<Widget> = Api::namespaced(kube.admin().await, kube.namespace());
    log(started, "demo", "kube-apiserver ready, Widget defined");
    for (size, name) in ["alpha", "beta"].into_iter().enumerate() {
        let mut widget = Widget::new(name, json!({ "size": size + 1 }));
        widget.metadata.labels = Some([("app".to_owned(), "example".to_owned())].into());
        widgets.create(&PostParams::default(), &widget).await?;
    }
    let kube = Arc::new(kube);

    // replica-1 stops on SIGTERM, as a pod does.
    let mut terminate = signal(SignalKind::terminate())?;
    let first = {
        let kube = kube.clone();
        tokio::spawn(async move {
            let sigterm = async move {
                terminate.recv().await;
                let _ = SIGTERM_AT.set(Instant::now());
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
    for name in ["alpha", "beta"] {
        report(&kube, started, name).await?;
    }
    Ok(())
}
