//! A waiter on Kubernetes, on a real kube-apiserver, counting every request it sends:
//! it trusts its watch, so it reads nothing while the holder renews, takes a released
//! Lease with one write on the release's event, and takes an expired one no earlier than
//! its own observation allows.

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use http::{Method, Request};
use kube::client::{Body, ClientBuilder};
use lock_core::{Backend, Lock, LockName, Take, Timing, conformance::unique_name};
use lock_kube::KubeBackend;
use lock_tests::Kube;
use tokio::time::{Instant, sleep};
use tower::util::MapRequestLayer;

const TTL: Duration = Duration::from_secs(3);

/// One request a client sent.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Sent {
    /// A GET of the Lease itself.
    Read,
    /// A PUT (or POST) of the Lease.
    Write,
    /// The watcher's list of the Leases.
    List,
    /// The watcher's watch.
    Watch,
}

/// The requests one client sent, with when it sent them.
#[derive(Clone, Default)]
struct Requests(Arc<Mutex<Vec<(Instant, Sent)>>>);

impl Requests {
    fn record(&self, request: &Request<Body>) {
        let (path, query) = (request.uri().path(), request.uri().query().unwrap_or(""));
        let sent = match *request.method() {
            Method::GET if query.contains("watch=true") => Sent::Watch,
            Method::GET if path.ends_with("/leases") => Sent::List,
            Method::GET => Sent::Read,
            _ => Sent::Write,
        };
        let mut requests = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        requests.push((Instant::now(), sent));
    }

    /// The requests sent so far, which are forgotten.
    fn take(&self) -> Vec<(Instant, Sent)> {
        std::mem::take(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn kinds(requests: &[(Instant, Sent)]) -> Vec<Sent> {
        requests.iter().map(|(_, sent)| sent.clone()).collect()
    }
}

/// A backend whose client records every request it sends.
async fn counted(kube: &Kube) -> (KubeBackend, Requests) {
    let requests = Requests::default();
    let recorder = requests.clone();
    let client = ClientBuilder::try_from(kube.config(false).await)
        .expect("a client")
        .with_layer(&MapRequestLayer::new(move |request: Request<Body>| {
            recorder.record(&request);
            request
        }))
        .build();
    (KubeBackend::new(client, kube.namespace()), requests)
}

fn lock(backend: KubeBackend, name: &str, identity: &str) -> Lock {
    Lock::builder(backend, name, identity)
        .timing(Timing::new(TTL))
        .build()
        .expect("a valid lock")
}

#[tokio::test]
async fn a_waiter_reads_nothing_while_the_holder_renews_and_takes_the_release_with_one_write() {
    let kube = Kube::shared().await;
    let name = unique_name("waiting");
    let holder = lock(
        KubeBackend::new(kube.admin().await, kube.namespace()),
        &name,
        "holder",
    );
    let guard = holder.acquire().await.expect("the holder acquires");
    let (backend, requests) = counted(kube).await;
    let waiter = lock(backend, &name, "waiter");
    let waiting = tokio::spawn(async move { waiter.acquire().await });

    // It looks once, subscribes (the watch lists the Lease first) and then trusts the
    // watch: the look after subscribing reads nothing.
    let deadline = Instant::now() + TTL;
    while !Requests::kinds(&requests.0.lock().expect("requests")).contains(&Sent::Watch) {
        assert!(Instant::now() < deadline, "the waiter never watched");
        sleep(Duration::from_millis(10)).await;
    }
    sleep(Duration::from_millis(200)).await;
    assert_eq!(
        Requests::kinds(&requests.take()),
        [Sent::Read, Sent::List, Sent::Watch],
        "to start waiting"
    );

    // Two TTLs: six renewals of the holder (one a second), six of the waiter's polls.
    sleep(2 * TTL).await;
    assert!(guard.is_valid(), "the holder renewed all along");
    assert_eq!(
        Requests::kinds(&requests.take()),
        [],
        "the waiter's requests while the holder renewed"
    );

    let token = guard.token();
    guard.release().await.expect("release");
    let taken = tokio::time::timeout(TTL, waiting)
        .await
        .expect("the waiter takes the released lease within a TTL")
        .expect("the waiter's task")
        .expect("the waiter acquires");
    assert!(taken.token() > token, "{} after {token}", taken.token());
    assert_eq!(
        Requests::kinds(&requests.take()),
        [Sent::Write],
        "the waiter's requests from the release to holding: the take's write alone"
    );
    taken.release().await.expect("release");
}

#[tokio::test]
async fn a_waiter_takes_an_expired_lease_no_earlier_than_its_own_observation_allows() {
    let kube = Kube::shared().await;
    let name = unique_name("expiring");
    // Taken once and never renewed: its holder crashed.
    let crashed = KubeBackend::new(kube.admin().await, kube.namespace());
    let taken = crashed
        .take(&LockName::new(&name).expect("a name"), "crashed", TTL)
        .await;
    assert!(matches!(taken, Ok(Take::Acquired(_))), "{taken:?}");
    let (backend, requests) = counted(kube).await;

    let guard = lock(backend, &name, "waiter")
        .acquire_timeout(3 * TTL)
        .await
        .expect("the waiter takes the expired lease");
    let requests = requests.take();
    assert_eq!(
        Requests::kinds(&requests),
        [Sent::Read, Sent::List, Sent::Watch, Sent::Write],
        "the waiter's requests: a look, the watch, the take"
    );
    // Its observation of the record began when its first read was answered, after the
    // read was sent: the take's write may not go out within a TTL of that.
    let (first_read, take) = (requests[0].0, requests[3].0);
    assert!(
        take - first_read >= TTL,
        "taken {:?} after the waiter first read the lease, within its duration {TTL:?}",
        take - first_read
    );
    guard.release().await.expect("release");
}
