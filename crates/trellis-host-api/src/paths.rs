//! Which project paths a filesystem grant covers, at file granularity.
//!
//! A grant's `paths` are patterns over project-relative paths, `/`-separated:
//!
//! - a literal path (`README.md`, `docs/guide.md`, `src`) covers exactly that path: a file, or
//!   a directory itself (listing it, its metadata) but nothing inside it;
//! - `dir/**` covers `dir` and everything beneath it, and `dir/` is short for `dir/**`;
//! - `*` matches within one path component (`src/*.rs` covers `src/lib.rs`, not
//!   `src/a/lib.rs`), `?` one character, and a component `**` any number of components
//!   (`**/*.md` covers every Markdown file);
//! - no `paths` at all covers the whole project.
//!
//! Whatever the patterns say, `.trellis/` (in any spelling of its case) is never covered: it
//! holds the grants, the audit log and the other plugins. `.git/` is never covered for writing
//! unless a write pattern itself starts with `.git/`. Patterns that are absolute, hold `..` or
//! a backslash cover nothing (the manifest validator refuses them too).

use trellis_wildcard::{ANY_SEGMENTS, prefix_may_match, segments_match};

/// The directory that holds the host's own files in every project.
pub const RESERVED_DIR: &str = ".trellis";
/// Git's directory: readable when a grant covers it, writable only when a grant names it.
pub const GIT_DIR: &str = ".git";

/// A normalized project-relative path: components without `.`, `..` or empty parts.
pub type Components = [String];

/// One `paths` pattern, split into components.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    text: String,
    segments: Vec<String>,
}

impl PathPattern {
    /// Parses a pattern; `None` for one that could leave the project (absolute, `..`, `\`).
    pub fn parse(pattern: &str) -> Option<PathPattern> {
        let text = pattern.trim();
        let trimmed = text.strip_prefix("./").unwrap_or(text);
        if trimmed.starts_with('/') || trimmed.contains('\\') || trimmed.contains('\0') {
            return None;
        }
        let mut segments: Vec<String> = Vec::new();
        for part in trimmed.split('/').filter(|p| !p.is_empty() && *p != ".") {
            if part == ".." {
                return None;
            }
            segments.push(part.to_owned());
        }
        if trimmed.ends_with('/') && segments.last().is_none_or(|s| s != ANY_SEGMENTS) {
            segments.push(ANY_SEGMENTS.to_owned());
        }
        if segments.is_empty() {
            return None;
        }
        Some(PathPattern {
            text: text.to_owned(),
            segments,
        })
    }

    /// The pattern as the manifest wrote it.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn matches(&self, path: &Components) -> bool {
        segments_match(&self.segments, path)
    }

    /// Whether `dir` lies on the way to paths this pattern covers (so that listing it, filtered,
    /// and walking through it are allowed).
    pub fn passes_through(&self, dir: &Components) -> bool {
        prefix_may_match(&self.segments, dir)
    }

    /// Whether the pattern explicitly names something inside `.git/`.
    fn names_git(&self) -> bool {
        self.segments
            .first()
            .is_some_and(|s| s.eq_ignore_ascii_case(GIT_DIR))
    }

    /// What the pattern covers, in words, for the install prompt.
    pub fn describe(&self) -> String {
        let literal = |s: &String| !s.contains(['*', '?']);
        match self.segments.split_last() {
            Some((last, dir)) if last == ANY_SEGMENTS && dir.iter().all(literal) => {
                if dir.is_empty() {
                    "the whole project".to_owned()
                } else {
                    format!("{}/ and everything in it", dir.join("/"))
                }
            }
            _ if self.segments.iter().all(literal) => {
                format!("{} only", self.segments.join("/"))
            }
            _ => format!("paths matching {}", self.segments.join("/")),
        }
    }
}

/// Whether `path` is inside `.trellis/` (any case: case-insensitive file systems would open it).
pub fn is_reserved(path: &Components) -> bool {
    path.first()
        .is_some_and(|c| c.eq_ignore_ascii_case(RESERVED_DIR))
}

