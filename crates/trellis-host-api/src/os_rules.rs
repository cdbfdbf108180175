//! The file grants of a plugin as rules an operating-system sandbox can hold (Landlock on
//! Linux): which trees and which single files of the project a process may open, decided by the
//! same [`Grants`] every host call asks, so that the sandbox never allows more than the scope
//! the install prompt shows.
//!
//! An OS sandbox grants by real location and whole trees, without exceptions inside a tree, so
//! the plan is built conservatively:
//!
//! - the project directory itself is never a tree (it holds `.trellis/`); its entries are
//!   granted one by one, and it may be listed when the whole project is readable;
//! - a directory becomes a tree only when a `…/**` pattern (or a whole-project grant) covers
//!   all of it and nothing in it is a hard link (a second name of a file elsewhere, perhaps in
//!   `.trellis/`); otherwise its covered entries are granted one by one;
//! - symbolic links are not followed and get no rule: the sandbox checks where a link leads;
//! - paths that do not exist when the plugin starts get no rule (the host API's file service
//!   reaches them, checked the same way).
//!
//! The walk visits at most [`MAX_ENTRIES`] entries; beyond that, what is left gets no rule and
//! [`OsFileRules::truncated`] says so.

use std::fs;
use std::path::{Path, PathBuf};

use crate::Grants;

/// Most directory entries the walk looks at.
pub const MAX_ENTRIES: usize = 20_000;

/// What the sandbox lets a process open, by absolute path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OsFileRules {
    /// Directories readable with everything beneath them.
    pub read_trees: Vec<PathBuf>,
    /// Directories writable (and readable) with everything beneath them.
    pub write_trees: Vec<PathBuf>,
    /// Single files readable.
    pub read_files: Vec<PathBuf>,
    /// Single files writable (and readable).
    pub write_files: Vec<PathBuf>,
    /// Directories whose listing (names only) is allowed, without access to what they hold.
    pub list_dirs: Vec<PathBuf>,
    /// The walk stopped at [`MAX_ENTRIES`]: some covered paths got no rule.
    pub truncated: bool,
}

impl OsFileRules {
    /// The rules for `grants` in the project at `root` (a real, absolute path).
    pub fn plan(grants: &Grants, root: &Path) -> OsFileRules {
        let mut rules = OsFileRules::default();
        if !grants.has_filesystem() {
            return rules;
        }
        if grants.may_read(&[]) {
            // Listing the project directory itself. An OS rule on a directory reaches the
            // directories beneath it too (names only): the sandbox covers `.trellis/` with an
            // empty file system where it can, so that no name inside it shows.
            rules.list_dirs.push(root.to_owned());
        }
        let mut budget = MAX_ENTRIES;
        walk(grants, root, &mut Vec::new(), &mut rules, &mut budget);
        rules
    }
}

fn walk(
    grants: &Grants,
    dir: &Path,
    at: &mut Vec<String>,
    rules: &mut OsFileRules,
    budget: &mut usize,
) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    for name in names {
        if *budget == 0 {
            rules.truncated = true;
            return;
        }
        *budget -= 1;
        at.push(name);
        let path = dir.join(at.last().map(String::as_str).unwrap_or_default());
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_dir() => {
                let (read_tree, write_tree) = (grants.may_read_tree(at), grants.may_write_tree(at));
                if (read_tree || write_tree) && !holds_hard_links(&path, budget, rules) {
                    if write_tree {
                        rules.write_trees.push(path);
                    } else {
                        rules.read_trees.push(path);
                    }
                } else if grants.may_pass_through(at) {
                    if grants.may_read(at) {
                        rules.list_dirs.push(path.clone());
                    }
                    walk(grants, &path, at, rules, budget);
                }
            }
            Ok(meta) if meta.file_type().is_file() && !is_hard_linked(&meta) => {
                if grants.may_write(at) {
                    rules.write_files.push(path);
                } else if grants.may_read(at) {
                    rules.read_files.push(path);
                }
            }
            _ => {}
        }
        at.pop();
    }
}

#[cfg(unix)]
fn is_hard_linked(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    meta.nlink() > 1
}

