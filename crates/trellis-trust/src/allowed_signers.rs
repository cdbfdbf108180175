//! The OpenSSH allowed-signers format (`man ssh-keygen`, ALLOWED SIGNERS), read the way
//! `ssh-keygen -Y verify` reads it so that one file serves both.

use std::path::Path;

use chrono::{DateTime, Local, NaiveDate, NaiveDateTime, TimeZone, Utc};
use ssh_key::PublicKey;

use crate::TrustError;

/// One allowed-signers file: which keys may sign as which principals.
#[derive(Debug, Clone)]
pub struct AllowedSigners {
    source: String,
    entries: Vec<SignerEntry>,
}

/// One line of an allowed-signers file.
#[derive(Debug, Clone)]
pub struct SignerEntry {
    /// The principals field as written: comma-separated patterns with `*`, `?` and `!`.
    pub principals: String,
    /// The `namespaces="…"` option as written (patterns); `None` allows every namespace.
    pub namespaces: Option<String>,
    pub valid_after: Option<DateTime<Utc>>,
    pub valid_before: Option<DateTime<Utc>>,
    pub key: PublicKey,
    /// The file the entry was read from, as given to [`AllowedSigners::parse`].
    pub source: String,
    /// 1-based line number.
    pub line: usize,
}

/// Whether an entry's `valid-after`/`valid-before` window holds at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    Valid,
    NotYetValid,
    Expired,
}

