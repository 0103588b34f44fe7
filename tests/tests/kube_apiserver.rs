//! The kube-apiserver of the harness is real: Leases behave as on a cluster.

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use kube::{
    Api,
    api::{ObjectMeta, PostParams, WatchEvent, WatchParams},
    client::Body,
};
use lock_core::conformance::unique_name;
use lock_tests::Kube;

fn lease(name: &str, holder: &str) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(holder.to_owned()),
            lease_duration_seconds: Some(15),
            ..LeaseSpec::default()
        }),
    }
}

fn status_code(result: Result<Lease, kube::Error>) -> u16 {
    match result {
        Err(kube::Error::Api(status)) => status.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn creating_a_lease_answers_201_and_a_second_create_409() {
    let kube = Kube::shared().await;
    let client = kube.admin().await;
    let name = unique_name("smoke-create");
    let body = serde_json::to_vec(&lease(&name, "a")).expect("a lease serializes");
    let request = kube::core::Request::new(format!(
        "/apis/coordination.k8s.io/v1/namespaces/{}/leases",
        kube.namespace()
    ))
    .create(&PostParams::default(), body)
    .expect("a create request");
    let response = client
        .send(request.map(Body::from))
        .await
        .expect("the apiserver answers");
    assert_eq!(response.status().as_u16(), 201);

    let leases: Api<Lease> = Api::default_namespaced(client);
    assert_eq!(
        status_code(
            leases
                .create(&PostParams::default(), &lease(&name, "b"))
                .await
        ),
        409
    );
}

#[tokio::test]
async fn updates_need_the_current_resource_version() {
    let kube = Kube::shared().await;
    let leases: Api<Lease> = Api::default_namespaced(kube.admin().await);
    let name = unique_name("smoke-update");
    let created = leases
        .create(&PostParams::default(), &lease(&name, "a"))
        .await
        .expect("create");
    let created_version = created
        .metadata
        .resource_version
        .clone()
        .expect("a resourceVersion");

    let mut current = created.clone();
    current.spec.as_mut().expect("spec").holder_identity = Some("b".into());
    let updated = leases
        .replace(&name, &PostParams::default(), &current)
        .await
        .expect("update with the current version");
    let updated_version = updated
        .metadata
        .resource_version
        .clone()
        .expect("a resourceVersion");
    let as_number = |v: &str| v.parse::<u64>().expect("a numeric resourceVersion");
    assert!(as_number(&updated_version) > as_number(&created_version));

    // The version read before the update is stale now: 409 Conflict.
    assert_eq!(
        status_code(
            leases
                .replace(&name, &PostParams::default(), &current)
                .await
        ),
        409
    );

    // Leases do not allow unconditional updates: 422 Invalid.
    let mut unversioned = updated;
    unversioned.metadata.resource_version = None;
    assert_eq!(
        status_code(
            leases
                .replace(&name, &PostParams::default(), &unversioned)
                .await
        ),
        422
    );
}

#[tokio::test]
async fn a_user_without_rbac_grants_gets_403() {
    let kube = Kube::shared().await;
    let leases: Api<Lease> = Api::default_namespaced(kube.forbidden().await);
    let name = unique_name("smoke-forbidden");
    assert_eq!(
        status_code(
            leases
                .create(&PostParams::default(), &lease(&name, "a"))
                .await
        ),
        403
    );
    assert_eq!(status_code(leases.get(&name).await), 403);
}

#[tokio::test]
async fn a_watch_sees_a_lease_change() {
    let kube = Kube::shared().await;
    let leases: Api<Lease> = Api::default_namespaced(kube.admin().await);
    let name = unique_name("smoke-watch");
    let created = leases
        .create(&PostParams::default(), &lease(&name, "a"))
        .await
        .expect("create");
    let version = created
        .metadata
        .resource_version
        .clone()
        .expect("a resourceVersion");

    let params = WatchParams::default()
        .fields(&format!("metadata.name={name}"))
        .timeout(10);
    let mut events = leases
        .watch(&params, &version)
        .await
        .expect("watch")
        .boxed();
    let mut changed = created;
    changed.spec.as_mut().expect("spec").holder_identity = Some("b".into());
    leases
        .replace(&name, &PostParams::default(), &changed)
        .await
        .expect("update");

    match events.try_next().await.expect("a watch event") {
        Some(WatchEvent::Modified(lease)) => {
            assert_eq!(
                lease.spec.and_then(|s| s.holder_identity).as_deref(),
                Some("b")
            );
        }
        other => panic!("expected MODIFIED, got {other:?}"),
    }
}

#[tokio::test]
async fn a_cluster_named_by_a_kubeconfig_is_used_as_it_is_with_an_impersonated_forbidden_user() {
    let local = Kube::shared().await;
    let kubeconfig = local
        .kubeconfig()
        .expect("a local apiserver writes a kubeconfig");
    let external = Kube::external(kubeconfig).await;
    let name = unique_name("smoke-external");

    let admin: Api<Lease> = Api::default_namespaced(external.admin().await);
    admin
        .create(&PostParams::default(), &lease(&name, "a"))
        .await
        .expect("the kubeconfig's user may create");
    let forbidden: Api<Lease> = Api::default_namespaced(external.forbidden().await);
    assert_eq!(status_code(forbidden.get(&name).await), 403);
}
