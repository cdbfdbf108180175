//! The per-plugin key-value store behind the `state` interface.
//!
//! One JSON file per plugin (`<state_dir>/<plugin>.json`), rewritten whole on every change
//! through a temporary file, `fsync` and `rename`, so that a crash leaves either the old or the
//! new content, never a torn file. Values that are UTF-8 are stored as text so the file stays
//! readable; others as hex.
//!
//! Every change rewrites the whole file (at most [`MAX_TOTAL_BYTES`] plus encoding), which
//! suits the small, rarely written state plugins keep; it is not a database.
//!
//! The file is read once, on first use, and then kept in memory: one host process owns a
//! plugin's state at a time (a second process writing the same plugin's state concurrently
//! would lose updates, last writer wins).

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 256;
/// Largest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 1 << 20;
/// Largest total of all keys and values of one plugin, in bytes.
pub const MAX_TOTAL_BYTES: usize = 16 << 20;

/// Why a state operation failed; maps onto the WIT `error` cases.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// The key or value is not acceptable (WIT `invalid-input`).
    #[error("{0}")]
    InvalidInput(String),
    /// The store is full or the file cannot be read or written (WIT `failed`).
    #[error("{0}")]
    Failed(String),
}

#[derive(Serialize, Deserialize)]
struct StateFile {
    version: u32,
    entries: BTreeMap<String, StoredValue>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum StoredValue {
    Text(String),
    Hex(String),
}

/// One plugin's store.
#[derive(Debug)]
pub struct StateStore {
    path: PathBuf,
    entries: Mutex<Option<BTreeMap<String, Vec<u8>>>>,
    max_total: usize,
}

/// The file name for a plugin's state: `/` in scoped names (`@acme/x`) becomes `__`, anything
/// outside `[A-Za-z0-9@_-]` becomes `_`, so the name never leaves `state_dir`.
pub fn state_file_name(plugin: &str) -> String {
    let mut out = String::new();
    for c in plugin.chars() {
        match c {
            '/' => out.push_str("__"),
            c if c.is_ascii_alphanumeric() || matches!(c, '@' | '_' | '-') => out.push(c),
            _ => out.push('_'),
        }
    }
    format!("{out}.json")
}

impl StateStore {
    pub fn new(state_dir: &Path, plugin: &str) -> Self {
        StateStore {
            path: state_dir.join(state_file_name(plugin)),
            entries: Mutex::new(None),
            max_total: MAX_TOTAL_BYTES,
        }
    }

    #[cfg(test)]
    fn with_max_total(mut self, max_total: usize) -> Self {
        self.max_total = max_total;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn with<R>(
        &self,
        f: impl FnOnce(&mut BTreeMap<String, Vec<u8>>) -> Result<R, StateError>,
    ) -> Result<R, StateError> {
        let mut guard = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            *guard = Some(self.load()?);
        }
        match guard.as_mut() {
            Some(entries) => f(entries),
            None => Err(StateError::Failed("state not loaded".into())),
        }
    }

    fn load(&self) -> Result<BTreeMap<String, Vec<u8>>, StateError> {
        let text = match fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => {
                return Err(StateError::Failed(format!(
                    "cannot read {}: {e}",
                    self.path.display()
                )));
            }
        };
        let file: StateFile = serde_json::from_str(&text).map_err(|e| {
            StateError::Failed(format!(
                "{} is damaged ({e}); move it away to start with empty state",
                self.path.display()
            ))
        })?;
        let mut out = BTreeMap::new();
        for (k, v) in file.entries {
            let bytes = match v {
                StoredValue::Text(s) => s.into_bytes(),
                StoredValue::Hex(h) => hex::decode(&h).map_err(|e| {
                    StateError::Failed(format!(
                        "{}: value of `{k}` is not hex: {e}",
                        self.path.display()
                    ))
                })?,
            };
            out.insert(k, bytes);
        }
        Ok(out)
    }

