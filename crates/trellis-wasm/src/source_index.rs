//! Remembers the SHA-256 of each `.wasm` file loaded before, so that a start finds an unchanged
//! plugin's compiled component without reading and hashing the file again: with 100 installed
//! plugins that was the largest part of a warm start after deserializing.
//!
//! Entry: `<cache_dir>/sources/<sha256 of the path, 32 hex>`, one line:
//! `v1 <device> <inode> <size> <mtime ns> <ctime ns> <sha256 hex>`. It is used only while the
//! file's metadata is still exactly that. Any write to the file changes its ctime, which no
//! program can set back, and replacing it changes the inode, so a changed file never matches.
//! A file changed within the same clock tick as the read that hashed it could keep the same
//! ctime, so a file is remembered only when it has not changed for [`SETTLED`] and did not
//! change while it was read (git calls this the racy-clean problem). Entries are a cache: a
//! missing, unreadable or damaged one means "hash the file", never an error.
//!
//! Unix only: elsewhere there is no ctime and inode to trust, and every load hashes.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

/// How long a file must have stayed unchanged before its hash is remembered.
pub(crate) const SETTLED: Duration = Duration::from_secs(2);

/// The folder of the entries, under the compiled-component cache.
const DIR: &str = "sources";

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

    fn line(&self, sha256: &str) -> String {
        format!(
            "v1 {} {} {} {} {} {sha256}\n",
            self.device, self.inode, self.size, self.mtime_ns, self.ctime_ns
        )
    }

    fn parse(line: &str) -> Option<(Self, String)> {
        let mut parts = line.trim_end().split(' ');
        if parts.next()? != "v1" {
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
        (is_hex && parts.next().is_none()).then(|| (identity, sha256.to_ascii_lowercase()))
    }
}

/// A `.wasm` file's SHA-256 (lowercase hex), and its bytes when they had to be read for it.
pub(crate) struct Digest256 {
    pub(crate) sha256: String,
    pub(crate) bytes: Option<Vec<u8>>,
}

/// The entries under one cache directory; `None` directory: remember nothing.
pub(crate) struct SourceIndex {
    dir: Option<PathBuf>,
    settled: Duration,
}

impl SourceIndex {
    /// The index kept under the compiled-component cache `cache_dir`.
    pub(crate) fn new(cache_dir: Option<&Path>, settled: Duration) -> Self {
        SourceIndex {
            dir: cache_dir.map(|d| d.join(DIR)),
            settled,
        }
    }

    fn entry(&self, file: &Path) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        let name = Sha256::digest(file.as_os_str().as_encoded_bytes());
        Some(dir.join(hex::encode(&name[..16])))
    }

    /// The SHA-256 of `file`: remembered when the file is unchanged since it was hashed,
    /// else read and hashed (and remembered when the file has settled).
    pub(crate) fn digest(&self, file: &Path) -> std::io::Result<Digest256> {
        let before = std::fs::metadata(file)?;
        let identity = Identity::of(&before);
        let entry = identity.and_then(|_| self.entry(file));
        if let (Some(identity), Some(entry)) = (identity, &entry)
            && let Some(sha256) = remembered(entry, identity)
        {
            return Ok(Digest256 {
                sha256,
                bytes: None,
            });
        }
        let read_at = SystemTime::now();
        let bytes = std::fs::read(file)?;
        let sha256 = hex::encode(Sha256::digest(&bytes));
        if let (Some(identity), Some(entry)) = (identity, entry) {
            let unchanged_while_read = std::fs::metadata(file)
                .ok()
                .and_then(|after| Identity::of(&after))
                == Some(identity);
            if unchanged_while_read && identity.settled(read_at, self.settled) {
                remember(&entry, identity, &sha256);
            }
        }
        Ok(Digest256 {
            sha256,
            bytes: Some(bytes),
        })
    }

    /// Forgets what was remembered of `file`, after its bytes turned out not to match.
    pub(crate) fn forget(&self, file: &Path) {
        if let Some(entry) = self.entry(file) {
            let _ = std::fs::remove_file(entry);
        }
    }
}

fn remembered(entry: &Path, identity: Identity) -> Option<String> {
    let line = std::fs::read_to_string(entry).ok()?;
    let (known, sha256) = Identity::parse(&line)?;
    (known == identity).then_some(sha256)
}

/// Writes the entry through a temporary file and a rename, so a reader sees the old line or
/// the new one. Not synced: a line lost in a crash only means hashing once more, and a torn
/// one does not parse.
fn remember(entry: &Path, identity: Identity, sha256: &str) {
    let written = (|| {
        let dir = entry.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        std::io::Write::write_all(&mut tmp, identity.line(sha256).as_bytes())?;
        tmp.persist(entry).map_err(|e| e.error)?;
        Ok::<_, std::io::Error>(())
    })();
    if let Err(e) = written {
        tracing::debug!(entry = %entry.display(), error = %e, "cannot remember a component's hash");
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn index(dir: &Path, settled: Duration) -> SourceIndex {
        SourceIndex::new(Some(&dir.join("cache")), settled)
    }

    #[test]
    fn an_unchanged_file_is_not_read_again() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("plugin.wasm");
        std::fs::write(&file, b"component bytes").unwrap();
        let index = index(tmp.path(), Duration::ZERO);
        let first = index.digest(&file).unwrap();
        assert_eq!(
            first.sha256,
            hex::encode(Sha256::digest(b"component bytes"))
        );
        assert_eq!(first.bytes.as_deref(), Some(&b"component bytes"[..]));
        let second = index.digest(&file).unwrap();
        assert_eq!(second.sha256, first.sha256);
        assert!(second.bytes.is_none(), "the remembered hash is used");
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
        assert_eq!(
            after_write.sha256,
            hex::encode(Sha256::digest(b"version two"))
        );
        assert!(after_write.bytes.is_some());

        // Replaced by another file (another inode) with the same bytes' length.
        let other = tmp.path().join("other.wasm");
        std::fs::write(&other, b"version 333").unwrap();
        std::fs::rename(&other, &file).unwrap();
        let replaced = index.digest(&file).unwrap();
        assert_eq!(replaced.sha256, hex::encode(Sha256::digest(b"version 333")));
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
        assert!(!tmp.path().join("cache/sources").exists());
    }

    #[test]
    fn a_damaged_entry_means_hashing_again() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("plugin.wasm");
        std::fs::write(&file, b"bytes").unwrap();
        let index = index(tmp.path(), Duration::ZERO);
        index.digest(&file).unwrap();
        let entry = index.entry(&file).unwrap();
        for damage in ["", "v1 1 2 3", "v2 1 2 3 4 5 abc", "garbage\n"] {
            std::fs::write(&entry, damage).unwrap();
            let d = index.digest(&file).unwrap();
            assert_eq!(
                d.sha256,
                hex::encode(Sha256::digest(b"bytes")),
                "{damage:?}"
            );
            assert!(d.bytes.is_some(), "{damage:?}");
        }
        // A wrong hash with the right identity is what `forget` is for.
        let identity = Identity::of(&std::fs::metadata(&file).unwrap()).unwrap();
        remember(&entry, identity, &"0".repeat(64));
        assert_eq!(index.digest(&file).unwrap().sha256, "0".repeat(64));
        index.forget(&file);
        assert_eq!(
            index.digest(&file).unwrap().sha256,
            hex::encode(Sha256::digest(b"bytes"))
        );
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
