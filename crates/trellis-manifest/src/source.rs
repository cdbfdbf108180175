//! Reading YAML and TOML into one JSON value plus the source position of every field.
//!
//! Serde's YAML and TOML deserializers lose positions (or keep only the first error); reading the
//! documents ourselves lets every later check, whatever found the problem, point at the line.

use std::collections::{BTreeMap, HashMap};

use saphyr_parser::{Event, Parser, ScalarStyle, Span, Tag};
use serde_json::{Map, Number, Value};

use crate::Format;
use crate::issue::{At, Issue, Origin, child, index};

/// A 1-based line and column (columns count characters, not bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

impl Pos {
    pub const START: Pos = Pos { line: 1, column: 1 };
}

#[derive(Debug, Clone, Default)]
struct Node {
    key: Option<Pos>,
    value: Option<Pos>,
    /// Source text of a scalar that did not become a string (`1.0`, `true`), so that a type
    /// error can suggest quoting exactly what was written.
    raw: Option<String>,
}

/// A parsed document: its value and where each part of it was written.
#[derive(Debug, Clone)]
pub struct Located {
    pub value: Value,
    pub format: Format,
    nodes: BTreeMap<String, Node>,
}

impl Located {
    /// Where the value at `pointer` starts; falls back to the nearest ancestor with a position.
    pub fn value_pos(&self, pointer: &str) -> Pos {
        self.find(pointer, |n| n.value.or(n.key))
    }

    /// Where the key of the field at `pointer` is (the value for list items and the root).
    pub fn key_pos(&self, pointer: &str) -> Pos {
        self.find(pointer, |n| n.key.or(n.value))
    }

    /// The source text of a non-string scalar at `pointer`.
    pub fn raw(&self, pointer: &str) -> Option<&str> {
        self.nodes.get(pointer).and_then(|n| n.raw.as_deref())
    }

    fn find(&self, pointer: &str, pick: impl Fn(&Node) -> Option<Pos>) -> Pos {
        let mut p = pointer;
        loop {
            if let Some(pos) = self.nodes.get(p).and_then(&pick) {
                return pos;
            }
            match p.rfind('/') {
                Some(cut) => p = &p[..cut],
                None => return Pos::START,
            }
        }
    }
}

/// The outcome of reading a document: the value when it could be read at all, and problems
/// that are about the text itself (syntax, duplicate keys).
pub struct Parsed {
    pub located: Option<Located>,
    pub issues: Vec<Issue>,
}

pub fn parse(text: &str, format: Format) -> Parsed {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    match format {
        Format::Yaml => parse_yaml(text),
        Format::Toml => parse_toml(text),
    }
}

fn source_issue(pos: Pos, message: impl Into<String>) -> Issue {
    Issue::new("", At::Exact(pos), message).origin(Origin::Source)
}

// ---------------------------------------------------------------------------------------------
// YAML

fn marker_pos(span: &Span) -> Pos {
    Pos {
        line: span.start.line(),
        column: span.start.col() + 1,
    }
}

enum Container {
    Seq(Vec<Value>),
    Map {
        map: Map<String, Value>,
        /// The key read, waiting for its value.
        key: Option<(String, Pos)>,
        /// `<<` merge sources with the pointer they were read at.
        merges: Vec<(Value, String, Pos)>,
    },
}

struct Frame {
    container: Container,
    /// `None` inside a complex (non-scalar) key, whose parts have no address.
    pointer: Option<String>,
    key_pos: Option<Pos>,
    start: Pos,
    anchor: usize,
    is_key: bool,
}

/// Where the node that starts now will go.
struct Slot {
    pointer: Option<String>,
    key_pos: Option<Pos>,
    is_key: bool,
}

struct YamlBuilder {
    nodes: BTreeMap<String, Node>,
    anchors: HashMap<usize, (Value, Option<String>)>,
    stack: Vec<Frame>,
    root: Option<Value>,
    issues: Vec<Issue>,
    /// Nodes produced by aliases so far.
    expanded: usize,
    /// A problem that stops reading.
    fatal: Option<Issue>,
}

