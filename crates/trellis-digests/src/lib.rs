//! SHA-256 digests of files, remembered across processes while each file's metadata is
//! unchanged, so that checking a file against a known hash does not read it again: with 100
//! installed plugins, hashing every component and every installed file at each start was most
//! of the start-up time.
//!
//! File: `<cache_dir>/sources.v2`, a line per file: `<sha256 of the path, 32 hex> <device>
//! <inode> <size> <mtime ns> <ctime ns> <sha256 hex> <path, hex>`. A line is used only while
//! the file's metadata is still exactly that. Any write to the file, and replacing it, moves
//! its ctime, which programs cannot set. A file changed within the same clock tick as the read
//! that hashed it could keep the same ctime, so a file is remembered only when it has not
//! changed for [`SETTLED`] and did not change while it was read (git calls this the
//! racy-clean problem).
//!
//! That reasoning needs the file's times to come from this machine's clock, in fine steps:
//! files on network, FUSE, FAT or other file systems where that may not hold are always
//! hashed. Only Linux file systems known to keep nanosecond ctimes qualify (ext4, XFS, Btrfs,
//! tmpfs, overlayfs, ZFS, F2FS); elsewhere every digest reads the file. The index belongs with
//! the user's cache, which only the user may write; plugins never can.
//!
//! The file is read once, at the first digest, and written when the last handle is dropped:
//! merged, under a lock, with what other processes wrote meanwhile, dropping the lines of
//! files that are gone, through a temporary file and a rename. It is a cache: a missing,
//! damaged or lost file or line means "hash the file", never an error.
//!
//! What this crate must not know about: what the files are (components, installed plugins),
//! projects, or any runtime.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

/// How long a file must have stayed unchanged before its hash is remembered.
pub const SETTLED: Duration = Duration::from_secs(2);

/// The index, in the compiled-component cache directory.
const FILE: &str = "sources.v2";
/// Held while the index is merged and rewritten.
const LOCK: &str = "sources.v2.lock";

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
    /// The identity of a file whose metadata is `meta`.
    #[cfg(target_os = "linux")]
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

    #[cfg(not(target_os = "linux"))]
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
}

/// Local Linux file systems whose ctimes come from this machine's clock in nanoseconds.
#[cfg(target_os = "linux")]
fn trusted_file_system(file: &Path) -> bool {
    const EXT4: u64 = 0xEF53; // also ext2 and ext3
    const XFS: u64 = 0x5846_5342;
    const BTRFS: u64 = 0x9123_683E;
    const TMPFS: u64 = 0x0102_1994;
    const OVERLAYFS: u64 = 0x794C_7630;
    const ZFS: u64 = 0x2FC1_2FC1;
    const F2FS: u64 = 0xF2F5_2010;
    rustix::fs::statfs(file).is_ok_and(|fs| {
        // The field's type differs between libcs; the magic numbers fit in 32 bits.
        #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
        let magic = (fs.f_type as i64 as u64) & 0xFFFF_FFFF;
        [EXT4, XFS, BTRFS, TMPFS, OVERLAYFS, ZFS, F2FS].contains(&magic)
    })
}

#[cfg(not(target_os = "linux"))]
fn trusted_file_system(_file: &Path) -> bool {
    false
}

/// One line of the index.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    identity: Identity,
    sha256: String,
    /// The file, to drop the line once it is gone.
    path: PathBuf,
}

impl Entry {
    fn line(&self, key: &str) -> String {
        let i = &self.identity;
        format!(
            "{key} {} {} {} {} {} {} {}\n",
            i.device,
            i.inode,
            i.size,
            i.mtime_ns,
            i.ctime_ns,
            self.sha256,
            hex::encode(self.path.as_os_str().as_encoded_bytes()),
        )
    }

    /// A line of the index: the path's key and the entry.
    fn parse(line: &[u8]) -> Option<(String, Self)> {
        let line = std::str::from_utf8(line).ok()?;
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
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let path = path_from_hex(parts.next()?)?;
        if parts.next().is_some() || FileDigests::key(&path) != key {
            return None;
        }
        Some((
            key.to_owned(),
            Entry {
                identity,
                sha256: sha256.to_ascii_lowercase(),
                path,
            },
        ))
    }
}

#[cfg(unix)]
fn path_from_hex(text: &str) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    let bytes = hex::decode(text).ok()?;
    Some(PathBuf::from(std::ffi::OsString::from_vec(bytes)))
}

#[cfg(not(unix))]
fn path_from_hex(_text: &str) -> Option<PathBuf> {
    None
}

/// A file's SHA-256 (lowercase hex), and its bytes when they had to be read for it.
pub struct FileDigest {
    pub sha256: String,
    pub bytes: Option<Vec<u8>>,
}