fn is_git(path: &Components) -> bool {
    path.first()
        .is_some_and(|c| c.eq_ignore_ascii_case(GIT_DIR))
}

/// The paths one filesystem capability covers: the union of its patterns, or the whole
/// project when it has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathScope {
    /// `None`: the whole project.
    patterns: Option<Vec<PathPattern>>,
}

impl PathScope {
    pub fn whole_project() -> PathScope {
        PathScope { patterns: None }
    }

    /// The scope of a grant's `paths` list (empty: the whole project). Patterns that could
    /// leave the project are dropped: they cover nothing.
    pub fn from_patterns<S: AsRef<str>>(patterns: &[S]) -> PathScope {
        if patterns.is_empty() {
            return PathScope::whole_project();
        }
        PathScope {
            patterns: Some(
                patterns
                    .iter()
                    .filter_map(|p| PathPattern::parse(p.as_ref()))
                    .collect(),
            ),
        }
    }

    /// Adds another grant's paths (two `filesystem.read` entries cover both).
    pub fn union(&mut self, other: &PathScope) {
        match (&mut self.patterns, &other.patterns) {
            (None, _) => {}
            (mine, None) => *mine = None,
            (Some(mine), Some(theirs)) => {
                for p in theirs {
                    if !mine.contains(p) {
                        mine.push(p.clone());
                    }
                }
            }
        }
    }

    pub fn patterns(&self) -> Option<&[PathPattern]> {
        self.patterns.as_deref()
    }

    /// Whether reading `path` (its contents, or its metadata and listing when a directory) is
    /// covered.
    pub fn covers_read(&self, path: &Components) -> bool {
        if is_reserved(path) {
            return false;
        }
        match &self.patterns {
            None => true,
            Some(patterns) => patterns.iter().any(|p| p.matches(path)),
        }
    }

    /// Whether creating, changing or removing `path` is covered.
    pub fn covers_write(&self, path: &Components) -> bool {
        if is_reserved(path) {
            return false;
        }
        match &self.patterns {
            None => !is_git(path),
            Some(patterns) => patterns
                .iter()
                .any(|p| p.matches(path) && (!is_git(path) || p.names_git())),
        }
    }

    /// Whether `dir` is a directory on the way to covered paths: walking through it is
    /// allowed, and listing it shows only the entries that are covered or on the way.
    pub fn passes_through(&self, dir: &Components) -> bool {
        if is_reserved(dir) {
            return false;
        }
        match &self.patterns {
            None => true,
            Some(patterns) => patterns.iter().any(|p| p.passes_through(dir)),
        }
    }

    /// Whether `dir` and everything beneath it is covered for reading: a `…/**` pattern covers
    /// it, or the scope is the whole project and `dir` is not the project itself (which holds
    /// `.trellis/`). Operating-system sandboxes that grant whole trees ask this.
    pub fn covers_tree_read(&self, dir: &Components) -> bool {
        self.covers_tree(dir, false)
    }

    /// [`PathScope::covers_tree_read`] for writing (`.git/` only when a pattern names it).
    pub fn covers_tree_write(&self, dir: &Components) -> bool {
        self.covers_tree(dir, true)
    }

    fn covers_tree(&self, dir: &Components, write: bool) -> bool {
        if dir.is_empty() || is_reserved(dir) {
            return false;
        }
        match &self.patterns {
            None => !(write && is_git(dir)),
            Some(patterns) => patterns.iter().any(|p| {
                p.segments.last().is_some_and(|s| s == ANY_SEGMENTS)
                    && p.matches(dir)
                    && (!write || !is_git(dir) || p.names_git())
            }),
        }
    }

    /// Whether `dir` is on the way to paths this scope may write (creating it is allowed).
    pub fn passes_through_for_write(&self, dir: &Components) -> bool {
        if is_reserved(dir) {
            return false;
        }
        match &self.patterns {
            None => !is_git(dir),
            Some(patterns) => patterns
                .iter()
                .any(|p| p.passes_through(dir) && (!is_git(dir) || p.names_git())),
        }
    }