/// Deeper nesting than this is no manifest, and would only risk the stack later.
const MAX_DEPTH: usize = 100;
/// Nodes aliases may produce in total.
const ALIAS_BUDGET: usize = 100_000;

fn count_nodes(value: &Value) -> usize {
    1 + match value {
        Value::Array(items) => items.iter().map(count_nodes).sum(),
        Value::Object(map) => map.values().map(count_nodes).sum(),
        _ => 0,
    }
}

impl YamlBuilder {
    fn slot(&self) -> Slot {
        match self.stack.last() {
            None => Slot {
                pointer: Some(String::new()),
                key_pos: None,
                is_key: false,
            },
            Some(frame) => match &frame.container {
                Container::Seq(items) => Slot {
                    pointer: frame.pointer.as_deref().map(|p| index(p, items.len())),
                    key_pos: None,
                    is_key: false,
                },
                Container::Map {
                    key: Some((k, pos)),
                    ..
                } => Slot {
                    pointer: frame.pointer.as_deref().map(|p| child(p, k)),
                    key_pos: Some(*pos),
                    is_key: false,
                },
                Container::Map { key: None, .. } => Slot {
                    pointer: None,
                    key_pos: None,
                    is_key: true,
                },
            },
        }
    }

    fn set_key(&mut self, key: String, pos: Pos) {
        if let Some(Frame {
            container: Container::Map { key: slot, .. },
            ..
        }) = self.stack.last_mut()
        {
            *slot = Some((key, pos));
        }
    }

    fn record(&mut self, slot: &Slot, value_pos: Pos, raw: Option<String>) {
        if let Some(pointer) = &slot.pointer {
            self.nodes.insert(
                pointer.clone(),
                Node {
                    key: slot.key_pos,
                    value: Some(value_pos),
                    raw,
                },
            );
        }
    }

    /// Records where a finished node is and places it into its parent.
    fn attach(&mut self, value: Value, slot: &Slot, value_pos: Pos, raw: Option<String>) {
        self.check_duplicate(slot);
        self.record(slot, value_pos, raw);
        let Some(frame) = self.stack.last_mut() else {
            self.root = Some(value);
            return;
        };
        match &mut frame.container {
            Container::Seq(items) => items.push(value),
            Container::Map { map, key, merges } => {
                let Some((k, _)) = key.take() else { return };
                if k == "<<" {
                    merges.push((value, slot.pointer.clone().unwrap_or_default(), value_pos));
                    return;
                }
                map.insert(k, value);
            }
        }
    }

    /// Reports a key written twice, before the second occurrence's position replaces the first.
    fn check_duplicate(&mut self, slot: &Slot) {
        let Some(Frame {
            container:
                Container::Map {
                    map,
                    key: Some((k, kpos)),
                    ..
                },
            ..
        }) = self.stack.last()
        else {
            return;
        };
        if k == "<<" || !map.contains_key(k) {
            return;
        }
        let first = slot
            .pointer
            .as_ref()
            .and_then(|p| self.nodes.get(p))
            .and_then(|n| n.key);
        let message = match first {
            Some(first) => format!("duplicate key `{k}` (first at line {})", first.line),
            None => format!("duplicate key `{k}`"),
        };
        let issue = Issue::new(
            slot.pointer.clone().unwrap_or_default(),
            At::Exact(*kpos),
            message,
        )
        .origin(Origin::Source)
        .hint("a key may appear once in a mapping; remove or merge the repeats");
        self.issues.push(issue);
    }

    fn scalar(
        &mut self,
        text: &str,
        style: ScalarStyle,
        anchor: usize,
        tag: Option<&Tag>,
        pos: Pos,
    ) {
        let slot = self.slot();
        if slot.is_key {
            self.set_key(text.to_owned(), pos);
            return;
        }
        let value = self.resolve_scalar(text, style, tag, pos);
        let raw = (!value.is_string() && style == ScalarStyle::Plain).then(|| text.to_owned());
        if anchor != 0 {
            self.anchors
                .insert(anchor, (value.clone(), slot.pointer.clone()));
        }
        self.attach(value, &slot, pos, raw);
    }

