//! Latency figures for the benchmark programs: percentiles printed as Markdown rows.

use std::time::Duration;

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
