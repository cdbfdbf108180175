//! Remembers the SHA-256 of each `.wasm` file loaded before, so that a start finds an unchanged
//! plugin's compiled component without reading and hashing the file again: with 100 installed
//! plugins that was the largest part of a warm start after deserializing.
//!
//! File: `<cache_dir>/sources.v1`, a line per `.wasm` file:
//! `<sha256 of the path, 32 hex> <device> <inode> <size> <mtime ns> <ctime ns> <sha256 hex>`.
//! A line is used only while the file's metadata is still exactly that. Any write to the file
//! changes its ctime, which no program can set back, and replacing it changes the inode, so a
//! changed file never matches. A file changed within the same clock tick as the read that hashed
//! it could keep the same ctime, so a file is remembered only when it has not changed for
//! [`SETTLED`] and did not change while it was read (git calls this the racy-clean problem).
//!
//! The file is read once, at the first load, and written (merged with what other processes wrote
//! meanwhile, through a temporary file and a rename) when the runtime is dropped: a file per
//! entry cost a first start with 100 plugins about 40 ms of file creations. It is a cache: a
//! missing, damaged or lost file or line means "hash the file", never an error.
//!
//! Unix only: elsewhere there is no ctime and inode to trust, and every load hashes.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

/// How long a file must have stayed unchanged before its hash is remembered.
pub(crate) const SETTLED: Duration = Duration::from_secs(2);

/// The index, in the compiled-component cache directory.
const FILE: &str = "sources.v1";

/// What identifies one version of a file: equal identities, equal bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Identity {
    device: u64,
    inode: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl Identity {
    #[cfg(unix)]
    fn of(meta: &std::fs::Metadata) -> Option<Self> {
        use std::os::unix::fs::MetadataExt;
        let ns = |secs: i64, nanos: i64| i128::from(secs) * 1_000_000_000 + i128::from(nanos);
        Some(Identity {
            device: meta.dev(),
            inode: meta.ino(),
            size: meta.size(),
            mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
        })
    }

    #[cfg(not(unix))]
    fn of(_meta: &std::fs::Metadata) -> Option<Self> {
        None
    }

    /// Whether the file last changed at least `settled` before `now`.
    fn settled(&self, now: SystemTime, settled: Duration) -> bool {
        let Ok(since_epoch) = now.duration_since(SystemTime::UNIX_EPOCH) else {
            return false;
        };
        let now_ns = i128::try_from(since_epoch.as_nanos()).unwrap_or(i128::MAX);
        let settled_ns = i128::try_from(settled.as_nanos()).unwrap_or(i128::MAX);
        self.ctime_ns.max(self.mtime_ns) <= now_ns.saturating_sub(settled_ns)
    }

    fn line(&self, key: &str, sha256: &str) -> String {
        format!(
            "{key} {} {} {} {} {} {sha256}\n",
            self.device, self.inode, self.size, self.mtime_ns, self.ctime_ns
        )
    }

    /// A line of the index: the path's key, the identity and the hash.
    fn parse(line: &str) -> Option<(String, Self, String)> {
        let mut parts = line.trim_end().split(' ');
        let key = parts.next()?;
        if key.len() != 32 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let identity = Identity {
            device: parts.next()?.parse().ok()?,
            inode: parts.next()?.parse().ok()?,
            size: parts.next()?.parse().ok()?,
            mtime_ns: parts.next()?.parse().ok()?,
            ctime_ns: parts.next()?.parse().ok()?,
        };
        let sha256 = parts.next()?;
        let is_hex = sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit());
        (is_hex && parts.next().is_none())
            .then(|| (key.to_owned(), identity, sha256.to_ascii_lowercase()))
    }
}

/// A `.wasm` file's SHA-256 (lowercase hex), and its bytes when they had to be read for it.
pub(crate) struct Digest256 {
    pub(crate) sha256: String,
    pub(crate) bytes: Option<Vec<u8>>,
}

/// The index of one cache directory; without one, nothing is remembered.
pub(crate) struct SourceIndex {
    file: Option<PathBuf>,
    settled: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    loaded: bool,
    known: HashMap<String, (Identity, String)>,
    /// Keys this process added or changed, and keys it found wrong: what `flush` writes.
    added: HashSet<String>,
    forgotten: HashSet<String>,
}

