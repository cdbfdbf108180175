use std::path::PathBuf;

use semver::Version;
use trellis_manifest::ManifestError;
use trellis_manifest::config_schema::ConfigViolation;

use crate::state::LifecycleState;

/// A name provided by two enabled plugins.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Conflict {
    /// `command`, `agent`, `stack` or `step type`.
    pub kind: &'static str,
    pub name: String,
    pub other_plugin: String,
}

/// Everything that can go wrong with a project's plugins. Each variant carries what a person
/// needs to act on it; [`ProjectError::hint`] says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error(transparent)]
    Manifest(#[from] ManifestError),

    #[error("the installed copy of `{plugin}` is broken: {source}")]
    InstalledManifest {
        plugin: String,
        source: ManifestError,
    },

    #[error("{path} is damaged: {reason}")]
    CorruptState { path: PathBuf, reason: String },

    #[error("{path} is not valid YAML: {reason}")]
    InvalidConfigFile { path: PathBuf, reason: String },

    #[error(
        "plugin `{name}` is not installed in this project{}",
        suggestion_text(suggestion)
    )]
    NotInstalled {
        name: String,
        suggestion: Option<String>,
        installed: Vec<String>,
    },

    #[error("plugin `{name}` {installed} is already installed (from {source_text})")]
    AlreadyInstalled {
        name: String,
        installed: Version,
        source_text: String,
    },

    #[error(
        "plugin `{plugin}` changed while this {step} was waiting for your decisions (another trellis command installed, removed or changed its grants); nothing was written"
    )]
    ChangedMeanwhile { plugin: String, step: &'static str },

    #[error(
        "plugin `{plugin}` does not support trellis {running}: it requires {requirement} ({field} in {file})"
    )]
    IncompatibleTrellis {
        plugin: String,
        running: Version,
        requirement: String,
        field: &'static str,
        file: PathBuf,
    },

    #[error("plugin `{plugin}` cannot run here: {reason} ({})", file.display())]
    Interpreter {
        plugin: String,
        reason: String,
        file: PathBuf,
    },

    #[error("{} is not a plugin wheel: {reason}", file.display())]
    Wheel { file: PathBuf, reason: String },

    #[error("plugin `{plugin}`: cannot make its Python environment: {reason}")]
    PythonEnv { plugin: String, reason: String },

    /// Starting the package's code before install showed it does not implement what its
    /// manifest declares (or could not start it); `kind` is the runtime's own.
    #[error("plugin `{plugin}` was not installed: {message}")]
    CodeCheck {
        plugin: String,
        kind: &'static str,
        message: String,
    },

    #[error("plugin `{plugin}` does not support this platform ({platform}); it supports {}", supported.join(", "))]
    UnsupportedPlatform {
        plugin: String,
        platform: String,
        supported: Vec<String>,
    },

    #[error("plugin `{plugin}` requires `{dependency}` {requirement}, which is not installed")]
    MissingDependency {
        plugin: String,
        dependency: String,
        requirement: String,
    },

    #[error(
        "plugin `{plugin}` requires `{dependency}` {requirement}, but {installed} is installed"
    )]
    IncompatibleDependency {
        plugin: String,
        dependency: String,
        requirement: String,
        installed: Version,
    },

    #[error("plugin `{plugin}` requires `{dependency}`, which is not enabled (it is {state})")]
    DependencyNotEnabled {
        plugin: String,
        dependency: String,
        state: LifecycleState,
    },

    #[error("dependency cycle: {}", cycle.join(" -> "))]
    DependencyCycle { cycle: Vec<String> },

    #[error(
        "cannot {action} `{plugin}`: enabled plugin(s) {} depend on it",
        quote_list(dependents)
    )]
    HasDependents {
        plugin: String,
        action: &'static str,
        dependents: Vec<String>,
    },

    #[error("cannot enable `{plugin}`: {}", conflict_text(plugin, conflicts))]
    Conflicts {
        plugin: String,
        conflicts: Vec<Conflict>,
    },

    #[error(transparent)]
    Package(#[from] trellis_package::PackageError),

    #[error(transparent)]
    Trust(#[from] trellis_trust::TrustError),

    #[error(transparent)]
    Policy(#[from] trellis_policy::PolicyError),

    #[error("registry {field} `{value}`: {reason}")]
    InvalidRegistry {
        field: &'static str,
        value: String,
        reason: String,
    },

    #[error("no registry named `{name}` is configured{}", if configured.is_empty() { String::new() } else { format!(" (configured: {})", configured.join(", ")) })]
    UnknownRegistry {
        name: String,
        configured: Vec<String>,
    },

    #[error(
        "registry `{registry}` was read --offline from this machine's cache, which does not hold {what}"
    )]
    Offline { registry: String, what: String },

    #[error(transparent)]
    Resolve(trellis_registry::resolve::ResolveError),

    #[error(
        "`{plugin}` was not installed from a registry (source: {source_text}), so it has no newer versions to update to"
    )]
    NotFromRegistry { plugin: String, source_text: String },

    #[error(
        "the update was rolled back: `{plugin}` could not be enabled with the new versions: {reason}"
    )]
    UpdateRolledBack {
        plugin: String,
        reason: String,
        backup: PathBuf,
    },

    #[error(
        "the update of `{plugin}` to {to} was refused: its configuration migration {version} (function `{function}`) failed: {reason}"
    )]
    ConfigMigrationFailed {
        plugin: String,
        /// The version the update would have installed.
        to: Version,
        /// The `config.migrations` entry whose function failed.
        version: Version,
        function: String,
        reason: String,
    },

    #[error("registry `{registry}`: {source}")]
    Registry {
        registry: String,
        source: Box<trellis_registry::RegistryError>,
    },

    #[error("cannot {step} `{plugin}`: {}", violations.join("; "))]
    PolicyRefused {
        plugin: String,
        step: &'static str,
        violations: Vec<String>,
        hints: Vec<String>,
    },

    #[error(
        "`{plugin}` does not request the capability `{capability}`{}",
        suggestion_text(suggestion)
    )]
    UnknownGrant {
        plugin: String,
        capability: String,
        requested: Vec<String>,
        suggestion: Option<String>,
    },

    #[error("`{capability}` is both granted (--grant) and refused (--deny)")]
    ContradictoryGrant { capability: String },

    #[error(
        "`{plugin}` requests capabilities nobody decided on: {}",
        pending.iter().map(|p| p.request.name.as_str()).collect::<Vec<_>>().join(", ")
    )]
    GrantsUndecided {
        plugin: String,
        pending: Vec<crate::PendingGrant>,
    },

    #[error("the installed files of `{plugin}` changed since install: {}", changes.join(", "))]
    FilesChanged {
        plugin: String,
        changes: Vec<String>,
    },

    #[error("{path} changed since install: its hash is {actual}, {expected} was installed")]
    PackageChanged {
        path: PathBuf,
        expected: String,
        actual: String,
    },

    #[error("plugin `{plugin}` declares no configuration (no `config.schema` in its manifest)")]
    NoConfigSchema { plugin: String },

    #[error("`{key}` is not a valid configuration key for `{plugin}`: {reason}")]
    ConfigKey {
        plugin: String,
        key: String,
        reason: String,
    },

    #[error(
        "configuration of `{plugin}` does not match its schema:{}",
        violations.iter().map(|v| format!("\n  - {}: {}", if v.field.is_empty() { "(root)" } else { &v.field }, v.message)).collect::<String>()
    )]
    ConfigInvalid {
        plugin: String,
        violations: Vec<ConfigViolation>,
    },

    #[error(
        "the configuration of `{plugin}` reads environment variable{} {} without requesting it",
        if variables.len() == 1 { "" } else { "s" },
        variables.iter().map(|v| format!("`{v}`")).collect::<Vec<_>>().join(", ")
    )]
    ConfigEnvNotRequested {
        plugin: String,
        variables: Vec<String>,
    },

    #[error(
        "no enabled plugin provides the command `{name}`{}",
        suggestion_text(suggestion)
    )]
    UnknownCommand {
        name: String,
        suggestion: Option<String>,
    },

    #[error("the command `{command}` is provided by `{plugin}`, which failed: {reason}")]
    ProviderFailed {
        command: String,
        plugin: String,
        reason: String,
    },

    #[error(
        "the command `{name}` is provided by several plugins: {}",
        quote_list(qualified)
    )]
    AmbiguousCommand {
        name: String,
        qualified: Vec<String>,
    },

    #[error(transparent)]
    Event(#[from] trellis_core::EventError),
}

