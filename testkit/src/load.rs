//! The numbers a load run prints: requests per second and latency
//! percentiles, one way for every benchmark.

use std::time::Duration;

/// Requests per second and latency of a load run.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Completed requests per second.
    pub per_second: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
}

impl Sample {
    /// The run with the median throughput of `samples`.
    pub fn median(mut samples: Vec<Self>) -> Self {
        samples.sort_by(|a, b| a.per_second.total_cmp(&b.per_second));
        samples.swap_remove(samples.len() / 2)
    }

    /// Throughput and percentiles of latencies `micros` over `elapsed`.
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    pub fn of(mut micros: Vec<u64>, elapsed: Duration) -> Self {
        micros.sort_unstable();
        let at = |p: f64| {
            micros
                .get(((micros.len().saturating_sub(1)) as f64 * p) as usize)
                .map_or(0.0, |&us| us as f64 / 1000.0)
        };
        Self {
            per_second: micros.len() as f64 / elapsed.as_secs_f64(),
            p50_ms: at(0.5),
            p99_ms: at(0.99),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::Sample;

    #[test]
    fn percentiles_are_read_from_the_sorted_latencies() {
        let micros: Vec<u64> = (1..=100).rev().map(|n| n * 1000).collect();
        let sample = Sample::of(micros, Duration::from_secs(2));
        assert!((sample.per_second - 50.0).abs() < 1e-9);
        assert!((sample.p50_ms - 50.0).abs() < 1e-9);
        assert!((sample.p99_ms - 99.0).abs() < 1e-9);
    }

    #[test]
    fn the_median_run_is_the_middle_one_by_throughput() {
        let runs = [3.0, 1.0, 2.0].map(|per_second| Sample {
            per_second,
            p50_ms: per_second,
            p99_ms: per_second,
        });
        assert!((Sample::median(runs.to_vec()).per_second - 2.0).abs() < 1e-9);
    }
}