impl SourceIndex {
    /// The index kept in the compiled-component cache `cache_dir`.
    pub(crate) fn new(cache_dir: Option<&Path>, settled: Duration) -> Self {
        SourceIndex {
            file: cache_dir.map(|d| d.join(FILE)),
            settled,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The state, with the index file read the first time.
    fn loaded(&self) -> MutexGuard<'_, State> {
        let mut state = self.lock();
        if !state.loaded {
            state.loaded = true;
            if let Some(file) = &self.file {
                state.known = read_index(file);
            }
        }
        state
    }

    /// The key of `file` in the index.
    fn key(file: &Path) -> String {
        let hash = Sha256::digest(file.as_os_str().as_encoded_bytes());
        hex::encode(&hash[..16])
    }

    /// The SHA-256 of `file`: remembered when the file is unchanged since it was hashed,
    /// else read and hashed (and remembered when the file has settled).
    pub(crate) fn digest(&self, file: &Path) -> std::io::Result<Digest256> {
        let before = std::fs::metadata(file)?;
        let identity = Identity::of(&before).filter(|_| self.file.is_some());
        let key = identity.map(|_| Self::key(file));
        if let (Some(identity), Some(key)) = (identity, &key)
            && let Some((known, sha256)) = self.loaded().known.get(key)
            && *known == identity
        {
            return Ok(Digest256 {
                sha256: sha256.clone(),
                bytes: None,
            });
        }
        let read_at = SystemTime::now();
        let bytes = std::fs::read(file)?;
        let sha256 = hex::encode(Sha256::digest(&bytes));
        if let (Some(identity), Some(key)) = (identity, key) {
            let unchanged_while_read = std::fs::metadata(file)
                .ok()
                .and_then(|after| Identity::of(&after))
                == Some(identity);
            if unchanged_while_read && identity.settled(read_at, self.settled) {
                let mut state = self.lock();
                state.forgotten.remove(&key);
                state.added.insert(key.clone());
                state.known.insert(key, (identity, sha256.clone()));
            }
        }
        Ok(Digest256 {
            sha256,
            bytes: Some(bytes),
        })
    }

    /// Forgets what was remembered of `file`, after its bytes turned out not to match.
    pub(crate) fn forget(&self, file: &Path) {
        if self.file.is_none() {
            return;
        }
        let key = Self::key(file);
        let mut state = self.loaded();
        state.known.remove(&key);
        state.added.remove(&key);
        state.forgotten.insert(key);
    }

    /// Writes what this process learned, merged into what the file holds now (another process
    /// may have written it since it was read). Nothing to write, nothing written.
    pub(crate) fn flush(&self) {
        let Some(file) = &self.file else { return };
        let mut state = self.lock();
        if state.added.is_empty() && state.forgotten.is_empty() {
            return;
        }
        let mut merged = read_index(file);
        for key in &state.forgotten {
            merged.remove(key);
        }
        for key in &state.added {
            if let Some(entry) = state.known.get(key) {
                merged.insert(key.clone(), entry.clone());
            }
        }
        let text: String = merged
            .iter()
            .map(|(key, (identity, sha256))| identity.line(key, sha256))
            .collect();
        let written = (|| {
            let dir = file.parent().unwrap_or(Path::new("."));
            std::fs::create_dir_all(dir)?;
            let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
            std::io::Write::write_all(&mut tmp, text.as_bytes())?;
            tmp.persist(file).map_err(|e| e.error)?;
            Ok::<_, std::io::Error>(())
        })();
        match written {
            Ok(()) => {
                state.added.clear();
                state.forgotten.clear();
            }
            Err(e) => {
                tracing::debug!(file = %file.display(), error = %e, "cannot write the index of component hashes");
            }
        }
    }
}

impl Drop for SourceIndex {
    fn drop(&mut self) {
        self.flush();
    }
}

/// The lines of the index that parse; a missing or unreadable file is an empty index.
fn read_index(file: &Path) -> HashMap<String, (Identity, String)> {
    let Ok(text) = std::fs::read_to_string(file) else {
        return HashMap::new();
    };
    text.lines()
        .filter_map(Identity::parse)
        .map(|(key, identity, sha256)| (key, (identity, sha256)))
        .collect()
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn index(dir: &Path, settled: Duration) -> SourceIndex {
        SourceIndex::new(Some(&dir.join("cache")), settled)
    }

    fn sha(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    #[test]
    fn an_unchanged_file_is_not_read_again_in_this_process_or_the_next() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("plugin.wasm");
        std::fs::write(&file, b"component bytes").unwrap();
        let first_process = index(tmp.path(), Duration::ZERO);
        let first = first_process.digest(&file).unwrap();
        assert_eq!(first.sha256, sha(b"component bytes"));
        assert_eq!(first.bytes.as_deref(), Some(&b"component bytes"[..]));
        let second = first_process.digest(&file).unwrap();
        assert_eq!(second.sha256, first.sha256);
        assert!(second.bytes.is_none(), "the remembered hash is used");
        drop(first_process);

        let next_process = index(tmp.path(), Duration::ZERO);
        let again = next_process.digest(&file).unwrap();
        assert_eq!(again.sha256, first.sha256);
        assert!(again.bytes.is_none(), "written when the first was dropped");
    }

    #[test]
    fn any_change_to_the_file_is_noticed() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("plugin.wasm");
        std::fs::write(&file, b"version one").unwrap();
        let index = index(tmp.path(), Duration::ZERO);
        index.digest(&file).unwrap();
        // With `Duration::ZERO` nothing guards against a change within one tick of the
        // kernel's file clock; wait a few ticks, as SETTLED does in earnest.
        std::thread::sleep(Duration::from_millis(50));

        // Same size, and the modification time put back: the ctime still moved.
        let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
        std::fs::write(&file, b"version two").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        let after_write = index.digest(&file).unwrap();
        assert_eq!(after_write.sha256, sha(b"version two"));
        assert!(after_write.bytes.is_some());

        // Replaced by another file (another inode) with the same bytes' length.
        let other = tmp.path().join("other.wasm");
        std::fs::write(&other, b"version 333").unwrap();
        std::fs::rename(&other, &file).unwrap();
        let replaced = index.digest(&file).unwrap();
        assert_eq!(replaced.sha256, sha(b"version 333"));
        assert!(replaced.bytes.is_some());
    }

