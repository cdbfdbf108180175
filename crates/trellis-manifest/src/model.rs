//! The typed manifest model: what `plugin.yaml` and `plugin.toml` mean once they are valid.
//!
//! Field names here are the names users write (serde renames to camelCase only where the
//! manifest format itself uses it: `apiVersion`). Every struct denies unknown fields so that a
//! typo is an error, never silently ignored; the validator turns those into "did you mean"
//! diagnostics with a file position before serde ever sees the document.

use std::collections::BTreeMap;

use semver::{Version, VersionReq};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The only API version this crate reads. A later, additive version gets its own constant.
pub const API_VERSION_V1: &str = "trellis.dev/v1";

/// A whole, valid plugin manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    #[serde(default)]
    pub provides: Provides,
    #[serde(default)]
    pub requires: Requires,
    #[serde(default)]
    pub compatibility: Compatibility,
    #[serde(default)]
    pub runtime: Runtime,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ConfigSection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signatures: Option<Signatures>,
}

/// Identity and discoverability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// Checked against the plugin name grammar (see [`crate::name`]).
    pub name: String,
    pub version: Version,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// An SPDX license expression, e.g. `MIT` or `Apache-2.0 OR MIT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub homepage: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keywords: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<String>,
}

/// Everything a plugin adds to the host. Each list is keyed by `name` and names are unique
/// within one kind in one plugin.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provides {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<Command>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<HookImpl>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workflows: Vec<Workflow>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agents: Vec<Agent>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stacks: Vec<Stack>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub templates: Vec<Template>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub integrations: Vec<Integration>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub guardrails: Vec<Guardrail>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outcome_types: Vec<OutcomeType>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub step_types: Vec<StepType>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schemas: Vec<SchemaDef>,
}

/// A command users run as `trellis <name>` (or `trellis <plugin>:<name>` when two plugins
/// provide the same name).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Command {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// For code runtimes: the export or handler that runs the command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<String>,
    /// For declarative plugins: a template file (minijinja) rendered with the arguments and the
    /// plugin's config; the output is the command's result (e.g. a slash-command prompt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// JSON Schema of the command's input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<Value>,
    /// Positional arguments, in order: `trellis scan FEATURE`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arguments: Vec<CommandParam>,
    /// Named options: `--severity high`, `-s high`, `--dry-run`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<CommandParam>,
}

impl Command {
    /// Whether the command declares its command line. One that does not gets every
    /// `--key value` as a string option and every other word as a positional string.
    pub fn declares_inputs(&self) -> bool {
        !self.arguments.is_empty() || !self.options.is_empty()
    }
}

/// One declared input of a command: a positional argument or a named option.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandParam {
    /// Lowercase words joined by `-` (`dry-run`); the plugin receives it as `dry_run`.
    pub name: String,
    #[serde(default, rename = "type")]
    pub kind: ValueKind,
    /// For a `list`: the type of each item (default `string`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<ValueKind>,
    /// For an `enum` (or a list of them): the accepted values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub choices: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    /// Default: arguments without a `default` are required, options are not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    /// Options only: a one-letter flag (`s` for `-s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub short: Option<char>,
    /// Options only: an environment variable read when the option is not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
}

impl CommandParam {
    /// The name the plugin receives it under: `dry-run` is `dry_run`, a valid identifier in
    /// every guest language.
    pub fn key(&self) -> String {
        self.name.replace('-', "_")
    }

    /// Whether a positional argument (`positional`) or option must be given.
    pub fn is_required(&self, positional: bool) -> bool {
        self.required
            .unwrap_or(positional && self.default.is_none() && self.kind != ValueKind::Boolean)
    }

    /// The type of each value: the item type for a list, else the type itself.
    pub fn item_kind(&self) -> ValueKind {
        match self.kind {
            ValueKind::List => self.items.unwrap_or_default(),
            other => other,
        }
    }

