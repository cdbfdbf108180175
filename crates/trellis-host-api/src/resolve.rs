//! Resolving a path a plugin names to the file it really designates, without leaving the
//! project: `.`, `..` and symbolic links are followed component by component from the project
//! root, the way the kernel would, so that a scope is checked against the real target and not
//! against a spelling of it.

use std::path::{Path, PathBuf};

/// Most symbolic links followed while resolving one path (Linux's own limit).
const MAX_SYMLINKS: usize = 40;

/// Where a resolution went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("the path leads outside the project")]
    Escapes,
    #[error("the path passes through more than {MAX_SYMLINKS} symbolic links")]
    TooManyLinks,
    #[error("{0}")]
    Io(String),
}

/// What a path resolved to.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The components the plugin spelled, `.` and `..` applied lexically.
    pub lexical: Vec<String>,
    /// The components of the real target, every symbolic link on the way followed (the last
    /// one only when asked to). Components past the first missing one are taken as written.
    pub real: Vec<String>,
    /// The target's metadata (not following a final link unless asked), when it exists.
    pub metadata: Option<std::fs::Metadata>,
}

impl Resolved {
    pub fn exists(&self) -> bool {
        self.metadata.is_some()
    }

    pub fn is_dir(&self) -> bool {
        self.metadata.as_ref().is_some_and(|m| m.is_dir())
    }

    /// Hard links beyond the first, for a regular file: another name for the same bytes may
    /// sit anywhere, `.trellis/` included, so such files are not handed to plugins.
    pub fn extra_hard_links(&self) -> u64 {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            self.metadata
                .as_ref()
                .filter(|m| m.is_file())
                .map_or(0, |m| m.nlink().saturating_sub(1))
        }
        #[cfg(not(unix))]
        {
            0
        }
    }

    pub fn real_text(&self) -> String {
        self.real.join("/")
    }
}

/// The project directory plugins see, canonicalized once.
#[derive(Debug, Clone)]
pub struct ProjectRoot {
    root: PathBuf,
}

impl ProjectRoot {
    /// `root` made absolute and free of links, so that link targets can be compared with it.
    pub fn new(root: &Path) -> ProjectRoot {
        let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_owned());
        ProjectRoot { root }
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The host path of project components.
    pub fn join(&self, components: &[String]) -> PathBuf {
        components.iter().fold(self.root.clone(), |p, c| p.join(c))
    }

    /// Resolves `path` (relative to the project directory `base`, itself given as real
    /// components) the way opening it would: symbolic links on the way are followed, and the
    /// last one too when `follow_last`; a link or `..` that leaves the project is an error.
    pub fn resolve(
        &self,
        base: &[String],
        path: &str,
        follow_last: bool,
    ) -> Result<Resolved, ResolveError> {
        if path.contains('\0') {
            return Err(ResolveError::Io("the path contains a NUL character".into()));
        }
        let lexical = {
            let mut out: Vec<String> = base.to_vec();
            for part in path.split('/') {
                match part {
                    "" | "." => {}
                    ".." => {
                        out.pop().ok_or(ResolveError::Escapes)?;
                    }
                    p => out.push(p.to_owned()),
                }
            }
            out
        };
        if path.starts_with('/') {
            // WASI paths are relative to a directory descriptor; an absolute one names
            // something outside the project.
            return Err(ResolveError::Escapes);
        }

        // Components still to walk, in order (a stack, reversed).
        let mut pending: Vec<String> = path
            .split('/')
            .filter(|p| !p.is_empty() && *p != ".")
            .rev()
            .map(str::to_owned)
            .collect();
        let mut real: Vec<String> = base.to_vec();
        let mut links = 0;
        let mut missing = false;
        while let Some(part) = pending.pop() {
            if part == ".." {
                real.pop().ok_or(ResolveError::Escapes)?;
                continue;
            }
            if missing {
                real.push(part);
                continue;
            }
            let last = pending.is_empty();
            let host = self.join(&real).join(&part);
            match std::fs::symlink_metadata(&host) {
                Ok(meta) if meta.file_type().is_symlink() && (!last || follow_last) => {
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(ResolveError::TooManyLinks);
                    }
                    let target =
                        std::fs::read_link(&host).map_err(|e| ResolveError::Io(e.to_string()))?;
                    let target = target.to_string_lossy().into_owned();
                    if let Some(absolute) = target.strip_prefix('/') {
                        let inside = Path::new("/")
                            .join(absolute)
                            .strip_prefix(&self.root)
                            .map(|rel| rel.to_string_lossy().into_owned())
                            .map_err(|_| ResolveError::Escapes)?;
                        real.clear();
                        push_reversed(&mut pending, &inside);
                    } else {
                        push_reversed(&mut pending, &target);
                    }
                }
                Ok(_) => real.push(part),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    missing = true;
                    real.push(part);
                }
                Err(e) => {
                    // ENOTDIR and the like: the path names nothing; let the operation report it.
                    tracing::trace!(path = %host.display(), error = %e, "path does not resolve");
                    missing = true;
                    real.push(part);
                }
            }
        }
        let metadata = if missing {
            None
        } else {
            let host = self.join(&real);
            if follow_last {
                std::fs::metadata(&host).ok()
            } else {
                std::fs::symlink_metadata(&host).ok()
            }
        };
        Ok(Resolved {
            lexical,
            real,
            metadata,
        })
    }
}