    fn save(&self, entries: &BTreeMap<String, Vec<u8>>) -> Result<(), StateError> {
        let file = StateFile {
            version: 1,
            entries: entries
                .iter()
                .map(|(k, v)| {
                    // Readable text as text; anything else (binary, control characters that
                    // JSON would escape six bytes wide) as hex.
                    let stored = match std::str::from_utf8(v) {
                        Ok(s)
                            if !s
                                .chars()
                                .any(|c| c.is_control() && !matches!(c, '\n' | '\t' | '\r')) =>
                        {
                            StoredValue::Text(s.to_owned())
                        }
                        _ => StoredValue::Hex(hex::encode(v)),
                    };
                    (k.clone(), stored)
                })
                .collect(),
        };
        let bytes = serde_json::to_vec_pretty(&file)
            .map_err(|e| StateError::Failed(format!("cannot encode state: {e}")))?;
        atomic_write(&self.path, &bytes)
            .map_err(|e| StateError::Failed(format!("cannot write {}: {e}", self.path.display())))
    }

    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        check_key(key)?;
        self.with(|e| Ok(e.get(key).cloned()))
    }

    pub fn set(&self, key: &str, value: Vec<u8>) -> Result<(), StateError> {
        check_key(key)?;
        if value.len() > MAX_VALUE_BYTES {
            return Err(StateError::InvalidInput(format!(
                "value of {} bytes for `{key}` is larger than the limit of {MAX_VALUE_BYTES} bytes",
                value.len()
            )));
        }
        self.with(|entries| {
            let total: usize = entries
                .iter()
                .filter(|(k, _)| k.as_str() != key)
                .map(|(k, v)| k.len() + v.len())
                .sum();
            let after = total + key.len() + value.len();
            if after > self.max_total {
                return Err(StateError::Failed(format!(
                    "state is full: storing `{key}` would make it {after} bytes, more than the limit of {}; delete keys first",
                    self.max_total
                )));
            }
            let previous = entries.insert(key.to_owned(), value);
            if let Err(e) = self.save(entries) {
                // Keep memory and disk in agreement.
                match previous {
                    Some(p) => entries.insert(key.to_owned(), p),
                    None => entries.remove(key),
                };
                return Err(e);
            }
            Ok(())
        })
    }

    pub fn delete(&self, key: &str) -> Result<(), StateError> {
        check_key(key)?;
        self.with(|entries| {
            if let Some(previous) = entries.remove(key)
                && let Err(e) = self.save(entries)
            {
                entries.insert(key.to_owned(), previous);
                return Err(e);
            }
            Ok(())
        })
    }

    pub fn keys(&self, prefix: &str) -> Result<Vec<String>, StateError> {
        self.with(|e| {
            Ok(e.keys()
                .filter(|k| k.starts_with(prefix))
                .cloned()
                .collect())
        })
    }
}

fn check_key(key: &str) -> Result<(), StateError> {
    if key.is_empty() {
        return Err(StateError::InvalidInput("the key is empty".into()));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(StateError::InvalidInput(format!(
            "key of {} bytes is longer than the limit of {MAX_KEY_BYTES} bytes",
            key.len()
        )));
    }
    Ok(())
}