    fn resolve_scalar(
        &mut self,
        text: &str,
        style: ScalarStyle,
        tag: Option<&Tag>,
        pos: Pos,
    ) -> Value {
        if style != ScalarStyle::Plain {
            return Value::String(text.to_owned());
        }
        if let Some(tag) = tag.filter(|t| t.is_yaml_core_schema())
            && tag.suffix == "str"
        {
            return Value::String(text.to_owned());
        }
        match resolve_plain(text) {
            Resolved::Value(v) => v,
            Resolved::NonFinite => {
                self.issues.push(source_issue(
                    pos,
                    format!("`{text}` is not a finite number, which a manifest cannot hold"),
                ));
                Value::String(text.to_owned())
            }
        }
    }

    fn alias(&mut self, id: usize, pos: Pos) {
        let slot = self.slot();
        let Some((value, from)) = self.anchors.get(&id).cloned() else {
            self.issues
                .push(source_issue(pos, "alias to an unknown anchor"));
            return;
        };
        // Aliases of aliases grow exponentially ("billion laughs"); a manifest never needs much.
        self.expanded += count_nodes(&value);
        if self.expanded > ALIAS_BUDGET {
            self.fatal.get_or_insert(source_issue(
                pos,
                "aliases expand to too much data for a manifest",
            ));
            return;
        }
        if slot.is_key {
            let key = value
                .as_str()
                .map_or_else(|| value.to_string(), str::to_owned);
            self.set_key(key, pos);
            return;
        }
        if let (Some(from), Some(to)) = (&from, &slot.pointer) {
            // Problems inside an aliased value are in the text of the anchored original.
            self.copy_positions(from, to);
        }
        let raw = from
            .as_deref()
            .and_then(|f| self.nodes.get(f))
            .and_then(|n| n.raw.clone());
        self.attach(value, &slot, pos, raw);
    }

    fn copy_positions(&mut self, from: &str, to: &str) {
        let prefix = format!("{from}/");
        let copies: Vec<(String, Node)> = self
            .nodes
            .range(prefix.clone()..)
            .map_while(|(p, n)| {
                p.strip_prefix(&prefix)
                    .map(|rest| (format!("{to}/{rest}"), n.clone()))
            })
            .collect();
        self.nodes.extend(copies);
    }

    fn start(&mut self, container: Container, anchor: usize, pos: Pos) {
        if self.stack.len() >= MAX_DEPTH {
            self.fatal.get_or_insert(source_issue(
                pos,
                format!("lists and mappings are nested more than {MAX_DEPTH} deep"),
            ));
            return;
        }
        let slot = self.slot();
        if slot.is_key {
            self.issues.push(source_issue(
                pos,
                "a mapping key must be a plain value, not a list or a mapping",
            ));
        }
        self.stack.push(Frame {
            container,
            pointer: slot.pointer,
            key_pos: slot.key_pos,
            start: pos,
            anchor,
            is_key: slot.is_key,
        });
    }

    fn end(&mut self) {
        let Some(frame) = self.stack.pop() else {
            return;
        };
        let value = match frame.container {
            Container::Seq(items) => Value::Array(items),
            Container::Map {
                mut map, merges, ..
            } => {
                for (source, source_pointer, pos) in merges {
                    self.merge(
                        &mut map,
                        source,
                        &source_pointer,
                        frame.pointer.as_deref(),
                        pos,
                    );
                }
                Value::Object(map)
            }
        };
        if frame.is_key {
            self.set_key(value.to_string(), frame.start);
            return;
        }
        if frame.anchor != 0 {
            self.anchors
                .insert(frame.anchor, (value.clone(), frame.pointer.clone()));
        }
        let slot = Slot {
            pointer: frame.pointer,
            key_pos: frame.key_pos,
            is_key: false,
        };
        self.attach(value, &slot, frame.start, None);
    }

