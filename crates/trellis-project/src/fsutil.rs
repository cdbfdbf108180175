//! Crash-safe file operations: every write goes to a temporary file in the same directory, is
//! fsynced, then renamed over the target, and the directory is fsynced so the rename itself is
//! durable. A crash at any point leaves either the old content or the new, never a mix.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::ProjectError;

pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ProjectError + '_ {
    move |source| ProjectError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Atomically replaces `path` with `bytes` (`atomic-write-file`: temporary file, fsync,
/// rename, fsync of the directory).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ProjectError> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let write = || -> io::Result<()> {
        let mut file = atomic_write_file::AtomicWriteFile::open(path)?;
        file.write_all(bytes)?;
        file.commit()
    };
    write().map_err(io_err(path))
}

/// Makes a rename or creation inside `dir` durable. Directories cannot be opened for syncing
/// on every platform; where they cannot, the rename is as durable as the OS makes it.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    match File::open(dir) {
        Ok(d) => match d.sync_all() {
            Ok(()) => Ok(()),
            Err(e)
                if e.kind() == io::ErrorKind::PermissionDenied
                    || e.kind() == io::ErrorKind::InvalidInput =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        },
        Err(_) => Ok(()),
    }
}

/// Copies an extracted package (regular files and directories only, as extraction
/// guarantees) into `dest`, fsyncing each file and `dest` so that the commit that follows is
/// durable.
pub(crate) fn copy_tree(from: &Path, dest: &Path) -> Result<(), ProjectError> {
    for entry in walkdir::WalkDir::new(from).sort_by_file_name() {
        let entry = entry.map_err(|e| ProjectError::Io {
            path: from.to_owned(),
            source: e.into(),
        })?;
        let rel = entry.path().strip_prefix(from).unwrap_or(entry.path());
        let to = dest.join(rel);
        if entry.file_type().is_dir() {
            fs::create_dir_all(&to).map_err(io_err(&to))?;
        } else {
            fs::copy(entry.path(), &to).map_err(io_err(&to))?;
            File::open(&to)
                .and_then(|f| f.sync_all())
                .map_err(io_err(&to))?;
        }
    }
    sync_dir(dest).map_err(io_err(dest))
}

/// The content hash of an installed plugin tree: SHA-256 over the sorted list of
/// `<sha256 of file>  <relative path>` lines (the `sha256sum` format), so that the hash can be
/// reproduced with standard tools and changes to any file, name or layout change it.
pub(crate) fn tree_checksum(root: &Path) -> Result<String, ProjectError> {
    let mut lines = Vec::new();
    for (rel, path) in tree_files(root)? {
        lines.push(format!("{}  {}\n", file_sha256(&path)?, rel));
    }
    lines.sort();
    let mut hasher = Sha256::new();
    for line in &lines {
        hasher.update(line.as_bytes());
    }
    Ok(format!("sha256:{}", hex::encode(hasher.finalize())))
}

/// Every regular file under `root`, as (`/`-separated relative path, absolute path).
pub(crate) fn tree_files(root: &Path) -> Result<Vec<(String, PathBuf)>, ProjectError> {
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(root)
        .follow_links(false)
        .sort_by_file_name()
    {
        let entry = entry.map_err(|e| ProjectError::Io {
            path: root.to_owned(),
            source: e.into(),
        })?;
        if entry.file_type().is_file() {
            let rel = entry.path().strip_prefix(root).unwrap_or(entry.path());
            let rel = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            out.push((rel, entry.path().to_owned()));
        }
    }
    Ok(out)
}

pub(crate) fn file_sha256(path: &Path) -> Result<String, ProjectError> {
    let mut file = File::open(path).map_err(io_err(path))?;
    let mut hasher = Sha256::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Removes a directory tree, treating "already gone" as success.
pub(crate) fn remove_tree(path: &Path) -> Result<(), ProjectError> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ProjectError::Io {
            path: path.to_owned(),
            source: e,
        }),
    }
}