impl AllowedSigners {
    /// Reads an allowed-signers file. A missing file is an empty list: most users have none.
    pub fn load(path: &Path) -> Result<AllowedSigners, TrustError> {
        let source = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => AllowedSigners::parse(&text, &source),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AllowedSigners {
                source,
                entries: Vec::new(),
            }),
            Err(source) => Err(TrustError::Read {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// Parses allowed-signers text; `source` names it in errors and in `file:line` locations.
    pub fn parse(text: &str, source: &str) -> Result<AllowedSigners, TrustError> {
        let mut entries = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line_number = index + 1;
            if let Some(entry) = parse_line(line, source, line_number)? {
                entries.push(entry);
            }
        }
        Ok(AllowedSigners {
            source: source.to_owned(),
            entries,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn entries(&self) -> &[SignerEntry] {
        &self.entries
    }

    /// The entries that let `key` sign in `namespace` at time `at`, in file order.
    pub fn signers_for<'a>(
        &'a self,
        key: &'a PublicKey,
        namespace: &'a str,
        at: DateTime<Utc>,
    ) -> impl Iterator<Item = &'a SignerEntry> + 'a {
        self.entries.iter().filter(move |e| {
            e.lists_key(key)
                && e.allows_namespace(namespace)
                && e.validity_at(at) == Validity::Valid
        })
    }
}

impl SignerEntry {
    /// `file:line`, for messages.
    pub fn location(&self) -> String {
        format!("{}:{}", self.source, self.line)
    }

    /// Whether this entry is for `key` (comments aside).
    pub fn lists_key(&self, key: &PublicKey) -> bool {
        self.key.key_data() == key.key_data()
    }

    /// Whether `principal` matches the principals patterns, as `ssh-keygen -I` matches them.
    pub fn matches_principal(&self, principal: &str) -> bool {
        match_pattern_list(principal, &self.principals)
    }

    /// The one principal this entry names, when its principals field is a single name rather
    /// than a pattern or a list: only then does the entry alone say who signed.
    pub fn single_principal(&self) -> Option<&str> {
        let p = self.principals.as_str();
        (!p.is_empty() && !p.contains(['*', '?', '!', ','])).then_some(p)
    }

    pub fn allows_namespace(&self, namespace: &str) -> bool {
        self.namespaces
            .as_deref()
            .is_none_or(|patterns| match_pattern_list(namespace, patterns))
    }

    /// Like `ssh-keygen`, the window includes both of its ends.
    pub fn validity_at(&self, at: DateTime<Utc>) -> Validity {
        if self.valid_after.is_some_and(|after| at < after) {
            Validity::NotYetValid
        } else if self.valid_before.is_some_and(|before| at > before) {
            Validity::Expired
        } else {
            Validity::Valid
        }
    }

    /// The validity window in words, e.g. `valid-before 2024-01-01 00:00:00 UTC`.
    pub fn window(&self) -> String {
        let format = |t: &DateTime<Utc>| t.format("%Y-%m-%d %H:%M:%S UTC").to_string();
        let parts: Vec<String> = [
            self.valid_after
                .as_ref()
                .map(|t| format!("valid-after {}", format(t))),
            self.valid_before
                .as_ref()
                .map(|t| format!("valid-before {}", format(t))),
        ]
        .into_iter()
        .flatten()
        .collect();
        if parts.is_empty() {
            "no validity window".to_owned()
        } else {
            parts.join(", ")
        }
    }
}

fn parse_line(
    line: &str,
    source: &str,
    line_number: usize,
) -> Result<Option<SignerEntry>, TrustError> {
    let syntax = |problem: String| TrustError::AllowedSignersSyntax {
        file: source.to_owned(),
        line: line_number,
        problem,
    };
    let rest = line.trim_start_matches([' ', '\t']);
    if rest.is_empty() || rest.starts_with('#') {
        return Ok(None);
    }
    let (principals, rest) = take_field(rest).map_err(syntax)?;
    let principals = unquote(principals);
    if principals.is_empty() {
        return Err(syntax("the principals field is empty".to_owned()));
    }
    let (second, after_second) = take_field(rest).map_err(syntax)?;
    if second.is_empty() {
        return Err(syntax(format!("`{principals}` is not followed by a key")));
    }
    let (options, key_type, rest) = if looks_like_options(second) {
        let (key_type, rest) = take_field(after_second).map_err(syntax)?;
        (Some(second), key_type, rest)
    } else {
        (None, second, after_second)
    };
    let (key_base64, _comment) = take_field(rest).map_err(syntax)?;
    if key_type.is_empty() || key_base64.is_empty() {
        return Err(syntax(
            "the key is missing: expected `keytype base64key` after the principals and options"
                .to_owned(),
        ));
    }
    let key = PublicKey::from_openssh(&format!("{key_type} {key_base64}")).map_err(|e| {
        syntax(format!(
            "`{key_type} {}` is not a valid public key ({e})",
            shorten(key_base64)
        ))
    })?;
    let mut entry = SignerEntry {
        principals,
        namespaces: None,
        valid_after: None,
        valid_before: None,
        key,
        source: source.to_owned(),
        line: line_number,
    };
    if let Some(options) = options {
        apply_options(&mut entry, options).map_err(|problem| match problem {
            OptionProblem::CertAuthority => TrustError::CertAuthorityUnsupported {
                file: source.to_owned(),
                line: line_number,
            },
            OptionProblem::Syntax(problem) => syntax(problem),
        })?;
    }
    Ok(Some(entry))
}

enum OptionProblem {
    CertAuthority,
    Syntax(String),
}

/// The options field starts with an option name; a key type never contains `=` and is never
/// one of the option names.
fn looks_like_options(field: &str) -> bool {
    let lower = field.to_ascii_lowercase();
    field.contains('=') || lower == "cert-authority" || lower.starts_with("cert-authority,")
}

fn apply_options(entry: &mut SignerEntry, field: &str) -> Result<(), OptionProblem> {
    let syntax = |s: String| OptionProblem::Syntax(s);
    for option in split_options(field) {
        let (name, value) = match option.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (option, None),
        };
        let name = name.to_ascii_lowercase();
        match (name.as_str(), value) {
            ("cert-authority", None) => return Err(OptionProblem::CertAuthority),
            ("namespaces", Some(value)) => {
                if entry.namespaces.is_some() {
                    return Err(syntax("`namespaces` is given twice".to_owned()));
                }
                entry.namespaces = Some(dequote(&name, value).map_err(syntax)?);
            }
            ("valid-after" | "valid-before", Some(value)) => {
                let text = dequote(&name, value).map_err(syntax)?;
                let time =
                    parse_time(&text).map_err(|why| syntax(format!("{name}=\"{text}\": {why}")))?;
                let slot = if name == "valid-after" {
                    &mut entry.valid_after
                } else {
                    &mut entry.valid_before
                };
                if slot.is_some() {
                    return Err(syntax(format!("`{name}` is given twice")));
                }
                *slot = Some(time);
            }
            ("namespaces" | "valid-after" | "valid-before", None) => {
                return Err(syntax(format!(
                    "`{name}` needs a quoted value, e.g. {name}=\"…\""
                )));
            }
            (_, _) => {
                return Err(syntax(format!(
                    "unknown option `{option}` (known: cert-authority, namespaces, valid-after, valid-before)"
                )));
            }
        }
    }
    if let (Some(after), Some(before)) = (entry.valid_after, entry.valid_before)
        && before <= after
    {
        return Err(syntax(
            "valid-before is not later than valid-after, so the key is never valid".to_owned(),
        ));
    }
    Ok(())
}

/// Splits `a,b="x,y",c` at the commas outside quotes.
fn split_options(field: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut in_quotes = false;
    let mut escaped = false;
    let mut start = 0;
    for (i, c) in field.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            ',' if !in_quotes => {
                parts.push(&field[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&field[start..]);
    parts
}

/// An option value must be quoted, as OpenSSH requires; `\"` stands for a quote.
fn dequote(name: &str, value: &str) -> Result<String, String> {
    let inner = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .filter(|_| value.len() >= 2)
        .ok_or_else(|| {
            format!("the value of `{name}` must be in double quotes, e.g. {name}=\"…\"")
        })?;
    Ok(inner.replace("\\\"", "\""))
}

/// The next whitespace-delimited field, where a double-quoted stretch may hold whitespace.
/// Returns the field and the rest with leading whitespace removed.
fn take_field(text: &str) -> Result<(&str, &str), String> {
    let text = text.trim_start_matches([' ', '\t']);
    let mut in_quotes = false;
    let mut escaped = false;
    let mut end = text.len();
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            ' ' | '\t' if !in_quotes => {
                end = i;
                break;
            }
            _ => {}
        }
    }
    if in_quotes {
        return Err(format!("a quote opened in `{text}` is never closed"));
    }
    Ok((&text[..end], text[end..].trim_start_matches([' ', '\t'])))
}

fn unquote(field: &str) -> String {
    field
        .strip_prefix('"')
        .and_then(|f| f.strip_suffix('"'))
        .unwrap_or(field)
        .to_owned()
}

fn shorten(text: &str) -> String {
    match text.char_indices().nth(16) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

/// `YYYYMMDD[Z]` or `YYYYMMDDHHMM[SS][Z]`; without `Z` the time is local, as in `ssh-keygen`.
fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    let (digits, utc) = match text.strip_suffix(['Z', 'z']) {
        Some(d) => (d, true),
        None => (text, false),
    };
    let expected = "write YYYYMMDD or YYYYMMDDHHMM[SS], with a trailing Z for UTC";
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("not a time; {expected}"));
    }
    let naive = match digits.len() {
        8 => NaiveDate::parse_from_str(digits, "%Y%m%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0)),
        12 => NaiveDateTime::parse_from_str(digits, "%Y%m%d%H%M").ok(),
        14 => NaiveDateTime::parse_from_str(digits, "%Y%m%d%H%M%S").ok(),
        _ => return Err(format!("{} digits; {expected}", digits.len())),
    }
    .ok_or_else(|| format!("no such date or time; {expected}"))?;
    if utc {
        Ok(naive.and_utc())
    } else {
        Local
            .from_local_datetime(&naive)
            .earliest()
            .map(|t| t.with_timezone(&Utc))
            .ok_or_else(|| {
                "this local time does not exist (a daylight-saving gap); add Z and give it in UTC"
                    .to_owned()
            })
    }
}

/// OpenSSH's `match_pattern_list`: comma-separated patterns, any match wins unless a `!`
/// pattern matches.
fn match_pattern_list(text: &str, patterns: &str) -> bool {
    let mut matched = false;
    for pattern in patterns.split(',').map(str::trim) {
        match pattern.strip_prefix('!') {
            Some(negated) if match_pattern(text, negated) => return false,
            Some(_) => {}
            None => matched |= match_pattern(text, pattern),
        }
    }
    matched
}

/// `*` matches any run of characters, `?` exactly one (OpenSSH's pattern language, which
/// `trellis-wildcard` implements for every pattern in Trellis).
fn match_pattern(text: &str, pattern: &str) -> bool {
    trellis_wildcard::matches(pattern, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_like_openssh() {
        assert!(match_pattern("alice@example.com", "*@example.com"));
        assert!(match_pattern("alice@example.com", "alic?@example.com"));
        assert!(match_pattern("a", "*"));
        assert!(match_pattern("", "*"));
        assert!(!match_pattern("alice@example.org", "*@example.com"));
        assert!(!match_pattern("alice@example.com", "alice"));
        assert!(match_pattern("abcbd", "a*bd"));
        assert!(match_pattern_list("bob@x", "alice@x,bob@*"));
        assert!(!match_pattern_list("bob@x", "*@x,!bob@x"));
        assert!(!match_pattern_list("bob@x", "!carol@x"));
    }

    #[test]
    fn times_parse_in_every_openssh_form() {
        let utc = |s: &str| parse_time(s).unwrap().to_rfc3339();
        assert_eq!(utc("20240102Z"), "2024-01-02T00:00:00+00:00");
        assert_eq!(utc("202401021304Z"), "2024-01-02T13:04:00+00:00");
        assert_eq!(utc("20240102130405Z"), "2024-01-02T13:04:05+00:00");
        assert!(parse_time("20240102").is_ok());
        assert!(parse_time("2024-01-02").is_err());
        assert!(parse_time("20241302Z").is_err());
        assert!(parse_time("2024010213Z").is_err());
    }

    #[test]
    fn fields_keep_quoted_whitespace() {
        assert_eq!(
            take_field("namespaces=\"a, b\" ssh-ed25519 AAAA").unwrap(),
            ("namespaces=\"a, b\"", "ssh-ed25519 AAAA")
        );
        assert_eq!(
            split_options("namespaces=\"a,b\",valid-after=\"20240101\""),
            vec!["namespaces=\"a,b\"", "valid-after=\"20240101\""]
        );
        assert!(take_field("\"open").is_err());
    }
}
