//! Kubernetes Events on the Lease when a replica starts and stops leading, as client-go's
//! leader election records them.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::{
    Client,
    runtime::events::{Event, EventType, Recorder, Reporter},
};
use lock_core::LeaderState;
use tokio::sync::watch;

/// The reason of the Events, as client-go's.
pub const LEADER_ELECTION_REASON: &str = "LeaderElection";

/// Records an Event on the Lease `lease` in `namespace` each time this replica
/// (`identity`, reporting as `controller`) starts leading ("pod-a became leader") and
/// stops leading ("pod-a stopped leading"), following an elector's
/// [`state`](lock_core::LeaderElector::state), until the elector is dropped.
///
/// An Event that cannot be written is logged and skipped: Events are for people, and
/// never hold up the election. The controller needs the verb `create` (and `patch`) on
/// `events.events.k8s.io` in the namespace.
///
/// # Cancel safety
///
/// Dropping the future stops recording; nothing else changes.
///
/// ```no_run
/// use lock_core::{LeaderElector, Lock};
/// use lock_kube::{KubeBackend, record_leadership};
///
/// # async fn run(client: kube::Client) -> lock_core::Result<()> {
/// let lock = Lock::new(KubeBackend::new(client.clone(), "default"), "my-controller", "pod-a")?;
/// let elector = LeaderElector::new(lock);
/// tokio::spawn(record_leadership(client, "default", "my-controller", "pod-a", "my-controller", elector.state()));
/// # Ok(()) }
/// ```
pub async fn record_leadership(
    client: Client,
    namespace: impl Into<String>,
    lease: impl Into<String>,
    identity: impl Into<String>,
    controller: impl Into<String>,
    mut state: watch::Receiver<LeaderState>,
) {
    let (lease, identity) = (lease.into(), identity.into());
    let recorder = Recorder::new(
        client,
        Reporter {
            controller: controller.into(),
            instance: Some(identity.clone()),
        },
    );
    let reference = ObjectReference {
        api_version: Some("coordination.k8s.io/v1".to_owned()),
        kind: Some("Lease".to_owned()),
        name: Some(lease.clone()),
        namespace: Some(namespace.into()),
        ..ObjectReference::default()
    };
    let mut leading = false;
    loop {
        let now = matches!(*state.borrow_and_update(), LeaderState::Leading { .. });
        if now != leading {
            leading = now;
            let (action, what) = if now {
                ("Leading", "became leader")
            } else {
                ("StoppedLeading", "stopped leading")
            };
            let event = Event {
                type_: EventType::Normal,
                reason: LEADER_ELECTION_REASON.to_owned(),
                note: Some(format!("{identity} {what}")),
                action: action.to_owned(),
                secondary: None,
            };
            if let Err(error) = recorder.publish(&event, &reference).await {
                tracing::warn!(%error, %lease, "cannot record the leader election event");
            }
        }
        if state.changed().await.is_err() {
            return;
        }
    }
}
