//! Kubernetes-specific behaviour, on a real kube-apiserver.

use std::time::Duration;

use k8s_openapi::api::{
    coordination::v1::{Lease, LeaseSpec},
    core::v1::ConfigMap,
};
use kube::{
    Api,
    api::{DeleteParams, DynamicObject, ObjectMeta, Patch, PatchParams, PostParams},
    core::{ApiResource, GroupVersionKind},
};
use lock_core::{
    Error, FencingToken, Lock, LockName, LossReason, Take, Timing, conformance::unique_name,
};
use lock_kube::{FENCING_TOKEN_ANNOTATION, KubeBackend, fenced_update};
use lock_tests::{Kube, Proxy};
use tokio::time::sleep;

const TTL: Duration = Duration::from_secs(3);

async fn backend() -> KubeBackend {
    let kube = Kube::shared().await;
    KubeBackend::new(kube.admin().await, kube.namespace())
}

async fn leases() -> Api<Lease> {
    let kube = Kube::shared().await;
    Api::namespaced(kube.admin().await, kube.namespace())
}

fn lock(backend: KubeBackend, name: &str, identity: &str) -> Lock {
    Lock::builder(backend, name, identity)
        .timing(Timing::new(TTL))
        .build()
        .expect("a valid lock")
}

/// Waits until the lease's renewTime moves past `since`'s, within a TTL.
async fn renewed_since(name: &str, since: &LeaseSpec) -> Lease {
    let api = leases().await;
    let deadline = tokio::time::Instant::now() + TTL;
    loop {
        let lease = api.get(name).await.expect("the lease");
        if spec(&lease).renew_time > since.renew_time {
            return lease;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the lease was not renewed within the TTL"
        );
        sleep(Duration::from_millis(20)).await;
    }
}

/// A new, empty ConfigMap for a fenced write; its name.
async fn create_config_map(config_maps: &Api<ConfigMap>, prefix: &str) -> String {
    let name = unique_name(prefix);
    let map = ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            ..ObjectMeta::default()
        },
        ..ConfigMap::default()
    };
    config_maps
        .create(&PostParams::default(), &map)
        .await
        .expect("create");
    name
}

fn spec(lease: &Lease) -> LeaseSpec {
    lease.spec.clone().expect("a lease spec")
}

/// Asserts that `error` carries the apiserver's answer `code`, as a caller would match
/// it: through lock-kube's accessor and through `source()`, downcast to `kube::Error`.
fn assert_answered(error: &Error, code: u16) {
    println!("{code}: {error}");
    assert_eq!(lock_kube::api_status(error), Some(code), "{error}");
    let source = std::error::Error::source(error).and_then(|source| source.downcast_ref());
    match source {
        Some(kube::Error::Api(status)) => assert_eq!(status.code, code, "{error}"),
        other => panic!("expected the apiserver's {code} as the source of {error}, got {other:?}"),
    }
}

/// A client whose every request and answer waits 25 ms in a proxy: between its read
/// of an object and its write, a [`Bumper`] writes the object many times.
struct SlowClient {
    client: kube::Client,
    namespace: String,
    _proxy: Proxy,
}

impl SlowClient {
    async fn start() -> Self {
        let kube = Kube::shared().await;
        let (config, proxy) = kube.proxied_config().await;
        proxy.set_latency(Duration::from_millis(25));
        Self {
            client: kube::Client::try_from(config).expect("a client"),
            namespace: kube.namespace().to_owned(),
            _proxy: proxy,
        }
    }
}

/// Another writer changing an object (an annotation) in a tight loop, until stopped,
/// for at most 20 000 writes or 30 s.
struct Bumper {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<u64>,
}

