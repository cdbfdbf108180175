//! Why a package could not be built, read or extracted.
//!
//! Entry names come from archives that may be hostile, so messages print them escaped: a name
//! cannot move the cursor or recolour a terminal.

use std::io;
use std::path::{Path, PathBuf};

use trellis_manifest::{ManifestError, format_byte_size};

/// Every way building, reading, extracting or verifying a package can fail.
///
/// Limit errors (`ArchiveTooLarge` to `PathTooDeep`) are the same whether [`crate::build`]
/// refuses to write a package or [`crate::extract`] refuses to unpack one; `archive` is then the
/// archive that would have been written.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),

    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error(
        "{}{}: {reason}\n    hint: .trellisignore uses .gitignore syntax, one pattern per line",
        path.display(), line.map(|l| format!(":{l}")).unwrap_or_default()
    )]
    IgnoreFile {
        path: PathBuf,
        line: Option<usize>,
        reason: String,
    },

    #[error(
        "{}: the file name is not valid UTF-8\n    hint: rename it, or list it in .trellisignore; package paths are UTF-8 so that every system can unpack them",
        path.display()
    )]
    NonUtf8Name { path: PathBuf },

    #[error(
        "{}: the symlink points to {}, outside the plugin directory {}\n    hint: copy the file into the plugin directory, or list the link in .trellisignore",
        link.display(), target.display(), dir.display()
    )]
    SymlinkOutside {
        dir: PathBuf,
        link: PathBuf,
        target: PathBuf,
    },

    #[error(
        "{}: the symlink points to the directory {}; a package holds files only\n    hint: replace the link with the directory itself, or list it in .trellisignore",
        link.display(), target.display()
    )]
    SymlinkToDirectory { link: PathBuf, target: PathBuf },

    #[error(
        "{}: is a {kind}, not a regular file; a package holds files only\n    hint: remove it, or list it in .trellisignore",
        path.display()
    )]
    UnsupportedFile { path: PathBuf, kind: &'static str },

    #[error(
        "{}: the name `{}` is reserved for the package's file list\n    hint: rename the file, or list it in .trellisignore",
        path.display(), crate::FILE_LIST_NAME
    )]
    ReservedName { path: PathBuf },

    #[error(
        "{}: runtime.entry: `{entry}` would not be in the package: {reason}\n    hint: {hint}",
        manifest.display()
    )]
    EntryNotPackaged {
        manifest: PathBuf,
        entry: String,
        reason: String,
        hint: String,
    },

    #[error(
        "{}: the file changed while the package was being built\n    hint: build again once nothing is writing to the plugin directory",
        path.display()
    )]
    ChangedDuringBuild { path: PathBuf },

    #[error(
        "{}: the archive is {}, more than the {} a package may have\n    hint: {LIMIT_HINT}",
        archive.display(), format_byte_size(*size), format_byte_size(*limit)
    )]
    ArchiveTooLarge {
        archive: PathBuf,
        size: u64,
        limit: u64,
    },

    #[error(
        "{}: entry `{}` is one more than the {limit} entries a package may have\n    hint: {LIMIT_HINT}",
        archive.display(), entry.escape_debug()
    )]
    TooManyEntries {
        archive: PathBuf,
        entry: String,
        limit: usize,
    },

    #[error(
        "{}: entry `{}` is {}, more than the {} one file may have\n    hint: {LIMIT_HINT}",
        archive.display(), entry.escape_debug(), format_byte_size(*size), format_byte_size(*limit)
    )]
    FileTooLarge {
        archive: PathBuf,
        entry: String,
        size: u64,
        limit: u64,
    },

    #[error(
        "{}: entry `{}` brings the package to at least {}, more than the {} a package may unpack to\n    hint: {LIMIT_HINT}",
        archive.display(), entry.escape_debug(), format_byte_size(*total), format_byte_size(*limit)
    )]
    TotalTooLarge {
        archive: PathBuf,
        entry: String,
        total: u64,
        limit: u64,
    },

    #[error(
        "{}: decompression stopped {} at {}, the most the limits allow for this many entries; the excess hides in tar metadata or after the last entry\n    hint: {HOSTILE_HINT}",
        archive.display(), near_entry(entry.as_deref()), format_byte_size(*limit)
    )]
    DecompressedTooLarge {
        archive: PathBuf,
        entry: Option<String>,
        limit: u64,
    },

    #[error(
        "{}: entry `{}` has a {length}-byte path, longer than the {limit} bytes allowed\n    hint: {LIMIT_HINT}",
        archive.display(), entry.escape_debug()
    )]
    PathTooLong {
        archive: PathBuf,
        entry: String,
        length: usize,
        limit: usize,
    },

    #[error(
        "{}: entry `{}` is {depth} levels deep, more than the {limit} allowed\n    hint: {LIMIT_HINT}",
        archive.display(), entry.escape_debug()
    )]
    PathTooDeep {
        archive: PathBuf,
        entry: String,
        depth: usize,
        limit: usize,
    },

    #[error(
        "{}: entry `{}` has a name that is not valid UTF-8\n    hint: {HOSTILE_HINT}",
        archive.display(), entry.escape_debug()
    )]
    NonUtf8Path { archive: PathBuf, entry: String },

    #[error(
        "{}: entry `{}` has an absolute path, which could write anywhere on disk\n    hint: {HOSTILE_HINT}",
        archive.display(), entry.escape_debug()
    )]
    AbsolutePath { archive: PathBuf, entry: String },

    #[error(
        "{}: entry `{}` has a `..` component, which could leave the destination\n    hint: {HOSTILE_HINT}",
        archive.display(), entry.escape_debug()
    )]
    ParentComponent { archive: PathBuf, entry: String },

    #[error(
        "{}: entry `{}` contains a backslash, which Windows reads as a directory separator\n    hint: {HOSTILE_HINT}",
        archive.display(), entry.escape_debug()
    )]
    Backslash { archive: PathBuf, entry: String },

    #[error(
        "{}: entry `{}` starts with a Windows drive prefix, which could write outside the destination\n    hint: {HOSTILE_HINT}",
        archive.display(), entry.escape_debug()
    )]
    DrivePrefix { archive: PathBuf, entry: String },

    #[error(
        "{}: entry `{}` names no file (its path is empty once `.` and `/` are removed)\n    hint: {HOSTILE_HINT}",
        archive.display(), entry.escape_debug()
    )]
    EmptyPath { archive: PathBuf, entry: String },

    #[error(
        "{}: entry `{}` is a symlink to `{}`; packages never contain symlinks, so every one is refused\n    hint: {HOSTILE_HINT}",
        archive.display(), entry.escape_debug(), target.escape_debug()
    )]
    Symlink {
        archive: PathBuf,
        entry: String,
        target: String,
    },

    #[error(
        "{}: entry `{}` is a hard link to `{}`; packages never contain links\n    hint: {HOSTILE_HINT}",
        archive.display(), entry.escape_debug(), target.escape_debug()
    )]
    HardLink {
        archive: PathBuf,
        entry: String,
        target: String,
    },

    #[error(
        "{}: entry `{}` is a {kind}; packages hold only regular files\n    hint: {HOSTILE_HINT}",
        archive.display(), entry.escape_debug()
    )]
    SpecialEntry {
        archive: PathBuf,
        entry: String,
        kind: String,
    },

    #[error(
        "{}: entry `{}` is the same path as the earlier entry `{}`\n    hint: {HOSTILE_HINT}",
        archive.display(), entry.escape_debug(), earlier.escape_debug()
    )]
    DuplicateEntry {
        archive: PathBuf,
        entry: String,
        earlier: String,
    },

    #[error(
        "{}: there is no `{}`, so this is not a Trellis plugin package\n    hint: a plugin package is built from a plugin directory by Trellis; any other .tar.gz is not one",
        archive.display(), crate::FILE_LIST_NAME
    )]
    FileListMissing { archive: PathBuf },

    #[error(
        "{}: the first entry is `{}`, but a package must start with `{}`\n    hint: {HOSTILE_HINT}",
        archive.display(), first.escape_debug(), crate::FILE_LIST_NAME
    )]
    FileListNotFirst { archive: PathBuf, first: String },

    #[error(
        "{}: `{}` is malformed: {reason}\n    hint: {HOSTILE_HINT}",
        archive.display(), crate::FILE_LIST_NAME
    )]
    FileListMalformed { archive: PathBuf, reason: String },

    #[error(
        "{}: `{}` has format {found}, but this version of trellis reads only format {}\n    hint: upgrade trellis, or rebuild the package with this version",
        archive.display(), crate::FILE_LIST_NAME, crate::FILE_LIST_FORMAT
    )]
    UnsupportedFormat { archive: PathBuf, found: String },

    #[error(
        "{}: entry `{}` is not in `{}`\n    hint: {HOSTILE_HINT}",
        archive.display(), entry.escape_debug(), crate::FILE_LIST_NAME
    )]
    NotInFileList { archive: PathBuf, entry: String },

    #[error(
        "{}: {} listed in `{}` {} not in the archive: {}\n    hint: {HOSTILE_HINT}",
        archive.display(),
        plural(entries.len(), "file", "files"),
        crate::FILE_LIST_NAME,
        if entries.len() == 1 { "is" } else { "are" },
        shown_list(entries)
    )]
    MissingFromArchive {
        archive: PathBuf,
        entries: Vec<String>,
    },

    #[error(
        "{}: entry `{}` is {actual} bytes, but `{}` says {listed}\n    hint: {HOSTILE_HINT}",
        archive.display(), entry.escape_debug(), crate::FILE_LIST_NAME
    )]
    SizeMismatch {
        archive: PathBuf,
        entry: String,
        listed: u64,
        actual: u64,
    },

    #[error(
        "{}: entry `{}` has SHA-256 {actual}, but `{}` says {listed}\n    hint: {HOSTILE_HINT}",
        archive.display(), entry.escape_debug(), crate::FILE_LIST_NAME
    )]
    HashMismatch {
        archive: PathBuf,
        entry: String,
        listed: String,
        actual: String,
    },

    #[error(
        "{}: not a readable .tar.gz (damaged or truncated), {}: {detail}\n    hint: download or build the package again",
        archive.display(), near_entry(entry.as_deref())
    )]
    Corrupt {
        archive: PathBuf,
        entry: Option<String>,
        detail: String,
    },

    #[error(
        "{} already exists; extraction only writes into a new directory\n    hint: remove it, or extract somewhere else",
        dest.display()
    )]
    DestinationExists { dest: PathBuf },
}

