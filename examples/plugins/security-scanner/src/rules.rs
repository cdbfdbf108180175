//! The secret-detection rules, matched line by line without a regex engine (it would
//! triple the component's size).
//!
//! | id | matches |
//! | --- | --- |
//! | `aws-access-key-id` | `AKIA[0-9A-Z]{16}` |
//! | `private-key` | `-----BEGIN [A-Z ]*PRIVATE KEY-----` |
//! | `github-token` | `ghp_[A-Za-z0-9]{36}` |
//! | `password-assignment` | `password`, `passwd`, `secret`, `api_key`, `apikey`, `api-key` or `token` (any case, as a name or a name's start) assigned (`=`, `:`, `:=`, `=>`) a quoted literal of at least 6 characters that is not a `${...}`/`{{...}}` placeholder |

/// One rule: a stable id (reported in findings) and words for people (used in task titles).
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// Stable identifier, e.g. `aws-access-key-id`.
    pub id: &'static str,
    /// What it found, e.g. `AWS access key id`.
    pub description: &'static str,
    matcher: fn(&str) -> bool,
}

/// All rules, in reporting order.
pub const RULES: &[Rule] = &[
    Rule {
        id: "aws-access-key-id",
        description: "AWS access key id",
        matcher: aws_access_key_id,
    },
    Rule {
        id: "private-key",
        description: "private key",
        matcher: private_key,
    },
    Rule {
        id: "github-token",
        description: "GitHub token",
        matcher: github_token,
    },
    Rule {
        id: "password-assignment",
        description: "password assignment",
        matcher: password_assignment,
    },
];

/// The rules that fire on `line`, each at most once.
pub fn scan_line(line: &str) -> impl Iterator<Item = &'static Rule> + '_ {
    RULES.iter().filter(move |rule| (rule.matcher)(line))
}

/// Whether `tail` starts with at least `n` bytes satisfying `ok`.
fn run_of(tail: &[u8], n: usize, ok: impl Fn(u8) -> bool) -> bool {
    tail.len() >= n && tail[..n].iter().all(|&b| ok(b))
}

/// Whether some occurrence of `prefix` in `line` is followed by `n` bytes satisfying `ok`.
fn prefixed_run(line: &str, prefix: &str, n: usize, ok: impl Fn(u8) -> bool) -> bool {
    line.match_indices(prefix)
        .any(|(i, _)| run_of(&line.as_bytes()[i + prefix.len()..], n, &ok))
}

fn aws_access_key_id(line: &str) -> bool {
    prefixed_run(line, "AKIA", 16, |b| {
        b.is_ascii_digit() || b.is_ascii_uppercase()
    })
}

fn github_token(line: &str) -> bool {
    prefixed_run(line, "ghp_", 36, |b| b.is_ascii_alphanumeric())
}

fn private_key(line: &str) -> bool {
    const BEGIN: &str = "-----BEGIN ";
    line.match_indices(BEGIN).any(|(i, _)| {
        let rest = &line[i + BEGIN.len()..];
        let words_len = rest
            .bytes()
            .take_while(|b| b.is_ascii_uppercase() || *b == b' ')
            .count();
        rest[..words_len].ends_with("PRIVATE KEY") && rest[words_len..].starts_with("-----")
    })
}

const SECRET_WORDS: &[&str] = &[
    "password", "passwd", "secret", "api_key", "apikey", "api-key", "token",
];
const MIN_SECRET_LEN: usize = 6;

fn password_assignment(line: &str) -> bool {
    let lower = line.to_ascii_lowercase();
    let bytes = line.as_bytes();
    SECRET_WORDS.iter().any(|word| {
        lower
            .match_indices(word)
            .any(|(i, _)| assigned_literal(bytes, i + word.len()))
    })
}

