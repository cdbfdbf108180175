//! Text documents a plugin or an admin hands Trellis: manifests (YAML, TOML, and manifests
//! built from structured fuzzer input), policy files, and configuration checked against a
//! plugin's own JSON Schema.

use std::path::Path;

use arbitrary::{Arbitrary, Unstructured};
use serde_json::{Value, json};
use trellis_manifest::config_schema::ConfigValidator;
use trellis_manifest::{Format, Manifest, parse_str};
use trellis_policy::{PolicyFile, PolicyScope};

pub fn manifest_yaml(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        manifest(text, Format::Yaml);
    }
}

pub fn manifest_toml(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        manifest(text, Format::Toml);
    }
}

/// A manifest that validates reads back the same from its own serialization.
fn manifest(text: &str, format: Format) -> Option<Manifest> {
    let file = Path::new(match format {
        Format::Yaml => "plugin.yaml",
        Format::Toml => "plugin.toml",
    });
    let parsed = parse_str(text, format, file);
    if let Err(e) = &parsed {
        // Every refusal says where: a diagnostic names the file.
        for d in e.diagnostics() {
            assert_eq!(
                d.file, file,
                "a diagnostic of {file:?} names another file: {d:?}"
            );
        }
    }
    let manifest = parsed.ok()?;
    let json = serde_json::to_string(&manifest).expect("a manifest serializes");
    let again = parse_str(&json, Format::Yaml, Path::new("again.yaml")).unwrap_or_else(|e| {
        panic!("a valid manifest does not validate once written back: {e}\n{json}")
    });
    assert_eq!(
        again, manifest,
        "a manifest changed on the way back:\n{json}"
    );
    Some(manifest)
}

/// Names drawn mostly from the characters names may hold, so that most get past the grammar.
#[derive(Debug)]
struct Name(String);

impl<'a> Arbitrary<'a> for Name {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789-_.@/A ";
        let len = u.int_in_range(0..=24)?;
        let mut s = String::new();
        for _ in 0..len {
            // Mostly letters: the rarer characters are the ones the grammar refuses.
            let i = if u.ratio(7, 8)? {
                u.int_in_range(0..=25)?
            } else {
                u.int_in_range(0..=CHARS.len() - 1)?
            };
            s.push(CHARS[i] as char);
        }
        Ok(Name(s))
    }
}

#[derive(Debug, Arbitrary)]
enum Scalar {
    Text(String),
    Word(Name),
    Integer(i64),
    Number(f32),
    Flag(bool),
    List(Vec<Name>),
    Null,
}

impl Scalar {
    fn json(&self) -> Value {
        match self {
            Scalar::Text(s) => json!(s),
            Scalar::Word(n) => json!(n.0),
            Scalar::Integer(i) => json!(i),
            Scalar::Number(f) => {
                serde_json::Number::from_f64(f64::from(*f)).map_or(Value::Null, Value::Number)
            }
            Scalar::Flag(b) => json!(b),
            Scalar::List(items) => json!(items.iter().map(|n| &n.0).collect::<Vec<_>>()),
            Scalar::Null => Value::Null,
        }
    }
}

#[derive(Debug, Arbitrary)]
struct Param {
    name: Name,
    kind: Option<u8>,
    items: Option<u8>,
    choices: Vec<Name>,
    help: Option<String>,
    required: Option<bool>,
    default: Option<Scalar>,
    short: Option<u8>,
    env: Option<Name>,
}

const KINDS: &[&str] = &[
    "string", "integer", "number", "boolean", "path", "enum", "list", "float",
];

impl Param {
    fn json(&self, option: bool) -> Value {
        let mut v = json!({"name": self.name.0});
        if let Some(k) = self.kind {
            v["type"] = json!(KINDS[usize::from(k) % KINDS.len()]);
        }
        if let Some(k) = self.items {
            v["items"] = json!(KINDS[usize::from(k) % KINDS.len()]);
        }
        if !self.choices.is_empty() {
            v["choices"] = json!(self.choices.iter().map(|n| &n.0).collect::<Vec<_>>());
        }
        if let Some(h) = &self.help {
            v["help"] = json!(h);
        }
        if let Some(r) = self.required {
            v["required"] = json!(r);
        }
        if let Some(d) = &self.default {
            v["default"] = d.json();
        }
        if option {
            if let Some(c) = self.short {
                v["short"] = json!(((c % 58) + b'A') as char);
            }
            if let Some(e) = &self.env {
                v["env"] = json!(e.0.to_uppercase());
            }
        }
        v
    }
}

#[derive(Debug, Arbitrary)]
struct Command {
    name: Name,
    description: Option<String>,
    template: Option<Name>,
    arguments: Vec<Param>,
    options: Vec<Param>,
}

#[derive(Debug, Arbitrary)]
struct Capability {
    name: u8,
    paths: Vec<Name>,
    hosts: Vec<Name>,
    commands: Vec<Name>,
    variables: Vec<Name>,
}

const CAPABILITIES: &[&str] = &[
    "filesystem.read",
    "filesystem.write",
    "network",
    "subprocess",
    "environment",
    "state",
    "events.emit",
    "backlog.read",
    "backlog.write",
    "secrets",
    "filesystem",
];

#[derive(Debug, Arbitrary)]
struct StructuredManifest {
    name: Name,
    version: (u8, u8, u8),
    pre: Option<Name>,
    description: Option<String>,
    commands: Vec<Command>,
    hooks: Vec<(Name, bool, bool)>,
    capabilities: Vec<Capability>,
    runtime: u8,
    entry: Option<Name>,
    memory: Option<(u16, u8)>,
    timeout: Option<(u16, u8)>,
    config_schema: Option<Vec<(Name, u8)>>,
    toml: bool,
}