    /// Why `value` is not a value of this input, if it is not.
    pub fn value_problem(&self, value: &Value) -> Option<String> {
        match (self.kind, value) {
            (ValueKind::List, Value::Array(items)) => items
                .iter()
                .find_map(|item| self.item_problem(self.item_kind(), item)),
            (ValueKind::List, _) => Some("is not a list".to_owned()),
            (kind, value) => self.item_problem(kind, value),
        }
    }

    fn item_problem(&self, kind: ValueKind, value: &Value) -> Option<String> {
        let fits = match kind {
            ValueKind::String | ValueKind::Path => value.is_string(),
            ValueKind::Integer => value.is_i64() || value.is_u64(),
            ValueKind::Number => value.is_number(),
            ValueKind::Boolean => value.is_boolean(),
            ValueKind::Enum => {
                return match value.as_str() {
                    Some(v) if self.choices.iter().any(|c| c == v) => None,
                    // Without choices there is nothing to compare with (reported on its own).
                    _ if self.choices.is_empty() => None,
                    _ => Some(format!(
                        "is {}, not one of {}",
                        shown(value),
                        self.choices.join(", ")
                    )),
                };
            }
            ValueKind::List => false,
        };
        (!fits).then(|| format!("is {}, not {}", shown(value), kind.described()))
    }
}

/// A value as a person wrote it: `high`, `3`, `[a, b]`.
fn shown(value: &Value) -> String {
    match value {
        Value::String(s) => format!("`{s}`"),
        other => format!("`{other}`"),
    }
}

/// The type of a command's argument or option.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueKind {
    #[default]
    String,
    Integer,
    Number,
    Boolean,
    /// A path inside the project, received project-relative with `/` separators.
    Path,
    /// One of `choices`.
    Enum,
    /// Any number of values (an option given again, or the last positional words).
    List,
}

impl ValueKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ValueKind::String => "string",
            ValueKind::Integer => "integer",
            ValueKind::Number => "number",
            ValueKind::Boolean => "boolean",
            ValueKind::Path => "path",
            ValueKind::Enum => "enum",
            ValueKind::List => "list",
        }
    }

    /// `an integer`, `a path inside the project`, ...
    pub fn described(self) -> &'static str {
        match self {
            ValueKind::String => "a string",
            ValueKind::Integer => "an integer",
            ValueKind::Number => "a number",
            ValueKind::Boolean => "true or false",
            ValueKind::Path => "a path inside the project",
            ValueKind::Enum => "one of the choices",
            ValueKind::List => "a list",
        }
    }
}

/// A hook implementation or event handler the plugin registers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookImpl {
    /// A hook name (declared by the host) or an event pattern (`workflow.*.completed`).
    pub hook: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handler: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub tryfirst: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub trylast: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub wrapper: bool,
    /// The implementation may be registered although the host declares no such hook.
    #[serde(default, skip_serializing_if = "is_false")]
    pub optional: bool,
    /// Run before the implementations of these plugins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub before: Vec<String>,
    /// Run after the implementations of these plugins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
}

