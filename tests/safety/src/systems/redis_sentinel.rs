//! Redis with failover: a primary, a replica 250 ms behind it (each way), and three
//! Sentinels. Contenders reach the primary Sentinel names (`connect_sentinel`), without
//! (`redis-sentinel`) or with (`redis-sentinel-acks`) a replica's acknowledgement of
//! each take and renewal. The fenced store is a key written with `fenced_set` on the
//! same primary, acknowledged by nobody but the primary.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use lock_redis::RedisBackend;
use lock_tests::{RedisSentinel, SERVICE};
use tokio::sync::Mutex;

use crate::{
    Plan,
    nemesis::{Bounds, Nemesis},
    system::{Connection, Link, Route, Store, System},
    systems::redis::KeyStore,
};

/// The servers, of the suite's own, and whether takes wait for the replica.
pub struct RedisSentinelSystem {
    redis: Mutex<RedisSentinel>,
    sentinels: Vec<String>,
    acknowledged: bool,
}

/// The lock's TTL on these rows.
const TTL: Duration = Duration::from_secs(5);

/// How long a holder works between its writes: its term outlives renewals (every 1.7 s).
const HOLD: Duration = Duration::from_secs(1);

/// How long a contender's acquire call waits: a take the replica acknowledges costs a
/// round trip to it (0.5 s).
const ACQUIRE_WAIT: Duration = Duration::from_secs(2);

/// How far the replica lags: 250 ms each way, a replica under load or across a
/// congested link. The primary acknowledges what the replica has not got yet.
const REPLICATION_LATENCY: Duration = Duration::from_millis(250);

impl RedisSentinelSystem {
    /// Starts the servers; with `acknowledged`, takes and renewals wait for the replica.
    pub async fn start(acknowledged: bool) -> Self {
        let redis = RedisSentinel::start_lagging(REPLICATION_LATENCY).await;
        let sentinels = redis.sentinel_urls();
        Self {
            redis: Mutex::new(redis),
            sentinels,
            acknowledged,
        }
    }

    async fn backend(&self) -> RedisBackend {
        let sentinels: Vec<&str> = self.sentinels.iter().map(String::as_str).collect();
        let backend = RedisBackend::connect_sentinel(&sentinels, SERVICE)
            .await
            .expect("connect through Sentinel");
        if self.acknowledged {
            backend.with_replica_acks(1, Duration::from_secs(1))
        } else {
            backend
        }
    }
}

#[async_trait]
impl System for RedisSentinelSystem {
    fn name(&self) -> &'static str {
        if self.acknowledged {
            "redis-sentinel-acks"
        } else {
            "redis-sentinel"
        }
    }

    /// The failover. Sentinel hands out the servers' own addresses, so a contender's
    /// network cannot be proxied, and the TTL here is longer than the faults of a
    /// contender's pause: the single Redis has those rows.
    fn supports(&self, nemesis: Nemesis) -> bool {
        matches!(nemesis, Nemesis::None | Nemesis::PrimaryKilled)
    }

    /// A TTL longer than a failover (about 1.7 s here), as in production (Sentinel's
    /// detection and election take seconds, TTLs are longer): a holder whose take the
    /// failover lost is still valid when the promoted replica serves.
    fn plan(&self, plan: &Plan) -> Plan {
        Plan {
            ttl: TTL,
            hold: HOLD,
            acquire_wait: ACQUIRE_WAIT,
            ..plan.clone()
        }
    }

    /// Without acknowledgements a failover may lose the last takes: beyond what Redis
    /// promises, shown. With them the lock's record survives; the store's writes are
    /// acknowledged by the primary alone and may be lost.
    fn bounds(&self, nemesis: Nemesis) -> Bounds {
        match (nemesis, self.acknowledged) {
            (Nemesis::PrimaryKilled, false) => Bounds::Shown,
            (Nemesis::PrimaryKilled, true) => Bounds::LockWithin,
            (other, _) => other.bounds(),
        }
    }

    async fn link(&self, _contender: usize) -> Link {
        Link::Proxies(Vec::new())
    }

    async fn connect(&self, _route: Route, name: &str) -> Connection {
        let backend = self.backend().await;
        let store = KeyStore::new(&backend, name);
        (Arc::new(backend), Some(Box::new(store)))
    }

    async fn store(&self, name: &str) -> Option<Box<dyn Store>> {
        Some(Box::new(KeyStore::new(&self.backend().await, name)))
    }

    async fn topology_fault(&self, nemesis: Nemesis, _holder: usize, lasting: Duration) {
        assert_eq!(nemesis, Nemesis::PrimaryKilled, "{nemesis:?}");
        let mut redis = self.redis.lock().await;
        let primary = redis.primary().await;
        assert!(
            redis.lags().await,
            "Sentinel re-pointed the replica to the primary itself: it no longer lags"
        );
        redis.kill(primary);
        redis.failed_over_from(primary).await;
        tokio::time::sleep(lasting).await;
        redis.restart(primary).await;
    }
}
