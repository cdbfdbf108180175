//! Building a reproducible package from a plugin directory.

use std::ffi::OsStr;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use flate2::{Compression, GzBuilder};
use ignore::gitignore::{Gitignore, GitignoreBuilder};
use tar::{EntryType, Header};
use trellis_manifest::{LoadedManifest, RuntimeKind};
use walkdir::WalkDir;

use crate::error::{io_error, walk_error};
use crate::hashing::{Hashing, hash_reader};
use crate::limits::{Tally, check_archive_size};
use crate::path::{check_entry_path, components};
use crate::tree::is_executable;
use crate::{
    ARCHIVE_MTIME, Built, ExtractLimits, FILE_LIST_FORMAT, FILE_LIST_NAME, FileList, PackageError,
    PackagedFile,
};

/// Directories that hold build output or fetched dependencies, never sources.
const BUILD_OUTPUT_DIRS: &[&str] = &["target", "node_modules", "dist", "__pycache__"];

/// Packages and their signatures: packaging them would nest old releases in new ones.
const RELEASE_SUFFIXES: &[&str] = &[".tar.gz", ".sig"];

const IGNORE_FILE: &str = ".trellisignore";

/// Fixed so that the bytes do not depend on a library default that could change.
const GZIP_LEVEL: u32 = 9;

/// "Unknown" in the gzip header's OS byte, whichever system builds the package.
const GZIP_OS_UNKNOWN: u8 = 255;

/// Packages the plugin in `dir` as `<out_dir>/<name>-<version>.tar.gz`, replacing an existing
/// archive of that name atomically. The same sources give the same bytes.
pub fn build(dir: &Path, out_dir: &Path) -> Result<Built, PackageError> {
    let loaded = trellis_manifest::load_dir(dir)?;
    let name = loaded.manifest.metadata.name.clone();
    let version = loaded.manifest.metadata.version.to_string();
    let archive = out_dir.join(format!("{name}-{version}.tar.gz"));
    let root = dir.canonicalize().map_err(io_error("resolve", dir))?;
    let rules = Exclusions::load(&root)?;
    let mut sources = collect(&root, &rules)?;
    include_runtime_entry(&loaded, &root, &rules, &mut sources)?;
    let limits = ExtractLimits::default();
    check_limits(&archive, &name, &version, &sources, &limits)?;
    let file_list = FileList {
        format: FILE_LIST_FORMAT,
        name,
        version,
        files: sources.iter().map(hash_source).collect::<Result<_, _>>()?,
    };
    fs::create_dir_all(out_dir).map_err(io_error("create directory", out_dir))?;
    let sha256 = write_archive(&archive, out_dir, &sources, &file_list, &limits)?;
    Ok(Built {
        archive,
        sha256,
        name: file_list.name.clone(),
        version: file_list.version.clone(),
        file_list,
    })
}

/// A file to package.
struct Source {
    /// Relative, `/`-separated: the path in the archive.
    path: String,
    /// What to read: the file itself, or a symlink's target.
    file: PathBuf,
    size: u64,
    executable: bool,
}

/// Why a path is left out of the package.
enum Exclusion {
    Hidden(String),
    BuildOutput(&'static str),
    Release(&'static str),
    Ignored(String),
}

impl fmt::Display for Exclusion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exclusion::Hidden(name) => write!(
                f,
                "`{name}` starts with `.`, and hidden files and directories are never packaged"
            ),
            Exclusion::BuildOutput(dir) => {
                write!(f, "it is inside `{dir}/`, which is never packaged")
            }
            Exclusion::Release(suffix) => {
                write!(f, "files ending in `{suffix}` are never packaged")
            }
            Exclusion::Ignored(pattern) => {
                write!(f, "{IGNORE_FILE} excludes it (pattern `{pattern}`)")
            }
        }
    }
}

/// The fixed exclusions plus the plugin's `.trellisignore`.
struct Exclusions {
    root: PathBuf,
    ignore: Gitignore,
}