impl Bumper {
    fn start<K>(api: Api<K>, name: &str) -> Self
    where
        K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    {
        use std::sync::atomic::Ordering;

        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (stopped, name) = (stop.clone(), name.to_owned());
        let task = tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            let mut bumps = 0;
            while bumps < 20_000
                && !stopped.load(Ordering::Relaxed)
                && tokio::time::Instant::now() < deadline
            {
                let patch = serde_json::json!({
                    "metadata": { "annotations": { "lock-tests/bump": bumps.to_string() } }
                });
                api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .expect("a foreign write");
                bumps += 1;
            }
            bumps
        });
        Self { stop, task }
    }

    /// Stops it; how many writes it made.
    async fn stop(self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.task.await.expect("the bumper")
    }
}

#[tokio::test]
async fn records_are_written_as_client_go_writes_them() {
    let name = unique_name("record");
    let guard = lock(backend().await, &name, "pod-a")
        .acquire()
        .await
        .expect("acquire");
    let acquired = spec(&leases().await.get(&name).await.expect("the lease"));
    assert_eq!(acquired.holder_identity.as_deref(), Some("pod-a"));
    assert_eq!(acquired.lease_duration_seconds, Some(3));
    assert_eq!(acquired.lease_transitions, Some(0));
    assert!(acquired.acquire_time.is_some() && acquired.acquire_time == acquired.renew_time);

    // Six fractional digits on the wire.
    let kube = Kube::shared().await;
    let path = format!(
        "/apis/coordination.k8s.io/v1/namespaces/{}/leases/{name}",
        kube.namespace()
    );
    let raw = kube
        .admin()
        .await
        .request_text(http::Request::get(path).body(Vec::new()).expect("request"))
        .await
        .expect("raw get");
    let json: serde_json::Value = serde_json::from_str(&raw).expect("json");
    let renew_time = json["spec"]["renewTime"].as_str().expect("renewTime");
    assert_eq!(
        renew_time.rsplit('.').next().map(str::len),
        Some("123456Z".len()),
        "{renew_time}"
    );

    let renewed = spec(&renewed_since(&name, &acquired).await);
    assert_eq!(
        renewed.acquire_time, acquired.acquire_time,
        "renewal keeps acquireTime"
    );
    assert!(
        renewed.renew_time > acquired.renew_time,
        "renewal moves renewTime"
    );

    guard.release().await.expect("release");
    let released = spec(&leases().await.get(&name).await.expect("the lease"));
    assert_eq!(
        released.holder_identity.as_deref(),
        Some(""),
        "released as ReleaseOnCancel does"
    );
    assert_eq!(released.lease_duration_seconds, Some(1));
    assert_eq!(released.lease_transitions, Some(0));

    let next = lock(backend().await, &name, "pod-b")
        .acquire()
        .await
        .expect("acquire");
    let transitions = spec(&leases().await.get(&name).await.expect("the lease")).lease_transitions;
    assert_eq!(transitions, Some(1), "every acquisition is a transition");
    next.release().await.expect("release");
}

#[tokio::test]
async fn a_foreign_edit_of_the_metadata_is_kept_and_the_guard_renews_on_top_of_it() {
    let name = unique_name("foreign-label");
    let guard = lock(backend().await, &name, "holder")
        .acquire()
        .await
        .expect("acquire");
    let api = leases().await;
    let mut edited = api.get(&name).await.expect("the lease");
    edited
        .metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert("team".into(), "a".into());
    api.replace(&name, &PostParams::default(), &edited)
        .await
        .expect("a foreign edit");

    let after = renewed_since(&name, &spec(&edited)).await;
    assert!(
        guard.is_valid(),
        "a metadata edit does not take the lease away"
    );
    let team = after
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("team").cloned());
    assert_eq!(team.as_deref(), Some("a"), "never clobbered");
    assert!(
        spec(&after).renew_time > spec(&edited).renew_time,
        "renewed after re-reading"
    );
    guard.release().await.expect("release");
}