#[cfg(not(unix))]
fn is_hard_linked(_meta: &fs::Metadata) -> bool {
    false
}

/// Whether any file beneath `dir` has a second name; counts the entries looked at against the
/// walk's budget (and answers yes when it runs out, so that an unchecked tree is not granted
/// whole).
fn holds_hard_links(dir: &Path, budget: &mut usize, rules: &mut OsFileRules) -> bool {
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            if *budget == 0 {
                rules.truncated = true;
                return true;
            }
            *budget -= 1;
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            if meta.file_type().is_dir() {
                stack.push(entry.path());
            } else if meta.file_type().is_file() && is_hard_linked(&meta) {
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use trellis_manifest::CapabilityRequest;

    fn grants(read: &[&str], write: &[&str]) -> Grants {
        let mut requests = Vec::new();
        let scoped = |name: &str, paths: &[&str]| {
            let mut r = CapabilityRequest::named(name);
            r.paths = paths.iter().map(|p| p.to_string()).collect();
            r
        };
        if !read.is_empty() {
            requests.push(scoped("filesystem.read", read));
        }
        if !write.is_empty() {
            requests.push(scoped("filesystem.write", write));
        }
        Grants::from_requests(&requests)
    }

    fn project() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for d in [".trellis", ".git", "src/nested", "docs"] {
            fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        for f in [
            ".trellis/state.json",
            ".git/config",
            "src/lib.rs",
            "src/nested/a.rs",
            "docs/guide.md",
            "docs/other.md",
            "README.md",
        ] {
            fs::write(dir.path().join(f), "x").unwrap();
        }
        dir
    }

    #[test]
    fn a_whole_project_grant_never_reaches_trellis() {
        let p = project();
        let root = p.path();
        let mut all = CapabilityRequest::named("filesystem.write");
        all.paths = Vec::new();
        let rules = OsFileRules::plan(&Grants::from_requests(&[all]), root);
        assert!(rules.write_trees.contains(&root.join("src")));
        assert!(rules.write_files.contains(&root.join("README.md")));
        // `.git/` is readable as a tree, not writable.
        assert!(rules.read_trees.contains(&root.join(".git")));
        let every: Vec<&PathBuf> = rules
            .read_trees
            .iter()
            .chain(&rules.write_trees)
            .chain(&rules.read_files)
            .chain(&rules.write_files)
            .chain(&rules.list_dirs)
            .collect();
        assert!(every.iter().all(|p| !p.starts_with(root.join(".trellis"))));
        // The project directory itself may only be listed, never read or written as a tree.
        assert_eq!(rules.list_dirs, vec![root.to_path_buf()]);
        assert!(!rules.read_trees.contains(&root.to_path_buf()));
        assert!(!rules.write_trees.contains(&root.to_path_buf()));
    }

    #[test]
    fn literal_files_stay_single_files() {
        let p = project();
        let root = p.path();
        let rules = OsFileRules::plan(&grants(&["docs/guide.md"], &[]), root);
        assert_eq!(rules.read_files, vec![root.join("docs/guide.md")]);
        assert!(rules.read_trees.is_empty() && rules.list_dirs.is_empty());
    }

    #[test]
    fn a_hard_link_keeps_its_tree_from_being_granted_whole() {
        let p = project();
        let root = p.path();
        fs::hard_link(
            root.join(".trellis/state.json"),
            root.join("src/nested/link"),
        )
        .unwrap();
        let rules = OsFileRules::plan(&grants(&[], &["src/**"]), root);
        assert!(!rules.write_trees.contains(&root.join("src")));
        assert!(rules.write_files.contains(&root.join("src/lib.rs")));
        assert!(rules.write_files.contains(&root.join("src/nested/a.rs")));
        assert!(!rules.write_files.contains(&root.join("src/nested/link")));
    }

    #[test]
    fn wildcards_grant_the_matching_files() {
        let p = project();
        let root = p.path();
        let rules = OsFileRules::plan(&grants(&["**/*.md"], &[]), root);
        let mut files = rules.read_files.clone();
        files.sort();
        assert_eq!(
            files,
            vec![
                root.join("README.md"),
                root.join("docs/guide.md"),
                root.join("docs/other.md")
            ]
        );
    }
}