impl Exclusions {
    fn load(root: &Path) -> Result<Self, PackageError> {
        let path = root.join(IGNORE_FILE);
        let mut builder = GitignoreBuilder::new(root);
        match fs::read_to_string(&path) {
            Ok(text) => {
                for (index, line) in text.lines().enumerate() {
                    builder.add_line(Some(path.clone()), line).map_err(|e| {
                        PackageError::IgnoreFile {
                            path: path.clone(),
                            line: Some(index + 1),
                            reason: e.to_string(),
                        }
                    })?;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error("read", &path)(e)),
        }
        let ignore = builder.build().map_err(|e| PackageError::IgnoreFile {
            path,
            line: None,
            reason: e.to_string(),
        })?;
        Ok(Exclusions {
            root: root.to_path_buf(),
            ignore,
        })
    }

    /// Whether one walked entry is excluded; its parents were checked when they were walked.
    /// `path` is absolute, under the root.
    fn of_entry(&self, path: &Path, name: &OsStr, is_dir: bool) -> Option<Exclusion> {
        let bytes = name.as_encoded_bytes();
        if bytes.starts_with(b".") {
            return Some(Exclusion::Hidden(name.to_string_lossy().into_owned()));
        }
        if is_dir {
            if let Some(dir) = BUILD_OUTPUT_DIRS.iter().find(|d| name == **d) {
                return Some(Exclusion::BuildOutput(dir));
            }
        } else if let Some(suffix) = RELEASE_SUFFIXES
            .iter()
            .find(|s| bytes.ends_with(s.as_bytes()))
        {
            return Some(Exclusion::Release(suffix));
        }
        match self.ignore.matched(path, is_dir) {
            ignore::Match::Ignore(glob) => Some(Exclusion::Ignored(glob.original().to_owned())),
            _ => None,
        }
    }

    /// Whether a file given by its relative components is excluded, itself or through a
    /// parent directory.
    fn of_relative_file(&self, parts: &[&str]) -> Option<Exclusion> {
        let mut path = self.root.clone();
        for (index, part) in parts.iter().enumerate() {
            path.push(part);
            let is_dir = index + 1 < parts.len();
            if let Some(exclusion) = self.of_entry(&path, OsStr::new(part), is_dir) {
                return Some(exclusion);
            }
        }
        None
    }
}

/// Every file to package, sorted by archive path.
fn collect(root: &Path, rules: &Exclusions) -> Result<Vec<Source>, PackageError> {
    let walk = WalkDir::new(root)
        .min_depth(1)
        .follow_links(false)
        .into_iter()
        .filter_entry(|entry| {
            // The root is the plugin itself, whatever its own name (e.g. a `.tmp…` directory).
            if entry.depth() == 0 {
                return true;
            }
            // A symlink to a directory is judged as the directory it stands for, so that a
            // linked `node_modules/` is left out like a real one.
            let is_dir =
                entry.file_type().is_dir() || (entry.path_is_symlink() && entry.path().is_dir());
            rules
                .of_entry(entry.path(), entry.file_name(), is_dir)
                .is_none()
        });
    let mut sources = Vec::new();
    for entry in walk {
        let entry = entry.map_err(|e| walk_error(root, e))?;
        let file_type = entry.file_type();
        if file_type.is_dir() {
            continue;
        }
        let path = relative_utf8(root, entry.path())?;
        if path == FILE_LIST_NAME {
            return Err(PackageError::ReservedName {
                path: entry.path().to_path_buf(),
            });
        }
        let (file, meta) = if file_type.is_symlink() {
            resolve_symlink(root, entry.path())?
        } else {
            let meta = entry.metadata().map_err(|e| walk_error(root, e))?;
            (entry.path().to_path_buf(), meta)
        };
        if !meta.is_file() {
            return Err(PackageError::UnsupportedFile {
                path: entry.path().to_path_buf(),
                kind: describe_special(&meta),
            });
        }
        sources.push(Source {
            path,
            file,
            size: meta.len(),
            executable: is_executable(&meta),
        });
    }
    sources.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(sources)
}

fn relative_utf8(root: &Path, path: &Path) -> Result<String, PackageError> {
    let relative = path.strip_prefix(root).unwrap_or(path);
    let parts: Option<Vec<&str>> = relative
        .components()
        .map(|c| c.as_os_str().to_str())
        .collect();
    parts
        .map(|parts| parts.join("/"))
        .ok_or_else(|| PackageError::NonUtf8Name {
            path: path.to_path_buf(),
        })
}

/// A symlink is packaged as the file it points to, which must be inside the plugin.
fn resolve_symlink(root: &Path, link: &Path) -> Result<(PathBuf, fs::Metadata), PackageError> {
    let target = fs::canonicalize(link).map_err(io_error("follow the symlink", link))?;
    if !target.starts_with(root) {
        return Err(PackageError::SymlinkOutside {
            dir: root.to_path_buf(),
            link: link.to_path_buf(),
            target,
        });
    }
    let meta = fs::metadata(&target).map_err(io_error("read", &target))?;
    if meta.is_dir() {
        return Err(PackageError::SymlinkToDirectory {
            link: link.to_path_buf(),
            target,
        });
    }
    Ok((target, meta))
}

fn describe_special(meta: &fs::Metadata) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let file_type = meta.file_type();
        if file_type.is_fifo() {
            return "FIFO (named pipe)";
        }
        if file_type.is_socket() {
            return "socket";
        }
        if file_type.is_char_device() || file_type.is_block_device() {
            return "device";
        }
    }
    let _ = meta;
    "special file"
}