/// Writes `bytes` to `path` so that readers see the old or the new content, never a mix
/// (`atomic-write-file`: temporary file in the same directory, fsync, rename, fsync of the
/// directory), creating the directory first.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(dir)?;
    }
    let mut file = atomic_write_file::AtomicWriteFile::open(path)?;
    file.write_all(bytes)?;
    file.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_stay_inside_the_state_dir() {
        assert_eq!(state_file_name("demo"), "demo.json");
        assert_eq!(
            state_file_name("@acme/security-scanner"),
            "@acme__security-scanner.json"
        );
        for hostile in ["../../etc/passwd", "..", "a/../../b", "/abs"] {
            let name = state_file_name(hostile);
            assert!(!name.contains('/') && !name.contains(".."), "{name}");
        }
    }

    #[test]
    fn round_trip_and_persistence() {
        let dir = tempfile::tempdir().unwrap();
        let s = StateStore::new(dir.path(), "@acme/demo");
        assert_eq!(s.get("a").unwrap(), None);
        s.set("a", b"hello".to_vec()).unwrap();
        s.set("ab", vec![0, 159, 146, 150]).unwrap();
        s.set("ctl", vec![7, 8]).unwrap();
        s.set("b", Vec::new()).unwrap();
        assert_eq!(s.get("a").unwrap().as_deref(), Some(&b"hello"[..]));
        assert_eq!(s.keys("a").unwrap(), vec!["a", "ab"]);
        assert_eq!(s.keys("").unwrap().len(), 4);
        s.delete("b").unwrap();
        s.delete("missing").unwrap();

        let again = StateStore::new(dir.path(), "@acme/demo");
        assert_eq!(again.get("ab").unwrap(), Some(vec![0, 159, 146, 150]));
        assert_eq!(again.get("b").unwrap(), None);
        let text = fs::read_to_string(again.path()).unwrap();
        assert!(text.contains("\"text\": \"hello\""), "{text}");
        assert!(text.contains("\"hex\": \"0708\""), "{text}");
        assert_eq!(again.get("ctl").unwrap(), Some(vec![7, 8]));
        // No temporary files are left behind.
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec!["@acme__demo.json"]);
    }

    #[test]
    fn size_limits() {
        let dir = tempfile::tempdir().unwrap();
        // The total limit scaled down 4x (the real one works the same, only slower to fill).
        let s = StateStore::new(dir.path(), "demo").with_max_total(MAX_TOTAL_BYTES / 4);
        assert!(matches!(
            s.set("", vec![]),
            Err(StateError::InvalidInput(_))
        ));
        assert!(matches!(
            s.get(&"k".repeat(MAX_KEY_BYTES + 1)),
            Err(StateError::InvalidInput(_))
        ));
        s.set(&"k".repeat(MAX_KEY_BYTES), vec![1]).unwrap();
        assert!(matches!(
            s.set("big", vec![0; MAX_VALUE_BYTES + 1]),
            Err(StateError::InvalidInput(_))
        ));
        // Fill up to the total limit with 1 MiB values.
        let mut i = 0;
        let err = loop {
            match s.set(&format!("v{i:02}"), vec![b'a'; MAX_VALUE_BYTES]) {
                Ok(()) => i += 1,
                Err(e) => break e,
            }
            assert!(i < 100);
        };
        assert!(
            matches!(err, StateError::Failed(ref m) if m.contains("state is full")),
            "{err}"
        );
        assert_eq!(i, 3);
        // Replacing an existing key does not count it twice.
        s.set("v00", vec![b'b'; MAX_VALUE_BYTES]).unwrap();
        // The failed write left nothing behind, on disk or in memory.
        let again = StateStore::new(dir.path(), "demo");
        assert_eq!(again.keys("v").unwrap().len(), 3);
        assert_eq!(again.get("v00").unwrap().map(|v| v[0]), Some(b'b'));
    }

    #[test]
    fn damaged_file_is_reported_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let s = StateStore::new(dir.path(), "demo");
        fs::write(s.path(), "{not json").unwrap();
        let err = s.set("a", vec![1]).unwrap_err();
        assert!(
            matches!(err, StateError::Failed(ref m) if m.contains("damaged")),
            "{err}"
        );
        assert_eq!(fs::read_to_string(s.path()).unwrap(), "{not json");
    }

    #[test]
    fn atomic_write_replaces_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/f.json");
        atomic_write(&p, b"first version, longer").unwrap();
        atomic_write(&p, b"second").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"second");
        assert_eq!(fs::read_dir(p.parent().unwrap()).unwrap().count(), 1);
    }
}