#[tokio::test]
async fn a_foreign_writer_taking_the_lease_is_detected_and_never_overwritten() {
    let name = unique_name("foreign-holder");
    let guard = lock(backend().await, &name, "holder")
        .acquire()
        .await
        .expect("acquire");
    let api = leases().await;
    let mut taken = api.get(&name).await.expect("the lease");
    taken.spec.as_mut().expect("spec").holder_identity = Some("kubectl-edit".into());
    api.replace(&name, &PostParams::default(), &taken)
        .await
        .expect("a foreign takeover");

    assert_eq!(guard.lost().await, LossReason::Taken);
    assert!(matches!(guard.release().await, Err(Error::Lost { .. })));
    let after = spec(&api.get(&name).await.expect("the lease"));
    assert_eq!(
        after.holder_identity.as_deref(),
        Some("kubectl-edit"),
        "the foreign record stays"
    );
}

#[tokio::test]
async fn the_token_keeps_growing_when_the_lease_is_deleted_and_recreated() {
    let name = unique_name("recreated");
    let first = lock(backend().await, &name, "holder")
        .acquire()
        .await
        .expect("acquire");
    let t1 = first.token();
    first.release().await.expect("release");
    leases()
        .await
        .delete(&name, &DeleteParams::default())
        .await
        .expect("delete");

    let second = lock(backend().await, &name, "holder")
        .acquire()
        .await
        .expect("acquire after recreate");
    assert!(second.token() > t1, "token {} after {t1}", second.token());
    second.release().await.expect("release");
}

#[tokio::test]
async fn a_restarted_process_with_the_same_identity_does_not_inherit_its_old_lease() {
    let name = unique_name("restarted");
    // The old process takes the lease and dies: no release, no renewals.
    let old_backend = backend().await;
    let old_token = match lock_core::Backend::take(
        &old_backend,
        &LockName::new(&name).expect("valid"),
        "pod-a",
        TTL,
    )
    .await
    {
        Ok(Take::Acquired(lease)) => lease.token,
        other => panic!("take of a free lease gave {other:?}"),
    };

    // A new process (a new backend, no memory of the old one) with the same identity.
    let started = tokio::time::Instant::now();
    let new = lock(backend().await, &name, "pod-a")
        .acquire_timeout(TTL * 3)
        .await
        .expect("acquire");
    assert!(
        started.elapsed() >= TTL,
        "it waited for the old lease to expire ({:?})",
        started.elapsed()
    );
    assert!(new.token() > old_token);
    new.release().await.expect("release");
}

