//! The plugin name grammar.
//!
//! A plugin name is an optional scope followed by a name:
//!
//! ```text
//! plugin-name = [ "@" scope "/" ] name          ; at most 64 characters in total
//! scope       = alnum *( alnum / "-" alnum )    ; may start with a digit
//! name        = lower *( alnum / "-" alnum )    ; starts with a letter
//! lower       = "a" .. "z"
//! alnum       = lower / "0" .. "9"
//! ```
//!
//! So both parts use lowercase ASCII letters, digits and `-`; a `-` never starts or ends a part
//! and never doubles (`--`). Examples: `security-scanner`, `@acme/lint2`, `@42labs/docs`.
//!
//! Names are restrictive on purpose: they become directory names, lock-file keys and command
//! prefixes (`trellis <plugin>:<command>`) on every platform, so case-insensitive file systems,
//! shells and URLs must all treat them the same way.

/// The longest plugin name, scope included.
pub const MAX_NAME_LEN: usize = 64;

/// The grammar in one sentence, for messages.
pub const NAME_GRAMMAR: &str = "a plugin name is an optional `@scope/` followed by a name; both \
     use lowercase ASCII letters, digits and single `-` between them, the name starts with a letter \
     (a scope may start with a digit), and the whole is at most 64 characters, e.g. \
     `security-scanner` or `@acme/lint`";

/// The same grammar as a regular expression; the JSON Schema uses it for editors, this module
/// stays the authority (a test keeps the two in agreement).
pub const NAME_PATTERN: &str = "^(@[a-z0-9]+(-[a-z0-9]+)*/)?[a-z][a-z0-9]*(-[a-z0-9]+)*$";

/// Checks `name` against the plugin name grammar.
///
/// The error says what is wrong and restates the grammar, so it can be shown as is.
pub fn validate_plugin_name(name: &str) -> Result<(), String> {
    name_problem(name).map_or(Ok(()), |problem| {
        Err(format!(
            "invalid plugin name `{name}`: {problem}; {NAME_GRAMMAR}"
        ))
    })
}

/// What is wrong with `name`, without the grammar (diagnostics show the grammar separately).
pub(crate) fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("the name is empty".to_owned());
    }
    let length = name.chars().count();
    if length > MAX_NAME_LEN {
        return Some(format!(
            "it is {length} characters long, more than {MAX_NAME_LEN}"
        ));
    }
    let (scope, bare) = match name.strip_prefix('@') {
        Some(rest) => match rest.split_once('/') {
            Some((scope, bare)) => (Some(scope), bare),
            None => {
                return Some("a scope (`@scope`) must be followed by `/` and a name".to_owned());
            }
        },
        None => (None, name),
    };
    if let Some(scope) = scope {
        if scope.is_empty() {
            return Some("the scope after `@` is empty".to_owned());
        }
        if let Some(problem) = part_problem(scope, "scope", true) {
            return Some(problem);
        }
    } else if name.contains('/') {
        return Some("it contains `/`, which is only allowed after an `@scope`".to_owned());
    }
    if bare.is_empty() {
        return Some("the name after the scope is empty".to_owned());
    }
    part_problem(bare, "name", false)
}

/// A valid name close to `name` (lowercased, other separators turned into `-`), if there is one.
pub(crate) fn suggest_name(name: &str) -> Option<String> {
    let normalize = |part: &str| {
        let mapped: String = part
            .to_ascii_lowercase()
            .chars()
            .map(|c| {
                if c.is_ascii_lowercase() || c.is_ascii_digit() {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        mapped
            .split('-')
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("-")
    };
    let suggestion = match name.strip_prefix('@').and_then(|rest| rest.split_once('/')) {
        Some((scope, bare)) => format!("@{}/{}", normalize(scope), normalize(bare)),
        None => normalize(name),
    };
    (suggestion != name && name_problem(&suggestion).is_none()).then_some(suggestion)
}

fn part_problem(part: &str, what: &str, digit_start_ok: bool) -> Option<String> {
    if let Some(c) = part.chars().find(char::is_ascii_uppercase) {
        return Some(format!(
            "the {what} `{part}` contains the uppercase letter `{c}`"
        ));
    }
    if let Some(c) = part
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        let shown = match c {
            ' ' => "a space".to_owned(),
            '@' | '/' => format!("a second `{c}`"),
            _ => format!("`{c}`"),
        };
        return Some(format!(
            "the {what} `{part}` contains {shown}, which is not allowed"
        ));
    }
    if part.starts_with('-') || part.ends_with('-') {
        return Some(format!("the {what} `{part}` starts or ends with `-`"));
    }
    if part.contains("--") {
        return Some(format!("the {what} `{part}` contains `--`"));
    }
    if !digit_start_ok && part.starts_with(|c: char| c.is_ascii_digit()) {
        return Some(format!(
            "the {what} `{part}` starts with a digit; it must start with a letter"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_grammar() {
        for ok in [
            "a",
            "security-scanner",
            "lint2",
            "a-b-c",
            "@acme/lint",
            "@42labs/docs",
            "@a-b/c-d",
            &format!("a{}", "b".repeat(63)),
        ] {
            assert_eq!(validate_plugin_name(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn rejects_with_the_reason() {
        for (bad, reason) in [
            ("", "empty"),
            ("Security", "uppercase letter `S`"),
            ("a--b", "contains `--`"),
            ("-a", "starts or ends with `-`"),
            ("a-", "starts or ends with `-`"),
            ("1password", "starts with a digit"),
            ("@acme", "must be followed by `/`"),
            ("@/x", "scope after `@` is empty"),
            ("@acme/", "name after the scope is empty"),
            ("@Acme/x", "scope `Acme` contains the uppercase"),
            ("@ac_me/x", "contains `_`"),
            ("@acme/x/y", "a second `/`"),
            ("acme/x", "only allowed after an `@scope`"),
            ("my plugin", "a space"),
            ("my_plugin", "contains `_`"),
            ("@acme/2x", "starts with a digit"),
            ("café", "contains `é`"),
            (&"a".repeat(65), "65 characters long"),
        ] {
            let err = validate_plugin_name(bad).expect_err(bad);
            assert!(err.contains(reason), "{bad}: {err}");
            assert!(
                err.contains("lowercase ASCII letters"),
                "grammar missing: {err}"
            );
        }
    }

    #[test]
    fn suggests_a_valid_spelling() {
        assert_eq!(suggest_name("My_Plugin").as_deref(), Some("my-plugin"));
        assert_eq!(suggest_name("a--b").as_deref(), Some("a-b"));
        assert_eq!(
            suggest_name("@Acme/Lint Tool").as_deref(),
            Some("@acme/lint-tool")
        );
        assert_eq!(suggest_name("1password"), None);
        assert_eq!(suggest_name("fine"), None);
    }
}