    #[test]
    fn a_file_that_just_changed_is_not_remembered() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("plugin.wasm");
        std::fs::write(&file, b"fresh").unwrap();
        let index = index(tmp.path(), Duration::from_secs(3600));
        index.digest(&file).unwrap();
        assert!(index.digest(&file).unwrap().bytes.is_some(), "read again");
        index.flush();
        assert!(!tmp.path().join("cache").join(FILE).exists());
    }

    #[test]
    fn damaged_lines_mean_hashing_again_and_a_wrong_hash_is_forgotten() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("plugin.wasm");
        std::fs::write(&file, b"bytes").unwrap();
        let index_file = tmp.path().join("cache").join(FILE);
        std::fs::create_dir_all(index_file.parent().unwrap()).unwrap();
        let key = SourceIndex::key(&file);
        let identity = Identity::of(&std::fs::metadata(&file).unwrap()).unwrap();
        let right = identity.line(&key, &sha(b"bytes"));
        let damaged = [
            String::new(),
            format!("{key} 1 2 3"),
            right.replace(&sha(b"bytes"), "xyz"),
            format!("garbage {right}"),
            right[..right.len() - 10].to_owned(),
        ];
        for damage in damaged {
            std::fs::write(&index_file, &damage).unwrap();
            let d = index(tmp.path(), Duration::ZERO).digest(&file).unwrap();
            assert_eq!(d.sha256, sha(b"bytes"), "{damage:?}");
            assert!(d.bytes.is_some(), "{damage:?}");
        }

        // A wrong hash with the right identity is what `forget` is for; `flush` drops it.
        std::fs::write(&index_file, identity.line(&key, &"0".repeat(64))).unwrap();
        let index = index(tmp.path(), Duration::from_secs(3600));
        assert_eq!(index.digest(&file).unwrap().sha256, "0".repeat(64));
        index.forget(&file);
        assert_eq!(index.digest(&file).unwrap().sha256, sha(b"bytes"));
        index.flush();
        assert_eq!(std::fs::read_to_string(&index_file).unwrap(), "");
    }

    #[test]
    fn processes_writing_the_index_keep_each_others_lines() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a.wasm"), tmp.path().join("b.wasm"));
        std::fs::write(&a, b"plugin a").unwrap();
        std::fs::write(&b, b"plugin b").unwrap();
        let first = index(tmp.path(), Duration::ZERO);
        let second = index(tmp.path(), Duration::ZERO);
        first.digest(&a).unwrap();
        second.digest(&b).unwrap();
        drop((first, second));
        let third = index(tmp.path(), Duration::ZERO);
        assert!(third.digest(&a).unwrap().bytes.is_none());
        assert!(third.digest(&b).unwrap().bytes.is_none());
    }

    #[test]
    fn without_a_cache_directory_nothing_is_remembered() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("plugin.wasm");
        std::fs::write(&file, b"bytes").unwrap();
        let index = SourceIndex::new(None, Duration::ZERO);
        index.digest(&file).unwrap();
        assert!(index.digest(&file).unwrap().bytes.is_some());
    }
}