    /// Applies a `<<` merge key: keys written in the mapping itself win, then earlier sources.
    fn merge(
        &mut self,
        map: &mut Map<String, Value>,
        source: Value,
        from: &str,
        to: Option<&str>,
        pos: Pos,
    ) {
        let sources: Vec<(Map<String, Value>, String)> = match source {
            Value::Object(m) => vec![(m, from.to_owned())],
            Value::Array(items) if items.iter().all(Value::is_object) => items
                .into_iter()
                .enumerate()
                .filter_map(|(i, v)| match v {
                    Value::Object(m) => Some((m, index(from, i))),
                    _ => None,
                })
                .collect(),
            _ => {
                self.issues.push(source_issue(
                    pos,
                    "`<<` merges a mapping or a list of mappings into this mapping",
                ));
                return;
            }
        };
        for (source_map, source_pointer) in sources {
            for (k, v) in source_map {
                if map.contains_key(&k) {
                    continue;
                }
                if let Some(to) = to {
                    let (src, dst) = (child(&source_pointer, &k), child(to, &k));
                    if let Some(node) = self.nodes.get(&src).cloned() {
                        self.nodes.insert(dst.clone(), node);
                    }
                    self.copy_positions(&src, &dst);
                }
                map.insert(k, v);
            }
        }
    }
}

enum Resolved {
    Value(Value),
    NonFinite,
}

/// Resolves a plain scalar by the YAML 1.2 core schema. Unlike YAML 1.1, `yes`, `on` and `1.2.0`
/// stay strings.
fn resolve_plain(text: &str) -> Resolved {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Resolved::Value(Value::Null),
        "true" | "True" | "TRUE" => return Resolved::Value(Value::Bool(true)),
        "false" | "False" | "FALSE" => return Resolved::Value(Value::Bool(false)),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" | "-.inf" | "-.Inf" | "-.INF"
        | ".nan" | ".NaN" | ".NAN" => return Resolved::NonFinite,
        _ => {}
    }
    if let Some(n) = resolve_int(text) {
        return Resolved::Value(Value::Number(n));
    }
    if is_core_float(text) {
        if let Some(n) = text.parse::<f64>().ok().and_then(Number::from_f64) {
            return Resolved::Value(Value::Number(n));
        }
        return Resolved::NonFinite;
    }
    Resolved::Value(Value::String(text.to_owned()))
}

fn resolve_int(text: &str) -> Option<Number> {
    let radix = |digits: &str, radix: u32| -> Option<Number> {
        if digits.is_empty() {
            return None;
        }
        u64::from_str_radix(digits, radix).ok().map(Number::from)
    };
    if let Some(hex) = text.strip_prefix("0x") {
        return hex
            .chars()
            .all(|c| c.is_ascii_hexdigit())
            .then(|| radix(hex, 16))
            .flatten();
    }
    if let Some(oct) = text.strip_prefix("0o") {
        return oct
            .chars()
            .all(|c| ('0'..='7').contains(&c))
            .then(|| radix(oct, 8))
            .flatten();
    }
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    if let Ok(n) = text.trim_start_matches('+').parse::<i64>() {
        return Some(Number::from(n));
    }
    if let Ok(n) = text.trim_start_matches('+').parse::<u64>() {
        return Some(Number::from(n));
    }
    // Too large for an integer: the core schema still calls it a number.
    text.parse::<f64>().ok().and_then(Number::from_f64)
}

/// `[-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )?`
fn is_core_float(text: &str) -> bool {
    let s = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let digits = |t: &str| !t.is_empty() && t.chars().all(|c| c.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        Some(("", frac)) => digits(frac),
        Some((int, frac)) => digits(int) && (frac.is_empty() || digits(frac)),
        None => digits(mantissa),
    };
    let exponent_ok = exponent.is_none_or(|e| digits(e.strip_prefix(['-', '+']).unwrap_or(e)));
    mantissa_ok && exponent_ok
}