/// Where a workflow contribution attaches to a phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PhaseMode {
    Before,
    After,
    Replace,
    Wrap,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workflow {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The phase this contribution attaches to, e.g. `implement`.
    pub phase: String,
    pub mode: PhaseMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Agent {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Markdown file with the persona, in the layout AI coding tools read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persona_file: Option<String>,
    /// Another agent this one builds on (`reviewer`, or `<plugin>:<agent>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extends: Option<String>,
    /// Member agents when this entry is a squad.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stack {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Directory of template files scaffolded into a project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub path: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub variables: Vec<TemplateVariable>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateVariable {
    pub name: String,
    #[serde(default = "default_variable_type", rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
}

fn default_variable_type() -> String {
    "string".to_owned()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Integration {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Guardrail {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<String>,
    /// Declarative rules (pattern / requires / severity), interpreted by the guardrail engine.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutcomeType {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON Schema of the outcome's own fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
    /// Defaults merged under what the user writes (acceptance, stack, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaults: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepType {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON Schema that a step of this type must satisfy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<String>,
}

/// A versioned message or data schema registered in the host's schema registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaDef {
    pub name: String,
    pub version: Version,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Inline JSON Schema; exactly one of `schema` and `path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// What the plugin needs from its surroundings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requires {
    /// Requirement on the running trellis version, in `semver` syntax.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trellis: Option<VersionReq>,
    /// Requirement on a Python interpreter (process plugins written in Python).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python: Option<VersionReq>,
    /// Requirement on Node.js (process plugins written in JavaScript).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<VersionReq>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plugins: Vec<PluginDependency>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<CapabilityRequest>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginDependency {
    pub name: String,
    #[serde(default = "any_version")]
    pub version: VersionReq,
    #[serde(default, skip_serializing_if = "is_false")]
    pub optional: bool,
}

fn any_version() -> VersionReq {
    VersionReq::STAR
}

/// One requested capability: either a bare name (`network`) or a map with the reason shown to
/// the user and the scope the grant is limited to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "CapabilityRequestRepr", into = "CapabilityRequestRepr")]
pub struct CapabilityRequest {
    pub name: String,
    pub reason: Option<String>,
    /// `filesystem.*`: project-relative paths or globs.
    pub paths: Vec<String>,
    /// `network`: host names (optionally `host:port`, `*.example.com`).
    pub hosts: Vec<String>,
    /// `subprocess`: command patterns (`git *`).
    pub commands: Vec<String>,
    /// `environment`: variable names.
    pub variables: Vec<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum CapabilityRequestRepr {
    Bare(String),
    Detailed(DetailedCapability),
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DetailedCapability {
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    paths: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    commands: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    variables: Vec<String>,
}

impl From<CapabilityRequestRepr> for CapabilityRequest {
    fn from(repr: CapabilityRequestRepr) -> Self {
        match repr {
            CapabilityRequestRepr::Bare(name) => CapabilityRequest::named(name),
            CapabilityRequestRepr::Detailed(d) => CapabilityRequest {
                name: d.name,
                reason: d.reason,
                paths: d.paths,
                hosts: d.hosts,
                commands: d.commands,
                variables: d.variables,
            },
        }
    }
}

impl From<CapabilityRequest> for CapabilityRequestRepr {
    fn from(c: CapabilityRequest) -> Self {
        if c.reason.is_none()
            && c.paths.is_empty()
            && c.hosts.is_empty()
            && c.commands.is_empty()
            && c.variables.is_empty()
        {
            CapabilityRequestRepr::Bare(c.name)
        } else {
            CapabilityRequestRepr::Detailed(DetailedCapability {
                name: c.name,
                reason: c.reason,
                paths: c.paths,
                hosts: c.hosts,
                commands: c.commands,
                variables: c.variables,
            })
        }
    }
}

impl CapabilityRequest {
    pub fn named(name: impl Into<String>) -> Self {
        CapabilityRequest {
            name: name.into(),
            reason: None,
            paths: Vec::new(),
            hosts: Vec::new(),
            commands: Vec::new(),
            variables: Vec::new(),
        }
    }
}

/// The capability names the host understands. Anything else in `requires.capabilities` is an
/// error, so that a typo never silently asks for nothing.
pub const KNOWN_CAPABILITIES: &[&str] = &[
    "filesystem.read",
    "filesystem.write",
    "network",
    "subprocess",
    "environment",
    "backlog.read",
    "backlog.write",
    "events.emit",
    "state",
];

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Compatibility {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trellis: Option<TrellisCompatibility>,
    /// `linux`, `macos`, `windows`; empty means all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrellisCompatibility {
    /// Oldest trellis the plugin works with (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<Version>,
    /// Newest trellis the plugin works with (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<Version>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tested: Vec<Version>,
}

pub const KNOWN_PLATFORMS: &[&str] = &["linux", "macos", "windows"];

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeKind {
    /// YAML, markdown and templates only; no code runs.
    #[default]
    Declarative,
    /// A WebAssembly component run by wasmtime.
    Wasm,
    /// A separate, sandboxed process speaking JSON-RPC 2.0 on a private descriptor.
    Process,
}

impl RuntimeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeKind::Declarative => "declarative",
            RuntimeKind::Wasm => "wasm",
            RuntimeKind::Process => "process",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Runtime {
    #[serde(rename = "type", default)]
    pub kind: RuntimeKind,
    /// Path of the `.wasm` component or the process executable, relative to the plugin
    /// directory. Required for `wasm` and `process`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry: Option<String>,
    /// Extra arguments for a `process` entry (after the entry when there is an interpreter).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// The program that runs a `process` entry that is a script (`python3`, `node`): a name
    /// looked up on `PATH`, or an absolute path. Without one the entry itself is executed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interpreter: Option<String>,
    /// For a Python `process` plugin installed as a distribution: the name it registers under
    /// the `trellis.plugins` entry-point group, started instead of an `entry` file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry_point: Option<String>,
    /// A pip requirements file in the package pinning every dependency (`name==version` with
    /// `--hash=sha256:…`), installed into the plugin's own virtual environment at install.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requirements: Option<String>,
    /// A directory in the package holding the wheels `requirements` names: the install is then
    /// offline, from these files only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wheels: Option<String>,
}

/// Resource limits the plugin asks for. A policy cap wins over these.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Maximum linear memory, e.g. `64MiB` (bytes when a bare integer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<ByteSize>,
    /// Maximum wall time per call, e.g. `5s`, `250ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<DurationSpec>,
    /// Optional deterministic instruction budget per call (wasm fuel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    /// Maximum size of data a call may return, e.g. `1MiB`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output: Option<ByteSize>,
}

/// A size in bytes, written as an integer or a string with a unit (`KiB`, `MiB`, `GiB`, `KB`,
/// `MB`, `GB`, `B`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ByteSizeRepr", into = "ByteSizeRepr")]
pub struct ByteSize(pub u64);

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum ByteSizeRepr {
    Bytes(u64),
    Text(String),
}

impl TryFrom<ByteSizeRepr> for ByteSize {
    type Error = String;
    fn try_from(repr: ByteSizeRepr) -> Result<Self, String> {
        match repr {
            ByteSizeRepr::Bytes(n) => Ok(ByteSize(n)),
            ByteSizeRepr::Text(s) => parse_byte_size(&s).map(ByteSize),
        }
    }
}

impl From<ByteSize> for ByteSizeRepr {
    fn from(b: ByteSize) -> Self {
        ByteSizeRepr::Text(format_byte_size(b.0))
    }
}

/// Parses `64MiB`, `512 KB`, `1024`. Errors say what is accepted.
pub fn parse_byte_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let number: u64 = digits.parse().map_err(|_| {
        format!(
            "`{text}` is not a size: expected a whole number with an optional unit, like `64MiB`"
        )
    })?;
    if unit.starts_with(['.', ',']) {
        return Err(format!(
            "`{text}` is not a whole number: use a smaller unit, like `1536MiB` for 1.5GiB"
        ));
    }
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "unknown size unit `{other}` in `{text}`: use B, KiB, MiB, GiB, KB, MB or GB"
            ));
        }
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("`{text}` is too large"))
}

