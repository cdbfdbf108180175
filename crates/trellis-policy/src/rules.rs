//! One policy file: reading it, checking every field, and the rules it holds.

use std::path::{Path, PathBuf};
use std::time::Duration;

use trellis_manifest::{Diagnostic, KNOWN_CAPABILITIES, did_you_mean};
use trellis_trust::TrustLevel;

use crate::PolicyScope;
use crate::error::PolicyError;
use crate::yaml::{self, Entry, Node, Pos};

/// The top-level key every policy file's rules live under.
pub const ROOT_KEY: &str = "plugin_policy";

const SECTIONS: &[&str] = &[
    "trust",
    "capabilities",
    "registries",
    "plugins",
    "limits",
    "sandbox",
];
const SANDBOX_VALUES: &[&str] = &["required", "best-effort"];
const TRUST_KEYS: &[&str] = &["minimum_level", "allowed_signers", "certifiers"];
const CAPABILITY_KEYS: &[&str] = &["blocked", "require_approval"];
const ALLOW_BLOCK_KEYS: &[&str] = &["allowed", "blocked"];
const LIMIT_KEYS: &[&str] = &["memory", "timeout"];

/// A policy file that was read and found valid.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyFile {
    pub path: PathBuf,
    pub scope: PolicyScope,
    pub rules: PolicyRules,
}

/// What one file asks for. Every part is optional; an empty list or `None` restricts nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicyRules {
    pub trust: TrustRules,
    pub capabilities: CapabilityRules,
    pub registries: AllowBlockRules,
    pub plugins: AllowBlockRules,
    pub limits: LimitRules,
    /// `sandbox: required`: process plugins (and every plugin's `subprocess` commands) run only
    /// where every sandbox layer holds.
    pub sandbox_required: bool,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrustRules {
    pub minimum_level: Option<TrustLevel>,
    /// Principal patterns (`*@vendor.example`) a plugin's verified signer must match.
    pub allowed_signers: Vec<String>,
    /// OpenSSH public key lines whose countersignature makes a package certified.
    pub certifiers: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct CapabilityRules {
    /// Capabilities a plugin may not request at all.
    pub blocked: Vec<String>,
    /// Capabilities that only an explicit grant by the user may give, never a blanket `--yes`.
    pub require_approval: Vec<String>,
}

/// Name or URL patterns: a match in `allowed` wins over a match in `blocked`; a non-empty
/// `allowed` refuses everything it does not match.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AllowBlockRules {
    pub allowed: Vec<String>,
    pub blocked: Vec<String>,
}

/// Caps on what a plugin's manifest may ask for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LimitRules {
    /// Bytes.
    pub memory: Option<u64>,
    pub timeout: Option<Duration>,
}

impl PolicyFile {
    /// Reads and checks the policy file at `path`, reporting every problem in it at once.
    pub fn load(path: &Path, scope: PolicyScope) -> Result<PolicyFile, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Io {
            path: path.to_path_buf(),
            scope,
            source,
        })?;
        PolicyFile::parse(&text, path, scope)
    }

    /// Checks policy text; `path` is where it came from, for messages and violations.
    pub fn parse(text: &str, path: &Path, scope: PolicyScope) -> Result<PolicyFile, PolicyError> {
        let invalid = |diagnostics| PolicyError::Invalid {
            path: path.to_path_buf(),
            scope,
            diagnostics,
        };
        let root = yaml::parse(text, path).map_err(invalid)?;
        let mut checker = Checker {
            file: path,
            diagnostics: Vec::new(),
        };
        let rules = match &root {
            Some(node) => checker.document(node),
            None => PolicyRules::default(),
        };
        if !checker.diagnostics.is_empty() {
            let mut diagnostics = checker.diagnostics;
            diagnostics.sort_by_key(|d| (d.line, d.column));
            return Err(invalid(diagnostics));
        }
        Ok(PolicyFile {
            path: path.to_path_buf(),
            scope,
            rules,
        })
    }
}

struct Checker<'a> {
    file: &'a Path,
    diagnostics: Vec<Diagnostic>,
}

struct Problem {
    pos: Pos,
    field: String,
    message: String,
    expected: Option<String>,
    hint: Option<String>,
}

