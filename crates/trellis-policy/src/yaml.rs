//! A YAML document as a tree of strings, lists and mappings, with the line and column of every
//! key and value.
//!
//! Serde's YAML deserializers report at most the first problem and lose positions for checks made
//! after deserializing (an unknown capability, a malformed key line), so the policy is read from
//! the parser's events instead and every later check can point at the line it is about.

use std::borrow::Cow;
use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError, Span, Tag};

/// A 1-based line and column (columns count characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pos {
    pub line: usize,
    pub column: usize,
}

impl Pos {
    pub const START: Pos = Pos { line: 1, column: 1 };

    fn of(span: &Span) -> Pos {
        Pos {
            line: span.start.line(),
            column: span.start.col() + 1,
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

/// A problem with the text itself, which stops reading.
#[derive(Debug, Clone)]
pub(crate) struct SyntaxError {
    pub pos: Pos,
    pub message: String,
    pub hint: Option<String>,
}

impl SyntaxError {
    fn new(pos: Pos, message: impl Into<String>) -> Self {
        SyntaxError {
            pos,
            message: message.into(),
            hint: None,
        }
    }

    fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl From<ScanError> for SyntaxError {
    fn from(e: ScanError) -> Self {
        SyntaxError::new(
            Pos {
                line: e.marker().line(),
                column: e.marker().col() + 1,
            },
            format!("invalid YAML: {}", e.info()),
        )
    }
}

/// Deeper nesting than this is no policy, and would only risk the stack.
const MAX_DEPTH: usize = 32;
/// Nodes that aliases may produce in total, against "billion laughs" documents.
const ALIAS_BUDGET: usize = 10_000;

/// Reads one YAML document. `None` when the text holds no document at all.
pub(crate) fn parse(text: &str) -> Result<Option<Node>, SyntaxError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = Reader {
        events: Parser::new_from_str(text),
        anchors: HashMap::new(),
        expanded: 0,
    };
    let mut root = None;
    loop {
        let (event, span) = reader.next()?;
        match event {
            Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
            Event::StreamEnd => return Ok(root),
            Event::DocumentStart(_) if root.is_some() => {
                return Err(SyntaxError::new(
                    Pos::of(&span),
                    "a policy file holds one YAML document, this is a second one",
                )
                .hint("remove the `---` line and everything after it, or merge the documents"));
            }
            Event::DocumentStart(_) => {
                let (event, span) = reader.next()?;
                root = Some(reader.node(event, span, 0)?);
            }
            _ => {
                return Err(SyntaxError::new(
                    Pos::of(&span),
                    "unexpected YAML content outside a document",
                ));
            }
        }
    }
}

struct Reader<'a, I: Iterator<Item = Result<(Event<'a>, Span), ScanError>>> {
    events: I,
    anchors: HashMap<usize, Node>,
    expanded: usize,
}

impl<'a, I: Iterator<Item = Result<(Event<'a>, Span), ScanError>>> Reader<'a, I> {
    fn next(&mut self) -> Result<(Event<'a>, Span), SyntaxError> {
        match self.events.next() {
            Some(Ok(next)) => Ok(next),
            Some(Err(e)) => Err(e.into()),
            // The parser always ends with StreamEnd; running out earlier means it stopped on an
            // error it already reported.
            None => Err(SyntaxError::new(
                Pos::START,
                "the YAML text ends unexpectedly",
            )),
        }
    }

    fn node(&mut self, event: Event<'a>, span: Span, depth: usize) -> Result<Node, SyntaxError> {
        let pos = Pos::of(&span);
        if depth > MAX_DEPTH {
            return Err(SyntaxError::new(
                pos,
                format!("lists and mappings are nested more than {MAX_DEPTH} deep"),
            ));
        }
        let (node, anchor) = match event {
            Event::Scalar(text, style, anchor, tag) => {
                (scalar(text, style, tag.as_deref(), pos), anchor)
            }
            Event::SequenceStart(anchor, _) => {
                let mut items = Vec::new();
                loop {
                    let (event, span) = self.next()?;
                    if matches!(event, Event::SequenceEnd) {
                        break;
                    }
                    items.push(self.node(event, span, depth + 1)?);
                }
                (Node::Seq { items, pos }, anchor)
            }
            Event::MappingStart(anchor, _) => (self.mapping(pos, depth)?, anchor),
            Event::Alias(id) => return self.alias(id, pos),
            _ => return Err(SyntaxError::new(pos, "unexpected YAML content")),
        };
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        Ok(node)
    }

    fn mapping(&mut self, pos: Pos, depth: usize) -> Result<Node, SyntaxError> {
        let mut entries: Vec<Entry> = Vec::new();
        loop {
            let (event, span) = self.next()?;
            if matches!(event, Event::MappingEnd) {
                break;
            }
            let key_pos = Pos::of(&span);
            let Node::Scalar { text: key, .. } = self.node(event, span, depth + 1)? else {
                return Err(SyntaxError::new(
                    key_pos,
                    "a mapping key must be a plain name, not a list or a mapping",
                ));
            };
            if let Some(first) = entries.iter().find(|e| e.key == key) {
                return Err(SyntaxError::new(
                    key_pos,
                    format!(
                        "duplicate key `{key}` (first at line {})",
                        first.key_pos.line
                    ),
                )
                .hint("a key may appear once in a mapping; remove or merge the repeats"));
            }
            let (event, span) = self.next()?;
            let value = self.node(event, span, depth + 1)?;
            entries.push(Entry {
                key,
                key_pos,
                value,
            });
        }
        Ok(Node::Map { entries, pos })
    }

    fn alias(&mut self, id: usize, pos: Pos) -> Result<Node, SyntaxError> {
        let Some(node) = self.anchors.get(&id) else {
            return Err(SyntaxError::new(pos, "alias to an unknown anchor"));
        };
        self.expanded += count_nodes(node);
        if self.expanded > ALIAS_BUDGET {
            return Err(SyntaxError::new(
                pos,
                "aliases expand to too much data for a policy file",
            ));
        }
        Ok(node.clone())
    }
}

fn scalar(text: Cow<'_, str>, style: ScalarStyle, tag: Option<&Tag>, pos: Pos) -> Node {
    let tagged_str = tag.is_some_and(|t| t.is_yaml_core_schema() && t.suffix == "str");
    Node::Scalar {
        text: text.into_owned(),
        plain: style == ScalarStyle::Plain && !tagged_str,
        pos,
    }
}

fn count_nodes(node: &Node) -> usize {
    1 + match node {
        Node::Scalar { .. } => 0,
        Node::Seq { items, .. } => items.iter().map(count_nodes).sum(),
        Node::Map { entries, .. } => entries.iter().map(|e| count_nodes(&e.value)).sum(),
    }
}