/// The index of one cache directory; without one, nothing is remembered.
pub struct FileDigests {
    dir: Option<PathBuf>,
    settled: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    loaded: bool,
    known: HashMap<String, Entry>,
    /// Keys this process added or changed, and keys it found wrong: what `flush` writes.
    added: HashSet<String>,
    forgotten: HashSet<String>,
}

impl FileDigests {
    /// The index kept in the cache directory `cache_dir`; files are remembered once they have
    /// not changed for `settled` ([`SETTLED`] outside tests).
    pub fn new(cache_dir: Option<&Path>, settled: Duration) -> Self {
        FileDigests {
            dir: cache_dir.map(Path::to_owned),
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
            if let Some(dir) = &self.dir {
                state.known = read_index(&dir.join(FILE));
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
    pub fn digest(&self, file: &Path) -> std::io::Result<FileDigest> {
        let before = std::fs::metadata(file)?;
        // The file system is asked once; the identity is taken again after the read.
        let identity =
            Identity::of(&before).filter(|_| self.dir.is_some() && trusted_file_system(file));
        let key = identity.map(|_| Self::key(file));
        if let (Some(identity), Some(key)) = (identity, &key)
            && let Some(entry) = self.loaded().known.get(key)
            && entry.identity == identity
            && entry.path == file
        {
            return Ok(FileDigest {
                sha256: entry.sha256.clone(),
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
                let entry = Entry {
                    identity,
                    sha256: sha256.clone(),
                    path: file.to_owned(),
                };
                state.known.insert(key, entry);
            }
        }
        Ok(FileDigest {
            sha256,
            bytes: Some(bytes),
        })
    }

    /// Forgets what was remembered of `file`, after its bytes turned out not to match: its
    /// file system changed it without moving its change time, or the index was edited.
    pub fn forget(&self, file: &Path) {
        if self.dir.is_none() {
            return;
        }
        tracing::warn!(file = %file.display(), "a file changed without its change time moving; its remembered hash is dropped");
        let key = Self::key(file);
        let mut state = self.loaded();
        state.known.remove(&key);
        state.added.remove(&key);
        state.forgotten.insert(key);
    }

    /// Writes what this process learned, merged into what the file holds now (another process
    /// may have written it since it was read), without the lines of files that are gone.
    /// Nothing learned, nothing written.
    pub fn flush(&self) {
        let Some(dir) = &self.dir else { return };
        let mut state = self.lock();
        if state.added.is_empty() && state.forgotten.is_empty() {
            return;
        }
        let written = (|| {
            std::fs::create_dir_all(dir)?;
            // Held until the rename: two processes merging at once would lose lines.
            let lock = std::fs::File::create(dir.join(LOCK))?;
            lock_briefly(&lock)?;
            let mut merged = read_index(&dir.join(FILE));
            for key in &state.forgotten {
                merged.remove(key);
            }
            for key in &state.added {
                if let Some(entry) = state.known.get(key) {
                    merged.insert(key.clone(), entry.clone());
                }
            }
            merged.retain(|_, entry| entry.path.is_file());
            let text: String = merged.iter().map(|(key, entry)| entry.line(key)).collect();
            write_atomically(&dir.join(FILE), text.as_bytes())
        })();
        match written {
            Ok(()) => {
                state.added.clear();
                state.forgotten.clear();
            }
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot write the index of file hashes; the next start hashes every file again");
            }
        }
    }
}

impl Drop for FileDigests {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Takes `lock`, waiting at most about a second: a process stopped while holding it must not
/// hang every other one at exit, and giving up only costs hashing again next time.
fn lock_briefly(lock: &std::fs::File) -> std::io::Result<()> {
    for _ in 0..50 {
        match lock.try_lock() {
            Ok(()) => return Ok(()),
            Err(std::fs::TryLockError::WouldBlock) => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::WouldBlock,
        "another process holds the index's lock",
    ))
}

/// The lines of the index that parse; a missing or unreadable file is an empty index.
fn read_index(file: &Path) -> HashMap<String, Entry> {
    let Ok(bytes) = std::fs::read(file) else {
        return HashMap::new();
    };
    bytes
        .split(|&b| b == b'\n')
        .filter_map(Entry::parse)
        .collect()
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn index(dir: &Path, settled: Duration) -> FileDigests {
        FileDigests::new(Some(&dir.join("cache")), settled)
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
        let key = FileDigests::key(&file);
        let identity = Identity::of(&std::fs::metadata(&file).unwrap()).unwrap();
        let entry = |sha256: &str| Entry {
            identity,
            sha256: sha256.to_owned(),
            path: file.clone(),
        };
        let right = entry(&sha(b"bytes")).line(&key);
        let damaged = [
            String::new(),
            format!("{key} 1 2 3"),
            right.replace(&sha(b"bytes"), "xyz"),
            format!("garbage {right}"),
            right[..right.len() - 10].to_owned(),
            right.replace(&key, &"a".repeat(32)),
            format!("{}\u{fffd}", right.trim_end()),
        ];
        for damage in damaged {
            std::fs::write(&index_file, &damage).unwrap();
            let d = index(tmp.path(), Duration::ZERO).digest(&file).unwrap();
            assert_eq!(d.sha256, sha(b"bytes"), "{damage:?}");
            assert!(d.bytes.is_some(), "{damage:?}");
        }

        // A wrong hash with the right identity is what `forget` is for; `flush` drops it.
        std::fs::write(&index_file, entry(&"0".repeat(64)).line(&key)).unwrap();
        let index = index(tmp.path(), Duration::from_secs(3600));
        assert_eq!(index.digest(&file).unwrap().sha256, "0".repeat(64));
        index.forget(&file);
        assert_eq!(index.digest(&file).unwrap().sha256, sha(b"bytes"));
        index.flush();
        assert_eq!(std::fs::read_to_string(&index_file).unwrap(), "");
    }

    #[test]
    fn processes_writing_the_index_at_once_keep_each_others_lines() {
        let tmp = tempfile::tempdir().unwrap();
        let files: Vec<PathBuf> = (0..8)
            .map(|i| {
                let file = tmp.path().join(format!("{i}.wasm"));
                std::fs::write(&file, format!("plugin {i}")).unwrap();
                file
            })
            .collect();
        let writers: Vec<FileDigests> = files
            .iter()
            .map(|file| {
                let index = index(tmp.path(), Duration::ZERO);
                index.digest(file).unwrap();
                index
            })
            .collect();
        let start = std::sync::Barrier::new(writers.len());
        std::thread::scope(|s| {
            for writer in writers {
                let start = &start;
                s.spawn(move || {
                    start.wait();
                    drop(writer);
                });
            }
        });
        let reader = index(tmp.path(), Duration::ZERO);
        for file in &files {
            assert!(
                reader.digest(file).unwrap().bytes.is_none(),
                "{}",
                file.display()
            );
        }
    }

    #[test]
    fn a_lock_held_elsewhere_delays_writing_without_hanging() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("plugin.wasm");
        std::fs::write(&file, b"bytes").unwrap();
        let cache = tmp.path().join("cache");
        std::fs::create_dir_all(&cache).unwrap();
        let held = std::fs::File::create(cache.join(LOCK)).unwrap();
        held.lock().unwrap();
        let index = index(tmp.path(), Duration::ZERO);
        index.digest(&file).unwrap();
        index.flush();
        assert!(
            !cache.join(FILE).exists(),
            "not written while the lock is held"
        );
        held.unlock().unwrap();
        drop(index);
        assert!(cache.join(FILE).exists(), "written once it is free");
    }

    #[test]
    fn a_line_that_does_not_read_costs_only_itself_and_gone_files_are_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let (kept, gone) = (tmp.path().join("kept.wasm"), tmp.path().join("gone.wasm"));
        std::fs::write(&kept, b"kept").unwrap();
        std::fs::write(&gone, b"gone").unwrap();
        let first = index(tmp.path(), Duration::ZERO);
        first.digest(&kept).unwrap();
        first.digest(&gone).unwrap();
        drop(first);
        let index_file = tmp.path().join("cache").join(FILE);
        let mut text = std::fs::read(&index_file).unwrap();
        text.extend(b"\xff\xfe not text\n");
        std::fs::write(&index_file, &text).unwrap();

        std::fs::remove_file(&gone).unwrap();
        let other = tmp.path().join("other.wasm");
        std::fs::write(&other, b"other").unwrap();
        let second = index(tmp.path(), Duration::ZERO);
        assert!(
            second.digest(&kept).unwrap().bytes.is_none(),
            "the bad line costs only itself"
        );
        second.digest(&other).unwrap();
        drop(second);
        let written = std::fs::read_to_string(&index_file).unwrap();
        assert_eq!(
            written.lines().count(),
            2,
            "kept and other, not gone: {written}"
        );
    }

    #[test]
    fn without_a_cache_directory_nothing_is_remembered() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("plugin.wasm");
        std::fs::write(&file, b"bytes").unwrap();
        let index = FileDigests::new(None, Duration::ZERO);
        index.digest(&file).unwrap();
        assert!(index.digest(&file).unwrap().bytes.is_some());
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = atomic_write_file::AtomicWriteFile::open(path)?;
    file.write_all(bytes)?;
    file.commit()
}