/// The manifest validated that a wasm or process entry exists; this makes sure the package
/// carries it too. An entry inside a build-output directory (`target/wasm32-wasip2/release/
/// x.wasm`, where cargo puts it) is packaged anyway: the manifest names it, so it is part of
/// the plugin. Hidden or `.trellisignore`d entries are refused: the author excluded them.
fn include_runtime_entry(
    loaded: &LoadedManifest,
    root: &Path,
    rules: &Exclusions,
    sources: &mut Vec<Source>,
) -> Result<(), PackageError> {
    let runtime = &loaded.manifest.runtime;
    let (Some(entry), RuntimeKind::Wasm | RuntimeKind::Process) = (&runtime.entry, runtime.kind)
    else {
        return Ok(());
    };
    let not_packaged = |reason: String| PackageError::EntryNotPackaged {
        manifest: loaded.file.clone(),
        entry: entry.clone(),
        reason,
        hint: entry_hint(runtime.kind),
    };
    let parts = components(entry.as_bytes())
        .map_err(|problem| not_packaged(format!("the path {}", problem.describe())))?;
    let path = parts.join("/");
    if sources
        .binary_search_by(|s| s.path.as_str().cmp(&path))
        .is_ok()
    {
        return Ok(());
    }
    let reason = match rules.of_relative_file(&parts) {
        Some(Exclusion::BuildOutput(_)) => {
            let file = root.join(&path);
            let meta = fs::symlink_metadata(&file).map_err(io_error("read", &file))?;
            if meta.is_file() {
                let at = sources.partition_point(|s| s.path < path);
                sources.insert(
                    at,
                    Source {
                        path,
                        file,
                        size: meta.len(),
                        executable: is_executable(&meta),
                    },
                );
                return Ok(());
            }
            format!("it is not a regular file inside {}", root.display())
        }
        Some(exclusion) => exclusion.to_string(),
        None => format!("it is not a regular file inside {}", root.display()),
    };
    Err(not_packaged(reason))
}

fn entry_hint(kind: RuntimeKind) -> String {
    match kind {
        RuntimeKind::Wasm => format!(
            "build the component first (e.g. `cargo build --target wasm32-wasip2 --release`) and make sure neither a hidden directory nor {IGNORE_FILE} excludes runtime.entry"
        ),
        _ => format!(
            "move the executable to a packaged path (not hidden, not in a build-output directory, not matched by {IGNORE_FILE}) and set runtime.entry to it"
        ),
    }
}

/// Refuses, before anything is hashed or written, a package that extraction would refuse:
/// the same checks in the same order. The file list's size is known already because its hashes
/// are always 64 hex digits, so placeholders give its exact length.
fn check_limits(
    archive: &Path,
    name: &str,
    version: &str,
    sources: &[Source],
    limits: &ExtractLimits,
) -> Result<(), PackageError> {
    let placeholder = FileList {
        format: FILE_LIST_FORMAT,
        name: name.to_owned(),
        version: version.to_owned(),
        files: sources
            .iter()
            .map(|s| PackagedFile {
                path: s.path.clone(),
                sha256: "0".repeat(64),
                size: s.size,
                executable: s.executable,
            })
            .collect(),
    };
    let list_size = file_list_bytes(archive, &placeholder)?.len() as u64;
    let mut tally = Tally::new(archive, limits);
    tally.count(FILE_LIST_NAME)?;
    tally.add_size(FILE_LIST_NAME, list_size)?;
    for source in sources {
        tally.count(&source.path)?;
        check_entry_path(archive, source.path.as_bytes(), limits)?;
        tally.add_size(&source.path, source.size)?;
    }
    Ok(())
}

