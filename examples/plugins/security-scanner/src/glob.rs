//! Glob patterns over project-relative `/`-separated paths, for the `exclude` setting.
//!
//! `*` matches within one path segment, `?` one character of a segment, `**` any number of
//! whole segments (`target/**`, `**/node_modules/**`). A pattern without `/` also matches
//! the last segment at any depth, as in `.gitignore` (`*.min.js`).

/// Whether `path` matches `pattern`.
pub fn matches(pattern: &str, path: &str) -> bool {
    if !pattern.contains('/') {
        let name = path.rsplit('/').next().unwrap_or(path);
        if match_bytes(pattern.as_bytes(), name.as_bytes()) {
            return true;
        }
    }
    match_bytes(pattern.as_bytes(), path.as_bytes())
}

/// Whether directory `dir` is excluded: the directory itself or everything in it matches.
pub fn dir_matches(pattern: &str, dir: &str) -> bool {
    matches(pattern, dir) || match_bytes(pattern.as_bytes(), format!("{dir}/").as_bytes())
}

fn match_bytes(p: &[u8], s: &[u8]) -> bool {
    if let Some(rest) = p.strip_prefix(b"**") {
        let after_slash = rest.strip_prefix(b"/");
        for i in 0..=s.len() {
            if match_bytes(rest, &s[i..]) {
                return true;
            }
            // `**/` may also stand for no segment at all, at a segment boundary.
            if let Some(after) = after_slash
                && (i == 0 || s[i - 1] == b'/')
                && match_bytes(after, &s[i..])
            {
                return true;
            }
        }
        return false;
    }
    match p.first() {
        None => s.is_empty(),
        Some(b'*') => {
            let rest = &p[1..];
            for i in 0..=s.len() {
                if match_bytes(rest, &s[i..]) {
                    return true;
                }
                if i < s.len() && s[i] == b'/' {
                    break;
                }
            }
            false
        }
        Some(b'?') => !s.is_empty() && s[0] != b'/' && match_bytes(&p[1..], &s[1..]),
        Some(&c) => !s.is_empty() && s[0] == c && match_bytes(&p[1..], &s[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn double_star_spans_segments() {
        assert!(matches("target/**", "target/release/x.wasm"));
        assert!(dir_matches("target/**", "target"));
        assert!(!dir_matches("target/**", "src/target"));
        assert!(dir_matches("**/node_modules/**", "node_modules"));
        assert!(dir_matches("**/node_modules/**", "web/app/node_modules"));
        assert!(matches("**/node_modules/**", "web/node_modules/a/b.js"));
        assert!(!matches("**/node_modules/**", "web/xnode_modules/a.js"));
        assert!(matches("a/**/b", "a/b"));
        assert!(matches("a/**/b", "a/x/y/b"));
        assert!(!matches("a/**/b", "a/xb"));
    }

    #[test]
    fn single_star_stays_in_a_segment() {
        assert!(matches("src/*.rs", "src/main.rs"));
        assert!(!matches("src/*.rs", "src/bin/main.rs"));
        assert!(matches("*.min.js", "static/js/app.min.js"));
        assert!(matches("?.txt", "a.txt"));
        assert!(!matches("?.txt", "ab.txt"));
        assert!(dir_matches(".git/**", ".git"));
        assert!(!dir_matches(".git/**", ".github"));
    }
}