#[tokio::test]
async fn a_forbidden_user_gets_a_typed_error_naming_the_verbs_needed() {
    let kube = Kube::shared().await;
    let backend = KubeBackend::new(kube.forbidden().await, kube.namespace());
    match lock(backend, &unique_name("forbidden"), "pod")
        .try_acquire()
        .await
    {
        Err(
            error @ Error::Backend {
                transient: false, ..
            },
        ) => {
            let message = error.to_string();
            assert!(
                message.contains("forbidden") && message.contains(lock_kube::REQUIRED_VERBS),
                "{message}"
            );
            assert_answered(&error, 403);
        }
        other => panic!("expected a permanent backend error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_missing_namespace_gets_a_typed_error_naming_it() {
    let kube = Kube::shared().await;
    let backend = KubeBackend::new(kube.admin().await, "no-such-namespace");
    match lock(backend, &unique_name("no-namespace"), "pod")
        .try_acquire()
        .await
    {
        Err(
            error @ Error::Backend {
                transient: false, ..
            },
        ) => {
            let Error::Backend { context, .. } = &error else {
                unreachable!()
            };
            assert!(
                context.contains("namespace \"no-such-namespace\" does not exist"),
                "{context}"
            );
            assert_answered(&error, 404);
        }
        other => panic!("expected a permanent backend error, got {other:?}"),
    }
}

/// A take that other writers keep racing: between each of its reads and its write to the
/// Lease, another writer changes it. A 409 the take cannot settle, a transient error.
#[tokio::test]
async fn a_take_that_other_writers_keep_racing_is_a_transient_409() {
    let name = unique_name("raced");
    let free = Lease {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec::default()),
    };
    leases()
        .await
        .create(&PostParams::default(), &free)
        .await
        .expect("a free lease");
    let slow = SlowClient::start().await;
    let bumper = Bumper::start(leases().await, &name);
    let backend = KubeBackend::new(slow.client.clone(), slow.namespace.as_str());
    let taken = Lock::builder(backend, &name, "pod")
        .timing(Timing::new(Duration::from_secs(15)))
        .build()
        .expect("a valid lock")
        .try_acquire()
        .await;
    let bumps = bumper.stop().await;
    match taken {
        Err(
            error @ Error::Backend {
                transient: true, ..
            },
        ) => {
            assert!(error.to_string().contains("kept changing it"), "{error}");
            assert_answered(&error, 409);
        }
        other => {
            panic!("expected a transient backend error after {bumps} foreign writes, got {other:?}")
        }
    }
    let after = spec(&leases().await.get(&name).await.expect("the lease"));
    assert_eq!(after.holder_identity, None, "nothing was taken");
}

#[tokio::test]
async fn a_fenced_write_to_a_missing_object_is_a_typed_404() {
    let kube = Kube::shared().await;
    let config_maps: Api<ConfigMap> = Api::namespaced(kube.admin().await, kube.namespace());
    let name = unique_name("fenced-missing");
    match fenced_update(&config_maps, &name, FencingToken::new(1), |_| {}).await {
        Err(
            error @ Error::Backend {
                transient: false, ..
            },
        ) => {
            assert!(
                error
                    .to_string()
                    .contains(&format!("configmaps {name:?} does not exist")),
                "{error}"
            );
            assert_answered(&error, 404);
        }
        other => panic!("expected a permanent backend error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_forbidden_fenced_write_is_a_typed_403() {
    let kube = Kube::shared().await;
    let config_maps: Api<ConfigMap> = Api::namespaced(kube.admin().await, kube.namespace());
    let name = create_config_map(&config_maps, "fenced-forbidden").await;
    let forbidden: Api<ConfigMap> = Api::namespaced(kube.forbidden().await, kube.namespace());
    match fenced_update(&forbidden, &name, FencingToken::new(1), |_| {}).await {
        Err(
            error @ Error::Backend {
                transient: false, ..
            },
        ) => {
            let message = error.to_string();
            assert!(
                message.contains("forbidden") && message.contains("get, update"),
                "{message}"
            );
            assert_answered(&error, 403);
        }
        other => panic!("expected a permanent backend error, got {other:?}"),
    }
    let after = config_maps.get(&name).await.expect("get");
    assert_eq!(after.metadata.annotations, None, "nothing was written");
}

/// A fenced write that other writers keep racing: between each of its reads and its
/// write, another writer changes the object. A 409 the write cannot settle, a transient
/// error; the object carries no token.
#[tokio::test]
async fn a_fenced_write_that_other_writers_keep_racing_is_a_transient_409() {
    let kube = Kube::shared().await;
    let config_maps: Api<ConfigMap> = Api::namespaced(kube.admin().await, kube.namespace());
    let name = create_config_map(&config_maps, "fenced-raced").await;
    let slow = SlowClient::start().await;
    let bumper = Bumper::start(config_maps.clone(), &name);
    let slow_maps: Api<ConfigMap> = Api::namespaced(slow.client.clone(), &slow.namespace);
    let written = fenced_update(&slow_maps, &name, FencingToken::new(7), |map| {
        map.data
            .get_or_insert_with(Default::default)
            .insert("owner".into(), "raced".into());
    })
    .await;
    let bumps = bumper.stop().await;
    match written {
        Err(
            error @ Error::Backend {
                transient: true, ..
            },
        ) => {
            assert!(error.to_string().contains("kept changing it"), "{error}");
            assert_answered(&error, 409);
        }
        other => {
            panic!("expected a transient backend error after {bumps} foreign writes, got {other:?}")
        }
    }
    let after = config_maps.get(&name).await.expect("get");
    let recorded = after
        .metadata
        .annotations
        .and_then(|a| a.get(FENCING_TOKEN_ANNOTATION).cloned());
    assert_eq!(recorded, None, "the fenced write did not land");
}

#[tokio::test]
async fn a_malformed_lease_is_reported_and_never_taken() {
    let api = leases().await;
    let cases = [
        (
            "no-renew-time",
            LeaseSpec {
                holder_identity: Some("x".into()),
                lease_duration_seconds: Some(15),
                ..LeaseSpec::default()
            },
        ),
        (
            "no-duration",
            LeaseSpec {
                holder_identity: Some("x".into()),
                renew_time: None,
                ..LeaseSpec::default()
            },
        ),
    ];
    for (case, spec) in cases {
        let name = unique_name(case);
        let foreign = Lease {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(spec),
        };
        let created = api
            .create(&PostParams::default(), &foreign)
            .await
            .expect("a foreign lease");
        let lock = lock(backend().await, &name, "pod");
        assert!(
            matches!(lock.try_acquire().await, Err(Error::Malformed { .. })),
            "{case}"
        );
        assert!(
            matches!(lock.holder().await, Err(Error::Malformed { .. })),
            "{case}"
        );
        let after = api.get(&name).await.expect("the lease");
        assert_eq!(
            after.metadata.resource_version, created.metadata.resource_version,
            "{case}: never overwritten"
        );
    }
}

#[tokio::test]
async fn a_fenced_write_with_an_older_token_is_rejected_after_a_newer_one_was_accepted() {
    let kube = Kube::shared().await;
    let config_maps: Api<ConfigMap> = Api::namespaced(kube.admin().await, kube.namespace());
    let name = create_config_map(&config_maps, "fenced").await;
    let set = |value: &'static str| {
        move |map: &mut ConfigMap| {
            map.data
                .get_or_insert_with(Default::default)
                .insert("owner".into(), value.into());
        }
    };

    fenced_update(&config_maps, &name, FencingToken::new(20), set("new"))
        .await
        .expect("the newer holder writes");
    match fenced_update(&config_maps, &name, FencingToken::new(10), set("stale")).await {
        Err(Error::StaleToken { presented, current }) => {
            assert_eq!((presented.get(), current.get()), (10, 20))
        }
        other => panic!("expected StaleToken, got {other:?}"),
    }
    let after = config_maps.get(&name).await.expect("get");
    assert_eq!(
        after.data.and_then(|d| d.get("owner").cloned()).as_deref(),
        Some("new")
    );

    // The same through the dynamic API.
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("", "v1", "ConfigMap"));
    let dynamic: Api<DynamicObject> =
        Api::namespaced_with(kube.admin().await, kube.namespace(), &resource);
    let stale = fenced_update(&dynamic, &name, FencingToken::new(19), |_| {}).await;
    assert!(matches!(stale, Err(Error::StaleToken { .. })), "{stale:?}");
    fenced_update(&dynamic, &name, FencingToken::new(21), |_| {})
        .await
        .expect("a newer token writes");
}

/// The interleaving of a stale writer: its token check passes, then a newer writer
/// writes, then the stale writer's change replaces the whole object (dropping its
/// resourceVersion). The stale write must conflict, be checked again, and be rejected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fenced_update_stays_conditional_when_the_change_replaces_the_whole_object() {
    let kube = Kube::shared().await;
    let config_maps: Api<ConfigMap> = Api::namespaced(kube.admin().await, kube.namespace());
    let name = unique_name("fenced-replace");
    let desired = |owner: &str| ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            annotations: Some([(FENCING_TOKEN_ANNOTATION.to_owned(), "1".to_owned())].into()),
            ..ObjectMeta::default()
        },
        data: Some([("owner".to_owned(), owner.to_owned())].into()),
        ..ConfigMap::default()
    };
    config_maps
        .create(&PostParams::default(), &desired("nobody"))
        .await
        .expect("create");
    fenced_update(&config_maps, &name, FencingToken::new(10), |_| {})
        .await
        .expect("the old holder writes first");

    let stale_desired = desired("stale");
    let mut interleaved = false;
    let stale = fenced_update(&config_maps, &name, FencingToken::new(10), |object| {
        if !interleaved {
            interleaved = true;
            // Between the stale writer's check and its write, the newer holder writes.
            tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(async {
                    fenced_update(&config_maps, &name, FencingToken::new(20), |map| {
                        map.data
                            .get_or_insert_with(Default::default)
                            .insert("owner".into(), "new".into());
                    })
                    .await
                    .expect("the newer holder writes");
                });
            });
        }
        *object = stale_desired.clone();
    })
    .await;
    assert!(interleaved);
    match stale {
        Err(Error::StaleToken { presented, current }) => {
            assert_eq!((presented.get(), current.get()), (10, 20))
        }
        other => panic!("expected StaleToken, got {other:?}"),
    }
    let after = config_maps.get(&name).await.expect("get");
    assert_eq!(
        after.data.and_then(|d| d.get("owner").cloned()).as_deref(),
        Some("new"),
        "the newer holder's data stands"
    );
    let recorded = after
        .metadata
        .annotations
        .and_then(|a| a.get(FENCING_TOKEN_ANNOTATION).cloned());
    assert_eq!(
        recorded.as_deref(),
        Some("20"),
        "the recorded token never goes down"
    );
}

