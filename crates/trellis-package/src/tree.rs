//! Comparing an unpacked package with its file list, to tell a user what changed since install.

use std::collections::{HashMap, HashSet};
use std::fs::{File, Metadata};
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};
use walkdir::WalkDir;

use crate::error::{io_error, walk_error};
use crate::hashing::hash_reader;
use crate::{FileList, PackageError, PackagedFile};

/// How one path differs from the file list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "lowercase")]
pub enum TreeChange {
    /// Listed, but its contents, size or executable bit differ, or it is no longer a regular
    /// file (e.g. replaced by a symlink).
    Modified { path: String },
    /// Listed, but not there.
    Missing { path: String },
    /// There, but not listed.
    Added { path: String },
}

impl TreeChange {
    /// The `/`-separated path relative to the tree's root.
    pub fn path(&self) -> &str {
        match self {
            TreeChange::Modified { path }
            | TreeChange::Missing { path }
            | TreeChange::Added { path } => path,
        }
    }
}

/// Lowercase hex SHA-256 of a file's contents, read as a stream.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    hash_reader(File::open(path)?).map(|(sha256, _)| sha256)
}

/// Every difference between `dir` and `list`, sorted by path. Nothing is ignored: hidden files
/// and build output count as added, since they were not there at install. Anything that is not
/// a directory counts as a file here (a symlink or FIFO someone added is reported too), and
/// symlinks are not followed.
pub fn verify_tree(dir: &Path, list: &FileList) -> Result<Vec<TreeChange>, PackageError> {
    verify_tree_with(dir, list, &sha256_file)
}

/// [`verify_tree`] with the SHA-256 of a file given by `sha256_of` (a cache that remembers the
/// digests of files whose metadata has not changed), called only for files whose size and
/// executable bit match.
pub fn verify_tree_with(
    dir: &Path,
    list: &FileList,
    sha256_of: &dyn Fn(&Path) -> io::Result<String>,
) -> Result<Vec<TreeChange>, PackageError> {
    let listed: HashMap<&str, &PackagedFile> =
        list.files.iter().map(|f| (f.path.as_str(), f)).collect();
    let mut present = HashSet::new();
    let mut changes = Vec::new();
    for entry in WalkDir::new(dir).min_depth(1).follow_links(false) {
        let entry = entry.map_err(|e| walk_error(dir, e))?;
        if entry.file_type().is_dir() {
            continue;
        }
        let path = relative_path(dir, entry.path());
        let Some(file) = listed.get(path.as_str()) else {
            changes.push(TreeChange::Added { path });
            continue;
        };
        present.insert(file.path.as_str());
        let meta = entry.metadata().map_err(|e| walk_error(dir, e))?;
        if !meta.is_file() || differs(entry.path(), &meta, file, sha256_of)? {
            changes.push(TreeChange::Modified { path });
        }
    }
    changes.extend(
        list.files
            .iter()
            .filter(|f| !present.contains(f.path.as_str()))
            .map(|f| TreeChange::Missing {
                path: f.path.clone(),
            }),
    );
    changes.sort_by(|a, b| a.path().cmp(b.path()));
    Ok(changes)
}

fn differs(
    path: &Path,
    meta: &Metadata,
    file: &PackagedFile,
    sha256_of: &dyn Fn(&Path) -> io::Result<String>,
) -> Result<bool, PackageError> {
    if meta.len() != file.size || is_executable(meta) != file.executable {
        return Ok(true);
    }
    let sha256 = sha256_of(path).map_err(io_error("read", path))?;
    Ok(sha256 != file.sha256)
}

/// `entry` relative to `root`, `/`-separated; names that are not UTF-8 are shown lossily, and
/// so never match a listed path.
fn relative_path(root: &Path, entry: &Path) -> String {
    let relative = entry.strip_prefix(root).unwrap_or(entry);
    relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// Whether any execute bit is set; always false where files have no such bit.
pub(crate) fn is_executable(meta: &Metadata) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        meta.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        false
    }
}

impl std::fmt::Display for TreeChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TreeChange::Modified { path } => write!(f, "{path} (modified)"),
            TreeChange::Missing { path } => write!(f, "{path} (missing)"),
            TreeChange::Added { path } => write!(f, "{path} (added)"),
        }
    }
}