fn parse_yaml(text: &str) -> Parsed {
    let mut builder = YamlBuilder {
        nodes: BTreeMap::new(),
        anchors: HashMap::new(),
        stack: Vec::new(),
        root: None,
        issues: Vec::new(),
        expanded: 0,
        fatal: None,
    };
    let mut documents = 0;
    for event in Parser::new_from_str(text) {
        let (event, span) = match event {
            Ok(ok) => ok,
            Err(error) => {
                let pos = Pos {
                    line: error.marker().line(),
                    column: error.marker().col() + 1,
                };
                let issue = source_issue(pos, format!("YAML syntax error: {}", error.info()))
                    .hint("check the indentation and quoting around this position");
                return Parsed {
                    located: None,
                    issues: vec![issue],
                };
            }
        };
        let pos = marker_pos(&span);
        match event {
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    builder.issues.push(
                        source_issue(
                            pos,
                            "a manifest is a single YAML document, but a second one starts here",
                        )
                        .hint("remove the `---` and everything after it, or merge the documents"),
                    );
                    break;
                }
            }
            Event::Scalar(text, style, anchor, tag) => {
                builder.scalar(&text, style, anchor, tag.as_deref(), pos);
            }
            Event::Alias(id) => builder.alias(id, pos),
            Event::SequenceStart(anchor, _) => {
                builder.start(Container::Seq(Vec::new()), anchor, pos)
            }
            Event::MappingStart(anchor, _) => builder.start(
                Container::Map {
                    map: Map::new(),
                    key: None,
                    merges: Vec::new(),
                },
                anchor,
                pos,
            ),
            Event::SequenceEnd | Event::MappingEnd => builder.end(),
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => {}
        }
        if let Some(fatal) = builder.fatal.take() {
            return Parsed {
                located: None,
                issues: vec![fatal],
            };
        }
    }
    let value = builder.root.take().unwrap_or(Value::Null);
    Parsed {
        located: Some(Located {
            value,
            format: Format::Yaml,
            nodes: builder.nodes,
        }),
        issues: builder.issues,
    }
}

// ---------------------------------------------------------------------------------------------
// TOML

struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { starts }
    }

    fn pos(&self, text: &str, offset: usize) -> Pos {
        let offset = offset.min(text.len());
        let line = self.starts.partition_point(|&s| s <= offset).max(1);
        let start = self.starts[line - 1];
        let column = text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count())
            + 1;
        Pos { line, column }
    }
}

struct TomlBuilder<'a> {
    text: &'a str,
    lines: LineIndex,
    nodes: BTreeMap<String, Node>,
    issues: Vec<Issue>,
}

impl TomlBuilder<'_> {
    fn pos(&self, span: Option<std::ops::Range<usize>>) -> Option<Pos> {
        span.map(|s| self.lines.pos(self.text, s.start))
    }

    fn table(&mut self, table: &dyn toml_edit::TableLike, pointer: &str) -> Map<String, Value> {
        let mut map = Map::new();
        for (key, item) in table.iter() {
            let key_pos = table
                .get_key_value(key)
                .and_then(|(k, _)| self.pos(k.span()));
            let child_pointer = child(pointer, key);
            if let Some(value) = self.item(item, &child_pointer, key_pos) {
                map.insert(key.to_owned(), value);
            }
        }
        map
    }

    fn item(
        &mut self,
        item: &toml_edit::Item,
        pointer: &str,
        key_pos: Option<Pos>,
    ) -> Option<Value> {
        match item {
            toml_edit::Item::None => None,
            toml_edit::Item::Value(value) => Some(self.value(value, pointer, key_pos)),
            toml_edit::Item::Table(table) => {
                let pos = self.pos(table.span());
                self.nodes.insert(
                    pointer.to_owned(),
                    Node {
                        key: key_pos,
                        value: pos,
                        raw: None,
                    },
                );
                Some(Value::Object(self.table(table, pointer)))
            }
            toml_edit::Item::ArrayOfTables(tables) => {
                let pos = self.pos(tables.span());
                self.nodes.insert(
                    pointer.to_owned(),
                    Node {
                        key: key_pos,
                        value: pos,
                        raw: None,
                    },
                );
                let mut items = Vec::new();
                for (i, table) in tables.iter().enumerate() {
                    let item_pointer = index(pointer, i);
                    let pos = self.pos(table.span());
                    self.nodes.insert(
                        item_pointer.clone(),
                        Node {
                            key: None,
                            value: pos,
                            raw: None,
                        },
                    );
                    items.push(Value::Object(self.table(table, &item_pointer)));
                }
                Some(Value::Array(items))
            }
        }
    }

    fn value(&mut self, value: &toml_edit::Value, pointer: &str, key_pos: Option<Pos>) -> Value {
        use toml_edit::Value as T;
        let span = value.span();
        let pos = self.pos(span.clone());
        let raw = || {
            span.clone()
                .and_then(|s| self.text.get(s))
                .map(|s| s.trim().to_owned())
        };
        let (json, raw) = match value {
            T::String(s) => (Value::String(s.value().clone()), None),
            T::Integer(i) => (Value::Number(Number::from(*i.value())), raw()),
            T::Float(f) => match Number::from_f64(*f.value()) {
                Some(n) => (Value::Number(n), raw()),
                None => {
                    self.issues.push(source_issue(
                        pos.unwrap_or(Pos::START),
                        "infinite and NaN numbers cannot be used in a manifest",
                    ));
                    (Value::String(f.value().to_string()), raw())
                }
            },
            T::Boolean(b) => (Value::Bool(*b.value()), raw()),
            // A manifest has no date type; dates are strings, as they are when read from YAML.
            T::Datetime(d) => (Value::String(d.value().to_string()), raw()),
            T::Array(array) => {
                let mut items = Vec::new();
                for (i, v) in array.iter().enumerate() {
                    items.push(self.value(v, &index(pointer, i), None));
                }
                (Value::Array(items), None)
            }
            T::InlineTable(table) => (Value::Object(self.table(table, pointer)), None),
        };
        self.nodes.insert(
            pointer.to_owned(),
            Node {
                key: key_pos,
                value: pos,
                raw,
            },
        );
        json
    }
}