const LIMIT_HINT: &str = "packages over this limit are refused when installed; leave large or generated files out of the plugin (for example through .trellisignore)";

const HOSTILE_HINT: &str = "`trellis_package::build` never writes such an archive, so it was damaged or crafted; do not install it";

/// Where in the stream a problem was found: errors in the next header surface after the entry
/// that was read last, so "near" is as precise as the tar stream allows.
fn near_entry(entry: Option<&str>) -> String {
    match entry {
        Some(entry) => format!("near entry `{}`", entry.escape_debug()),
        None => "before the first entry".to_owned(),
    }
}

fn plural(count: usize, one: &str, many: &str) -> String {
    format!("{count} {}", if count == 1 { one } else { many })
}

/// The first few names: a hostile list could name thousands.
fn shown_list(entries: &[String]) -> String {
    const SHOWN: usize = 10;
    let mut out = entries
        .iter()
        .take(SHOWN)
        .map(|e| format!("`{}`", e.escape_debug()))
        .collect::<Vec<_>>()
        .join(", ");
    if entries.len() > SHOWN {
        out.push_str(&format!(" and {} more", entries.len() - SHOWN));
    }
    out
}

pub(crate) fn io_error(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(io::Error) -> PackageError {
    let path = path.into();
    move |source| PackageError::Io {
        action,
        path,
        source,
    }
}

/// A directory walk failed at some path (or at `root` when walkdir cannot say where).
pub(crate) fn walk_error(root: &Path, error: walkdir::Error) -> PackageError {
    let path = error.path().unwrap_or(root).to_path_buf();
    let source = error
        .into_io_error()
        .unwrap_or_else(|| io::Error::other("the directory tree contains a loop"));
    PackageError::Io {
        action: "read",
        path,
        source,
    }
}
