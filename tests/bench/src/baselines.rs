//! The libraries users would pick instead, driven through their public APIs on the same
//! servers: etcd's own Lock RPC, rslock (Redlock) for Redis, kube-lease-manager for
//! Kubernetes.

use std::time::Duration;

use etcd_client::LockOptions;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use lock_tests::{
    Etcd, Kube, Redis,
    bench::{Cycle, Sample},
};
use tokio::time::{Instant, sleep};

/// One contender on etcd's Lock RPC, with an etcd lease of its own.
pub async fn etcd_lock_cycle(etcd: &Etcd, name: &str) -> Cycle {
    let mut client = etcd.client().await;
    let lease = client.lease_grant(60, None).await.expect("grant").id();
    let name = name.to_owned();
    Box::new(move || {
        let (mut client, name) = (client.clone(), name.clone());
        Box::pin(async move {
            let locked = client
                .lock(name.as_str(), Some(LockOptions::new().with_lease(lease)))
                .await
                .expect("lock");
            client.unlock(locked.key()).await.expect("unlock");
        })
    })
}

/// One contender on rslock, with a lock manager of its own.
pub fn rslock_cycle(redis: &Redis, resource: &str) -> Cycle {
    let manager = rslock::LockManager::new(vec![redis.url()]);
    let resource = resource.to_owned();
    Box::new(move || {
        let (manager, resource) = (manager.clone(), resource.clone());
        Box::pin(async move {
            let held = manager
                .acquire_no_guard(resource.as_bytes(), Duration::from_secs(15))
                .await
                .expect("rslock acquire");
            manager.unlock(&held).await;
        })
    })
}

/// kube-lease-manager's settings: its defaults, or a lease normalized to ours.
#[derive(Clone, Copy, Debug)]
pub enum Settings {
    /// Its defaults (a 30 s lease, 5 s grace).
    Defaults,
    /// A lease of this many seconds, its default grace.
    Lease(u64),
}

impl Settings {
    /// How the tables name it.
    pub fn label(self) -> String {
        match self {
            Settings::Defaults => "kube-lease-manager 0.13, defaults (30 s)".to_owned(),
            Settings::Lease(seconds) => format!("kube-lease-manager 0.13, {seconds} s lease"),
        }
    }
}

async fn manager(kube: &Kube, name: &str, identity: &str, settings: Settings) -> LeaseManager {
    let client = kube::Client::try_from(kube.config(false).await).expect("a client");
    let builder = LeaseManagerBuilder::new(client, name)
        .with_namespace(kube.namespace())
        .with_identity(identity);
    let builder = match settings {
        Settings::Defaults => builder,
        Settings::Lease(seconds) => builder.with_duration(seconds),
    };
    builder.build().await.expect("a lease manager")
}

/// Waits until `manager` holds its lease.
async fn until_leader(manager: &LeaseManager) {
    while !manager.changed().await.expect("changed") {}
}

fn fresh(scenario: &str) -> String {
    lock_core::conformance::unique_name(scenario)
}

/// Uncontended: a free lease taken, then released.
pub async fn kube_lease_manager_uncontended(kube: &Kube, settings: Settings, n: usize) -> Sample {
    let mut cycles = Vec::with_capacity(n);
    let manager = manager(kube, &fresh("klm-uncontended"), "bench", settings).await;
    for _ in 0..n {
        let started = Instant::now();
        until_leader(&manager).await;
        manager.release().await.expect("release");
        cycles.push(started.elapsed());
        // `changed` reports the step-down too.
        while manager.changed().await.expect("changed") {}
    }
    Sample(cycles)
}

/// Holder releases → the waiting follower holds.
pub async fn kube_lease_manager_graceful(kube: &Kube, settings: Settings, n: usize) -> Sample {
    let name = fresh("klm-handover");
    let mut latencies = Vec::with_capacity(n);
    for i in 0..n {
        let holder = manager(kube, &name, &format!("holder-{i}"), settings).await;
        until_leader(&holder).await;
        let follower = manager(kube, &name, &format!("follower-{i}"), settings).await;
        let waiting = tokio::spawn(async move {
            until_leader(&follower).await;
            let at = Instant::now();
            follower.release().await.expect("release");
            at
        });
        sleep(Duration::from_millis(150)).await;
        let released_at = Instant::now();
        holder.release().await.expect("release");
        let acquired_at = waiting.await.expect("follower");
        latencies.push(acquired_at - released_at);
    }
    Sample(latencies)
}

/// A holder that stops renewing (dropped without releasing) → the follower holds;
/// minus the lease duration.
pub async fn kube_lease_manager_crash(kube: &Kube, seconds: u64, n: usize) -> Sample {
    let mut latencies = Vec::with_capacity(n);
    for _ in 0..n {
        let name = fresh("klm-crash");
        let crashed = manager(kube, &name, "crashed", Settings::Lease(seconds)).await;
        until_leader(&crashed).await;
        let last_write = Instant::now();
        drop(crashed);
        let follower = manager(kube, &name, "follower", Settings::Lease(seconds)).await;
        until_leader(&follower).await;
        latencies.push(
            last_write
                .elapsed()
                .saturating_sub(Duration::from_secs(seconds)),
        );
        follower.release().await.expect("release");
    }
    Sample(latencies)
}

