//! Project files, through the WASI filesystem.
//!
//! With `filesystem.read` or `filesystem.write` the host shows the project directory at
//! [`PROJECT_DIR`] (`/project`) and checks every path against the grant's `paths`, file by
//! file: nothing outside them can be read, listed or written, and `.trellis/` never can. Plain
//! `std::fs` on `/project/...` paths works under the same rules; the helpers here take
//! project-relative paths (`src/main.rs`, `""` for the root), refuse `..` and absolute paths,
//! and turn the sandbox's refusals into typed denials:
//!
//! - reading when the plugin holds no filesystem grant, or a read the grant does not cover →
//!   [`Error::Denied`] with capability `filesystem.read`;
//! - a write the grant does not cover → [`Error::Denied`] with capability `filesystem.write`;
//! - a missing file inside the project → [`Error::NotFound`].
//!
//! The host also writes each refusal to the project's audit log.
//!
//! ```no_run
//! # fn main() -> Result<(), trellis_plugin_sdk::Error> {
//! use trellis_plugin_sdk::fs;
//! for file in fs::walk("src")? {
//!     let text = fs::read_to_string(&file)?;
//!     trellis_plugin_sdk::log::debug(format!("{file}: {} lines", text.lines().count()));
//! }
//! fs::write("reports/summary.txt", "all good\n")?;
//! # Ok(()) }
//! ```

use std::io;
use std::path::{Component, Path, PathBuf};

use crate::{Error, PROJECT_DIR};

/// `ENOTCAPABLE` as WASI libc numbers it: the sandbox refused a path or an operation.
const ENOTCAPABLE: i32 = 76;

/// The absolute sandbox path of project-relative `rel`. `""` and `"."` are the project root.
/// [`Error::InvalidInput`] for absolute paths and paths with `..`.
pub fn path(rel: &str) -> Result<PathBuf, Error> {
    let rel_path = Path::new(rel);
    let mut out = PathBuf::from(PROJECT_DIR);
    for component in rel_path.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(Error::invalid_input(format!(
                    "`{rel}`: project paths must not contain `..`"
                )));
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(Error::invalid_input(format!(
                    "`{rel}`: project paths are relative to the project root, not absolute"
                )));
            }
        }
    }
    Ok(out)
}

/// Whether the project is mounted at all (the plugin holds a filesystem capability).
pub fn project_mounted() -> bool {
    std::fs::metadata(PROJECT_DIR)
        .map(|m| m.is_dir())
        .unwrap_or(false)
}

/// Whether `rel` exists (false too when it cannot be seen).
pub fn exists(rel: &str) -> bool {
    path(rel)
        .map(|p| std::fs::metadata(p).is_ok())
        .unwrap_or(false)
}

/// The bytes of file `rel`.
pub fn read(rel: &str) -> Result<Vec<u8>, Error> {
    let full = path(rel)?;
    std::fs::read(&full).map_err(|e| read_error(rel, e))
}

/// The text of file `rel`; [`Error::InvalidInput`] when it is not UTF-8.
pub fn read_to_string(rel: &str) -> Result<String, Error> {
    let bytes = read(rel)?;
    String::from_utf8(bytes).map_err(|_| Error::invalid_input(format!("`{rel}` is not UTF-8 text")))
}

/// Writes `contents` to file `rel`, creating missing parent directories and replacing the
/// file if it exists.
pub fn write(rel: &str, contents: impl AsRef<[u8]>) -> Result<(), Error> {
    let full = path(rel)?;
    if full == Path::new(PROJECT_DIR) {
        return Err(Error::invalid_input("cannot write the project root itself"));
    }
    if let Some(parent) = full.parent() {
        std::fs::create_dir_all(parent).map_err(|e| write_error(rel, e))?;
    }
    std::fs::write(&full, contents).map_err(|e| write_error(rel, e))
}

/// Every file under directory `rel` (`""` for the whole project), as project-relative paths
/// with `/` separators, sorted. Symbolic links to directories are not followed; entries that
/// cannot be read below `rel` are skipped.
pub fn walk(rel: &str) -> Result<Vec<String>, Error> {
    walk_filtered(rel, |_, _| true)
}

