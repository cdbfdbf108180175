//! The wildcard patterns of policy lists: `*` matches any run of characters (`/` and `@`
//! included), `?` exactly one, everything else itself.
//!
//! This is the pattern language of OpenSSH's allowed-signers principals, which admins already
//! write for signers; a glob crate would add character classes, braces and path-separator rules
//! that mean nothing for names, e-mail principals and URLs, and would turn a stray `[` or `{` in
//! a policy into a surprise.

/// Whether `text` matches `pattern` as a whole.
pub fn matches(pattern: &str, text: &str) -> bool {
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

#[cfg(test)]
mod tests {
    use super::matches;

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
        assert!(matches("jira-*", "jira-"));
        assert!(matches("jira-*", "jira-sync"));
        assert!(!matches("jira-*", "jir-sync"));
        assert!(matches("*@vendor.example", "dev@vendor.example"));
        assert!(!matches("*@vendor.example", "dev@vendor.example.evil"));
        assert!(matches(
            "https://plugins.company.com/*",
            "https://plugins.company.com/a/b"
        ));
        assert!(matches("a*b*c", "aXXbYYbZZc"));
        assert!(!matches("a*b*c", "aXXbYYbZZ"));
        assert!(matches("**a", "bba"));
    }

    #[test]
    fn question_mark_matches_exactly_one_character() {
        assert!(matches("v?", "v1"));
        assert!(!matches("v?", "v"));
        assert!(!matches("v?", "v12"));
        assert!(matches("é?", "éü"));
    }

    #[test]
    fn other_glob_syntax_is_literal() {
        assert!(matches("[ab]", "[ab]"));
        assert!(!matches("[ab]", "a"));
        assert!(matches("{x,y}", "{x,y}"));
    }
}
