//! Unpacking a package that may be hostile.
//!
//! Symlinks are refused outright, even ones that would stay inside the package: [`crate::build`]
//! stores a symlink's target as a regular file, so a genuine package never has one. Directory
//! entries are checked like any other entry (path rules, limits, duplicates) and then skipped:
//! a package is a set of files, and their directories are created as the files need them.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;

use serde_json::Value;
use tar::{Entry, EntryType};

use crate::error::io_error;
use crate::hashing::Hashing;
use crate::limits::Tally;
use crate::path::{check_entry_path, components, shown};
use crate::stream::{self, Decoded, EntryReader, StreamErrors};
use crate::{
    ExtractLimits, Extracted, FILE_LIST_FORMAT, FILE_LIST_NAME, FileList, PackageError,
    PackagedFile,
};

/// Unpacks `archive` into `dest`, which must not exist yet, checking every entry against the
/// file list and `limits` as it streams. On any error `dest` is removed again.
pub fn extract(
    archive: &Path,
    dest: &Path,
    limits: &ExtractLimits,
) -> Result<Extracted, PackageError> {
    let opened = stream::open(archive, limits)?;
    create_destination(dest)?;
    let mut cleanup = RemoveOnFailure {
        dir: dest,
        succeeded: false,
    };
    let stream::Opened { mut tar, errors } = opened;
    let (file_list, last_entry) = unpack(&mut tar, &errors, dest, limits)?;
    let archive_sha256 = stream::finish(tar, &errors, last_entry.as_deref())?;
    cleanup.succeeded = true;
    Ok(Extracted {
        root: dest.to_path_buf(),
        file_list,
        archive_sha256,
    })
}

/// Reads only the first entry of `archive`: its file list, checked as [`extract`] checks it.
pub fn read_file_list(archive: &Path, limits: &ExtractLimits) -> Result<FileList, PackageError> {
    let stream::Opened { mut tar, errors } = stream::open(archive, limits)?;
    let mut entries = EntryReader::new(&mut tar, &errors, limits)?;
    let mut tally = Tally::new(archive, limits);
    read_list_entry(&mut entries, &mut tally, limits)
}

fn create_destination(dest: &Path) -> Result<(), PackageError> {
    let exists = || PackageError::DestinationExists {
        dest: dest.to_path_buf(),
    };
    if dest.symlink_metadata().is_ok() {
        return Err(exists());
    }
    if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(io_error("create directory", parent))?;
    }
    // `create_dir` rather than `create_dir_all`: it fails if another process created `dest`
    // since the check above, so a directory that is not ours is never filled or removed.
    fs::create_dir(dest).map_err(|source| match source.kind() {
        std::io::ErrorKind::AlreadyExists => exists(),
        _ => PackageError::Io {
            action: "create directory",
            path: dest.to_path_buf(),
            source,
        },
    })
}

/// Removes the destination unless extraction succeeded, so that a refused archive leaves
/// nothing behind, whichever check refused it.
struct RemoveOnFailure<'a> {
    dir: &'a Path,
    succeeded: bool,
}

impl Drop for RemoveOnFailure<'_> {
    fn drop(&mut self) {
        if !self.succeeded {
            // Nothing more can be done about a failed removal while already reporting the
            // error that caused it.
            let _ = fs::remove_dir_all(self.dir);
        }
    }
}

fn unpack(
    tar: &mut tar::Archive<Decoded>,
    errors: &StreamErrors,
    dest: &Path,
    limits: &ExtractLimits,
) -> Result<(FileList, Option<String>), PackageError> {
    let archive = errors.archive();
    let mut entries = EntryReader::new(tar, errors, limits)?;
    let mut tally = Tally::new(archive, limits);
    let list = read_list_entry(&mut entries, &mut tally, limits)?;
    let listed: HashMap<&str, &PackagedFile> =
        list.files.iter().map(|f| (f.path.as_str(), f)).collect();
    // Normal path → the entry's name as stored, to show both spellings of a duplicate.
    let mut seen: HashMap<String, String> =
        HashMap::from([(FILE_LIST_NAME.to_owned(), FILE_LIST_NAME.to_owned())]);
    while let Some((raw, mut entry)) = entries.next_entry()? {
        let (path, kind) = admit(archive, &raw, &entry, &mut tally, limits)?;
        let name = shown(&raw);
        if let Some(earlier) = seen.get(&path) {
            return Err(PackageError::DuplicateEntry {
                archive: archive.to_path_buf(),
                entry: name,
                earlier: earlier.clone(),
            });
        }
        seen.insert(path.clone(), name.clone());
        if kind == Kind::Directory {
            continue;
        }
        let Some(file) = listed.get(path.as_str()) else {
            return Err(PackageError::NotInFileList {
                archive: archive.to_path_buf(),
                entry: name,
            });
        };
        write_file(errors, &mut entry, &name, dest, file)?;
    }
    let missing: Vec<String> = list
        .files
        .iter()
        .filter(|f| !seen.contains_key(&f.path))
        .map(|f| f.path.clone())
        .collect();
    if !missing.is_empty() {
        return Err(PackageError::MissingFromArchive {
            archive: archive.to_path_buf(),
            entries: missing,
        });
    }
    Ok((list, entries.last().map(str::to_owned)))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Directory,
}