fn push_reversed(pending: &mut Vec<String>, target: &str) {
    for part in target
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .rev()
    {
        pending.push(part.to_owned());
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn links_are_followed_inside_and_refused_outside() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir_all(root.join("src/a")).unwrap();
        std::fs::create_dir_all(root.join(".trellis")).unwrap();
        std::fs::write(root.join("src/a/lib.rs"), "x").unwrap();
        symlink("src/a", root.join("alias")).unwrap();
        symlink(".trellis/state.json", root.join("grants")).unwrap();
        symlink(outside.path(), root.join("out")).unwrap();
        symlink("../..", root.join("src/up")).unwrap();
        symlink("loop", root.join("loop")).unwrap();
        let canonical_src = std::fs::canonicalize(root.join("src")).unwrap();
        symlink(&canonical_src, root.join("abs")).unwrap();

        let project = ProjectRoot::new(root);
        let r = project.resolve(&[], "alias/lib.rs", true).unwrap();
        assert_eq!(r.real, ["src", "a", "lib.rs"]);
        assert_eq!(r.lexical, ["alias", "lib.rs"]);
        assert!(r.exists());
        let r = project.resolve(&[], "grants", true).unwrap();
        assert_eq!(r.real, [".trellis", "state.json"]);
        assert!(!r.exists());
        let r = project.resolve(&[], "grants", false).unwrap();
        assert_eq!(r.real, ["grants"]);
        assert_eq!(
            project.resolve(&[], "out/x", true).unwrap_err(),
            ResolveError::Escapes
        );
        assert_eq!(
            project.resolve(&[], "src/up/x", true).unwrap_err(),
            ResolveError::Escapes
        );
        assert_eq!(
            project.resolve(&[], "../x", true).unwrap_err(),
            ResolveError::Escapes
        );
        assert_eq!(
            project.resolve(&[], "/etc/passwd", true).unwrap_err(),
            ResolveError::Escapes
        );
        assert_eq!(
            project.resolve(&[], "loop", true).unwrap_err(),
            ResolveError::TooManyLinks
        );
        let r = project.resolve(&[], "abs/a/lib.rs", true).unwrap();
        assert_eq!(r.real, ["src", "a", "lib.rs"]);
        let r = project
            .resolve(&["src".into()], "../src/./a/../a/lib.rs", true)
            .unwrap();
        assert_eq!(r.real, ["src", "a", "lib.rs"]);
        let r = project.resolve(&[], "new/dir/file.txt", true).unwrap();
        assert_eq!(r.real, ["new", "dir", "file.txt"]);
        assert!(!r.exists());
    }
}