/// A `DynamicObject` change that writes `metadata` into the object's flattened data
/// (which the apiserver would merge over the real metadata) cannot drop the
/// resourceVersion or the token either.
#[tokio::test]
async fn fenced_update_of_a_dynamic_object_stays_conditional_whatever_its_data_says() {
    let kube = Kube::shared().await;
    let config_maps: Api<ConfigMap> = Api::namespaced(kube.admin().await, kube.namespace());
    let name = create_config_map(&config_maps, "fenced-dynamic").await;
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("", "v1", "ConfigMap"));
    let dynamic: Api<DynamicObject> =
        Api::namespaced_with(kube.admin().await, kube.namespace(), &resource);
    fenced_update(&dynamic, &name, FencingToken::new(20), |_| {})
        .await
        .expect("the newer holder writes");
    let stale = fenced_update(&dynamic, &name, FencingToken::new(20), |object| {
        object.data["metadata"] = serde_json::json!({
            "name": name, "resourceVersion": "", "annotations": null
        });
        object.data["data"] = serde_json::json!({ "owner": "blind" });
    })
    .await
    .expect("an equal token writes");
    assert_eq!(
        stale
            .metadata
            .annotations
            .and_then(|a| a.get(FENCING_TOKEN_ANNOTATION).cloned())
            .as_deref(),
        Some("20"),
        "the token annotation survives metadata written into the data"
    );
    let older = fenced_update(&dynamic, &name, FencingToken::new(19), |object| {
        object.data["metadata"] = serde_json::json!({ "name": name, "resourceVersion": "" });
    })
    .await;
    assert!(matches!(older, Err(Error::StaleToken { .. })), "{older:?}");
}