/// The checks every entry passes before any of its data is read, in the order [`crate::build`]
/// applies them too: count, path, type, size. Returns the normal path.
fn admit(
    archive: &Path,
    raw: &[u8],
    entry: &Entry<'_, Decoded>,
    tally: &mut Tally<'_>,
    limits: &ExtractLimits,
) -> Result<(String, Kind), PackageError> {
    let name = shown(raw);
    tally.count(&name)?;
    let path = check_entry_path(archive, raw, limits)?;
    let kind = classify(archive, &name, entry)?;
    tally.add_size(&name, entry.size())?;
    Ok((path, kind))
}

fn classify(archive: &Path, name: &str, entry: &Entry<'_, Decoded>) -> Result<Kind, PackageError> {
    let entry_type = entry.header().entry_type();
    let link_target = || {
        entry
            .link_name_bytes()
            .map(|target| shown(&target))
            .unwrap_or_default()
    };
    let special = |kind: &str| PackageError::SpecialEntry {
        archive: archive.to_path_buf(),
        entry: name.to_owned(),
        kind: kind.to_owned(),
    };
    match entry_type {
        EntryType::Regular => Ok(Kind::File),
        EntryType::Directory => Ok(Kind::Directory),
        EntryType::Symlink => Err(PackageError::Symlink {
            archive: archive.to_path_buf(),
            entry: name.to_owned(),
            target: link_target(),
        }),
        EntryType::Link => Err(PackageError::HardLink {
            archive: archive.to_path_buf(),
            entry: name.to_owned(),
            target: link_target(),
        }),
        EntryType::Char => Err(special("character device")),
        EntryType::Block => Err(special("block device")),
        EntryType::Fifo => Err(special("FIFO (named pipe)")),
        EntryType::Continuous => Err(special("contiguous file")),
        EntryType::GNUSparse => Err(special("GNU sparse file")),
        EntryType::GNULongLink => Err(special("GNU long link name")),
        // Build never writes PAX records; honouring them would mean a second way to name
        // paths and sizes, and a second place for the two to disagree.
        EntryType::XHeader => Err(special("PAX extended header")),
        EntryType::XGlobalHeader => Err(special("PAX global header")),
        other => Err(special(&format!(
            "entry of unknown type `{}`",
            (other.as_byte() as char).escape_debug()
        ))),
    }
}

/// Reads and checks the first entry, which must be the file list.
fn read_list_entry(
    entries: &mut EntryReader<'_>,
    tally: &mut Tally<'_>,
    limits: &ExtractLimits,
) -> Result<FileList, PackageError> {
    let archive = entries.errors().archive().to_path_buf();
    let Some((raw, mut entry)) = entries.next_entry()? else {
        return Err(PackageError::FileListMissing { archive });
    };
    let (path, kind) = admit(&archive, &raw, &entry, tally, limits)?;
    if path != FILE_LIST_NAME {
        drop(entry);
        return Err(if list_appears_later(entries, limits)? {
            PackageError::FileListNotFirst {
                archive,
                first: shown(&raw),
            }
        } else {
            PackageError::FileListMissing { archive }
        });
    }
    if kind != Kind::File {
        return Err(PackageError::FileListMalformed {
            archive,
            reason: "it is a directory, not a file".to_owned(),
        });
    }
    let mut bytes = Vec::new();
    entry
        .read_to_end(&mut bytes)
        .map_err(|e| entries.errors().read_failed(entries.last(), e))?;
    parse_file_list(&archive, &bytes)
}

/// Tells "the list is somewhere else" from "there is no list", looking at no more entries than
/// the limit allows.
fn list_appears_later(
    entries: &mut EntryReader<'_>,
    limits: &ExtractLimits,
) -> Result<bool, PackageError> {
    for _ in 1..limits.max_entries {
        let Some((raw, _)) = entries.next_entry()? else {
            return Ok(false);
        };
        if components(&raw).is_ok_and(|parts| parts.join("/") == FILE_LIST_NAME) {
            return Ok(true);
        }
    }
    Ok(false)
}

