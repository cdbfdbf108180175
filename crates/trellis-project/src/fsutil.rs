//! Crash-safe file operations: every write goes to a temporary file in the same directory, is
//! fsynced, then renamed over the target, and the directory is fsynced so the rename itself is
//! durable. A crash at any point leaves either the old content or the new, never a mix.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::ProjectError;

pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ProjectError + '_ {
    move |source| ProjectError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Atomically replaces `path` with `bytes`.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ProjectError> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io_err(path))
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

/// Directories never copied into an installed plugin: version control, build trees (except the
/// runtime entry, copied separately) and nested project state.
const SKIPPED_DIRS: &[&str] = &[
    ".git",
    ".hg",
    ".svn",
    "target",
    "node_modules",
    ".trellis",
    "__pycache__",
];

/// Copies a plugin source directory into `dest` (which must not exist), fsyncing every file.
/// `extra` lists relative paths inside skipped directories that must still be copied (the
/// runtime entry, e.g. `target/wasm32-wasip2/release/x.wasm`). Symbolic links are refused: an
/// installed plugin must not be able to point outside its own directory.
pub(crate) fn copy_plugin_tree(
    src: &Path,
    dest: &Path,
    extra: &[&str],
) -> Result<(), ProjectError> {
    fs::create_dir_all(dest).map_err(io_err(dest))?;
    let walker = walkdir::WalkDir::new(src)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter();
    let walker = walker.filter_entry(|entry| {
        entry.depth() == 0
            || !(entry.file_type().is_dir()
                && entry
                    .file_name()
                    .to_str()
                    .is_some_and(|n| SKIPPED_DIRS.contains(&n)))
    });
    for entry in walker {
        let entry = entry.map_err(|e| {
            let path = e
                .path()
                .map(Path::to_owned)
                .unwrap_or_else(|| src.to_owned());
            ProjectError::Io {
                path,
                source: e.into(),
            }
        })?;
        let rel = entry.path().strip_prefix(src).unwrap_or(entry.path());
        if rel.as_os_str().is_empty() {
            continue;
        }
        copy_entry(entry.path(), &dest.join(rel), entry.file_type())?;
    }
    for rel in extra {
        let rel_path = Path::new(rel);
        if !is_plain_relative(rel_path) {
            continue;
        }
        let from = src.join(rel_path);
        let to = dest.join(rel_path);
        if to.exists() {
            continue;
        }
        let meta = fs::symlink_metadata(&from).map_err(io_err(&from))?;
        if let Some(parent) = to.parent() {
            fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        copy_entry(&from, &to, meta.file_type())?;
    }
    sync_dir(dest).map_err(io_err(dest))
}

fn copy_entry(from: &Path, to: &Path, file_type: fs::FileType) -> Result<(), ProjectError> {
    if file_type.is_symlink() {
        return Err(ProjectError::SymlinkInPlugin {
            path: from.to_owned(),
        });
    }
    if file_type.is_dir() {
        return fs::create_dir_all(to).map_err(io_err(to));
    }
    if !file_type.is_file() {
        return Err(ProjectError::SpecialFileInPlugin {
            path: from.to_owned(),
        });
    }
    fs::copy(from, to).map_err(io_err(from))?;
    File::open(to)
        .and_then(|f| f.sync_all())
        .map_err(io_err(to))
}

/// A path with only normal components: no root, no `..`, no `.` tricks.
pub(crate) fn is_plain_relative(path: &Path) -> bool {
    !path.as_os_str().is_empty() && path.components().all(|c| matches!(c, Component::Normal(_)))
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