/// Whether, from `at` (just after a secret word), the line continues as a name suffix, an
/// assignment operator and a quoted literal of at least [`MIN_SECRET_LEN`] characters.
fn assigned_literal(bytes: &[u8], mut at: usize) -> bool {
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
    // A longer name is fine when the word is its own part of it: `password_hash`,
    // `secretKey`, but not `tokenizer`.
    if at < bytes.len() && ident(bytes[at]) {
        let b = bytes[at];
        if !(b == b'_' || b == b'-' || b.is_ascii_uppercase()) {
            return false;
        }
        while at < bytes.len() && ident(bytes[at]) {
            at += 1;
        }
    }
    // The closing quote of a quoted key: `"password": "..."`.
    if at < bytes.len() && matches!(bytes[at], b'"' | b'\'') {
        at += 1;
    }
    at = skip_spaces(bytes, at);
    let rest = &bytes[at..];
    let op_len = if rest.starts_with(b"==") {
        return false;
    } else if rest.starts_with(b":=") || rest.starts_with(b"=>") {
        2
    } else if rest.starts_with(b"=") || rest.starts_with(b":") {
        1
    } else {
        return false;
    };
    at = skip_spaces(bytes, at + op_len);
    let Some(&quote) = bytes.get(at) else {
        return false;
    };
    if !matches!(quote, b'"' | b'\'' | b'`') {
        return false;
    }
    let literal = &bytes[at + 1..];
    let Some(end) = literal.iter().position(|&b| b == quote) else {
        return false;
    };
    let value = &literal[..end];
    let chars = String::from_utf8_lossy(value).chars().count();
    chars >= MIN_SECRET_LEN && !contains(value, b"${") && !contains(value, b"{{")
}

fn skip_spaces(bytes: &[u8], mut at: usize) -> usize {
    while at < bytes.len() && (bytes[at] == b' ' || bytes[at] == b'\t') {
        at += 1;
    }
    at
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(line: &str) -> Vec<&'static str> {
        scan_line(line).map(|r| r.id).collect()
    }

    // Samples are assembled at run time so this file does not trip the scanner itself.
    fn aws() -> String {
        format!("AKIA{}", "IOSFODNN7EXAMPLE")
    }
    fn ghp() -> String {
        format!("ghp_{}", "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8")
    }

    #[test]
    fn aws_keys() {
        assert_eq!(ids(&format!("key = {}", aws())), ["aws-access-key-id"]);
        assert!(ids(&format!("AKIA{}", "short")).is_empty());
        assert!(ids(&format!("AKIA{}", "iosfodnn7example")).is_empty());
    }

    #[test]
    fn github_tokens() {
        assert_eq!(ids(&ghp()), ["github-token"]);
        assert!(ids("ghp_tooShort").is_empty());
    }

    #[test]
    fn private_key_headers() {
        for kind in ["", "RSA ", "OPENSSH ", "EC ", "ENCRYPTED "] {
            let line = format!("-----BEGIN {kind}PRIVATE{}", " KEY-----");
            assert_eq!(ids(&line), ["private-key"], "{line}");
        }
        assert!(ids(&format!("-----BEGIN PUBLIC{}", " KEY-----")).is_empty());
        assert!(ids(&format!("-----BEGIN CERTIFICATE{}", "-----")).is_empty());
    }

    #[test]
    fn password_assignments() {
        let q = '"';
        // `Q` stands for `'` and `B` for a backtick, so the source itself holds no secrets.
        let quoted = |s: &str| s.replace('Q', "'").replace('B', "`");
        for line in [
            format!("password = {q}hunter22{q}"),
            format!("DB_PASSWORD={q}s3cr3t!{q}"),
            format!("  {q}api_key{q}: {q}abcdef{q},"),
            quoted("client_secret: QabcdefghQ"),
            quoted("let secretKey := Bletmein1B"),
            quoted("$token => Qabc123xyzQ"),
            quoted("passwd\t=\tQqwertyQ"),
        ] {
            assert_eq!(ids(&line), ["password-assignment"], "{line}");
        }
        for line in [
            format!("password = {q}short{q}"),
            "if password == 'hunter22':".to_owned(),
            "tokenizer = 'whitespace'".to_owned(),
            "password = os.environ['DB_PASSWORD']".to_owned(),
            "password: ${DB_PASSWORD_FROM_ENV}".to_owned(),
            format!("password = {q}${{DB_PASSWORD}}{q}"),
            format!("token: {q}{{{{ secrets.TOKEN }}}}{q}"),
            "password = ".to_owned(),
            "password = 'unterminated".to_owned(),
        ] {
            assert!(ids(&line).is_empty(), "{line}");
        }
    }

    #[test]
    fn one_finding_per_rule_per_line() {
        let line = format!("{} {} password={q}hunter22{q}", aws(), aws(), q = '"');
        assert_eq!(ids(&line), ["aws-access-key-id", "password-assignment"]);
    }
}