pub fn format_byte_size(bytes: u64) -> String {
    for (unit, factor) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if bytes >= factor && bytes.is_multiple_of(factor) {
            return format!("{}{unit}", bytes / factor);
        }
    }
    format!("{bytes}B")
}

/// A duration written as `5s`, `250ms`, `2m` (milliseconds when a bare integer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "DurationRepr", into = "DurationRepr")]
pub struct DurationSpec(pub std::time::Duration);

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum DurationRepr {
    Millis(u64),
    Text(String),
}

impl TryFrom<DurationRepr> for DurationSpec {
    type Error = String;
    fn try_from(repr: DurationRepr) -> Result<Self, String> {
        match repr {
            DurationRepr::Millis(ms) => Ok(DurationSpec(std::time::Duration::from_millis(ms))),
            DurationRepr::Text(s) => parse_duration(&s).map(DurationSpec),
        }
    }
}

impl From<DurationSpec> for DurationRepr {
    fn from(d: DurationSpec) -> Self {
        let ms = d.0.as_millis();
        if ms.is_multiple_of(60_000) && ms > 0 {
            DurationRepr::Text(format!("{}m", ms / 60_000))
        } else if ms.is_multiple_of(1000) && ms > 0 {
            DurationRepr::Text(format!("{}s", ms / 1000))
        } else {
            DurationRepr::Text(format!("{ms}ms"))
        }
    }
}