#[tokio::test]
async fn a_renewal_restores_a_lease_duration_lowered_by_another_writer() {
    let name = unique_name("duration");
    let guard = lock(backend().await, &name, "holder")
        .acquire()
        .await
        .expect("acquire");
    let api = leases().await;
    // The holder renews every second: a foreign write may lose the race, and retries.
    let mut attempts = 0;
    let lowered = loop {
        let mut lowered = api.get(&name).await.expect("the lease");
        lowered
            .spec
            .get_or_insert_with(Default::default)
            .lease_duration_seconds = Some(1);
        match api.replace(&name, &PostParams::default(), &lowered).await {
            Ok(lowered) => break lowered,
            Err(kube::Error::Api(status)) if status.code == 409 && attempts < 5 => attempts += 1,
            Err(error) => panic!("a foreign writer lowers the duration: {error}"),
        }
    };

    let after = renewed_since(&name, &spec(&lowered)).await;
    assert!(guard.is_valid());
    assert_eq!(
        spec(&after).lease_duration_seconds,
        Some(3),
        "the holder's renewal asserts its own duration again"
    );
    guard.release().await.expect("release");
}

#[tokio::test]
async fn trusting_renew_time_takes_a_long_abandoned_lease_at_once() {
    use k8s_openapi::{apimachinery::pkg::apis::meta::v1::MicroTime, jiff::Timestamp};

    let name = unique_name("abandoned");
    let long_ago = Timestamp::from_second(Timestamp::now().as_second() - 60).expect("a time");
    let abandoned = Lease {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some("ghost".into()),
            lease_duration_seconds: Some(3),
            acquire_time: Some(MicroTime(long_ago)),
            renew_time: Some(MicroTime(long_ago)),
            ..LeaseSpec::default()
        }),
    };
    leases()
        .await
        .create(&PostParams::default(), &abandoned)
        .await
        .expect("an abandoned lease");

    // By default a fresh process waits one lease duration of its own observation.
    assert!(matches!(
        lock(backend().await, &name, "pod").try_acquire().await,
        Err(Error::Held(_))
    ));
    // Trusting renewTime within 1 s of skew, it sees the lease expired a minute ago.
    let kube = Kube::shared().await;
    let trusting = KubeBackend::trusting_renew_time(
        kube.admin().await,
        kube.namespace(),
        Duration::from_secs(1),
    );
    let guard = lock(trusting, &name, "pod")
        .try_acquire()
        .await
        .expect("taken at once");
    guard.release().await.expect("release");
}

