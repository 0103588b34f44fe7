//! The same controller logic on any backend: tested on the in-memory backend (on paused
//! time, in milliseconds), run against Kubernetes in production.
//!
//! Run: `cargo run --example swap-backend` (in memory) or
//! `cargo run --example swap-backend -- kube` (Leases in the current kubeconfig's
//! namespace). Its tests (`cargo test --example swap-backend`) run the same function on
//! both backends.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use lock_core::{FencedRegister, FencingToken, LeaderElector, Lock, MemoryBackend, Timing};
use tokio::time::sleep;

/// Jobs shared by the replicas, and where their results go: a store that rejects
/// writes with stale tokens.
#[derive(Default)]
struct Work {
    jobs: Mutex<VecDeque<u32>>,
    results: FencedRegister<Vec<(u32, FencingToken)>>,
}

impl Work {
    fn with_jobs(count: u32) -> Arc<Self> {
        let work = Self::default();
        work.jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(0..count);
        Arc::new(work)
    }

    fn has_jobs(&self) -> bool {
        !self
            .jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }

    fn next_job(&self) -> Option<u32> {
        self.jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front()
    }
}

/// The controller logic, written once against `Lock`: while this replica leads, it
/// takes jobs one by one and records each result with its term's token; when asked to
/// stop, it finishes the job in hand and steps down.
async fn controller(
    lock: Lock,
    work: Arc<Work>,
    shutdown: impl Future<Output = ()>,
) -> lock_core::Result<()> {
    let identity = lock.identity().to_owned();
    LeaderElector::new(lock)
        .run_until(
            |leadership| {
                let (work, identity) = (work.clone(), identity.clone());
                async move {
                    while !leadership.is_stopping() && leadership.is_valid() {
                        let Some(job) = work.next_job() else {
                            leadership.stopping().await;
                            break;
                        };
                        sleep(Duration::from_millis(20)).await; // the job
                        let token = leadership.token();
                        match work
                            .results
                            .update(token, |results| results.push((job, token)))
                        {
                            Ok(()) => tracing::info!(%identity, job, %token, "done"),
                            Err(error) => tracing::warn!(%identity, job, %error, "result rejected"),
                        }
                    }
                }
            },
            shutdown,
        )
        .await
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let timing = Timing::new(Duration::from_secs(15));
    let work = Work::with_jobs(20);
    let lock = match std::env::args().nth(1).as_deref() {
        None | Some("memory") => {
            Lock::builder(MemoryBackend::new(), "swap-backend-demo", "replica-1")
                .timing(timing)
                .build()?
        }
        Some("kube") => {
            let config = kube::Config::infer().await?;
            let namespace = config.default_namespace.clone();
            let backend =
                lock_kube::KubeBackend::new(lock_kube::nodelay_client(config)?, &namespace);
            Lock::builder(backend, "swap-backend-demo", "replica-1")
                .timing(timing)
                .build()?
        }
        Some(other) => return Err(format!("unknown backend {other:?}: use memory or kube").into()),
    };
    let done = {
        let work = work.clone();
        async move {
            while work.has_jobs() {
                sleep(Duration::from_millis(50)).await;
            }
        }
    };
    controller(lock, work.clone(), done).await?;
    println!(
        "{} jobs done: {:?}",
        work.results.read().len(),
        work.results.read()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use lock_core::Backend;
    use tokio::sync::oneshot;

    use super::*;

    /// Two replicas of the controller on `backend`: every job is done exactly once, in
    /// order of tokens, across a graceful hand-over from the first leader.
    async fn two_replicas_share_the_work(backend: impl Backend + Clone) {
        let name = lock_core::conformance::unique_name("swap");
        let timing = Timing::new(Duration::from_secs(3));
        let work = Work::with_jobs(30);
        let replica = |identity: &str| {
            Lock::builder(backend.clone(), name.as_str(), identity)
                .timing(timing)
                .build()
                .expect("valid")
        };
        let (stop_first, first_stopped) = oneshot::channel::<()>();
        let (stop_second, second_stopped) = oneshot::channel::<()>();
        let first = tokio::spawn(controller(replica("first"), work.clone(), async {
            let _ = first_stopped.await;
        }));
        sleep(Duration::from_millis(200)).await;
        let second = tokio::spawn(controller(replica("second"), work.clone(), async {
            let _ = second_stopped.await;
        }));
        sleep(Duration::from_millis(200)).await;

        let _ = stop_first.send(()); // SIGTERM to the leader
        first
            .await
            .expect("ran")
            .expect("the first replica stops cleanly");
        while work.has_jobs() {
            sleep(Duration::from_millis(50)).await;
        }
        let _ = stop_second.send(());
        second
            .await
            .expect("ran")
            .expect("the second replica stops cleanly");

        let results = work.results.read();
        let mut jobs: Vec<u32> = results.iter().map(|(job, _)| *job).collect();
        jobs.sort_unstable();
        assert_eq!(
            jobs,
            (0..30).collect::<Vec<_>>(),
            "every job done exactly once"
        );
        let tokens: Vec<FencingToken> = results.iter().map(|(_, token)| *token).collect();
        assert!(
            tokens.windows(2).all(|pair| pair[0] <= pair[1]),
            "results in token order"
        );
        assert!(
            tokens.first() < tokens.last(),
            "both replicas led: {tokens:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_controller_logic_on_the_in_memory_backend() {
        two_replicas_share_the_work(MemoryBackend::new()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_same_controller_logic_on_kubernetes() {
        let kube = lock_tests::Kube::shared().await;
        let client = lock_kube::nodelay_client(kube.config(false).await).expect("a client");
        two_replicas_share_the_work(lock_kube::KubeBackend::new(client, kube.namespace())).await;
    }
}