/// Parses `5s`, `250ms`, `2m`. Text needs a unit: a bare integer in the manifest means
/// milliseconds, so a bare `"5"` would be ambiguous between that and seconds.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let number: u64 = digits.parse().map_err(|_| {
        format!(
            "`{text}` is not a duration: expected a whole number with a unit, like `5s` or `250ms`"
        )
    })?;
    if unit.starts_with(['.', ',']) {
        return Err(format!(
            "`{text}` is not a whole number: use a smaller unit, like `1500ms` for 1.5s"
        ));
    }
    let millis = match unit.trim() {
        "" => {
            return Err(format!(
                "`{text}` has no unit: write `{number}s`, `{number}ms` or `{number}m`"
            ));
        }
        "ms" => Some(number),
        "s" => number.checked_mul(1000),
        "m" => number.checked_mul(60_000),
        other => {
            return Err(format!(
                "unknown duration unit `{other}` in `{text}`: use ms, s or m"
            ));
        }
    };
    millis
        .map(std::time::Duration::from_millis)
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// User-configurable options: a JSON Schema and the defaults applied under the user's values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigSection {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaults: Option<Value>,
    /// How the configuration's shape changed between versions, oldest first or in any order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub migrations: Vec<ConfigMigration>,
}

/// The hook name the host calls a wasm plugin's `call-hook` export with to run a configuration
/// migration function (`config.migrations[].function`). Reserved: no `provides.hooks` entry may
/// use it, so the hook registry never routes anything else to it.
pub const CONFIG_MIGRATE_HOOK: &str = "trellis.config.migrate";

/// The reserved hook name under which trellis calls a wasm plugin's hook wrapper before the
/// other implementations: arguments `{"hook", "args"}`; the result is the wrapper's state.
pub const HOOK_WRAP_BEFORE: &str = "trellis.hook.wrap.before";

/// The reserved hook name under which trellis calls a wasm plugin's hook wrapper after the
/// other implementations, with their outcome (docs/wasm.md, "Hook wrappers").
pub const HOOK_WRAP_AFTER: &str = "trellis.hook.wrap.after";

/// Both wrapper hook names, which no manifest may list as hooks.
pub const WRAPPER_HOOKS: [&str; 2] = [HOOK_WRAP_BEFORE, HOOK_WRAP_AFTER];

/// The configuration changes one version made: keys renamed or moved, keys removed, and a
/// migration function to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigMigration {
    /// The version that introduced the change.
    pub version: Version,
    /// Old dotted key path → new dotted key path.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rename: BTreeMap<String, String>,
    /// Dotted key paths that no longer exist.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
    /// A migration function in the plugin's code (wasm plugins only), run after `rename` and
    /// `remove`: for what moving and dropping keys cannot express (a value recomputed, an
    /// object built from several keys). The host calls it with the user's configuration and
    /// uses what it returns; see `docs/wasm.md`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
}

impl ConfigMigration {
    /// Applies the declarative part of this migration to a user's configuration: each rename
    /// moves the value (creating the objects on the new path), then each removal deletes its
    /// key. Returns what changed, in words, for the user to review. A `function` is not run
    /// here: running plugin code is up to the caller.
    pub fn apply(&self, config: &mut Value) -> Vec<String> {
        let mut changes = Vec::new();
        for (from, to) in &self.rename {
            if let Some(value) = take_path(config, from) {
                put_path(config, to, value);
                changes.push(format!("{from} → {to}"));
            }
        }
        for key in &self.remove {
            if take_path(config, key).is_some() {
                changes.push(format!("{key} removed"));
            }
        }
        changes
    }
}

