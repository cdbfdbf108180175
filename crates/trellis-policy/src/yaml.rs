//! A policy file as a tree of text values, lists and mappings, with the line and column of
//! every key and value, so that every check can point at the line it is about.
//!
//! The text is read by the manifest's reader (`trellis_manifest::read_yaml`): one reader
//! decides what YAML means for every file Trellis reads strictly, with the same limits on
//! nesting and aliases and the same messages for syntax errors and repeated keys. This module
//! only turns its JSON value and positions into the tree the policy checks walk: numbers and
//! booleans keep the text they were written as, and YAML's null is an empty plain value.

use std::path::Path;

use serde_json::Value;
use trellis_manifest::{Diagnostic, Located};

/// A 1-based line and column (columns count characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pos {
    pub line: usize,
    pub column: usize,
}

impl Pos {
    fn of(p: trellis_manifest::Pos) -> Pos {
        Pos {
            line: p.line,
            column: p.column,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Node {
    Scalar {
        text: String,
        /// Written without quotes or a `!!str` tag, so `~`, `null` and empty mean "nothing".
        plain: bool,
        pos: Pos,
    },
    Seq {
        items: Vec<Node>,
        pos: Pos,
    },
    Map {
        entries: Vec<Entry>,
        pos: Pos,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub key: String,
    pub key_pos: Pos,
    pub value: Node,
}

impl Node {
    pub fn pos(&self) -> Pos {
        match self {
            Node::Scalar { pos, .. } | Node::Seq { pos, .. } | Node::Map { pos, .. } => *pos,
        }
    }

    /// Whether the node is YAML's null: an empty value, `~` or `null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Node::Scalar { text, plain: true, .. }
            if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// What kind of value this is, for messages about the wrong kind.
    pub fn kind(&self) -> &'static str {
        match self {
            _ if self.is_null() => "nothing",
            Node::Scalar { .. } => "a single value",
            Node::Seq { .. } => "a list",
            Node::Map { .. } => "a mapping",
        }
    }
}

/// Reads one YAML document. `None` when the text holds no document at all.
pub(crate) fn parse(text: &str, file: &Path) -> Result<Option<Node>, Vec<Diagnostic>> {
    let located = trellis_manifest::read_yaml(text, file)?;
    Ok(match &located.value {
        Value::Null => None,
        value => Some(node(&located, value, "")),
    })
}

/// One segment of a JSON pointer (RFC 6901).
fn child(pointer: &str, segment: &str) -> String {
    format!(
        "{pointer}/{}",
        segment.replace('~', "~0").replace('/', "~1")
    )
}

fn node(located: &Located, value: &Value, pointer: &str) -> Node {
    let pos = Pos::of(located.value_pos(pointer));
    match value {
        Value::Object(map) => Node::Map {
            entries: map
                .iter()
                .map(|(key, v)| {
                    let at = child(pointer, key);
                    Entry {
                        key: key.clone(),
                        key_pos: Pos::of(located.key_pos(&at)),
                        value: node(located, v, &at),
                    }
                })
                .collect(),
            pos,
        },
        Value::Array(items) => Node::Seq {
            items: items
                .iter()
                .enumerate()
                .map(|(i, v)| node(located, v, &child(pointer, &i.to_string())))
                .collect(),
            pos,
        },
        Value::String(text) => Node::Scalar {
            text: text.clone(),
            plain: false,
            pos,
        },
        Value::Null => Node::Scalar {
            text: String::new(),
            plain: true,
            pos,
        },
        other => Node::Scalar {
            text: located
                .raw(pointer)
                .map_or_else(|| other.to_string(), str::to_owned),
            plain: true,
            pos,
        },
    }
}
