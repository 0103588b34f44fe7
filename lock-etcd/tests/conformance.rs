//! The lock-core conformance suite against a real etcd.

use lock_etcd::EtcdBackend;
use lock_tests::Etcd;

async fn backend() -> EtcdBackend {
    EtcdBackend::new(Etcd::shared().await.client().await)
}

lock_core::conformance_tests!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    backend = backend().await
);
