//! Per-plugin call metrics, the same for every runtime: counts, a bounded reservoir of
//! durations, peak memory.

use std::collections::VecDeque;
use std::time::Duration;

use serde::Serialize;

/// How many recent call durations the percentiles are computed over.
pub const RESERVOIR_SIZE: usize = 1024;

/// A snapshot of one plugin's metrics.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct PluginMetrics {
    pub calls: u64,
    pub errors: u64,
    pub denials: u64,
    /// Percentiles over the last [`RESERVOIR_SIZE`] calls, in milliseconds.
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    /// Longest call since load.
    pub max_ms: f64,
    /// Largest linear memory the plugin grew to since load.
    pub peak_memory_bytes: u64,
    /// The durations the percentiles were computed from, oldest first, so that a host can
    /// merge metrics across processes (the CLI keeps them in `.trellis/stats.json`).
    #[serde(skip)]
    pub recent_ms: Vec<f64>,
}

#[derive(Debug, Default)]
pub struct CallStats {
    calls: u64,
    errors: u64,
    max_ms: f64,
    recent: VecDeque<f64>,
}

impl CallStats {
    pub fn record(&mut self, took: Duration, failed: bool) {
        let ms = took.as_secs_f64() * 1000.0;
        self.calls += 1;
        if failed {
            self.errors += 1;
        }
        if ms > self.max_ms {
            self.max_ms = ms;
        }
        if self.recent.len() == RESERVOIR_SIZE {
            self.recent.pop_front();
        }
        self.recent.push_back(ms);
    }

    /// The last recorded call turned out to have failed after all (e.g. its result was not
    /// JSON).
    pub fn reclassify_last_as_error(&mut self) {
        self.errors = (self.errors + 1).min(self.calls);
    }

    pub fn snapshot(&self, denials: u64, peak_memory_bytes: u64) -> PluginMetrics {
        let mut sorted: Vec<f64> = self.recent.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        PluginMetrics {
            calls: self.calls,
            errors: self.errors,
            denials,
            p50_ms: percentile(&sorted, 50.0),
            p95_ms: percentile(&sorted, 95.0),
            p99_ms: percentile(&sorted, 99.0),
            max_ms: self.max_ms,
            peak_memory_bytes,
            recent_ms: self.recent.iter().copied().collect(),
        }
    }
}

/// Nearest-rank percentile of sorted values; 0 when there are none.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 95.0), 95.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
        assert_eq!(percentile(&[3.0], 99.0), 3.0);
    }

    #[test]
    fn reservoir_is_bounded_and_max_is_all_time() {
        let mut s = CallStats::default();
        s.record(Duration::from_secs(10), true);
        for _ in 0..(RESERVOIR_SIZE * 2) {
            s.record(Duration::from_millis(1), false);
        }
        assert_eq!(s.recent.len(), RESERVOIR_SIZE);
        let m = s.snapshot(3, 42);
        assert_eq!(m.calls, (RESERVOIR_SIZE * 2 + 1) as u64);
        assert_eq!(m.errors, 1);
        assert_eq!(m.denials, 3);
        assert_eq!(m.peak_memory_bytes, 42);
        assert!(
            (m.p99_ms - 1.0).abs() < 1e-9,
            "the old slow call left the reservoir"
        );
        assert!((m.max_ms - 10_000.0).abs() < 1e-6);
    }
}