fn take_path(config: &mut Value, path: &str) -> Option<Value> {
    let mut parts: Vec<&str> = path.split('.').collect();
    let last = parts.pop()?;
    let mut node = config;
    for part in parts {
        node = node.as_object_mut()?.get_mut(part)?;
    }
    node.as_object_mut()?.remove(last)
}

fn put_path(config: &mut Value, path: &str, value: Value) {
    let mut parts: Vec<&str> = path.split('.').collect();
    let Some(last) = parts.pop() else {
        return;
    };
    if !config.is_object() {
        *config = Value::Object(serde_json::Map::new());
    }
    let mut node = config;
    for part in parts {
        let Some(map) = node.as_object_mut() else {
            return;
        };
        let child = map
            .entry(part.to_owned())
            .or_insert_with(|| Value::Object(serde_json::Map::new()));
        if !child.is_object() {
            *child = Value::Object(serde_json::Map::new());
        }
        node = child;
    }
    if let Some(map) = node.as_object_mut() {
        map.insert(last.to_owned(), value);
    }
}

/// Signature metadata carried in the manifest. Package signatures proper live beside the
/// archive; this records what the author claims, for display and cross-checking.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signatures {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Manifest {
    /// What the plugin provides, by kind (`commands`, `hooks`, ...), as names a person reads:
    /// kinds with nothing are left out.
    pub fn provided_summary(&self) -> BTreeMap<&'static str, Vec<String>> {
        let p = &self.provides;
        let mut out = BTreeMap::new();
        let mut put = |kind: &'static str, names: Vec<String>| {
            if !names.is_empty() {
                out.insert(kind, names);
            }
        };
        put(
            "commands",
            p.commands.iter().map(|c| c.name.clone()).collect(),
        );
        put("hooks", p.hooks.iter().map(|h| h.hook.clone()).collect());
        put(
            "workflows",
            p.workflows
                .iter()
                .map(|w| format!("{} ({} {})", w.name, mode_str(w.mode), w.phase))
                .collect(),
        );
        put("agents", p.agents.iter().map(|a| a.name.clone()).collect());
        put("stacks", p.stacks.iter().map(|s| s.name.clone()).collect());
        put(
            "templates",
            p.templates.iter().map(|t| t.name.clone()).collect(),
        );
        put(
            "integrations",
            p.integrations.iter().map(|i| i.name.clone()).collect(),
        );
        put(
            "guardrails",
            p.guardrails.iter().map(|g| g.name.clone()).collect(),
        );
        put(
            "outcome_types",
            p.outcome_types.iter().map(|o| o.name.clone()).collect(),
        );
        put(
            "step_types",
            p.step_types.iter().map(|s| s.name.clone()).collect(),
        );
        put(
            "schemas",
            p.schemas
                .iter()
                .map(|s| format!("{}@{}", s.name, s.version))
                .collect(),
        );
        out
    }

    /// The names this plugin provides per conflict-relevant kind (commands, agents, stacks,
    /// step types), used for conflict detection between enabled plugins.
    pub fn provided_names(&self) -> BTreeMap<&'static str, Vec<&str>> {
        let mut out = BTreeMap::new();
        out.insert(
            "command",
            self.provides
                .commands
                .iter()
                .map(|c| c.name.as_str())
                .collect(),
        );
        out.insert(
            "agent",
            self.provides
                .agents
                .iter()
                .map(|a| a.name.as_str())
                .collect(),
        );
        out.insert(
            "stack",
            self.provides
                .stacks
                .iter()
                .map(|s| s.name.as_str())
                .collect(),
        );
        out.insert(
            "step type",
            self.provides
                .step_types
                .iter()
                .map(|s| s.name.as_str())
                .collect(),
        );
        out
    }

    /// The capability names this plugin requests, in manifest order.
    pub fn capability_names(&self) -> Vec<&str> {
        self.requires
            .capabilities
            .iter()
            .map(|c| c.name.as_str())
            .collect()
    }
}

