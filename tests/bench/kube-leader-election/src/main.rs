//! One kube-leader-election contender, driven on stdin by lock-bench, the way its README
//! says to use it: `try_acquire_or_renew` every third of the lease, `step_down` to leave.
//!
//! Arguments: KUBECONFIG NAMESPACE LEASE HOLDER TTL_SECONDS.
//! Commands: `acquire` (prints `acquired` once held, then keeps renewing), `release`
//! (steps down, prints `released`), `crash` (stops renewing, prints `stopped`).

use std::{sync::Arc, time::Duration};

use kube_leader_election::{LeaseLock, LeaseLockParams, LeaseLockResult};
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [kubeconfig, namespace, lease, holder, ttl] = args.as_slice() else {
        panic!("usage: kle-contender KUBECONFIG NAMESPACE LEASE HOLDER TTL_SECONDS");
    };
    let kubeconfig = kube::config::Kubeconfig::read_from(kubeconfig).expect("a kubeconfig");
    let options = kube::config::KubeConfigOptions::default();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .expect("a client configuration");
    let client = kube::Client::try_from(config).expect("a client");
    let ttl = Duration::from_secs(ttl.parse().expect("seconds"));
    let lock = Arc::new(LeaseLock::new(
        client,
        namespace,
        LeaseLockParams {
            lease_name: lease.clone(),
            holder_id: holder.clone(),
            lease_ttl: ttl,
        },
    ));
    let mut renewing: Option<tokio::task::JoinHandle<()>> = None;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(command)) = lines.next_line().await {
        match command.trim() {
            "acquire" => {
                let lock = lock.clone();
                let (held, mut acquired) = tokio::sync::watch::channel(false);
                renewing = Some(tokio::spawn(async move {
                    loop {
                        let now_held = matches!(lock.try_acquire_or_renew().await, Ok(LeaseLockResult::Acquired(_)));
                        held.send_if_modified(|was| std::mem::replace(was, now_held) != now_held);
                        tokio::time::sleep(ttl / 3).await;
                    }
                }));
                while !*acquired.borrow_and_update() {
                    acquired.changed().await.expect("renewing");
                }
                println!("acquired");
            }
            "release" => {
                if let Some(task) = renewing.take() {
                    task.abort();
                }
                lock.step_down().await.expect("step down");
                println!("released");
            }
            "crash" => {
                if let Some(task) = renewing.take() {
                    task.abort();
                }
                println!("stopped");
            }
            other => panic!("unknown command {other:?}"),
        }
    }
}
