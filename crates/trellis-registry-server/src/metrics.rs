//! Counters for `/metrics`, rendered in the OpenMetrics text format.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub struct Metrics {
    /// (route, status) → count.
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    pub published: AtomicU64,
    pub downloads: AtomicU64,
    pub rate_limited: AtomicU64,
    /// Sum of request durations in microseconds, for the average.
    duration_micros: AtomicU64,
}

impl Metrics {
    pub fn record(&self, route: &str, status: u16, micros: u64) {
        let mut requests = match self.requests.lock() {
            Ok(r) => r,
            Err(poisoned) => poisoned.into_inner(),
        };
        *requests.entry((route.to_owned(), status)).or_insert(0) += 1;
        self.duration_micros.fetch_add(micros, Ordering::Relaxed);
    }

    pub fn render(&self, plugins: u64) -> String {
        let mut out = String::new();
        out.push_str("# TYPE trellis_registry_requests counter\n");
        out.push_str("# HELP trellis_registry_requests HTTP requests by route and status.\n");
        let requests = match self.requests.lock() {
            Ok(r) => r.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        for ((route, status), count) in &requests {
            out.push_str(&format!(
                "trellis_registry_requests_total{{route=\"{route}\",status=\"{status}\"}} {count}\n"
            ));
        }
        let total: u64 = requests.values().sum();
        for (name, help, value) in [
            (
                "trellis_registry_published",
                "Versions published since start.",
                self.published.load(Ordering::Relaxed),
            ),
            (
                "trellis_registry_downloads",
                "Archives downloaded through the API since start.",
                self.downloads.load(Ordering::Relaxed),
            ),
            (
                "trellis_registry_rate_limited",
                "Requests refused by the rate limit since start.",
                self.rate_limited.load(Ordering::Relaxed),
            ),
        ] {
            out.push_str(&format!(
                "# TYPE {name} counter\n# HELP {name} {help}\n{name}_total {value}\n"
            ));
        }
        out.push_str(&format!(
            "# TYPE trellis_registry_request_duration_seconds summary\n# HELP trellis_registry_request_duration_seconds Time to answer requests.\ntrellis_registry_request_duration_seconds_count {total}\ntrellis_registry_request_duration_seconds_sum {}\n",
            self.duration_micros.load(Ordering::Relaxed) as f64 / 1e6
        ));
        out.push_str(&format!(
            "# TYPE trellis_registry_plugins gauge\n# HELP trellis_registry_plugins Plugins with a version that is not yanked.\ntrellis_registry_plugins {plugins}\n# EOF\n"
        ));
        out
    }
}