/// Like [`walk`], but asks `keep(path, is_dir)` about every entry: a directory it rejects is
/// not descended into, a file it rejects is left out.
pub fn walk_filtered(
    rel: &str,
    mut keep: impl FnMut(&str, bool) -> bool,
) -> Result<Vec<String>, Error> {
    let root = path(rel)?;
    let base = relative_display(&root);
    let entries = std::fs::read_dir(&root).map_err(|e| read_error(rel, e))?;
    let mut files = Vec::new();
    let mut stack: Vec<(String, std::fs::ReadDir)> = vec![(base, entries)];
    while let Some((dir, mut entries)) = stack.pop() {
        let mut subdirs = Vec::new();
        for entry in entries.by_ref() {
            let Ok(entry) = entry else { continue };
            let name = entry.file_name().to_string_lossy().into_owned();
            let child = if dir.is_empty() {
                name
            } else {
                format!("{dir}/{name}")
            };
            let Ok(file_type) = entry.file_type() else {
                continue;
            };
            let (is_dir, is_file) = if file_type.is_symlink() {
                // Follow links to files only: links to directories could loop.
                match std::fs::metadata(entry.path()) {
                    Ok(meta) => (false, meta.is_file()),
                    Err(_) => (false, false),
                }
            } else {
                (file_type.is_dir(), file_type.is_file())
            };
            if is_dir {
                if keep(&child, true) {
                    subdirs.push(child);
                }
            } else if is_file && keep(&child, false) {
                files.push(child);
            }
        }
        for sub in subdirs {
            let full = Path::new(PROJECT_DIR).join(&sub);
            if let Ok(entries) = std::fs::read_dir(full) {
                stack.push((sub, entries));
            }
        }
    }
    files.sort();
    Ok(files)
}

/// `root` (under [`PROJECT_DIR`]) as a project-relative `/`-separated path.
fn relative_display(full: &Path) -> String {
    let rel = full.strip_prefix(PROJECT_DIR).unwrap_or(full);
    rel.components()
        .filter_map(|c| match c {
            Component::Normal(part) => Some(part.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn refused(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem
    ) || (cfg!(target_os = "wasi") && error.raw_os_error() == Some(ENOTCAPABLE))
}

fn shown(rel: &str) -> &str {
    if rel.is_empty() || rel == "." {
        "the project root"
    } else {
        rel
    }
}

/// Maps a read failure: a refusal or an unmounted project is a `filesystem.read` denial.
fn read_error(rel: &str, error: io::Error) -> Error {
    if refused(&error) || !project_mounted() {
        return Error::denied("filesystem.read", format!("read {}", shown(rel)));
    }
    match error.kind() {
        io::ErrorKind::NotFound => Error::not_found(format!("file `{rel}`")),
        _ => Error::failed(format!("read {}: {error}", shown(rel))),
    }
}

/// Maps a write failure: a refusal or an unmounted project is a `filesystem.write` denial.
fn write_error(rel: &str, error: io::Error) -> Error {
    if refused(&error) || !project_mounted() {
        return Error::denied("filesystem.write", format!("write {rel}"));
    }
    Error::failed(format!("write {rel}: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_project() {
        assert_eq!(path("").unwrap(), PathBuf::from("/project"));
        assert_eq!(path(".").unwrap(), PathBuf::from("/project"));
        assert_eq!(
            path("src/./main.rs").unwrap(),
            PathBuf::from("/project/src/main.rs")
        );
        assert!(matches!(path("../etc/passwd"), Err(Error::InvalidInput(_))));
        assert!(matches!(path("a/../../b"), Err(Error::InvalidInput(_))));
        assert!(matches!(path("/etc/passwd"), Err(Error::InvalidInput(_))));
    }

    #[test]
    fn relative_display_uses_slashes() {
        assert_eq!(relative_display(Path::new("/project")), "");
        assert_eq!(relative_display(Path::new("/project/a/b")), "a/b");
    }

    #[test]
    fn refusals_are_denials() {
        // Natively there is no /project, so every failure reads as "not mounted".
        let e = read_error("x", io::Error::from(io::ErrorKind::PermissionDenied));
        assert_eq!(e.denied_capability(), Some("filesystem.read"));
        let e = write_error("x", io::Error::from_raw_os_error(ENOTCAPABLE));
        assert_eq!(e.denied_capability(), Some("filesystem.write"));
    }
}
