//! The short safety suite on every backend, on real servers: every row of the table
//! must pass (see `lock_safety::Row::passed`). On the topologies of several servers, CI
//! runs their own faults only (the faults of one contender are the single servers'
//! rows; `cargo run --release -p lock-safety` runs them all there too).

use lock_safety::{Nemesis, Plan, run_backend, run_nemeses, table};

async fn every_scenario_passes_on(backend: &str) {
    let rows = run_backend(backend, &Plan::short(), |_| ()).await;
    let table = table::table(&rows);
    println!("{table}");
    assert!(
        rows.iter().all(|row| row.passed()),
        "a scenario failed:\n{table}"
    );
}

async fn every_topology_fault_passes_on(backend: &str) {
    topology_faults_pass_on(backend, &Nemesis::TOPOLOGY).await;
}

async fn topology_faults_pass_on(backend: &str, nemeses: &[Nemesis]) {
    let rows = run_nemeses(backend, nemeses, &Plan::short(), |_| ()).await;
    let table = table::table(&rows);
    println!("{table}");
    assert!(!rows.is_empty(), "{backend} suffers no topology fault");
    assert!(
        rows.iter().all(|row| row.passed()),
        "a scenario failed:\n{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory() {
    every_scenario_passes_on("memory").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube() {
    every_scenario_passes_on("kube").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_apply() {
    every_scenario_passes_on("kube-apply").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_status() {
    every_scenario_passes_on("kube-status").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd() {
    every_scenario_passes_on("etcd").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis() {
    every_scenario_passes_on("redis").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_cluster() {
    every_topology_fault_passes_on("etcd-cluster").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_ha() {
    // Not the apiserver killed and restarted: its restart costs CI tens of seconds, and
    // the paused apiserver stops answering the same way (the full table has both).
    let nemeses: Vec<Nemesis> = Nemesis::TOPOLOGY
        .into_iter()
        .filter(|&nemesis| nemesis != Nemesis::ApiserverKilled)
        .collect();
    topology_faults_pass_on("kube-ha", &nemeses).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_sentinel() {
    every_topology_fault_passes_on("redis-sentinel").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_sentinel_acks() {
    every_topology_fault_passes_on("redis-sentinel-acks").await;
}