fn suggestion_text(s: &Option<String>) -> String {
    s.as_ref()
        .map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default()
}

fn quote_list(items: &[String]) -> String {
    items
        .iter()
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn conflict_text(plugin: &str, conflicts: &[Conflict]) -> String {
    conflicts
        .iter()
        .map(|c| {
            format!(
                "{} `{}` is provided by both `{}` and `{plugin}`",
                c.kind, c.name, c.other_plugin
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

impl ProjectError {
    /// What the user can do about it, when there is something to say.
    pub fn hint(&self) -> Option<String> {
        use ProjectError::*;
        Some(match self {
            Manifest(_) | InstalledManifest { .. } => return None,
            NotInstalled { installed, .. } if installed.is_empty() => {
                "no plugins are installed here; install one with `trellis plugin install <dir>`"
                    .to_owned()
            }
            NotInstalled { installed, .. } => {
                format!("installed plugins: {}", installed.join(", "))
            }
            AlreadyInstalled { name, .. } => {
                format!(
                    "to replace it, run `trellis plugin install --force <dir>`; to remove it, `trellis plugin remove {name}`"
                )
            }
            InvalidRegistry { .. } => {
                "see `trellis plugin registry --help`; a registry URL is file://, http:// or https:// and holds metadata/ and targets/".to_owned()
            }
            UnknownRegistry { .. } => "`trellis plugin registry list` shows the configured ones".to_owned(),
            Offline { .. } => "run the command once without --offline to fill the cache".to_owned(),
            Registry { .. } => return None,
            NotFromRegistry { plugin, .. } => format!(
                "install the new version with `trellis plugin install --force <ARCHIVE|DIR>`, or remove `{plugin}` and install it by name from a registry"
            ),
            ConfigMigrationFailed { plugin, .. } => format!(
                "nothing was changed: `{plugin}` keeps its installed version, configuration and grants; report the failure to the plugin's author, or update to another version"
            ),
            UpdateRolledBack { backup, .. } => format!(
                "the previous versions, grants and configuration are back; the backup stays in {}; fix what the reason names and update again",
                backup.display()
            ),
            Resolve(_) => "change the requirements, or install an older version of the plugin that asks for the other".to_owned(),
            ChangedMeanwhile { .. } => {
                "run the command again: it asks only about what is different now".to_owned()
            }
            IncompatibleTrellis { .. } => {
                "install a version of the plugin built for this trellis, or upgrade trellis"
                    .to_owned()
            }
            UnsupportedPlatform { .. } => {
                "ask the author to support this platform, or use another plugin".to_owned()
            }
            Interpreter { .. } => {
                "install an interpreter that meets the requirement and put it first on PATH, or set `runtime.interpreter` to its absolute path".to_owned()
            }
            CodeCheck { .. } => {
                "make the code and plugin.yaml declare the same commands, hooks and command arguments; `trellis plugin validate DIR` shows every difference".to_owned()
            }
            Wheel { .. } => {
                "build the wheel with the plugin's `plugin.yaml` as package data beside the module its `trellis.plugins` entry point names (docs/python.md, \"Shipping a plugin as a wheel\")".to_owned()
            }
            PythonEnv { .. } => {
                "pin every dependency with `==` and `--hash=sha256:` in `runtime.requirements` (`pip-compile --generate-hashes` writes such a file), ship their wheels in `runtime.wheels` to install offline; nothing was installed".to_owned()
            }
            MissingDependency { dependency, .. } => format!(
                "install `{dependency}` first: `trellis plugin install <dir of {dependency}>`"
            ),
            IncompatibleDependency {
                dependency,
                requirement,
                ..
            } => {
                format!(
                    "install a version of `{dependency}` matching {requirement} (`trellis plugin install --force <dir>`)"
                )
            }
            DependencyNotEnabled { dependency, .. } => {
                format!("enable it first: `trellis plugin enable {dependency}`")
            }
            DependencyCycle { .. } => {
                "plugins cannot depend on each other in a circle; remove one of these requirements"
                    .to_owned()
            }
            HasDependents {
                plugin,
                action,
                dependents,
            } => format!(
                "{action} {} first, or run `trellis plugin {action} {plugin} --force` (they will be marked failed)",
                dependents.join(", ")
            ),
            Conflicts { plugin, conflicts } => {
                let other = conflicts
                    .first()
                    .map(|c| c.other_plugin.as_str())
                    .unwrap_or("the other plugin");
                format!(
                    "disable one (`trellis plugin disable {other}`), or keep both with `trellis plugin enable {plugin} --allow-conflicts` and call them as `<plugin>:<name>`"
                )
            }
            // Their messages already say what to do.
            Package(_) | Trust(_) => return None,
            Policy(_) => "fix the policy file at the place shown".to_owned(),
            PolicyRefused { hints, .. } => hints.join("; "),
            UnknownGrant { requested, .. } if requested.is_empty() => {
                "it requests no capabilities".to_owned()
            }
            UnknownGrant { requested, .. } => {
                format!("it requests: {}", requested.join(", "))
            }
            ContradictoryGrant { .. } => "pass each capability to only one of them".to_owned(),
            GrantsUndecided { pending, .. } => {
                let mut lines = vec![
                    "nothing was installed. Decide each capability: pass --grant CAP or --deny CAP, or run in a terminal to be asked; --yes grants those the policy does not require approval for:".to_owned(),
                ];
                for p in pending {
                    let mut line = format!("  --grant {}", p.request.name);
                    if let Some(reason) = &p.request.reason {
                        line.push_str(&format!("   # {reason}"));
                    }
                    let scope = crate::scope_text(&p.request);
                    if !scope.is_empty() {
                        line.push_str(&format!(" ({scope})"));
                    }
                    if let Some(file) = &p.approval_required_by {
                        line.push_str(&format!(" [approval required by {}]", file.display()));
                    }
                    lines.push(line);
                }
                lines.join("\n")
            }
            FilesChanged { plugin, .. } => format!(
                "reinstall it from its package (`trellis plugin install --force <package>`) or remove it; see `trellis plugin audit`; `{plugin}` will not run until then"
            ),
            PackageChanged { .. } => "reinstall the plugin from a package you trust".to_owned(),
            NoConfigSchema { .. } => {
                "add `config.schema` to the plugin's manifest to make it configurable".to_owned()
            }
            ConfigInvalid { plugin, .. } => {
                format!("fix the values with `trellis plugin config {plugin} set <key> <value>`")
            }
            ConfigKey { plugin, .. } => format!("see the keys with `trellis plugin info {plugin}`"),
            ConfigEnvNotRequested { variables, .. } => format!(
                "add `{{name: environment, variables: [{}]}}` to requires.capabilities in the plugin's manifest (the user grants it at install), or remove the `${{...}}` references from its configuration",
                variables.join(", ")
            ),
            AmbiguousCommand { .. } => "call it by its qualified name".to_owned(),
            ProviderFailed { plugin, .. } => format!(
                "fix the cause, then `trellis plugin enable {plugin}`; `trellis plugin audit` and `trellis policy check` show trust and policy problems"
            ),
            UnknownCommand { .. } => {
                "see the commands of enabled plugins with `trellis plugin list`".to_owned()
            }
            CorruptState { .. } => {
                "restore the file from version control, or remove it and reinstall the plugins"
                    .to_owned()
            }
            InvalidConfigFile { .. } => "fix the YAML syntax at the position shown".to_owned(),
            _ => return None,
        })
    }

    /// A stable machine-readable name for `--json` output.
    pub fn kind(&self) -> &'static str {
        use ProjectError::*;
        match self {
            Io { .. } => "io",
            Manifest(_) => "invalid_manifest",
            InstalledManifest { .. } => "installed_manifest_broken",
            CorruptState { .. } => "corrupt_state",
            InvalidConfigFile { .. } => "invalid_config_file",
            NotInstalled { .. } => "not_installed",
            AlreadyInstalled { .. } => "already_installed",
            ChangedMeanwhile { .. } => "changed_meanwhile",
            InvalidRegistry { .. } => "invalid_registry",
            UnknownRegistry { .. } => "unknown_registry",
            Offline { .. } => "offline",
            Registry { .. } => "registry",
            Resolve(_) => "resolve",
            NotFromRegistry { .. } => "not_from_registry",
            UpdateRolledBack { .. } => "update_rolled_back",
            ConfigMigrationFailed { .. } => "config_migration_failed",
            IncompatibleTrellis { .. } => "incompatible_trellis",
            UnsupportedPlatform { .. } => "unsupported_platform",
            Interpreter { .. } => "interpreter",
            PythonEnv { .. } => "python_env",
            Wheel { .. } => "wheel",
            CodeCheck { kind, .. } => kind,
            MissingDependency { .. } => "missing_dependency",
            IncompatibleDependency { .. } => "incompatible_dependency",
            DependencyNotEnabled { .. } => "dependency_not_enabled",
            DependencyCycle { .. } => "dependency_cycle",
            HasDependents { .. } => "has_dependents",
            Conflicts { .. } => "conflict",
            Package(_) => "package",
            Trust(_) => "trust",
            Policy(_) => "policy_file",
            PolicyRefused { .. } => "policy_refused",
            UnknownGrant { .. } => "unknown_grant",
            ContradictoryGrant { .. } => "contradictory_grant",
            GrantsUndecided { .. } => "grants_undecided",
            FilesChanged { .. } => "files_changed",
            PackageChanged { .. } => "package_changed",
            NoConfigSchema { .. } => "no_config_schema",
            ConfigKey { .. } => "config_key",
            ConfigInvalid { .. } => "config_invalid",
            ConfigEnvNotRequested { .. } => "config_env_not_requested",
            UnknownCommand { .. } => "unknown_command",
            AmbiguousCommand { .. } => "ambiguous_command",
            ProviderFailed { .. } => "provider_failed",
            Event(_) => "event",
        }
    }
}