/// Lease requests (and reads) per second that one held lease costs, over `hold`.
pub async fn kube_lease_manager_steady(
    kube: &Kube,
    settings: Settings,
    hold: Duration,
) -> crate::subjects::Served {
    let holder = manager(kube, &fresh("klm-steady"), "bench", settings).await;
    let (mut leading, task) = holder.watch().await;
    while !*leading.borrow_and_update() {
        leading.changed().await.expect("watching");
    }
    let before = crate::subjects::kube_served(kube).await;
    sleep(hold).await;
    let after = crate::subjects::kube_served(kube).await;
    drop(leading);
    let _ = task.await;
    after.per_second_since(before, hold)
}

/// kubert's lease settings: it has no defaults, so both runs use a 15 s lease; its
/// examples renew 5 s before expiry (as client-go's renew deadline does).
pub fn kubert_params(seconds: u64) -> kubert::lease::ClaimParams {
    kubert::lease::ClaimParams {
        lease_duration: Duration::from_secs(seconds),
        renew_grace_period: Duration::from_secs(seconds.min(15) / 3),
    }
}

/// A kubert lease manager for `name` (created if missing), on a kube-client 1.1 client
/// of its own.
async fn kubert_manager(kube: &Kube, name: &str) -> kubert::lease::LeaseManager {
    use k8s_openapi::api::coordination::v1::Lease;
    let config = kube.config(false).await;
    let leases: kube::Api<Lease> = kube::Api::namespaced(
        kube::Client::try_from(config.clone()).expect("a client"),
        kube.namespace(),
    );
    let lease = Lease {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        },
        spec: None,
    };
    // kubert claims a Lease that exists; a conflict means another contender made it.
    let _ = leases
        .create(&kube::api::PostParams::default(), &lease)
        .await;
    let mut old = kube_client_1::Config::new(
        config
            .cluster_url
            .to_string()
            .parse()
            .expect("the apiserver URL"),
    );
    old.root_cert = config.root_cert.clone();
    old.auth_info.token = config.auth_info.token.clone();
    old.default_namespace = kube.namespace().to_owned();
    let client = kube_client_1::Client::try_from(old).expect("a kube-client 1.1 client");
    let api = kube_client_1::Api::namespaced(client, kube.namespace());
    kubert::lease::LeaseManager::init(api, name)
        .await
        .expect("kubert lease manager")
}

/// Claims the lease for `claimant`, waiting out other holders' claims.
async fn kubert_claim(
    manager: &kubert::lease::LeaseManager,
    claimant: &str,
    params: &kubert::lease::ClaimParams,
) {
    loop {
        let claim = manager
            .ensure_claimed(claimant, params)
            .await
            .expect("claim");
        if claim.holder == claimant {
            return;
        }
        claim.expire_with_grace(Duration::ZERO).await;
    }
}

/// Uncontended: claim a free lease, vacate it.
pub async fn kubert_uncontended(kube: &Kube, n: usize) -> Sample {
    let manager = kubert_manager(kube, &fresh("kubert-uncontended")).await;
    let params = kubert_params(15);
    let mut cycles = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        kubert_claim(&manager, "bench", &params).await;
        manager.vacate("bench").await.expect("vacate");
        cycles.push(started.elapsed());
    }
    Sample(cycles)
}

/// Holder vacates → the waiting follower holds.
pub async fn kubert_graceful(kube: &Kube, n: usize) -> Sample {
    let name = fresh("kubert-handover");
    let params = kubert_params(15);
    let mut latencies = Vec::with_capacity(n);
    for i in 0..n {
        let holder = kubert_manager(kube, &name).await;
        let claimant = format!("holder-{i}");
        kubert_claim(&holder, &claimant, &params).await;
        let follower = kubert_manager(kube, &name).await;
        let waiting = {
            let params = params.clone();
            tokio::spawn(async move {
                kubert_claim(&follower, "follower", &params).await;
                let at = Instant::now();
                follower.vacate("follower").await.expect("vacate");
                at
            })
        };
        sleep(Duration::from_millis(150)).await;
        let released_at = Instant::now();
        holder.vacate(&claimant).await.expect("vacate");
        latencies.push(waiting.await.expect("follower") - released_at);
    }
    Sample(latencies)
}

/// A holder that stops renewing → the follower holds; minus the lease duration.
pub async fn kubert_crash(kube: &Kube, seconds: u64, n: usize) -> Sample {
    let params = kubert_params(seconds);
    let mut latencies = Vec::with_capacity(n);
    for _ in 0..n {
        let name = fresh("kubert-crash");
        let crashed = kubert_manager(kube, &name).await;
        kubert_claim(&crashed, "crashed", &params).await;
        let last_write = Instant::now();
        drop(crashed);
        let follower = kubert_manager(kube, &name).await;
        kubert_claim(&follower, "follower", &params).await;
        latencies.push(last_write.elapsed().saturating_sub(params.lease_duration));
        follower.vacate("follower").await.expect("vacate");
    }
    Sample(latencies)
}

/// Lease requests (and reads) per second that one held lease costs under kubert's own task.
pub async fn kubert_steady(kube: &Kube, hold: Duration) -> crate::subjects::Served {
    let manager = kubert_manager(kube, &fresh("kubert-steady")).await;
    let spawned = manager
        .spawn("bench", kubert_params(15))
        .await
        .expect("spawn");
    let before = crate::subjects::kube_served(kube).await;
    sleep(hold).await;
    let after = crate::subjects::kube_served(kube).await;
    drop(spawned);
    after.per_second_since(before, hold)
}