impl StructuredManifest {
    fn json(&self) -> Value {
        let mut version = format!("{}.{}.{}", self.version.0, self.version.1, self.version.2);
        if let Some(p) = &self.pre {
            version = format!("{version}-{}", p.0);
        }
        let commands: Vec<Value> = self
            .commands
            .iter()
            .map(|c| {
                let mut v = json!({"name": c.name.0});
                if let Some(d) = &c.description {
                    v["description"] = json!(d);
                }
                if let Some(t) = &c.template {
                    v["template"] = json!(t.0);
                }
                if !c.arguments.is_empty() {
                    v["arguments"] = c.arguments.iter().map(|p| p.json(false)).collect();
                }
                if !c.options.is_empty() {
                    v["options"] = c.options.iter().map(|p| p.json(true)).collect();
                }
                v
            })
            .collect();
        let hooks: Vec<Value> = self
            .hooks
            .iter()
            .map(|(h, first, last)| json!({"hook": h.0, "tryfirst": first, "trylast": last}))
            .collect();
        let capabilities: Vec<Value> = self
            .capabilities
            .iter()
            .map(|c| {
                let mut v = json!({"name": CAPABILITIES[usize::from(c.name) % CAPABILITIES.len()]});
                for (key, list) in [
                    ("paths", &c.paths),
                    ("hosts", &c.hosts),
                    ("commands", &c.commands),
                    ("variables", &c.variables),
                ] {
                    if !list.is_empty() {
                        v[key] = json!(list.iter().map(|n| &n.0).collect::<Vec<_>>());
                    }
                }
                v
            })
            .collect();
        let runtime = ["declarative", "wasm", "process", "native"][usize::from(self.runtime) % 4];
        let mut doc = json!({
            "apiVersion": "trellis.dev/v1",
            "kind": "Plugin",
            "metadata": {"name": self.name.0, "version": version},
            "provides": {"commands": commands, "hooks": hooks},
            "requires": {"capabilities": capabilities},
            "runtime": {"type": runtime},
        });
        if let Some(d) = &self.description {
            doc["metadata"]["description"] = json!(d);
        }
        if let Some(e) = &self.entry {
            doc["runtime"]["entry"] = json!(e.0);
        }
        const UNITS: &[&str] = &["", "B", "KiB", "MiB", "GiB", "MB", "s", "ms", "m", "h", "x"];
        if let Some((n, unit)) = self.memory {
            doc["limits"]["memory"] =
                json!(format!("{n}{}", UNITS[usize::from(unit) % UNITS.len()]));
        }
        if let Some((n, unit)) = self.timeout {
            doc["limits"]["timeout"] =
                json!(format!("{n}{}", UNITS[usize::from(unit) % UNITS.len()]));
        }
        if let Some(props) = &self.config_schema {
            let properties: serde_json::Map<String, Value> = props
                .iter()
                .map(|(n, t)| {
                    (
                        n.0.clone(),
                        json!({"type": KINDS[usize::from(*t) % KINDS.len()]}),
                    )
                })
                .collect();
            doc["config"] = json!({"schema": {"type": "object", "properties": properties}});
        }
        doc
    }
}

/// Manifests assembled from structured input: most reach the semantic checks.
pub fn manifest_structured(data: &[u8]) {
    let Ok(input) = StructuredManifest::arbitrary(&mut Unstructured::new(data)) else {
        return;
    };
    let doc = input.json();
    if input.toml {
        if let Ok(text) = toml::to_string(&doc) {
            manifest(&text, Format::Toml);
        }
    } else {
        manifest(
            &serde_json::to_string_pretty(&doc).expect("JSON"),
            Format::Yaml,
        );
    }
}

pub fn policy(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for scope in [PolicyScope::Admin, PolicyScope::Project] {
        if let Ok(file) = PolicyFile::parse(text, Path::new("policy.yaml"), scope) {
            // A file that reads is usable: combining and asking it never fails.
            let policy = trellis_policy::Policy::from_files(vec![file]);
            let _ = policy.limit_caps();
            let _ = policy.sandbox_required();
        }
    }
}

/// Two JSON documents: a plugin's configuration schema, then a configuration.
pub fn config_schema(data: &[u8]) {
    let mut docs = serde_json::Deserializer::from_slice(data).into_iter::<Value>();
    let (Some(Ok(schema)), Some(Ok(value))) = (docs.next(), docs.next()) else {
        return;
    };
    if let Ok(validator) = ConfigValidator::new(&schema) {
        let violations = validator.validate(&value);
        // The check is a function of its inputs.
        assert_eq!(violations.len(), validator.validate(&value).len());
        let _ = trellis_manifest::config_schema::apply_defaults(&value, &json!({}));
    }
}

/// An `allowed_signers` file (OpenSSH's format): every entry that reads answers for any
/// principal, namespace and time, and says where it is.
pub fn allowed_signers(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(signers) = trellis_trust::AllowedSigners::parse(text, "allowed_signers") else {
        return;
    };
    let probe = text.lines().next().unwrap_or_default();
    assert_eq!(signers.source(), "allowed_signers");
    for entry in signers.entries() {
        assert!(
            entry.location().starts_with("allowed_signers:"),
            "an entry does not say where it is: {}",
            entry.location()
        );
        let _ = entry.matches_principal(probe);
        let _ = entry.allows_namespace(probe);
        let _ = entry.validity_at(chrono::Utc::now());
    }
}
