//! The one wildcard matcher of Trellis.
//!
//! Every pattern users write (policy lists, capability scopes for paths and subprocess
//! arguments, event subscriptions) is matched here, so that a `*` means the same thing
//! everywhere it can mean the same thing:
//!
//! - [`matches`]: a whole text against a pattern where `*` is any run of characters (possibly
//!   none) and `?` exactly one character. This is OpenSSH's pattern language for principals,
//!   which admins already write; it has no character classes or braces, so a stray `[` or `{`
//!   in a name means itself.
//! - [`segments_match`]: a sequence of segments (path components, event topic labels, a
//!   command's arguments) against a sequence of pattern segments, where a pattern segment `**`
//!   stands for any number of segments (none included) and every other pattern segment is
//!   matched against exactly one segment with [`matches`], so `*` alone is any one segment.
//!
//! Matching is linear-time backtracking for [`matches`] and a dynamic program for
//! [`segments_match`]: no pattern, however many stars it holds, takes more than
//! `O(pattern × text)` steps, because patterns come from manifests and policies that may be
//! hostile.
//!
//! What this crate must not know about: what the segments are (paths, topics, arguments), which
//! names are reserved, or capabilities. Callers split and validate; this crate only matches.

/// Whether `text` matches `pattern` as a whole: `*` matches any run of characters (possibly
/// empty), `?` exactly one character, every other character itself.
pub fn matches(pattern: &str, text: &str) -> bool {
    // Fast path for the common literal pattern.
    if !pattern.contains(['*', '?']) {
        return pattern == text;
    }
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    // Where the last `*` was, and the text position it currently stands for the end of; on a
    // mismatch the star takes one more character. Linear backtracking suffices because a later
    // star can absorb anything an earlier one would have.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some('?') => {
                p += 1;
                t += 1;
            }
            Some(c) if *c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

/// The pattern segment that stands for any number of segments.
pub const ANY_SEGMENTS: &str = "**";

/// Whether `text` (a sequence of segments) matches `pattern` (a sequence of pattern segments):
/// [`ANY_SEGMENTS`] matches zero or more segments, any other pattern segment matches exactly one
/// segment with [`matches`].
pub fn segments_match<P: AsRef<str>, T: AsRef<str>>(pattern: &[P], text: &[T]) -> bool {
    segments_match_with(pattern, text, |p, t| matches(p, t))
}

/// [`segments_match`] with the rule for one pattern segment against one segment given by the
/// caller (event topics, for instance, match literal labels exactly and only `*` as a wildcard).
pub fn segments_match_with<P: AsRef<str>, T: AsRef<str>>(
    pattern: &[P],
    text: &[T],
    segment_matches: impl Fn(&str, &str) -> bool,
) -> bool {
    // reachable[j]: the first i pattern segments can match the first j text segments.
    let mut reachable = vec![false; text.len() + 1];
    reachable[0] = true;
    for p in pattern {
        let p = p.as_ref();
        if p == ANY_SEGMENTS {
            // Any number of segments: reachable from any earlier reachable position.
            let mut seen = false;
            for r in reachable.iter_mut() {
                seen |= *r;
                *r = seen;
            }
        } else {
            for j in (1..=text.len()).rev() {
                reachable[j] = reachable[j - 1] && segment_matches(p, text[j - 1].as_ref());
            }
            reachable[0] = false;
        }
        if !reachable.iter().any(|r| *r) {
            return false;
        }
    }
    reachable[text.len()]
}