#[tokio::test]
async fn an_unreachable_apiserver_is_a_transient_error() {
    let config = kube::Config::new("https://127.0.0.1:1".parse().expect("a URL"));
    let client = kube::Client::try_from(config).expect("a client");
    match lock(
        KubeBackend::new(client, "default"),
        &unique_name("unreachable"),
        "pod",
    )
    .try_acquire()
    .await
    {
        Err(
            error @ Error::Backend {
                transient: true, ..
            },
        ) => {
            println!("unreachable: {error}");
            assert_eq!(lock_kube::api_status(&error), None, "no answer, no status");
            assert!(
                error.client_error::<kube::Error>().is_some(),
                "the kube error is kept: {error:?}"
            );
        }
        other => panic!("expected a transient backend error, got {other:?}"),
    }
}

/// The Leases a backend creates carry its labels and owner references (so that a
/// selector finds them and the garbage collector deletes them with their owner); the
/// default namespace is the client's.
#[tokio::test]
async fn a_created_lease_carries_the_backends_labels_and_owner() {
    let kube = Kube::shared().await;
    let client = kube.admin().await;
    let owner_name = unique_name("lease-owner");
    let owner = Api::<ConfigMap>::namespaced(client.clone(), kube.namespace())
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: ObjectMeta {
                    name: Some(owner_name.clone()),
                    ..ObjectMeta::default()
                },
                ..ConfigMap::default()
            },
        )
        .await
        .expect("create the owner");
    let reference = kube::Resource::owner_ref(&owner, &()).expect("the owner has a uid");
    let backend = KubeBackend::default_namespaced(client)
        .with_labels([("app.kubernetes.io/name", "my-controller")])
        .owned_by(reference.clone());
    assert_eq!(
        backend.namespace(),
        kube.namespace(),
        "the client's default namespace"
    );
    let name = unique_name("labelled-lease");
    let guard = lock(backend, &name, "replica-a")
        .acquire()
        .await
        .expect("acquired");
    let lease = leases().await.get(&name).await.expect("the Lease");
    assert_eq!(
        lease
            .metadata
            .labels
            .as_ref()
            .and_then(|labels| labels.get("app.kubernetes.io/name"))
            .map(String::as_str),
        Some("my-controller")
    );
    assert_eq!(lease.metadata.owner_references, Some(vec![reference]));
    guard.release().await.expect("released");
}
