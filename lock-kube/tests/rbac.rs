//! The deployment guide's RBAC (`examples/deploy/rbac.yaml`) on a real apiserver: a lock
//! run as its service account, with a token from the TokenRequest API, works with
//! exactly the verbs the Role grants, and fails with an error naming the verbs needed
//! when one is missing.

use std::time::Duration;

use k8s_openapi::api::{
    authentication::v1::{TokenRequest, TokenRequestSpec},
    core::v1::ServiceAccount,
    rbac::v1::{Role, RoleBinding},
};
use kube::{Api, api::PostParams};
use lock_core::{Lock, Timing, conformance::unique_name};
use lock_kube::{KubeBackend, REQUIRED_VERBS, api_status, nodelay_client};
use lock_tests::Kube;
use secrecy::SecretString;

/// The guide's manifests, as shipped.
const RBAC: &str = include_str!("../../examples/deploy/rbac.yaml");

/// The guide's service account, Role and RoleBinding, renamed `name` and moved to the
/// harness's namespace, with the Role's verbs filtered by `keep`.
fn manifests(
    name: &str,
    namespace: &str,
    keep: impl Fn(&str) -> bool,
) -> (ServiceAccount, Role, RoleBinding) {
    let documents: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(RBAC).expect("rbac.yaml is YAML");
    let of_kind = |kind: &str| {
        documents
            .iter()
            .find(|document| document["kind"] == kind)
            .cloned()
            .unwrap_or_else(|| panic!("rbac.yaml has a {kind}"))
    };
    let mut account: ServiceAccount =
        serde_json::from_value(of_kind("ServiceAccount")).expect("a ServiceAccount");
    let mut role: Role = serde_json::from_value(of_kind("Role")).expect("a Role");
    let mut binding: RoleBinding =
        serde_json::from_value(of_kind("RoleBinding")).expect("a RoleBinding");
    for meta in [
        &mut account.metadata,
        &mut role.metadata,
        &mut binding.metadata,
    ] {
        meta.name = Some(name.to_owned());
        meta.namespace = Some(namespace.to_owned());
    }
    for rule in role.rules.iter_mut().flatten() {
        rule.verbs.retain(|verb| keep(verb));
    }
    binding.role_ref.name = name.to_owned();
    for subject in binding.subjects.iter_mut().flatten() {
        subject.name = name.to_owned();
        subject.namespace = Some(namespace.to_owned());
    }
    (account, role, binding)
}

/// Applies the manifests and returns a client authenticated as the service account.
async fn as_service_account(kube: &Kube, keep: impl Fn(&str) -> bool) -> kube::Client {
    let admin = kube.admin().await;
    let namespace = kube.namespace();
    let name = unique_name("controller");
    let (account, role, binding) = manifests(&name, namespace, keep);
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), namespace);
    accounts
        .create(&PostParams::default(), &account)
        .await
        .expect("create the ServiceAccount");
    Api::<Role>::namespaced(admin.clone(), namespace)
        .create(&PostParams::default(), &role)
        .await
        .expect("create the Role");
    Api::<RoleBinding>::namespaced(admin, namespace)
        .create(&PostParams::default(), &binding)
        .await
        .expect("create the RoleBinding");
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![],
            expiration_seconds: Some(600),
            ..TokenRequestSpec::default()
        },
        ..TokenRequest::default()
    };
    let token = accounts
        .create_token_request(&name, &PostParams::default(), &request)
        .await
        .expect("a token from the TokenRequest API")
        .status
        .expect("the token")
        .token;
    let mut config = kube.config(false).await;
    // Only the token: a kubeconfig's client certificate or exec plugin would authenticate
    // as its own user first.
    config.auth_info = kube::config::AuthInfo {
        token: Some(SecretString::from(token)),
        ..kube::config::AuthInfo::default()
    };
    nodelay_client(config).expect("a client")
}

fn lock(client: kube::Client, kube: &Kube, name: &str, identity: &str) -> Lock {
    Lock::builder(KubeBackend::new(client, kube.namespace()), name, identity)
        .timing(Timing::new(Duration::from_secs(3)))
        .build()
        .expect("a valid lock")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_works_as_the_guides_service_account_with_exactly_its_verbs() {
    let kube = Kube::shared().await;
    let client = as_service_account(kube, |_| true).await;
    let name = unique_name("rbac-lease");
    // Acquire (create), renew (update), release, wait on a watch for another's
    // release (get, list, watch), and list the locks.
    let first = lock(client.clone(), kube, &name, "replica-a");
    let guard = first
        .acquire()
        .await
        .expect("acquired with the guide's verbs");
    let first_token = guard.token();
    let second = lock(client.clone(), kube, &name, "replica-b");
    let waiting =
        tokio::spawn(async move { second.acquire_timeout(Duration::from_secs(20)).await });
    // Past the 3 s TTL: still valid only if renewals (update) went through.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(guard.is_valid(), "renewed with the guide's verbs");
    guard.release().await.expect("released");
    let taken = waiting
        .await
        .expect("the waiter ran")
        .expect("the waiter took it over");
    assert!(
        taken.token() > first_token,
        "a new token for the new holder"
    );
    let listed = lock_core::Locks::new(KubeBackend::new(client, kube.namespace()))
        .list(&name)
        .await
        .expect("listed with the guide's verbs");
    assert_eq!(listed.len(), 1);
    taken.release().await.expect("released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_verb_is_a_typed_403_naming_the_verbs_needed() {
    let kube = Kube::shared().await;
    let client = as_service_account(kube, |verb| verb != "create").await;
    let error = lock(client, kube, &unique_name("rbac-lease"), "replica-a")
        .try_acquire()
        .await
        .expect_err("no create, no Lease");
    assert_eq!(api_status(&error), Some(403), "{error}");
    let message = error.to_string();
    assert!(message.contains(REQUIRED_VERBS), "{message}");
    assert!(!error.is_transient(), "{message}");
}