impl Problem {
    fn new(pos: Pos, field: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            pos,
            field: field.into(),
            message: message.into(),
            expected: None,
            hint: None,
        }
    }

    fn expected(mut self, expected: impl Into<String>) -> Self {
        self.expected = Some(expected.into());
        self
    }

    fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

fn child(field: &str, key: &str) -> String {
    if field.is_empty() {
        key.to_owned()
    } else {
        format!("{field}.{key}")
    }
}

fn backticked(items: &[&str]) -> String {
    items
        .iter()
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Checker<'_> {
    fn report(&mut self, problem: Problem) {
        self.diagnostics.push(Diagnostic {
            file: self.file.to_path_buf(),
            line: problem.pos.line,
            column: problem.pos.column,
            field: problem.field,
            message: problem.message,
            expected: problem.expected,
            hint: problem.hint,
        });
    }

    fn document(&mut self, root: &Node) -> PolicyRules {
        let mut rules = PolicyRules::default();
        for entry in self.mapping(root, "", &[ROOT_KEY]) {
            for section in self.mapping(&entry.value, ROOT_KEY, SECTIONS) {
                let field = child(ROOT_KEY, &section.key);
                match section.key.as_str() {
                    "trust" => rules.trust = self.trust(&section.value, &field),
                    "capabilities" => {
                        rules.capabilities = self.capabilities(&section.value, &field);
                    }
                    "registries" => rules.registries = self.allow_block(&section.value, &field),
                    "plugins" => rules.plugins = self.allow_block(&section.value, &field),
                    "sandbox" => rules.sandbox_required = self.sandbox(&section.value, &field),
                    _ => rules.limits = self.limits(&section.value, &field),
                }
            }
        }
        rules
    }

    /// The entries of a mapping whose keys are among `known`; reports the others. Nothing (an
    /// empty value) is an empty mapping, so a section can be written and left empty.
    fn mapping<'n>(&mut self, node: &'n Node, field: &str, known: &[&str]) -> Vec<&'n Entry> {
        let entries = match node {
            _ if node.is_null() => return Vec::new(),
            Node::Map { entries, .. } => entries,
            other => {
                let expected = if field.is_empty() {
                    format!("a mapping with the key `{ROOT_KEY}`")
                } else {
                    format!("a mapping with the keys {}", backticked(known))
                };
                self.report(
                    Problem::new(other.pos(), field, format!("found {}", other.kind()))
                        .expected(expected),
                );
                return Vec::new();
            }
        };
        let mut found = Vec::new();
        for entry in entries {
            if known.contains(&entry.key.as_str()) {
                found.push(entry);
                continue;
            }
            let hint = if field.is_empty() && SECTIONS.contains(&entry.key.as_str()) {
                format!(
                    "policy sections go under `{ROOT_KEY}:`; indent `{}:` below it",
                    entry.key
                )
            } else {
                match did_you_mean(&entry.key, known.iter().copied()) {
                    Some(suggestion) => format!("did you mean `{suggestion}`?"),
                    None => format!("remove it; the keys allowed here are {}", backticked(known)),
                }
            };
            self.report(
                Problem::new(
                    entry.key_pos,
                    child(field, &entry.key),
                    format!("unknown key `{}`", entry.key),
                )
                .expected(format!("one of {}", backticked(known)))
                .hint(hint),
            );
        }
        found
    }

    /// A single text value; `None` (after reporting) for anything else, and silently for
    /// nothing, since an empty optional field asks for nothing.
    fn text(&mut self, node: &Node, field: &str, expected: &str) -> Option<(String, Pos)> {
        match node {
            _ if node.is_null() => None,
            Node::Scalar { text, pos, .. } => Some((text.clone(), *pos)),
            other => {
                self.report(
                    Problem::new(other.pos(), field, format!("found {}", other.kind()))
                        .expected(expected.to_owned()),
                );
                None
            }
        }
    }

    /// A list of text values, each with its position and field path.
    fn list(&mut self, node: &Node, field: &str, example: &str) -> Vec<(String, Pos, String)> {
        let items = match node {
            _ if node.is_null() => return Vec::new(),
            Node::Seq { items, .. } => items,
            other => {
                let hint = match other {
                    Node::Scalar { text, .. } => {
                        format!("write a list even for one entry: `[{text}]`")
                    }
                    _ => format!("write a list, like `{example}`"),
                };
                self.report(
                    Problem::new(other.pos(), field, format!("found {}", other.kind()))
                        .expected("a list")
                        .hint(hint),
                );
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let item_field = format!("{field}[{i}]");
            match item {
                Node::Scalar { text, pos, .. } if !item.is_null() && !text.trim().is_empty() => {
                    out.push((text.trim().to_owned(), *pos, item_field));
                }
                _ => self.report(
                    Problem::new(item.pos(), item_field, format!("found {}", item.kind()))
                        .expected("a non-empty text entry")
                        .hint("remove the entry, or write `*` where you mean everything"),
                ),
            }
        }
        out
    }

    fn trust(&mut self, node: &Node, field: &str) -> TrustRules {
        let mut rules = TrustRules::default();
        for entry in self.mapping(node, field, TRUST_KEYS) {
            let field = child(field, &entry.key);
            match entry.key.as_str() {
                "minimum_level" => rules.minimum_level = self.trust_level(&entry.value, &field),
                "allowed_signers" => {
                    rules.allowed_signers = self
                        .list(&entry.value, &field, "[security-team@company.com]")
                        .into_iter()
                        .map(|(pattern, _, _)| pattern)
                        .collect();
                }
                _ => rules.certifiers = self.certifiers(&entry.value, &field),
            }
        }
        rules
    }

    fn trust_level(&mut self, node: &Node, field: &str) -> Option<TrustLevel> {
        let names: Vec<&str> = TrustLevel::ALL.iter().map(|l| l.as_str()).collect();
        let expected = format!("one of {}", backticked(&names));
        let (text, pos) = self.text(node, field, &expected)?;
        if let Some(level) = TrustLevel::parse(&text) {
            return Some(level);
        }
        let hint = match did_you_mean(&text, names.iter().copied()) {
            Some(suggestion) => format!("did you mean `{suggestion}`?"),
            None => "levels from least to most trusted: unsigned, self-signed, verified, certified"
                .to_owned(),
        };
        self.report(
            Problem::new(pos, field, format!("`{text}` is not a trust level"))
                .expected(expected)
                .hint(hint),
        );
        None
    }

    fn certifiers(&mut self, node: &Node, field: &str) -> Vec<String> {
        let mut keys = Vec::new();
        for (line, pos, item_field) in self.list(node, field, "[\"ssh-ed25519 AAAA… name\"]") {
            match ssh_key::PublicKey::from_openssh(&line) {
                Ok(_) => keys.push(line),
                Err(e) => self.report(
                    Problem::new(pos, item_field, format!("not an OpenSSH public key ({e})"))
                        .expected(
                            "a public key line like `ssh-ed25519 AAAAC3Nza… certifier@company.com`",
                        )
                        .hint("paste the whole line of the certifier's `.pub` file, in quotes"),
                ),
            }
        }
        keys
    }

    fn capabilities(&mut self, node: &Node, field: &str) -> CapabilityRules {
        let mut rules = CapabilityRules::default();
        for entry in self.mapping(node, field, CAPABILITY_KEYS) {
            let field = child(field, &entry.key);
            let mut names = Vec::new();
            for (name, pos, item_field) in self.list(&entry.value, &field, "[subprocess]") {
                if KNOWN_CAPABILITIES.contains(&name.as_str()) {
                    names.push(name);
                    continue;
                }
                let hint = match did_you_mean(&name, KNOWN_CAPABILITIES.iter().copied()) {
                    Some(suggestion) => format!("did you mean `{suggestion}`?"),
                    None => "a misspelt capability would block or guard nothing, so it is refused"
                        .to_owned(),
                };
                self.report(
                    Problem::new(pos, item_field, format!("unknown capability `{name}`"))
                        .expected(format!("one of {}", backticked(KNOWN_CAPABILITIES)))
                        .hint(hint),
                );
            }
            match entry.key.as_str() {
                "blocked" => rules.blocked = names,
                _ => rules.require_approval = names,
            }
        }
        rules
    }

    fn allow_block(&mut self, node: &Node, field: &str) -> AllowBlockRules {
        let mut rules = AllowBlockRules::default();
        for entry in self.mapping(node, field, ALLOW_BLOCK_KEYS) {
            let field = child(field, &entry.key);
            let patterns = self
                .list(&entry.value, &field, "[\"name-*\"]")
                .into_iter()
                .map(|(pattern, _, _)| pattern)
                .collect();
            match entry.key.as_str() {
                "allowed" => rules.allowed = patterns,
                _ => rules.blocked = patterns,
            }
        }
        rules
    }

    fn sandbox(&mut self, node: &Node, field: &str) -> bool {
        let expected = backticked(SANDBOX_VALUES);
        let Some((value, pos)) = self.text(node, field, &expected) else {
            return false;
        };
        if !SANDBOX_VALUES.contains(&value.as_str()) {
            let mut problem = Problem::new(pos, field, format!("unknown value `{value}`"))
                .expected(format!("one of {expected}"));
            if let Some(near) = did_you_mean(&value, SANDBOX_VALUES.iter().copied()) {
                problem = problem.hint(format!("did you mean `{near}`?"));
            }
            self.report(problem);
            return false;
        }
        value == "required"
    }

    fn limits(&mut self, node: &Node, field: &str) -> LimitRules {
        let mut rules = LimitRules::default();
        for entry in self.mapping(node, field, LIMIT_KEYS) {
            let field = child(field, &entry.key);
            match entry.key.as_str() {
                "memory" => rules.memory = self.memory(&entry.value, &field),
                _ => rules.timeout = self.timeout(&entry.value, &field),
            }
        }
        rules
    }

    fn memory(&mut self, node: &Node, field: &str) -> Option<u64> {
        let expected = "a size like `256MiB` (bytes when a bare number)";
        let (text, pos) = self.text(node, field, expected)?;
        match trellis_manifest::parse_byte_size(&text) {
            Ok(0) => self.report(
                Problem::new(pos, field, "a memory cap of zero would refuse every plugin")
                    .expected(expected)
                    .hint("remove the cap, or give the most memory a plugin may use"),
            ),
            Ok(bytes) => return Some(bytes),
            Err(message) => self.report(Problem::new(pos, field, message).expected(expected)),
        }
        None
    }

    fn timeout(&mut self, node: &Node, field: &str) -> Option<Duration> {
        let expected = "a duration like `30s`, `500ms` or `2m` (milliseconds when a bare number)";
        let (text, pos) = self.text(node, field, expected)?;
        // A bare number means milliseconds, as in a manifest's `limits.timeout`, so the two
        // files read the same; quoted digits stay text and must carry a unit.
        let plain_number = matches!(node, Node::Scalar { plain: true, .. })
            && !text.is_empty()
            && text.chars().all(|c| c.is_ascii_digit());
        let parsed = if plain_number {
            text.parse::<u64>()
                .map(Duration::from_millis)
                .map_err(|_| format!("`{text}` is too large"))
        } else {
            trellis_manifest::parse_duration(&text)
        };
        match parsed {
            Ok(d) if d.is_zero() => self.report(
                Problem::new(
                    pos,
                    field,
                    "a timeout cap of zero would stop every call at once",
                )
                .expected(expected)
                .hint("remove the cap, or give the longest a plugin call may take"),
            ),
            Ok(d) => return Some(d),
            Err(message) => self.report(Problem::new(pos, field, message).expected(expected)),
        }
        None
    }
}

#[cfg(test)]
mod sandbox_tests {
    use super::*;

    #[test]
    fn sandbox_is_required_or_best_effort() {
        let parse =
            |text: &str| PolicyFile::parse(text, Path::new("policy.yaml"), PolicyScope::Admin);
        assert!(
            parse("plugin_policy:\n  sandbox: required\n")
                .unwrap()
                .rules
                .sandbox_required
        );
        assert!(
            !parse("plugin_policy:\n  sandbox: best-effort\n")
                .unwrap()
                .rules
                .sandbox_required
        );
        let err = parse("plugin_policy:\n  sandbox: requried\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("requried") && err.contains("did you mean `required`"),
            "{err}"
        );
    }
}