fn mode_str(mode: PhaseMode) -> &'static str {
    use PhaseMode::*;
    match mode {
        Before => "before",
        After => "after",
        Replace => "replaces",
        Wrap => "wraps",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_migrations_move_and_remove_keys() {
        let migration: ConfigMigration = serde_json::from_value(serde_json::json!({
            "version": "2.0.0",
            "rename": {"severity_threshold": "severity.threshold", "a.b": "c"},
            "remove": ["legacy_mode", "absent"]
        }))
        .unwrap();
        let mut config = serde_json::json!({
            "severity_threshold": 7, "legacy_mode": true, "a": {"b": 1, "keep": 2}, "other": "x"
        });
        let mut changes = migration.apply(&mut config);
        changes.sort();
        assert_eq!(
            config,
            serde_json::json!({"severity": {"threshold": 7}, "a": {"keep": 2}, "c": 1, "other": "x"})
        );
        assert_eq!(
            changes,
            [
                "a.b → c",
                "legacy_mode removed",
                "severity_threshold → severity.threshold"
            ]
        );
        // Nothing to migrate leaves the configuration alone.
        let mut untouched = serde_json::json!({"other": 1});
        assert!(migration.apply(&mut untouched).is_empty());
        assert_eq!(untouched, serde_json::json!({"other": 1}));
    }
    use std::time::Duration;

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_byte_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_byte_size("512 KiB"), Ok(512 << 10));
        assert_eq!(parse_byte_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_byte_size("2MB"), Ok(2_000_000));
        assert_eq!(parse_byte_size("3kB"), Ok(3_000));
        assert_eq!(parse_byte_size("1024"), Ok(1024));
        assert_eq!(parse_byte_size("7B"), Ok(7));
        assert!(parse_byte_size("64mb").is_err_and(|e| e.contains("unknown size unit `mb`")));
        assert!(parse_byte_size("MiB").is_err_and(|e| e.contains("not a size")));
        assert!(parse_byte_size("-1MiB").is_err());
        assert!(parse_byte_size("1.5GiB").is_err_and(|e| e.contains("not a whole number")));
        assert!(parse_byte_size("99999999999999GiB").is_err_and(|e| e.contains("too large")));
    }

    #[test]
    fn byte_sizes_format_back() {
        assert_eq!(format_byte_size(64 << 20), "64MiB");
        assert_eq!(format_byte_size(1 << 30), "1GiB");
        assert_eq!(format_byte_size(1536), "1536B");
        assert_eq!(format_byte_size(2048), "2KiB");
        assert_eq!(format_byte_size(0), "0B");
        for n in [0, 1, 1023, 1024, 5 << 20, 3 << 30, 1_000_000] {
            assert_eq!(parse_byte_size(&format_byte_size(n)), Ok(n));
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration(" 10 s "), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert!(parse_duration("5").is_err_and(|e| e.contains("has no unit")));
        assert!(parse_duration("5h").is_err_and(|e| e.contains("unknown duration unit `h`")));
        assert!(parse_duration("1.5s").is_err_and(|e| e.contains("1500ms")));
        assert!(parse_duration("s").is_err_and(|e| e.contains("not a duration")));
        assert!(parse_duration("99999999999999999999m").is_err());
    }

    #[test]
    fn durations_serialize_readably() {
        let text = |ms| serde_json::to_value(DurationSpec(Duration::from_millis(ms))).ok();
        assert_eq!(text(120_000), Some(Value::from("2m")));
        assert_eq!(text(5_000), Some(Value::from("5s")));
        assert_eq!(text(250), Some(Value::from("250ms")));
        assert_eq!(text(0), Some(Value::from("0ms")));
        let bare: Result<DurationSpec, _> = serde_json::from_value(Value::from(1500));
        assert_eq!(bare.ok(), Some(DurationSpec(Duration::from_millis(1500))));
    }
}
