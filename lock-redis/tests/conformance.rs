//! The lock-core conformance suite against a real redis-server.

use lock_redis::RedisBackend;
use lock_tests::Redis;

async fn backend() -> RedisBackend {
    RedisBackend::connect(&Redis::shared().await.url())
        .await
        .expect("connect to Redis")
}

lock_core::conformance_tests!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    backend = backend().await
);
