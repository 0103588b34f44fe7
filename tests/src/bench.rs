//! What the benchmark programs measure, once for every backend: latency samples and
//! their percentiles, acquire/release and hand-over loops over any `lock_core::Lock`,
//! and contended throughput of any kind of lock.

use std::time::Duration;

use futures::future::BoxFuture;
use tokio::time::Instant;

/// Latencies of one benchmark scenario.
#[derive(Clone, Debug, Default)]
pub struct Sample(pub Vec<Duration>);

impl Sample {
    /// The latency at percentile `p` (0.0 to 1.0), by the nearest-rank method.
    pub fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.0.clone();
        sorted.sort();
        if sorted.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1]
    }

    /// The header of the table [`row`](Sample::row) writes to.
    pub fn header(last_column: &str) {
        println!("| scenario | n | p50 ms | p99 ms | min ms | max ms | {last_column} |");
        println!("|---|---|---|---|---|---|---|");
    }

    /// Prints one row: count, p50, p99, min, max in milliseconds, and `extra`.
    pub fn row(&self, scenario: &str, extra: &str) {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "| {scenario} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {extra} |",
            self.0.len(),
            ms(self.percentile(0.5)),
            ms(self.percentile(0.99)),
            ms(self.percentile(0.0)),
            ms(self.percentile(1.0)),
        );
    }
}

/// Timed acquire and release on an uncontended lock, `n` times: (acquires, releases).
pub async fn acquire_release(lock: &lock_core::Lock, n: usize) -> (Sample, Sample) {
    let (mut acquires, mut releases) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let started = Instant::now();
        let guard = lock.acquire().await.expect("acquire");
        acquires.push(started.elapsed());
        let started = Instant::now();
        guard.release().await.expect("release");
        releases.push(started.elapsed());
    }
    (Sample(acquires), Sample(releases))
}

/// One lock/unlock cycle of one contender.
pub type Cycle = Box<dyn FnMut() -> BoxFuture<'static, ()> + Send>;

/// A cycle that acquires and releases `lock`.
pub fn lock_cycle(lock: lock_core::Lock) -> Cycle {
    Box::new(move || {
        let lock = lock.clone();
        Box::pin(async move {
            let guard = lock.acquire().await.expect("acquire");
            guard.release().await.expect("release");
        })
    })
}

/// Contended throughput: cycles per second of all contenders together, and the fewest
/// and most cycles one contender got (how fairly the lock was shared).
#[derive(Clone, Copy, Debug)]
pub struct Throughput {
    /// Cycles per second, all contenders together.
    pub rate: f64,
    /// The fewest cycles one contender completed.
    pub fewest: u64,
    /// The most cycles one contender completed.
    pub most: u64,
}

/// Runs every contender's cycle in a loop, concurrently, for `duration`.
pub async fn throughput(contenders: Vec<Cycle>, duration: Duration) -> Throughput {
    let deadline = Instant::now() + duration;
    let tasks: Vec<_> = contenders
        .into_iter()
        .map(|mut cycle| {
            tokio::spawn(async move {
                let mut cycles = 0_u64;
                while Instant::now() < deadline {
                    cycle().await;
                    cycles += 1;
                }
                cycles
            })
        })
        .collect();
    let mut per_contender = Vec::new();
    for task in tasks {
        per_contender.push(task.await.expect("contender"));
    }
    Throughput {
        rate: per_contender.iter().sum::<u64>() as f64 / duration.as_secs_f64(),
        fewest: per_contender.iter().copied().min().unwrap_or(0),
        most: per_contender.iter().copied().max().unwrap_or(0),
    }
}

/// Prints the throughput table of two contestants and their ratio.
pub fn throughput_table(
    contenders: usize,
    duration: Duration,
    ours: (&str, Throughput),
    theirs: (&str, Throughput),
) {
    println!(
        "| contended, {contenders} contenders, {duration:?} | cycles/s | fewest by one contender | most by one contender |"
    );
    println!("|---|---|---|---|");
    for (label, figures) in [ours, theirs] {
        println!(
            "| {label} | {:.0} | {} | {} |",
            figures.rate, figures.fewest, figures.most
        );
    }
    println!(
        "| ratio {} / {} | {:.2} | | |",
        ours.0,
        theirs.0,
        ours.1.rate / theirs.1.rate
    );
}
