//! The lock-core conformance suite against a real kube-apiserver.

use lock_kube::KubeBackend;
use lock_tests::Kube;

async fn backend() -> KubeBackend {
    let kube = Kube::shared().await;
    KubeBackend::new(kube.admin().await, kube.namespace())
}

lock_core::conformance_tests!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    backend = backend().await
);
