//! Plugin metrics kept across processes in `.trellis/stats.json`, so that
//! `trellis plugin stats` shows every call the project's plugins served, not only the calls of
//! the current process.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use trellis_wasm::{PluginMetrics, RESERVOIR_SIZE, percentile};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StoredStats {
    pub calls: u64,
    pub errors: u64,
    pub denials: u64,
    pub max_ms: f64,
    pub peak_memory_bytes: u64,
    /// The most recent call durations (at most `RESERVOIR_SIZE`), oldest first.
    pub recent_ms: Vec<f64>,
}

/// One plugin's statistics as shown to people.
#[derive(Debug, Clone, Serialize)]
pub struct StatsView {
    pub plugin: String,
    pub calls: u64,
    pub errors: u64,
    pub denials: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub peak_memory_bytes: u64,
}

impl StoredStats {
    fn merge(&mut self, m: &PluginMetrics) {
        self.calls += m.calls;
        self.errors += m.errors;
        self.denials += m.denials;
        self.max_ms = self.max_ms.max(m.max_ms);
        self.peak_memory_bytes = self.peak_memory_bytes.max(m.peak_memory_bytes);
        self.recent_ms.extend_from_slice(&m.recent_ms);
        let excess = self.recent_ms.len().saturating_sub(RESERVOIR_SIZE);
        self.recent_ms.drain(..excess);
    }

    pub fn view(&self, plugin: &str) -> StatsView {
        let mut sorted = self.recent_ms.clone();
        sorted.sort_by(f64::total_cmp);
        StatsView {
            plugin: plugin.to_owned(),
            calls: self.calls,
            errors: self.errors,
            denials: self.denials,
            p50_ms: percentile(&sorted, 50.0),
            p95_ms: percentile(&sorted, 95.0),
            p99_ms: percentile(&sorted, 99.0),
            max_ms: self.max_ms,
            peak_memory_bytes: self.peak_memory_bytes,
        }
    }
}

pub fn read(path: &Path) -> BTreeMap<String, StoredStats> {
    // Statistics are advisory: a damaged file starts the counts afresh rather than failing a
    // command.
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Adds this process's metrics to the file (temp file + rename, so a crash keeps the old one).
pub fn merge_into(path: &Path, metrics: &[(String, PluginMetrics)]) -> std::io::Result<()> {
    if metrics.iter().all(|(_, m)| m.calls == 0) {
        return Ok(());
    }
    let mut all = read(path);
    for (plugin, m) in metrics {
        all.entry(plugin.clone()).or_default().merge(m);
    }
    let bytes = serde_json::to_vec_pretty(&all).map_err(std::io::Error::other)?;
    let tmp = path.with_extension(format!("json.tmp-{}", std::process::id()));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
