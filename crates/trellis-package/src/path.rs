//! Entry paths: the one place that decides which names are safe inside a package.

use std::path::Path;

use crate::{ExtractLimits, PackageError};

/// Why a name cannot be a package path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PathProblem {
    NonUtf8,
    Absolute,
    Backslash,
    DrivePrefix,
    Parent,
    Empty,
}

impl PathProblem {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            PathProblem::NonUtf8 => "is not valid UTF-8",
            PathProblem::Absolute => "is absolute",
            PathProblem::Backslash => "contains a backslash",
            PathProblem::DrivePrefix => "starts with a Windows drive prefix",
            PathProblem::Parent => "has a `..` component",
            PathProblem::Empty => "is empty",
        }
    }

    fn into_error(self, archive: &Path, entry: String) -> PackageError {
        let archive = archive.to_path_buf();
        match self {
            PathProblem::NonUtf8 => PackageError::NonUtf8Path { archive, entry },
            PathProblem::Absolute => PackageError::AbsolutePath { archive, entry },
            PathProblem::Backslash => PackageError::Backslash { archive, entry },
            PathProblem::DrivePrefix => PackageError::DrivePrefix { archive, entry },
            PathProblem::Parent => PackageError::ParentComponent { archive, entry },
            PathProblem::Empty => PackageError::EmptyPath { archive, entry },
        }
    }
}

/// The components of a safe relative path, `.` and empty components dropped, so that `a//b`,
/// `./a/b` and `a/b` are one path. `..` is refused even where it would stay inside
/// (`a/../b`): no legitimate package needs it, and refusing it whole leaves nothing to get
/// wrong.
pub(crate) fn components(raw: &[u8]) -> Result<Vec<&str>, PathProblem> {
    let text = std::str::from_utf8(raw).map_err(|_| PathProblem::NonUtf8)?;
    if text.starts_with('/') {
        return Err(PathProblem::Absolute);
    }
    if text.contains('\\') {
        return Err(PathProblem::Backslash);
    }
    let bytes = text.as_bytes();
    if bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':' {
        return Err(PathProblem::DrivePrefix);
    }
    let parts: Vec<&str> = text
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    if parts.contains(&"..") {
        return Err(PathProblem::Parent);
    }
    if parts.is_empty() {
        return Err(PathProblem::Empty);
    }
    Ok(parts)
}

/// Checks an entry's stored path against the safety rules and the path limits, and returns its
/// normal form (components joined by `/`).
pub(crate) fn check_entry_path(
    archive: &Path,
    raw: &[u8],
    limits: &ExtractLimits,
) -> Result<String, PackageError> {
    if raw.len() > limits.max_path_bytes {
        return Err(PackageError::PathTooLong {
            archive: archive.to_path_buf(),
            entry: shown(raw),
            length: raw.len(),
            limit: limits.max_path_bytes,
        });
    }
    let parts = components(raw).map_err(|problem| problem.into_error(archive, shown(raw)))?;
    if parts.len() > limits.max_depth {
        return Err(PackageError::PathTooDeep {
            archive: archive.to_path_buf(),
            entry: shown(raw),
            depth: parts.len(),
            limit: limits.max_depth,
        });
    }
    Ok(parts.join("/"))
}

/// An entry name as errors show it: lossy UTF-8, cut short so that a hostile kilobyte-long
/// name does not flood the terminal.
pub(crate) fn shown(raw: &[u8]) -> String {
    const SHOWN_CHARS: usize = 200;
    let text = String::from_utf8_lossy(raw);
    if text.chars().count() <= SHOWN_CHARS {
        return text.into_owned();
    }
    let mut cut: String = text.chars().take(SHOWN_CHARS).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_one_path_normalize_alike() {
        for raw in ["a/b", "a//b", "./a/b", "a/./b/", "././a//./b"] {
            assert_eq!(components(raw.as_bytes()).unwrap(), ["a", "b"], "{raw}");
        }
    }

    #[test]
    fn unsafe_names_are_refused_with_their_reason() {
        let cases: &[(&[u8], PathProblem)] = &[
            (b"/etc/passwd", PathProblem::Absolute),
            (b"../x", PathProblem::Parent),
            (b"a/../../b", PathProblem::Parent),
            (b"a/..", PathProblem::Parent),
            (b"a\\b", PathProblem::Backslash),
            (b"..\\x", PathProblem::Backslash),
            (b"C:/x", PathProblem::DrivePrefix),
            (b"c:x", PathProblem::DrivePrefix),
            (b"./", PathProblem::Empty),
            (b"", PathProblem::Empty),
            (b"a/\xff", PathProblem::NonUtf8),
        ];
        for (raw, problem) in cases {
            assert_eq!(components(raw), Err(*problem), "{raw:?}");
        }
    }

    #[test]
    fn names_that_merely_look_odd_are_allowed() {
        for raw in ["a..b", "..a", "a/b:c", "1:x", ".hidden"] {
            assert!(components(raw.as_bytes()).is_ok(), "{raw}");
        }
    }

    #[test]
    fn long_names_are_cut_for_display() {
        let long = "x".repeat(500);
        let cut = shown(long.as_bytes());
        assert_eq!(cut.chars().count(), 201);
        assert!(cut.ends_with('…'));
    }
}