fn hash_source(source: &Source) -> Result<PackagedFile, PackageError> {
    let file = File::open(&source.file).map_err(io_error("open", &source.file))?;
    let (sha256, size) = hash_reader(file).map_err(io_error("read", &source.file))?;
    if size != source.size {
        return Err(PackageError::ChangedDuringBuild {
            path: source.file.clone(),
        });
    }
    Ok(PackagedFile {
        path: source.path.clone(),
        sha256,
        size,
        executable: source.executable,
    })
}

/// Pretty-printed with a final newline: people read this file when inspecting a package.
fn file_list_bytes(archive: &Path, list: &FileList) -> Result<Vec<u8>, PackageError> {
    let mut bytes = serde_json::to_vec_pretty(list).map_err(|e| PackageError::Io {
        action: "write the file list of",
        path: archive.to_path_buf(),
        source: e.into(),
    })?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// Writes the archive to a temporary file next to its destination, syncs it and renames it
/// into place; on any error the temporary file is deleted. Returns the archive's SHA-256.
fn write_archive(
    archive: &Path,
    out_dir: &Path,
    sources: &[Source],
    list: &FileList,
    limits: &ExtractLimits,
) -> Result<String, PackageError> {
    // Written beside the archive and renamed over it when complete (`atomic-write-file`), so a
    // failed build leaves no half archive and an earlier one stays as it was.
    let temp = atomic_write_file::AtomicWriteFile::open(archive)
        .map_err(io_error("create a temporary file in", out_dir))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        temp.as_file()
            .set_permissions(fs::Permissions::from_mode(0o644))
            .map_err(io_error("create a temporary file in", out_dir))?;
    }

    let compressed = Hashing::new(BufWriter::new(temp.as_file()));
    let gzip = GzBuilder::new()
        .mtime(0)
        .operating_system(GZIP_OS_UNKNOWN)
        .write(compressed, Compression::new(GZIP_LEVEL));
    let mut tar = tar::Builder::new(gzip);

    let list_bytes = file_list_bytes(archive, list)?;
    let mut header = entry_header(list_bytes.len() as u64, false);
    tar.append_data(&mut header, FILE_LIST_NAME, list_bytes.as_slice())
        .map_err(io_error("write", archive))?;
    for (source, listed) in sources.iter().zip(&list.files) {
        append_source(&mut tar, source, listed, archive)?;
    }

    let compressed = tar
        .into_inner()
        .and_then(|gzip| gzip.finish())
        .map_err(io_error("write", archive))?;
    let (mut buffered, sha256, size) = compressed.finish();
    buffered.flush().map_err(io_error("write", archive))?;
    drop(buffered);
    check_archive_size(archive, size, limits)?;
    temp.commit().map_err(io_error("write", archive))?;
    Ok(sha256)
}

/// Appends one file, checking that it still has the size and hash the list recorded: the list
/// is written first, so a file that changes in between would make the package lie.
fn append_source(
    tar: &mut tar::Builder<impl Write>,
    source: &Source,
    listed: &PackagedFile,
    temp: &Path,
) -> Result<(), PackageError> {
    let changed = || PackageError::ChangedDuringBuild {
        path: source.file.clone(),
    };
    let file = File::open(&source.file).map_err(io_error("open", &source.file))?;
    let mut contents = Hashing::new(file.take(listed.size));
    let mut header = entry_header(listed.size, listed.executable);
    tar.append_data(&mut header, &listed.path, &mut contents)
        .map_err(|e| {
            io_error("write", temp)(io::Error::new(
                e.kind(),
                format!("adding {}: {e}", source.file.display()),
            ))
        })?;
    let (rest, sha256, size) = contents.finish();
    let mut probe = [0u8; 1];
    let grew = rest
        .into_inner()
        .read(&mut probe)
        .map_err(io_error("read", &source.file))?
        > 0;
    if size != listed.size || sha256 != listed.sha256 || grew {
        return Err(changed());
    }
    Ok(())
}

/// Everything but size and mode is fixed, so that owners, times and the build machine leave
/// no trace in the bytes.
fn entry_header(size: u64, executable: bool) -> Header {
    let mut header = Header::new_gnu();
    header.set_entry_type(EntryType::Regular);
    header.set_size(size);
    header.set_mode(if executable { 0o755 } else { 0o644 });
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(ARCHIVE_MTIME);
    header
}