/// Whether some sequence that starts with `prefix` (and has at least one more segment) could
/// match `pattern`: the segments of a directory that lies on the way to paths a pattern names.
/// `src/*/lib.rs` has `src` and `src/a` on its way; `**/*.md` has every directory.
pub fn prefix_may_match<P: AsRef<str>, T: AsRef<str>>(pattern: &[P], prefix: &[T]) -> bool {
    let mut reachable = vec![false; prefix.len() + 1];
    reachable[0] = true;
    for p in pattern {
        let p = p.as_ref();
        // A pattern segment reached after the whole prefix could match the segments to come.
        if reachable[prefix.len()] {
            return true;
        }
        if p == ANY_SEGMENTS {
            let mut seen = false;
            for r in reachable.iter_mut() {
                seen |= *r;
                *r = seen;
            }
        } else {
            for j in (1..=prefix.len()).rev() {
                reachable[j] = reachable[j - 1] && matches(p, prefix[j - 1].as_ref());
            }
            reachable[0] = false;
        }
        if !reachable.iter().any(|r| *r) {
            return false;
        }
    }
    // The whole prefix matched the whole pattern: only a final `**` takes more segments.
    reachable[prefix.len()] && pattern.last().is_some_and(|p| p.as_ref() == ANY_SEGMENTS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_patterns_match_only_themselves() {
        assert!(matches("security-scanner", "security-scanner"));
        assert!(!matches("security-scanner", "security-scanner2"));
        assert!(!matches("security-scanner", "security"));
        assert!(matches("", ""));
        assert!(!matches("", "x"));
    }

    #[test]
    fn star_matches_any_run_including_separators() {
        assert!(matches("*", ""));
        assert!(matches("*", "anything at all/with/slashes"));
        assert!(matches("jira-*", "jira-sync"));
        assert!(!matches("jira-*", "jir-sync"));
        assert!(matches("*@vendor.example", "dev@vendor.example"));
        assert!(!matches("*@vendor.example", "dev@vendor.example.evil"));
        assert!(matches("a*b*c", "aXXbYYbZZc"));
        assert!(!matches("a*b*c", "aXXbYYbZZ"));
        assert!(matches("**a", "bba"));
        assert!(matches("é*", "éa"));
    }

    #[test]
    fn question_mark_matches_exactly_one_character() {
        assert!(matches("v?", "v1"));
        assert!(!matches("v?", "v"));
        assert!(!matches("v?", "v12"));
        assert!(matches("?é", "aé"));
    }

    fn split(s: &str) -> Vec<&str> {
        s.split('/').filter(|p| !p.is_empty()).collect()
    }

    #[test]
    fn double_star_spans_any_number_of_segments() {
        let m = |p: &str, t: &str| segments_match(&split(p), &split(t));
        assert!(m("src/**", "src"));
        assert!(m("src/**", "src/a"));
        assert!(m("src/**", "src/a/b.rs"));
        assert!(!m("src/**", "srcx/a"));
        assert!(!m("src/**", "x/src/a"));
        assert!(m("**/*.md", "README.md"));
        assert!(m("**/*.md", "docs/a/b.md"));
        assert!(!m("**/*.md", "docs/a/b.rs"));
        assert!(m("src/*.rs", "src/lib.rs"));
        assert!(!m("src/*.rs", "src/a/lib.rs"));
        assert!(m("a/**/z", "a/z"));
        assert!(m("a/**/z", "a/b/c/z"));
        assert!(!m("a/**/z", "a/b/c/y"));
        assert!(m("README.md", "README.md"));
        assert!(!m("README.md", ".env"));
        assert!(m("**", ""));
        assert!(!m("x", ""));
    }

    #[test]
    fn many_stars_stay_fast() {
        let pattern: Vec<&str> = std::iter::repeat_n("**", 200).chain(["z"]).collect();
        let text: Vec<&str> = std::iter::repeat_n("a", 2000).collect();
        assert!(!segments_match(&pattern, &text));
        let long = format!("{}b", "*a".repeat(500));
        assert!(!matches(&long, &"a".repeat(5000)));
    }

    #[test]
    fn prefixes_on_the_way_to_a_pattern() {
        let m = |p: &str, t: &str| prefix_may_match(&split(p), &split(t));
        assert!(m("src/a/lib.rs", ""));
        assert!(m("src/a/lib.rs", "src"));
        assert!(m("src/a/lib.rs", "src/a"));
        assert!(!m("src/a/lib.rs", "src/a/lib.rs"));
        assert!(!m("src/a/lib.rs", "docs"));
        assert!(m("src/*/lib.rs", "src/zz"));
        assert!(m("**/*.md", "anything/deep"));
        assert!(m("src/**", "src/a/b"));
        assert!(!m("README.md", "src"));
        assert!(m("README.md", ""));
    }
}
