//! The short safety suite on every backend, on real servers: every row of the table
//! must pass (see `lock_safety::Row::passed`).

use lock_safety::{Plan, run_backend, table};

async fn every_scenario_passes_on(backend: &str) {
    let rows = run_backend(backend, &Plan::short(), |_| ()).await;
    let table = table::table(&rows);
    println!("{table}");
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
