//! The audit trail: capability denials and other security-relevant actions of plugins.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Receives audit records. Implementations must not block for long: they are called from
/// inside plugin calls.
pub trait AuditSink: Send + Sync {
    fn record(&self, record: AuditRecord);
}

/// One audited action.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct AuditRecord {
    pub timestamp: DateTime<Utc>,
    pub plugin: String,
    /// `capability.denied`, `backlog.task.created`, ...
    pub action: String,
    pub capability: Option<String>,
    /// What the plugin tried to do, in words (`read environment variable HOME`).
    pub attempted: String,
    /// `denied`, `created`, ...
    pub outcome: String,
}

impl AuditRecord {
    pub(crate) fn now(
        plugin: &str,
        action: &str,
        capability: Option<&str>,
        attempted: impl Into<String>,
        outcome: &str,
    ) -> Self {
        AuditRecord {
            timestamp: Utc::now(),
            plugin: plugin.to_owned(),
            action: action.to_owned(),
            capability: capability.map(str::to_owned),
            attempted: attempted.into(),
            outcome: outcome.to_owned(),
        }
    }
}

/// Appends one JSON line per record to a file (typically `.trellis/audit.jsonl`).
///
/// Each line is written with a single `write` on a file opened with `O_APPEND`, so records of
/// concurrent writers (threads or other trellis processes) never interleave within a line. A
/// failing write is reported through `tracing` and otherwise ignored: auditing must not turn a
/// denied call into a crash.
#[derive(Debug)]
pub struct JsonlAudit {
    path: PathBuf,
    lock: Mutex<()>,
}

impl JsonlAudit {
    pub fn new(path: PathBuf) -> Self {
        JsonlAudit {
            path,
            lock: Mutex::new(()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every record in the file, oldest first; lines that do not parse are skipped.
    pub fn read_all(&self) -> std::io::Result<Vec<AuditRecord>> {
        let text = match fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        Ok(text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect())
    }

    fn append(&self, record: &AuditRecord) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(record).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent)?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        file.write_all(&line)
    }
}

impl AuditSink for JsonlAudit {
    fn record(&self, record: AuditRecord) {
        if let Err(e) = self.append(&record) {
            tracing::error!(path = %self.path.display(), error = %e, plugin = %record.plugin, action = %record.action, "cannot write audit record");
        }
    }
}

/// Keeps records in memory; for tests and embedders that forward them elsewhere.
#[derive(Debug, Default)]
pub struct MemoryAudit {
    records: Mutex<Vec<AuditRecord>>,
}

impl MemoryAudit {
    pub fn new() -> Self {
        MemoryAudit::default()
    }

    pub fn records(&self) -> Vec<AuditRecord> {
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl AuditSink for MemoryAudit {
    fn record(&self, record: AuditRecord) {
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_appends_one_line_per_record_and_creates_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/.trellis/audit.jsonl");
        let audit = JsonlAudit::new(path.clone());
        audit.record(AuditRecord::now(
            "demo",
            "capability.denied",
            Some("environment"),
            "read environment variable HOME",
            "denied",
        ));
        audit.record(AuditRecord::now(
            "demo",
            "backlog.task.created",
            Some("backlog.write"),
            "create task task-1",
            "created",
        ));
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(text.ends_with('\n'));
        let all = audit.read_all().unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].action, "capability.denied");
        assert_eq!(all[0].capability.as_deref(), Some("environment"));
        assert_eq!(all[1].outcome, "created");
        let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        for key in [
            "timestamp",
            "plugin",
            "action",
            "capability",
            "attempted",
            "outcome",
        ] {
            assert!(first.get(key).is_some(), "missing {key}");
        }
    }

    #[test]
    fn concurrent_writers_never_interleave() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let a = std::sync::Arc::new(JsonlAudit::new(path.clone()));
        // A second sink on the same file stands in for another process.
        let b = std::sync::Arc::new(JsonlAudit::new(path.clone()));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let sink = if t % 2 == 0 { a.clone() } else { b.clone() };
                std::thread::spawn(move || {
                    for i in 0..200 {
                        sink.record(AuditRecord::now(
                            &format!("p{t}"),
                            "capability.denied",
                            None,
                            "x".repeat(i * 7),
                            "denied",
                        ));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 800);
        for line in text.lines() {
            serde_json::from_str::<AuditRecord>(line).expect("every line is a whole record");
        }
    }
}