fn parse_file_list(archive: &Path, bytes: &[u8]) -> Result<FileList, PackageError> {
    let malformed = |reason: String| PackageError::FileListMalformed {
        archive: archive.to_path_buf(),
        reason,
    };
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| malformed(format!("not valid JSON: {e}")))?;
    match value.get("format") {
        Some(format) if format.as_u64() == Some(u64::from(FILE_LIST_FORMAT)) => {}
        Some(format) => {
            return Err(PackageError::UnsupportedFormat {
                archive: archive.to_path_buf(),
                found: format.to_string(),
            });
        }
        None => return Err(malformed("it has no `format` field".to_owned())),
    }
    let list: FileList = serde_json::from_value(value).map_err(|e| malformed(e.to_string()))?;
    check_file_list(&list).map_err(malformed)?;
    Ok(list)
}

/// What [`crate::build`] guarantees about a list: normal, unique, sorted paths that do not
/// nest inside each other, and well-formed hashes.
fn check_file_list(list: &FileList) -> Result<(), String> {
    for file in &list.files {
        let path = &file.path;
        let parts = components(path.as_bytes()).map_err(|problem| {
            format!(
                "it lists `{}`, whose path {}",
                path.escape_debug(),
                problem.describe()
            )
        })?;
        let normal = parts.join("/");
        if &normal != path {
            return Err(format!(
                "it lists `{}`, which is not in normal form (`{normal}`)",
                path.escape_debug()
            ));
        }
        if path == FILE_LIST_NAME {
            return Err("it lists itself".to_owned());
        }
        let hex_digest = file.sha256.len() == 64
            && file
                .sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !hex_digest {
            return Err(format!(
                "the sha256 of `{}` is not 64 lowercase hex digits",
                path.escape_debug()
            ));
        }
    }
    if let Some(pair) = list.files.windows(2).find(|w| w[0].path >= w[1].path) {
        return Err(format!(
            "the files are not sorted by path, or one is listed twice (`{}` before `{}`)",
            pair[0].path.escape_debug(),
            pair[1].path.escape_debug()
        ));
    }
    let paths: HashSet<&str> = list.files.iter().map(|f| f.path.as_str()).collect();
    for file in &list.files {
        let nested_in = file
            .path
            .match_indices('/')
            .map(|(at, _)| &file.path[..at])
            .find(|parent| paths.contains(parent));
        if let Some(parent) = nested_in {
            return Err(format!(
                "it lists `{}` as a file and also `{}` inside it",
                parent.escape_debug(),
                file.path.escape_debug()
            ));
        }
    }
    Ok(())
}

/// Writes one listed file, hashing while writing, and checks it against the list.
fn write_file(
    errors: &StreamErrors,
    entry: &mut Entry<'_, Decoded>,
    name: &str,
    dest: &Path,
    file: &PackagedFile,
) -> Result<(), PackageError> {
    let archive = errors.archive();
    if entry.size() != file.size {
        return Err(PackageError::SizeMismatch {
            archive: archive.to_path_buf(),
            entry: name.to_owned(),
            listed: file.size,
            actual: entry.size(),
        });
    }
    let target = file
        .path
        .split('/')
        .fold(dest.to_path_buf(), |path, part| path.join(part));
    if let Some(parent) = target.parent() {
        fs::create_dir_all(parent).map_err(io_error("create directory", parent))?;
    }
    // `create_new`: the list's checks make a second write to one path impossible; this keeps
    // it impossible even if they were wrong.
    let out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&target)
        .map_err(io_error("create", &target))?;
    let mut out = Hashing::new(out);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let read = entry
            .read(&mut chunk)
            .map_err(|e| errors.read_failed(Some(name), e))?;
        if read == 0 {
            break;
        }
        out.write_all(&chunk[..read])
            .map_err(io_error("write", &target))?;
    }
    let (out, sha256, written) = out.finish();
    if written != file.size {
        return Err(errors.corrupt(
            Some(name),
            format!("the entry ends after {written} of its {} bytes", file.size),
        ));
    }
    if sha256 != file.sha256 {
        return Err(PackageError::HashMismatch {
            archive: archive.to_path_buf(),
            entry: name.to_owned(),
            listed: file.sha256.clone(),
            actual: sha256,
        });
    }
    set_mode(&out, &target, file.executable)?;
    out.sync_all().map_err(io_error("write", &target))
}

/// Exactly 0644 or 0755 whatever the archive's header says, so that no setuid, sticky or
/// world-writable bit can come from a package.
#[cfg(unix)]
fn set_mode(file: &File, path: &Path, executable: bool) -> Result<(), PackageError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = if executable { 0o755 } else { 0o644 };
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io_error("set permissions of", path))
}

#[cfg(not(unix))]
fn set_mode(_file: &File, _path: &Path, _executable: bool) -> Result<(), PackageError> {
    Ok(())
}
