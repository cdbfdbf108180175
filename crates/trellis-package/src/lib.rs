//! Plugin packages: one reproducible `.tar.gz` per plugin version, and its safe extraction.
//!
//! [`build`] turns a plugin directory into `<name>-<version>.tar.gz`. The same sources always
//! give the same bytes (sorted entries, fixed times, owners and modes, a fixed gzip header), so
//! the archive's SHA-256 can be signed, pinned in a lock file and compared between machines.
//! The archive's first entry is [`FILE_LIST_NAME`], a [`FileList`] with every file's size,
//! SHA-256 and executable bit; the files follow in the same sorted order.
//!
//! [`extract`] treats every archive as hostile: it streams it, refuses any path that could
//! leave the destination, every link and special file, duplicates, files the list does not
//! name (or names differently), and stops at [`ExtractLimits`] while decompressing, so a gzip
//! bomb costs no more than the limits allow. On any error nothing is left behind.
//! [`verify_tree`] later tells which installed files changed since extraction.
//!
//! What this crate must not know about: projects and `.trellis/`, installation state, lock
//! files, registries, signatures and trust, the CLI, or how plugins run. It reads the manifest
//! only to name the archive and to make sure the runtime entry is packaged.

mod build;
mod error;
mod extract;
mod hashing;
mod limits;
mod path;
mod stream;
mod tree;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use build::build;
pub use error::PackageError;
pub use extract::{extract, read_file_list};
pub use limits::ExtractLimits;
pub use tree::{TreeChange, sha256_file, verify_tree, verify_tree_with};

/// Name of the archive's first entry: the JSON [`FileList`].
pub const FILE_LIST_NAME: &str = "trellis-package.json";

/// The only [`FileList::format`] this crate writes and reads.
pub const FILE_LIST_FORMAT: u32 = 1;

/// Modification time of every archive entry, in seconds since the Unix epoch:
/// 1980-01-01T00:00:00Z. A constant keeps the bytes independent of when files were touched;
/// 1980 rather than 0 because some tools treat a zero time as "missing" and ZIP-based tools
/// cannot represent earlier dates.
pub const ARCHIVE_MTIME: u64 = 315_532_800;

/// The package's table of contents, stored as its first entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileList {
    /// Always [`FILE_LIST_FORMAT`]; a later, incompatible layout gets a new number.
    pub format: u32,
    pub name: String,
    pub version: String,
    /// Sorted by `path` (byte order), each path once.
    pub files: Vec<PackagedFile>,
}

/// One file of a package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackagedFile {
    /// Relative to the plugin root, `/`-separated, without `.` or `..` components.
    pub path: String,
    /// Lowercase hex SHA-256 of the contents.
    pub sha256: String,
    pub size: u64,
    pub executable: bool,
}

/// A package written by [`build`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    /// `<out_dir>/<name>-<version>.tar.gz`.
    pub archive: PathBuf,
    /// Lowercase hex SHA-256 of the archive bytes.
    pub sha256: String,
    pub name: String,
    pub version: String,
    pub file_list: FileList,
}

/// A package unpacked by [`extract`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extracted {
    /// The destination directory, holding exactly the listed files.
    pub root: PathBuf,
    pub file_list: FileList,
    /// Lowercase hex SHA-256 of the archive bytes, computed while extracting.
    pub archive_sha256: String,
}