fn parse_toml(text: &str) -> Parsed {
    let lines = LineIndex::new(text);
    let document = match toml_edit::Document::parse(text) {
        Ok(document) => document,
        Err(error) => {
            let pos = error
                .span()
                .map_or(Pos::START, |s| lines.pos(text, s.start));
            let issue = source_issue(
                pos,
                format!("TOML syntax error: {}", error.message().trim_end()),
            )
            .hint(
                "strings need double quotes, and each line is `key = value` or a `[table]` header",
            );
            return Parsed {
                located: None,
                issues: vec![issue],
            };
        }
    };
    let mut builder = TomlBuilder {
        text,
        lines,
        nodes: BTreeMap::new(),
        issues: Vec::new(),
    };
    builder.nodes.insert(
        String::new(),
        Node {
            key: None,
            value: Some(Pos::START),
            raw: None,
        },
    );
    let root = builder.table(document.as_table(), "");
    Parsed {
        located: Some(Located {
            value: Value::Object(root),
            format: Format::Toml,
            nodes: builder.nodes,
        }),
        issues: builder.issues,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn yaml(text: &str) -> Located {
        let parsed = parse(text, Format::Yaml);
        assert!(parsed.issues.is_empty(), "{:?}", parsed.issues);
        parsed.located.expect("parsed")
    }

    #[test]
    fn core_schema_scalars() {
        let l = yaml(
            "a: 1\nb: 1.0\nc: 1.2.0\nd: yes\ne: ~\nf: true\ng: '1'\nh: 0x1f\ni: -2\nj: 1e3\nk: !!str 2\nl: .5\nm: 0o17\n",
        );
        assert_eq!(
            l.value,
            json!({"a": 1, "b": 1.0, "c": "1.2.0", "d": "yes", "e": null, "f": true, "g": "1",
                   "h": 31, "i": -2, "j": 1000.0, "k": "2", "l": 0.5, "m": 15})
        );
        assert_eq!(l.raw("/b"), Some("1.0"));
        assert_eq!(l.raw("/c"), None);
    }

    #[test]
    fn yaml_positions() {
        let l = yaml("metadata:\n  name: x\n  list:\n    - a\n    - {b: 2}\n");
        assert_eq!(l.key_pos("/metadata/name"), Pos { line: 2, column: 3 });
        assert_eq!(l.value_pos("/metadata/name"), Pos { line: 2, column: 9 });
        assert_eq!(l.value_pos("/metadata/list/1"), Pos { line: 5, column: 7 });
        assert_eq!(l.key_pos("/metadata/list/1/b"), Pos { line: 5, column: 8 });
        assert_eq!(
            l.value_pos("/metadata/list/1/b/nothing"),
            Pos {
                line: 5,
                column: 11
            }
        );
    }

    #[test]
    fn anchors_aliases_and_merges() {
        let l = yaml("base: &b\n  x: 1\n  y: 2\nother: *b\nmerged:\n  <<: *b\n  y: 3\n");
        assert_eq!(l.value["other"], json!({"x": 1, "y": 2}));
        assert_eq!(l.value["merged"], json!({"x": 1, "y": 3}));
        // Inside an alias, positions are those of the anchored original.
        assert_eq!(l.value_pos("/other/x"), Pos { line: 2, column: 6 });
        assert_eq!(l.value_pos("/merged/x"), Pos { line: 2, column: 6 });
        assert_eq!(l.value_pos("/merged/y"), Pos { line: 7, column: 6 });
    }

    #[test]
    fn yaml_problems() {
        let dup = parse("a: 1\nb: 2\na: 3\n", Format::Yaml);
        assert_eq!(dup.issues.len(), 1);
        assert!(
            dup.issues[0]
                .message
                .contains("duplicate key `a` (first at line 1)")
        );
        assert_eq!(dup.issues[0].at, At::Exact(Pos { line: 3, column: 1 }));

        let syntax = parse("a: [1, 2\nb: 3\n", Format::Yaml);
        assert!(syntax.located.is_none());
        assert!(syntax.issues[0].message.starts_with("YAML syntax error"));

        let two = parse("a: 1\n---\nb: 2\n", Format::Yaml);
        assert!(two.issues[0].message.contains("single YAML document"));
    }

    #[test]
    fn hostile_yaml_is_refused_quickly() {
        let mut laughs = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 0..9u8 {
            let (prev, next) = ((b'a' + i) as char, (b'b' + i) as char);
            laughs.push_str(&format!("{next}: &{next} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
        }
        let parsed = parse(&laughs, Format::Yaml);
        assert!(parsed.located.is_none());
        assert!(parsed.issues[0].message.contains("too much data"));

        let deep = format!("{}{}", "[".repeat(150), "]".repeat(150));
        let parsed = parse(&deep, Format::Yaml);
        assert!(parsed.located.is_none());
        assert!(
            parsed.issues[0].message.contains("nested more than"),
            "{:?}",
            parsed.issues
        );
    }

    #[test]
    fn toml_positions() {
        let text = "top = 1.0\n[metadata]\nname = \"x\"\n\n[[provides.commands]]\nname = \"a\"\n[[provides.commands]]\nname = \"b\"\ninline = { k = [1, 2] }\n";
        let parsed = parse(text, Format::Toml);
        let l = parsed.located.expect("parsed");
        assert_eq!(
            l.value,
            json!({"top": 1.0, "metadata": {"name": "x"},
                   "provides": {"commands": [{"name": "a"}, {"name": "b", "inline": {"k": [1, 2]}}]}})
        );
        assert_eq!(l.raw("/top"), Some("1.0"));
        assert_eq!(l.key_pos("/metadata/name"), Pos { line: 3, column: 1 });
        assert_eq!(l.value_pos("/metadata/name"), Pos { line: 3, column: 8 });
        assert_eq!(
            l.value_pos("/provides/commands/1/name"),
            Pos { line: 8, column: 8 }
        );
        assert_eq!(
            l.value_pos("/provides/commands/1/inline/k/1"),
            Pos {
                line: 9,
                column: 20
            }
        );
        assert_eq!(
            l.value_pos("/provides/commands/1"),
            Pos { line: 7, column: 1 }
        );
    }

    #[test]
    fn toml_syntax_error_position() {
        let parsed = parse("a = 1\nb = \n", Format::Toml);
        assert!(parsed.located.is_none());
        let issue = &parsed.issues[0];
        assert!(
            issue.message.starts_with("TOML syntax error"),
            "{}",
            issue.message
        );
        assert!(
            matches!(issue.at, At::Exact(Pos { line: 2, .. })),
            "{:?}",
            issue.at
        );
    }
}
