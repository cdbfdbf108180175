//! Problems found before they have a file position.
//!
//! Every check (schema, semantics, files on disk) reports against a JSON pointer into the
//! document; only at the end are pointers turned into lines and columns. That keeps the checks
//! independent of the source format.

use std::path::Path;

use serde_json::Value;

use crate::error::Diagnostic;
use crate::source::{Located, Pos};

/// Which position of a field a problem points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum At {
    /// The key (`descripton:`), for unknown or misplaced fields.
    Key,
    /// The value, for everything about what was written.
    Value,
    /// An exact position, for syntax errors.
    Exact(Pos),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    Source,
    Schema,
    Semantic,
}

#[derive(Debug, Clone)]
pub(crate) struct Issue {
    /// JSON pointer of the field the problem is about.
    pub pointer: String,
    pub at: At,
    /// Overrides the dotted path derived from `pointer` (a missing field has no pointer of its
    /// own, so it is reported at its parent but named by itself).
    pub field: Option<String>,
    pub message: String,
    pub expected: Option<String>,
    pub hint: Option<String>,
    pub origin: Origin,
}

impl Issue {
    pub fn new(pointer: impl Into<String>, at: At, message: impl Into<String>) -> Self {
        Issue {
            pointer: pointer.into(),
            at,
            field: None,
            message: message.into(),
            expected: None,
            hint: None,
            origin: Origin::Semantic,
        }
    }

    pub fn expected(mut self, expected: impl Into<String>) -> Self {
        self.expected = Some(expected.into());
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn maybe_hint(mut self, hint: Option<String>) -> Self {
        if hint.is_some() {
            self.hint = hint;
        }
        self
    }

    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn origin(mut self, origin: Origin) -> Self {
        self.origin = origin;
        self
    }

    pub fn into_diagnostic(self, located: Option<&Located>, file: &Path) -> Diagnostic {
        let pos = match (self.at, located) {
            (At::Exact(pos), _) => pos,
            (At::Key, Some(l)) => l.key_pos(&self.pointer),
            (At::Value, Some(l)) => l.value_pos(&self.pointer),
            (_, None) => Pos::START,
        };
        let field = self.field.unwrap_or_else(|| match located {
            Some(l) => dotted_path(&l.value, &self.pointer),
            None => dotted_path(&Value::Null, &self.pointer),
        });
        Diagnostic {
            file: file.to_path_buf(),
            line: pos.line,
            column: pos.column,
            field,
            message: self.message,
            expected: self.expected,
            hint: self.hint,
        }
    }
}

/// Escapes one JSON pointer segment (RFC 6901).
pub(crate) fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

pub(crate) fn unescape(segment: &str) -> String {
    segment.replace("~1", "/").replace("~0", "~")
}

pub(crate) fn child(pointer: &str, segment: &str) -> String {
    format!("{pointer}/{}", escape(segment))
}

pub(crate) fn index(pointer: &str, i: usize) -> String {
    format!("{pointer}/{i}")
}

/// `/provides/commands/0/name` → `provides.commands[0].name`, using the document to tell list
/// indices from keys that happen to be numbers.
pub(crate) fn dotted_path(root: &Value, pointer: &str) -> String {
    let mut out = String::new();
    let mut current = Some(root);
    for raw in pointer.split('/').skip(1) {
        let segment = unescape(raw);
        let as_index = match current {
            Some(Value::Array(_)) => segment.parse::<usize>().ok(),
            Some(_) => None,
            None => segment.parse::<usize>().ok(),
        };
        current = match (current, as_index) {
            (Some(Value::Array(items)), Some(i)) => items.get(i),
            (Some(Value::Object(map)), _) => map.get(&segment),
            _ => None,
        };
        match as_index {
            Some(i) => out.push_str(&format!("[{i}]")),
            None if is_plain_key(&segment) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(&segment);
            }
            None => out.push_str(&format!("[{}]", serde_json::Value::String(segment.clone()))),
        }
    }
    out
}

fn is_plain_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The closest candidate to `input`, if it is close enough to be a plausible typo.
pub fn did_you_mean<'a>(
    input: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let lowered = input.to_lowercase();
    let mut best: Option<(usize, &str)> = None;
    for candidate in candidates {
        let distance = strsim::damerau_levenshtein(&lowered, &candidate.to_lowercase());
        if best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, candidate));
        }
    }
    // A third of the length tolerates one slip in short words and a few in long ones, without
    // suggesting unrelated words of similar length.
    let limit = (input.chars().count() / 3).max(1);
    best.filter(|(d, c)| *d <= limit && *c != input)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dotted_paths() {
        let doc = json!({"provides": {"commands": [{"name": "x"}]}, "m": {"0": 1, "a.b": 2}});
        assert_eq!(dotted_path(&doc, ""), "");
        assert_eq!(
            dotted_path(&doc, "/provides/commands/0/name"),
            "provides.commands[0].name"
        );
        assert_eq!(dotted_path(&doc, "/m/0"), "m.0");
        assert_eq!(dotted_path(&doc, "/m/a.b"), "m[\"a.b\"]");
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            did_you_mean("descripton", ["name", "description"]),
            Some("description")
        );
        assert_eq!(
            did_you_mean("netwrok", ["network", "state"]),
            Some("network")
        );
        assert_eq!(
            did_you_mean("provide", ["provides", "requires"]),
            Some("provides")
        );
        assert_eq!(
            did_you_mean("around", ["before", "after", "replace", "wrap"]),
            None
        );
        assert_eq!(did_you_mean("Plugin", ["Plugin"]), None);
    }
}