    /// The scope in words, for the install prompt.
    pub fn describe(&self) -> String {
        match &self.patterns {
            None => "the whole project (never .trellis/; .git/ read-only)".to_owned(),
            Some(p) if p.is_empty() => "nothing".to_owned(),
            Some(p) => p
                .iter()
                .map(PathPattern::describe)
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

/// Splits a project-relative path the way scopes see it, or `None` when it climbs out of the
/// project. `..` is resolved lexically here; callers that touch the disk resolve symlinks
/// first (see [`crate::ProjectRoot::resolve`]).
pub fn split_relative(path: &str) -> Option<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                out.pop()?;
            }
            p => out.push(p.to_owned()),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Vec<String> {
        split_relative(s).unwrap()
    }

    #[test]
    fn a_literal_file_covers_that_file_only() {
        let scope = PathScope::from_patterns(&["README.md"]);
        assert!(scope.covers_read(&p("README.md")));
        assert!(!scope.covers_read(&p(".env")));
        assert!(!scope.covers_read(&p("README.md/x")));
        assert!(!scope.covers_read(&p("")));
        assert!(scope.passes_through(&p("")));
        assert!(!scope.passes_through(&p("src")));
        let write = PathScope::from_patterns(&["CHANGELOG.md"]);
        assert!(write.covers_write(&p("CHANGELOG.md")));
        assert!(!write.covers_write(&p("src/evil.txt")));
        assert!(!write.covers_write(&p(".trellis/evil.txt")));
    }

    #[test]
    fn double_star_covers_a_tree_and_not_its_neighbours() {
        let scope = PathScope::from_patterns(&["src/**"]);
        assert!(scope.covers_read(&p("src")));
        assert!(scope.covers_read(&p("src/a/b.rs")));
        assert!(!scope.covers_read(&p("srcx/a")));
        assert!(!scope.covers_read(&p("README.md")));
        let dir = PathScope::from_patterns(&["docs/"]);
        assert!(dir.covers_read(&p("docs/a.md")));
    }

    #[test]
    fn trellis_is_never_covered_in_any_case() {
        for scope in [
            PathScope::whole_project(),
            PathScope::from_patterns(&["**"]),
            PathScope::from_patterns(&[".trellis/**"]),
            PathScope::from_patterns(&[".TRELLIS/state.json"]),
        ] {
            for path in [
                ".trellis",
                ".trellis/state.json",
                ".Trellis/plugins/x/plugin.yaml",
            ] {
                assert!(!scope.covers_read(&p(path)), "{scope:?} {path}");
                assert!(!scope.covers_write(&p(path)), "{scope:?} {path}");
                assert!(!scope.passes_through(&p(path)), "{scope:?} {path}");
            }
        }
    }

    #[test]
    fn git_is_writable_only_when_named() {
        let all = PathScope::whole_project();
        assert!(all.covers_read(&p(".git/config")));
        assert!(!all.covers_write(&p(".git/config")));
        assert!(!all.covers_write(&p(".GIT/hooks/pre-commit")));
        assert!(!PathScope::from_patterns(&["**"]).covers_write(&p(".git/config")));
        let named = PathScope::from_patterns(&[".git/hooks/**"]);
        assert!(named.covers_write(&p(".git/hooks/pre-commit")));
        assert!(!named.covers_write(&p(".git/config")));
    }

    #[test]
    fn escaping_patterns_cover_nothing() {
        let scope = PathScope::from_patterns(&["../x/**", "/etc/**", "a/../../b", "a\\b"]);
        assert_eq!(scope.patterns().map(<[_]>::len), Some(0));
        assert!(!scope.covers_read(&p("x")));
        assert!(!scope.passes_through(&p("")));
        assert_eq!(split_relative("a/../../b"), None);
        assert_eq!(
            split_relative("./a//b/../c"),
            Some(vec!["a".into(), "c".into()])
        );
    }

    #[test]
    fn scopes_are_described_as_enforced() {
        let scope = PathScope::from_patterns(&["README.md", "src/**", "docs/", "**/*.md"]);
        assert_eq!(
            scope.describe(),
            "README.md only, src/ and everything in it, docs/ and everything in it, paths matching **/*.md"
        );
    }
}
