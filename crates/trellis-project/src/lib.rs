//! A project's plugins: what is installed under `.trellis/`, in which lifecycle state, in which
//! load order, with which configuration.
//!
//! Layout of `.trellis/` (names users see; keep them stable):
//!
//! ```text
//! .trellis/
//!   plugins/<name>/        installed copy of each plugin (scoped names nest: plugins/@scope/name/)
//!   state.json             lifecycle state per plugin: the commit point of every transition
//!   trellis.lock           exact versions, checksums and sources, derived from state.json
//!   packages/<name>/       the package each plugin was installed from, with its signatures
//!   config.yaml            user configuration per plugin (secrets stay `${VAR}` references)
//!   policy.yaml            the project's policy (optional; see trellis-policy)
//!   audit.jsonl            the hash-chained audit log of every trust decision and action
//!   events/events-YYYY-MM-DD.jsonl   the event log
//! ```
//!
//! Every transition takes an exclusive lock on `.trellis/.lock`, checks everything it can
//! before touching the disk, writes with temp-file + fsync + rename, and emits its event only
//! after the commit. A refused step leaves every file as it was.
//!
//! This crate knows manifests, the event bus, packages, signatures, policies and the audit log;
//! it knows nothing of the CLI, registries or any runtime's internals.

// Errors here carry the full context a person needs (plugin, versions, requirement, file) and
// are only built on the way out of a refused step, so their size never costs anything that
// matters; boxing every field would only make them harder to match on.
#![allow(clippy::result_large_err)]

mod config;
mod deps;
mod error;
mod fsutil;
mod journal;
mod registries;
mod update;
pub use journal::KILL_AT_ENV;
pub use registries::{
    DEFAULT_PRIORITY, RegistryCatalog, RegistryPlan, RegistrySource, RegistryView, parse_spec,
    registry_url,
};
pub use update::{
    ConfigMigrate, MigrationCall, StartCheck, UpdateItem, UpdatePlan, UpdateReport,
    shipped_changelog,
};
mod security;
mod state;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::Utc;
use semver::Version;
use serde::Serialize;
use serde_json::{Value, json};
use trellis_audit::{AuditEvent, AuditLog, AuditSink};
use trellis_core::{EventBus, EventLog};
use trellis_manifest::config_schema::{ConfigValidator, ConfigViolation, apply_defaults};
use trellis_manifest::{CapabilityRequest, LoadedManifest, Manifest, did_you_mean};
pub use trellis_policy::LimitCaps;

pub use error::{Conflict, ProjectError};
pub use security::{
    GrantChoices, GrantDecisions, GrantPlan, GrantPrompt, PendingGrant, PluginAudit,
    PreparedInstall, RegistryOrigin, SYSTEM_ADMIN_DIR, SecuritySettings, WithheldGrant, same_grant,
    scope_text, user_cache_dir, user_config_dir,
};
pub use state::{
    GrantSet, LifecycleState, LockedPlugin, Lockfile, PackageRecord, PluginRecord, ProjectState,
    TrustRecord,
};
pub use trellis_host_api::{Expansion, env_references, expand_config};
pub use trellis_trust::TrustLevel;

use fsutil::{io_err, remove_tree};

/// The version of trellis this library is part of; plugins' compatibility is checked against it.
pub const TRELLIS_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The directory name of project state.
pub const TRELLIS_DIR: &str = ".trellis";

/// How a transition ended when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transition {
    Changed,
    /// The plugin was already in the requested state; nothing was written.
    Unchanged,
}

#[derive(Debug, Clone, Default)]
pub struct InstallOptions {
    /// Replace an installed plugin of the same name.
    pub force: bool,
    /// How requested capabilities are decided when nobody is asked.
    pub grants: GrantChoices,
}

#[derive(Debug, Clone, Serialize)]
pub struct InstallReport {
    pub name: String,
    pub version: Version,
    pub replaced: Option<Version>,
    pub checksum: String,
    pub path: PathBuf,
    pub state: LifecycleState,
    pub trust: TrustLevel,
    pub signer: Option<String>,
    /// `sha256:<hex>` of the package archive.
    pub package_sha256: String,
    pub granted: Vec<String>,
    pub refused: Vec<String>,
}

/// One installed plugin as `list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PluginSummary {
    pub name: String,
    pub version: Version,
    pub state: LifecycleState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub description: Option<String>,
    pub runtime: &'static str,
    /// Position in the load order, for enabled plugins.
    pub load_order: Option<usize>,
    pub capabilities: Vec<String>,
    pub provides: BTreeMap<&'static str, Vec<String>>,
    pub source: String,
    pub checksum: String,
    /// Re-verified from the kept package against today's signer lists.
    pub trust: TrustLevel,
    pub signer: Option<String>,
    /// Granted and in effect now.
    pub granted: Vec<String>,
    /// Granted, but not in effect now (blocked, awaiting approval, granted for another
    /// package), with the reason.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub withheld: Vec<WithheldGrant>,
}

/// Everything `info` shows about one plugin.
#[derive(Debug, Clone, Serialize)]
pub struct PluginInfo {
    #[serde(flatten)]
    pub summary: PluginSummary,
    pub manifest: Manifest,
    pub path: PathBuf,
    pub config: Value,
    /// Installed plugins that depend on this one.
    pub dependents: Vec<String>,
}

/// A plugin ready to run after [`Project::load`]: its manifest and effective configuration.
#[derive(Debug, Clone)]
pub struct LoadedPlugin {
    pub name: String,
    pub dir: PathBuf,
    pub manifest: Manifest,
    /// Defaults merged under the user's values, `${VAR}` expanded.
    pub config: Value,
    /// What it may do: requested, granted for this package, and not blocked by the policy.
    pub grants: Vec<CapabilityRequest>,
    /// Caps the policy puts on the limits the manifest asks for.
    pub limit_caps: LimitCaps,
}

/// The result of starting the host: plugins in load order, and those that failed this time.
#[derive(Debug, Clone)]
pub struct LoadReport {
    pub loaded: Vec<LoadedPlugin>,
    pub failed: Vec<(String, String)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConfigReport {
    pub violations: Vec<ConfigViolation>,
    /// `${VAR}` references whose variable is not set in this environment.
    pub missing_env: Vec<String>,
    /// `${VAR}` references to variables the plugin's `environment` grant does not name: never
    /// expanded.
    pub not_granted: Vec<String>,
}

impl ConfigReport {
    pub fn is_ok(&self) -> bool {
        self.violations.is_empty() && self.missing_env.is_empty() && self.not_granted.is_empty()
    }
}

type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// A project directory and its `.trellis/` state.
#[derive(Clone)]
pub struct Project {
    root: PathBuf,
    dir: PathBuf,
    trellis_version: Version,
    bus: Arc<EventBus>,
    env: EnvLookup,
    audit: Arc<AuditLog>,
    /// Remembered digests of installed files (and components), shared by every clone and by
    /// the runtimes this project's host starts; created on first use.
    digests: Arc<std::sync::OnceLock<Arc<trellis_digests::FileDigests>>>,
}

/// Holds the project's exclusive lock until dropped.
struct ProjectLock {
    _file: File,
}

impl Project {
    /// Opens the project rooted at `root`. Nothing is created until a transition commits.
    pub fn open(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        let dir = root.join(TRELLIS_DIR);
        let bus = Arc::new(EventBus::with_log(EventLog::new(dir.join("events"))));
        let audit = Arc::new(AuditLog::open(dir.join("audit.jsonl")));
        let trellis_version =
            Version::parse(TRELLIS_VERSION).unwrap_or_else(|_| Version::new(0, 0, 0));
        Project {
            root,
            dir,
            trellis_version,
            bus,
            env: Arc::new(|name| std::env::var(name).ok()),
            audit,
            digests: Arc::default(),
        }
    }

    /// The user's cache directory (compiled components, remembered digests), as this project's
    /// environment names it (see [`user_cache_dir`]).
    pub fn cache_dir(&self) -> Option<PathBuf> {
        user_cache_dir(&*self.env)
    }

    /// The remembered digests of files in [`Project::cache_dir`], one set per project value
    /// and its clones: the integrity checks and the runtimes share it, so the index is read and
    /// written once per process.
    pub fn file_digests(&self) -> Arc<trellis_digests::FileDigests> {
        Arc::clone(self.digests.get_or_init(|| {
            Arc::new(trellis_digests::FileDigests::new(
                self.cache_dir().as_deref(),
                trellis_digests::SETTLED,
            ))
        }))
    }

    /// Finds the project containing `start`: the nearest ancestor with a `.trellis/` directory,
    /// or `start` itself when there is none (a new project).
    pub fn discover(start: &Path) -> Self {
        let found = start.ancestors().find(|dir| dir.join(TRELLIS_DIR).is_dir());
        Project::open(found.unwrap_or(start))
    }

    /// Checks compatibility against another trellis version (tests, embedding hosts with their
    /// own version).
    pub fn with_trellis_version(mut self, version: Version) -> Self {
        self.trellis_version = version;
        self
    }

    /// Replaces how `${VAR}` references are looked up (default: the process environment).
    pub fn with_env(
        mut self,
        lookup: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.env = Arc::new(lookup);
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn trellis_dir(&self) -> &Path {
        &self.dir
    }

    pub fn trellis_version(&self) -> &Version {
        &self.trellis_version
    }

    /// The project's event bus (its log is `.trellis/events/`). Subscribe here to see
    /// lifecycle events.
    pub fn events(&self) -> &Arc<EventBus> {
        &self.bus
    }

    /// The project's audit log (`.trellis/audit.jsonl`); hosts write plugin actions here.
    pub fn audit(&self) -> Arc<dyn AuditSink> {
        self.audit.clone()
    }

    pub fn audit_path(&self) -> PathBuf {
        self.dir.join("audit.jsonl")
    }

    fn state_path(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    fn lock_path(&self) -> PathBuf {
        self.dir.join("trellis.lock")
    }

    fn config_path(&self) -> PathBuf {
        self.dir.join("config.yaml")
    }

    fn plugins_dir(&self) -> PathBuf {
        self.dir.join("plugins")
    }

    /// Where an installed plugin's files are.
    pub fn plugin_dir(&self, name: &str) -> PathBuf {
        // Scoped names nest like npm's node_modules/@scope/name; the name grammar forbids
        // anything else that could act as a path separator.
        name.split('/')
            .fold(self.plugins_dir(), |p, part| p.join(part))
    }

    pub fn state(&self) -> Result<ProjectState, ProjectError> {
        ProjectState::read(&self.state_path())
    }

    fn lock(&self) -> Result<ProjectLock, ProjectError> {
        fs::create_dir_all(&self.dir).map_err(io_err(&self.dir))?;
        let path = self.dir.join(".lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        file.lock().map_err(io_err(&path))?;
        let lock = ProjectLock { _file: file };
        self.settle_journal()?;
        Ok(lock)
    }

    /// Writes the state (the commit point), then the lockfile derived from it.
    fn commit(&self, state: &ProjectState) -> Result<(), ProjectError> {
        state.write(&self.state_path())?;
        let mut plugins = Vec::new();
        for (name, record) in &state.plugins {
            let dependencies = match self.read_manifest(name) {
                Ok(loaded) => loaded
                    .manifest
                    .requires
                    .plugins
                    .iter()
                    .map(|d| format!("{} {}", d.name, d.version))
                    .collect(),
                Err(_) => Vec::new(),
            };
            plugins.push(LockedPlugin {
                name: name.clone(),
                version: record.version.clone(),
                source: record.source.clone(),
                checksum: record.checksum.clone(),
                package: record.package.as_ref().map(|p| p.sha256.clone()),
                registry: record.registry.clone(),
                dependencies,
            });
        }
        // The state is committed: a lockfile that cannot be written must not make the caller
        // roll back files the state already names. It is derived and rewritten next time.
        let lockfile = Lockfile {
            version: state::LOCK_FORMAT_VERSION,
            plugins,
        };
        if let Err(e) = lockfile.write(&self.lock_path()) {
            tracing::warn!(error = %e, "could not rewrite trellis.lock; it is rewritten at the next change");
        }
        Ok(())
    }

    fn read_manifest(&self, name: &str) -> Result<LoadedManifest, ProjectError> {
        trellis_manifest::load_dir(&self.plugin_dir(name)).map_err(|source| {
            ProjectError::InstalledManifest {
                plugin: name.to_owned(),
                source,
            }
        })
    }

    fn not_installed(&self, name: &str, state: &ProjectState) -> ProjectError {
        let installed: Vec<String> = state.plugins.keys().cloned().collect();
        let suggestion =
            did_you_mean(name, installed.iter().map(String::as_str)).map(str::to_owned);
        ProjectError::NotInstalled {
            name: name.to_owned(),
            suggestion,
            installed,
        }
    }

    fn record<'s>(
        &self,
        state: &'s ProjectState,
        name: &str,
    ) -> Result<&'s PluginRecord, ProjectError> {
        state
            .plugins
            .get(name)
            .ok_or_else(|| self.not_installed(name, state))
    }

    /// Checks the running trellis version and platform against a manifest.
    fn check_compatibility(&self, manifest: &Manifest, file: &Path) -> Result<(), ProjectError> {
        let plugin = &manifest.metadata.name;
        let running = &self.trellis_version;
        let incompatible =
            |requirement: String, field: &'static str| ProjectError::IncompatibleTrellis {
                plugin: plugin.clone(),
                running: running.clone(),
                requirement,
                field,
                file: file.to_owned(),
            };
        if let Some(req) = &manifest.requires.trellis
            && !req.matches(running)
        {
            return Err(incompatible(format!("`{req}`"), "requires.trellis"));
        }
        if let Some(compat) = &manifest.compatibility.trellis {
            if let Some(min) = &compat.min
                && running < min
            {
                return Err(incompatible(
                    format!("at least {min}"),
                    "compatibility.trellis.min",
                ));
            }
            if let Some(max) = &compat.max
                && running > max
            {
                return Err(incompatible(
                    format!("at most {max}"),
                    "compatibility.trellis.max",
                ));
            }
        }
        let platform = current_platform();
        let platforms = &manifest.compatibility.platforms;
        if !platforms.is_empty() && !platforms.iter().any(|p| p == platform) {
            return Err(ProjectError::UnsupportedPlatform {
                plugin: plugin.clone(),
                platform: platform.to_owned(),
                supported: platforms.clone(),
            });
        }
        Ok(())
    }

    /// Removes leftovers of interrupted transitions: staging and backup directories, and plugin
    /// directories that no state entry claims.
    fn clean_orphans(&self, state: &ProjectState) -> Result<(), ProjectError> {
        for root in [self.plugins_dir(), self.dir.join("packages")] {
            let Ok(entries) = fs::read_dir(&root) else {
                continue;
            };
            for entry in entries.filter_map(Result::ok) {
                let name = entry.file_name().to_string_lossy().into_owned();
                let path = entry.path();
                if name.starts_with('.') {
                    remove_tree(&path)?;
                } else if name.starts_with('@') {
                    let scoped = fs::read_dir(&path).map_err(io_err(&path))?;
                    for inner in scoped.filter_map(Result::ok) {
                        let full = format!("{name}/{}", inner.file_name().to_string_lossy());
                        if !state.plugins.contains_key(&full) {
                            remove_tree(&inner.path())?;
                        }
                    }
                } else if !state.plugins.contains_key(&name) {
                    remove_tree(&path)?;
                }
            }
        }
        Ok(())
    }

    fn emit(&self, topic: &str, payload: Value) {
        // The transition is already committed; a failing event log must not undo or fail it.
        if let Err(e) = self.bus.emit(topic, payload) {
            tracing::warn!(%topic, error = %e, "could not record event");
        }
    }

    /// Installs a plugin from a package archive (with its `.sig` beside it) or a plugin
    /// directory, deciding grants from `options` alone: what they leave undecided fails the
    /// install. Front ends that can ask the user use [`Project::prepare_install`] and
    /// [`Project::commit_install`] instead. The plugin starts `installed`; with `force` an
    /// installed plugin of the same name is replaced and keeps its state.
    pub fn install(
        &self,
        src: &Path,
        options: &InstallOptions,
    ) -> Result<InstallReport, ProjectError> {
        let prepared = self.prepare_install(src)?;
        if let Some(prev) = &prepared.previous
            && !options.force
        {
            return Err(ProjectError::AlreadyInstalled {
                name: prepared.name().to_owned(),
                installed: prev.version.clone(),
                source_text: prev.source.clone(),
            });
        }
        let decisions = prepared.plan.decide(&options.grants, None)?;
        self.commit_install(prepared, decisions, options.force)
    }

    /// Everything that must hold for `name` (with `manifest`) to be enabled given `state`.
    fn check_enable(
        &self,
        state: &ProjectState,
        name: &str,
        manifest: &Manifest,
        allow_conflicts: bool,
    ) -> Result<(), ProjectError> {
        self.check_compatibility(manifest, &self.plugin_dir(name).join("plugin.yaml"))?;

        // Cycles first: with a cycle, "enable the dependency first" could never be satisfied.
        let manifests = self.installed_manifests(state, Some((name, manifest)))?;
        let graph: deps::Graph<'_> = manifests
            .iter()
            .map(|(n, m)| {
                let edges = m
                    .requires
                    .plugins
                    .iter()
                    .filter(|d| manifests.contains_key(d.name.as_str()))
                    .map(|d| d.name.as_str())
                    .collect();
                (n.as_str(), edges)
            })
            .collect();
        if let Some(cycle) = deps::find_cycle_from(&graph, name) {
            return Err(ProjectError::DependencyCycle { cycle });
        }

        for dep in &manifest.requires.plugins {
            let requirement = format!("`{}`", dep.version);
            match state.plugins.get(&dep.name) {
                None if dep.optional => {}
                None => {
                    return Err(ProjectError::MissingDependency {
                        plugin: name.to_owned(),
                        dependency: dep.name.clone(),
                        requirement,
                    });
                }
                Some(record) if !dep.version.matches(&record.version) => {
                    return Err(ProjectError::IncompatibleDependency {
                        plugin: name.to_owned(),
                        dependency: dep.name.clone(),
                        requirement,
                        installed: record.version.clone(),
                    });
                }
                Some(record) if record.state != LifecycleState::Enabled && !dep.optional => {
                    return Err(ProjectError::DependencyNotEnabled {
                        plugin: name.to_owned(),
                        dependency: dep.name.clone(),
                        state: record.state,
                    });
                }
                Some(_) => {}
            }
        }

        if let Some(config) = &manifest.config
            && let Some(schema) = &config.schema
        {
            let effective =
                self.effective_config(name, manifest, &ProjectConfig::read_or_default(self)?);
            let expanded = self.expand_requested(name, manifest, &effective)?;
            let validator =
                ConfigValidator::new(schema).map_err(|reason| ProjectError::ConfigKey {
                    plugin: name.to_owned(),
                    key: "config.schema".to_owned(),
                    reason,
                })?;
            let violations = validator.validate(&expanded);
            if !violations.is_empty() {
                return Err(ProjectError::ConfigInvalid {
                    plugin: name.to_owned(),
                    violations,
                });
            }
        }

        if !allow_conflicts {
            let conflicts = self.conflicts_with_enabled(state, name, manifest)?;
            if !conflicts.is_empty() {
                return Err(ProjectError::Conflicts {
                    plugin: name.to_owned(),
                    conflicts,
                });
            }
        }
        Ok(())
    }

    /// Manifests of all installed plugins, with `override_one` standing in for one of them.
    fn installed_manifests(
        &self,
        state: &ProjectState,
        override_one: Option<(&str, &Manifest)>,
    ) -> Result<BTreeMap<String, Manifest>, ProjectError> {
        let mut out = BTreeMap::new();
        for name in state.plugins.keys() {
            match override_one {
                Some((n, m)) if n == name => {
                    out.insert(name.clone(), m.clone());
                }
                _ => {
                    // A broken installed manifest must not block work on other plugins; it
                    // shows up as `failed` when that plugin loads.
                    if let Ok(loaded) = self.read_manifest(name) {
                        out.insert(name.clone(), loaded.manifest);
                    }
                }
            }
        }
        if let Some((n, m)) = override_one {
            out.entry(n.to_owned()).or_insert_with(|| m.clone());
        }
        Ok(out)
    }

    fn conflicts_with_enabled(
        &self,
        state: &ProjectState,
        name: &str,
        manifest: &Manifest,
    ) -> Result<Vec<Conflict>, ProjectError> {
        let mine = manifest.provided_names();
        let mut conflicts = Vec::new();
        for (other, record) in &state.plugins {
            if other == name || record.state != LifecycleState::Enabled {
                continue;
            }
            let Ok(loaded) = self.read_manifest(other) else {
                continue;
            };
            let theirs = loaded.manifest.provided_names();
            for (kind, names) in &mine {
                let their_names: BTreeSet<&str> =
                    theirs.get(kind).into_iter().flatten().copied().collect();
                for n in names.iter().filter(|n| their_names.contains(*n)) {
                    conflicts.push(Conflict {
                        kind,
                        name: (*n).to_owned(),
                        other_plugin: other.clone(),
                    });
                }
            }
        }
        Ok(conflicts)
    }

    /// Enables an installed (or disabled, or failed) plugin after checking its compatibility,
    /// dependencies, configuration and name conflicts.
    pub fn enable(&self, name: &str, allow_conflicts: bool) -> Result<Transition, ProjectError> {
        let state = self.state()?;
        self.record(&state, name)?;
        let _lock = self.lock()?;
        let mut state = self.state()?;
        let record = self.record(&state, name)?.clone();
        if record.state == LifecycleState::Enabled && (record.allow_conflicts || !allow_conflicts) {
            return Ok(Transition::Unchanged);
        }
        let loaded = match self.read_manifest(name) {
            Ok(loaded) => loaded,
            Err(e) => {
                self.mark_failed_locked(&mut state, name, &e.to_string())?;
                return Err(e);
            }
        };
        self.check_enable(&state, name, &loaded.manifest, allow_conflicts)?;
        let security = self.security()?;
        self.check_policy(&security, name, &record, &loaded.manifest, "enable")?;
        let changed = self.changed_files(name, &record)?;
        if !changed.is_empty() {
            return Err(ProjectError::FilesChanged {
                plugin: name.to_owned(),
                changes: changed.iter().map(ToString::to_string).collect(),
            });
        }
        let entry = state
            .plugins
            .get_mut(name)
            .ok_or_else(|| self.not_installed(name, &ProjectState::default()))?;
        entry.state = LifecycleState::Enabled;
        entry.reason = None;
        entry.failed_from = None;
        entry.allow_conflicts = allow_conflicts || entry.allow_conflicts;
        entry.changed_at = Utc::now();
        let version = entry.version.to_string();
        self.commit(&state)?;
        self.audit.record(
            AuditEvent::new("plugin.enabled", "ok")
                .plugin(name)
                .detail("version", json!(version)),
        );
        self.emit(
            "plugin.enabled",
            json!({"plugin": name, "version": version}),
        );
        Ok(Transition::Changed)
    }

    /// Enabled plugins that require `name` (not optionally).
    fn enabled_dependents(
        &self,
        state: &ProjectState,
        name: &str,
    ) -> Result<Vec<String>, ProjectError> {
        Ok(self
            .installed_manifests(state, None)?
            .iter()
            .filter(|(other, m)| {
                state
                    .plugins
                    .get(*other)
                    .is_some_and(|r| r.state == LifecycleState::Enabled)
                    && m.requires
                        .plugins
                        .iter()
                        .any(|d| d.name == name && !d.optional)
            })
            .map(|(other, _)| other.clone())
            .collect())
    }

    /// Disables a plugin. Refuses while enabled plugins require it, unless `force`, in which
    /// case they are marked failed.
    pub fn disable(&self, name: &str, force: bool) -> Result<Transition, ProjectError> {
        let state = self.state()?;
        self.record(&state, name)?;
        let _lock = self.lock()?;
        let mut state = self.state()?;
        let record = self.record(&state, name)?.clone();
        if record.state == LifecycleState::Disabled {
            return Ok(Transition::Unchanged);
        }
        let dependents = self.enabled_dependents(&state, name)?;
        if !dependents.is_empty() && !force {
            return Err(ProjectError::HasDependents {
                plugin: name.to_owned(),
                action: "disable",
                dependents,
            });
        }
        if let Some(entry) = state.plugins.get_mut(name) {
            entry.state = LifecycleState::Disabled;
            entry.reason = None;
            entry.failed_from = None;
            entry.changed_at = Utc::now();
        }
        let failed = self.fail_dependents(&mut state, &dependents, name, "disabled");
        self.commit(&state)?;
        self.audit.record(
            AuditEvent::new("plugin.disabled", "ok")
                .plugin(name)
                .detail("version", json!(record.version.to_string()))
                .detail("forced", json!(force)),
        );
        self.emit(
            "plugin.disabled",
            json!({"plugin": name, "version": record.version.to_string()}),
        );
        for (dependent, reason) in failed {
            self.emit(
                "plugin.error",
                json!({"plugin": dependent, "error": reason, "context": "dependency"}),
            );
        }
        Ok(Transition::Changed)
    }

    fn fail_dependents(
        &self,
        state: &mut ProjectState,
        dependents: &[String],
        name: &str,
        what: &str,
    ) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for dependent in dependents {
            if let Some(entry) = state.plugins.get_mut(dependent) {
                let reason = format!("requires `{name}`, which was {what}");
                entry.failed_from = Some(entry.state);
                entry.state = LifecycleState::Failed;
                entry.reason = Some(reason.clone());
                entry.changed_at = Utc::now();
                out.push((dependent.clone(), reason));
            }
        }
        out
    }

    /// Removes a plugin's files and entry. Refuses while enabled plugins require it, unless
    /// `force`. With `purge` its configuration in `config.yaml` goes too.
    pub fn remove(&self, name: &str, force: bool, purge: bool) -> Result<Transition, ProjectError> {
        let state = self.state()?;
        self.record(&state, name)?;
        let _lock = self.lock()?;
        let mut state = self.state()?;
        let record = self.record(&state, name)?.clone();
        let dependents = self.enabled_dependents(&state, name)?;
        if !dependents.is_empty() && !force {
            return Err(ProjectError::HasDependents {
                plugin: name.to_owned(),
                action: "remove",
                dependents,
            });
        }
        // The plugin's files and its kept package go aside, the entry (with its grants) goes
        // at the commit: a crash at any step leaves the plugin installed or gone, never half.
        let target = self.plugin_dir(name);
        let mut journal = journal::Journal::new("remove", name);
        journal
            .slot(self, &target, None)
            .slot(self, &self.packages_dir(name), None);
        state.plugins.remove(name);
        let failed = self.fail_dependents(&mut state, &dependents, name, "removed");
        self.apply_journal(&journal, &mut state)?;
        self.audit.record(
            AuditEvent::new("plugin.removed", "ok")
                .plugin(name)
                .detail("version", json!(record.version.to_string()))
                .detail("purge", json!(purge)),
        );
        if purge {
            let mut config = ProjectConfig::read_or_default(self)?;
            if config.plugins.remove(name).is_some() {
                config.write(&self.config_path())?;
            }
        }
        self.emit(
            "plugin.removed",
            json!({"plugin": name, "version": record.version.to_string()}),
        );
        for (dependent, reason) in failed {
            self.emit(
                "plugin.error",
                json!({"plugin": dependent, "error": reason, "context": "dependency"}),
            );
        }
        Ok(Transition::Changed)
    }

    /// Records that a plugin failed (e.g. its runtime could not start it), keeping the reason
    /// and emitting `plugin.error`. Embedding hosts call this when a plugin misbehaves.
    pub fn mark_failed(&self, name: &str, reason: &str) -> Result<(), ProjectError> {
        let state = self.state()?;
        self.record(&state, name)?;
        let _lock = self.lock()?;
        let mut state = self.state()?;
        self.mark_failed_locked(&mut state, name, reason)
    }

    fn mark_failed_locked(
        &self,
        state: &mut ProjectState,
        name: &str,
        reason: &str,
    ) -> Result<(), ProjectError> {
        let Some(entry) = state.plugins.get_mut(name) else {
            return Ok(());
        };
        if entry.state != LifecycleState::Failed {
            entry.failed_from = Some(entry.state);
        }
        entry.state = LifecycleState::Failed;
        entry.reason = Some(reason.to_owned());
        entry.changed_at = Utc::now();
        self.commit(state)?;
        self.emit(
            "plugin.error",
            json!({"plugin": name, "error": reason, "context": "load"}),
        );
        Ok(())
    }

    /// Enabled plugins in load order: dependencies before dependents, ties by name.
    pub fn load_order(&self) -> Result<Vec<String>, ProjectError> {
        let state = self.state()?;
        let manifests = self.installed_manifests(&state, None)?;
        Self::load_order_of(&state, &manifests)
    }

    /// The load order of the enabled plugins of `state`, given their manifests (a plugin missing
    /// from `manifests` takes its place without edges).
    fn load_order_of(
        state: &ProjectState,
        manifests: &BTreeMap<String, Manifest>,
    ) -> Result<Vec<String>, ProjectError> {
        let enabled: BTreeSet<&str> = state
            .plugins
            .iter()
            .filter(|(_, r)| r.state == LifecycleState::Enabled)
            .map(|(n, _)| n.as_str())
            .collect();
        // A plugin whose manifest cannot be read still takes its place (without edges) so that
        // `load` reports it failed instead of silently skipping it.
        let graph: deps::Graph<'_> = enabled
            .iter()
            .map(|n| {
                let edges = manifests
                    .get(*n)
                    .map(|m| {
                        m.requires
                            .plugins
                            .iter()
                            .map(|d| d.name.as_str())
                            .filter(|d| enabled.contains(d))
                            .collect()
                    })
                    .unwrap_or_default();
                (*n, edges)
            })
            .collect();
        deps::load_order(&graph).map_err(|cycle| ProjectError::DependencyCycle { cycle })
    }

    /// Starts the project's plugins as a host would: every enabled plugin is re-checked in
    /// load order (manifest readable, compatible, dependencies loaded, configuration valid).
    /// A plugin that fails is marked `failed` with the reason and does not stop the others;
    /// its dependents fail after it.
    pub fn load(&self) -> Result<LoadReport, ProjectError> {
        self.settle_before_read()?;
        let state = self.state()?;
        // Each enabled plugin's manifest is read once here, for the order and for the checks.
        let mut read: BTreeMap<String, Result<Manifest, ProjectError>> = state
            .plugins
            .iter()
            .filter(|(_, r)| r.state == LifecycleState::Enabled)
            .map(|(n, _)| (n.clone(), self.read_manifest(n).map(|m| m.manifest)))
            .collect();
        let readable: BTreeMap<String, Manifest> = read
            .iter()
            .filter_map(|(n, m)| Some((n.clone(), m.as_ref().ok()?.clone())))
            .collect();
        let order = Self::load_order_of(&state, &readable)?;
        drop(readable);
        let config = ProjectConfig::read_or_default(self)?;
        let security = self.security()?;
        let policy = &security.policy;
        let limit_caps = policy.limit_caps();
        let mut loaded = Vec::new();
        let mut failed: Vec<(String, String)> = Vec::new();
        let mut to_mark: Vec<String> = Vec::new();
        for name in order {
            let outcome = (|| -> Result<LoadedPlugin, LoadFailure> {
                let record = self.record(&state, &name)?;
                let manifest = read
                    .remove(&name)
                    .unwrap_or_else(|| self.read_manifest(&name).map(|m| m.manifest))?;
                self.check_compatibility(&manifest, &self.plugin_dir(&name))?;
                // Files changed after install are not what the user granted anything to.
                let changed = self.changed_files(&name, record)?;
                if !changed.is_empty() {
                    let error = ProjectError::FilesChanged {
                        plugin: name.clone(),
                        changes: changed.iter().map(ToString::to_string).collect(),
                    };
                    self.audit.record(
                        AuditEvent::new("plugin.integrity", "refused")
                            .plugin(&name)
                            .attempted("start")
                            .detail(
                                "changes",
                                json!(changed.iter().map(ToString::to_string).collect::<Vec<_>>()),
                            ),
                    );
                    return Err(error.into());
                }
                self.check_policy(&security, &name, record, &manifest, "start")?;
                for dep in manifest.requires.plugins.iter().filter(|d| !d.optional) {
                    if let Some((_, why)) = failed.iter().find(|(f, _)| *f == dep.name) {
                        return Err(LoadFailure {
                            reason: format!("dependency `{}` failed to load: {why}", dep.name),
                            persist: to_mark.contains(&dep.name),
                        });
                    }
                }
                let effective = self.effective_config(&name, &manifest, &config);
                let grants = self.effective_grants(record, &manifest, policy);
                let expansion = expand_config(
                    &effective,
                    &trellis_host_api::Grants::from_requests(&grants),
                    &*self.env,
                );
                if !expansion.not_granted.is_empty() {
                    tracing::warn!(plugin = %name, variables = ?expansion.not_granted, "configuration references environment variables the plugin is not granted; they are left as written");
                }
                let expanded = expansion.value;
                if let Some(schema) = manifest.config.as_ref().and_then(|c| c.schema.as_ref()) {
                    let validator = ConfigValidator::new(schema)?;
                    let violations = validator.validate(&expanded);
                    if !violations.is_empty() {
                        return Err(ProjectError::ConfigInvalid {
                            plugin: name.clone(),
                            violations,
                        }
                        .into());
                    }
                }
                Ok(LoadedPlugin {
                    name: name.clone(),
                    dir: self.plugin_dir(&name),
                    grants,
                    limit_caps: limit_caps.clone(),
                    manifest,
                    config: expanded,
                })
            })();
            match outcome {
                Ok(plugin) => loaded.push(plugin),
                Err(failure) => {
                    if failure.persist {
                        to_mark.push(name.clone());
                    }
                    failed.push((name, failure.reason));
                }
            }
        }
        if !to_mark.is_empty() {
            let _lock = self.lock()?;
            let mut state = self.state()?;
            for (name, reason) in failed.iter().filter(|(n, _)| to_mark.contains(n)) {
                self.mark_failed_locked(&mut state, name, reason)?;
            }
        }
        Ok(LoadReport { loaded, failed })
    }

    /// All installed plugins, sorted by name.
    pub fn list(&self) -> Result<Vec<PluginSummary>, ProjectError> {
        self.settle_before_read()?;
        let state = self.state()?;
        let security = self.security()?;
        let order = self.load_order().unwrap_or_default();
        let mut out = Vec::new();
        for (name, record) in &state.plugins {
            let manifest = self.read_manifest(name).ok().map(|l| l.manifest);
            out.push(self.summary(name, record, manifest.as_ref(), &order, &security));
        }
        Ok(out)
    }

    fn summary(
        &self,
        name: &str,
        record: &PluginRecord,
        manifest: Option<&Manifest>,
        order: &[String],
        security: &SecuritySettings,
    ) -> PluginSummary {
        let fresh = self.recheck_signature(name, record, security);
        let (granted, withheld) = match manifest {
            Some(m) => {
                let (effective, withheld) = security::grant_status(record, m, &security.policy);
                (effective.into_iter().map(|c| c.name).collect(), withheld)
            }
            None => (Vec::new(), Vec::new()),
        };
        let (description, runtime, capabilities, provides) = match manifest {
            Some(m) => (
                m.metadata.description.clone(),
                m.runtime.kind.as_str(),
                m.capability_names()
                    .into_iter()
                    .map(str::to_owned)
                    .collect(),
                m.provided_summary(),
            ),
            None => (None, "unknown", Vec::new(), BTreeMap::new()),
        };
        PluginSummary {
            name: name.to_owned(),
            version: record.version.clone(),
            state: record.state,
            reason: record.reason.clone(),
            description,
            runtime,
            load_order: order.iter().position(|n| n == name),
            capabilities,
            provides,
            source: record.source.clone(),
            checksum: record.checksum.clone(),
            trust: fresh.level,
            signer: fresh.principal,
            granted,
            withheld,
        }
    }

    /// Everything known about one installed plugin.
    pub fn info(&self, name: &str) -> Result<PluginInfo, ProjectError> {
        self.settle_before_read()?;
        let state = self.state()?;
        let record = self.record(&state, name)?;
        let loaded = self.read_manifest(name)?;
        let order = self.load_order().unwrap_or_default();
        let config = self.effective_config(
            name,
            &loaded.manifest,
            &ProjectConfig::read_or_default(self)?,
        );
        let dependents = self
            .installed_manifests(&state, None)?
            .iter()
            .filter(|(_, m)| m.requires.plugins.iter().any(|d| d.name == name))
            .map(|(n, _)| n.clone())
            .collect();
        Ok(PluginInfo {
            summary: self.summary(
                name,
                record,
                Some(&loaded.manifest),
                &order,
                &self.security()?,
            ),
            path: loaded.dir.clone(),
            manifest: loaded.manifest,
            config,
            dependents,
        })
    }

    /// Finds the enabled plugin that provides command `name` (`<plugin>:<command>` picks one
    /// explicitly). Returns the plugin name and the command.
    pub fn resolve_command(
        &self,
        name: &str,
    ) -> Result<(String, trellis_manifest::Command), ProjectError> {
        let state = self.state()?;
        let enabled: Vec<(String, Manifest)> = self
            .installed_manifests(&state, None)?
            .into_iter()
            .filter(|(n, _)| {
                state
                    .plugins
                    .get(n)
                    .is_some_and(|r| r.state == LifecycleState::Enabled)
            })
            .collect();
        let enabled: Vec<(&str, &Manifest)> =
            enabled.iter().map(|(n, m)| (n.as_str(), m)).collect();
        self.resolve_command_among(name, &enabled)
    }

    /// [`Project::resolve_command`] among plugins whose manifests the caller has already read
    /// (a host that loaded them), so that nothing is read again.
    pub fn resolve_command_among(
        &self,
        name: &str,
        enabled: &[(&str, &Manifest)],
    ) -> Result<(String, trellis_manifest::Command), ProjectError> {
        if let Some((plugin, command)) = name.rsplit_once(':')
            && let Some((_, m)) = enabled.iter().find(|(n, _)| *n == plugin)
            && let Some(c) = m.provides.commands.iter().find(|c| c.name == command)
        {
            return Ok((plugin.to_owned(), c.clone()));
        }
        let owners: Vec<(&str, &trellis_manifest::Command)> = enabled
            .iter()
            .flat_map(|(n, m)| {
                m.provides
                    .commands
                    .iter()
                    .filter(|c| c.name == name)
                    .map(move |c| (*n, c))
            })
            .collect();
        match owners.as_slice() {
            [(plugin, command)] => Ok(((*plugin).to_owned(), (*command).clone())),
            [] => {
                // A plugin that provides it but failed to start: say why rather than "unknown".
                let state = self.state()?;
                for (plugin, record) in &state.plugins {
                    if record.state != LifecycleState::Failed {
                        continue;
                    }
                    if let Ok(loaded) = self.read_manifest(plugin)
                        && loaded
                            .manifest
                            .provides
                            .commands
                            .iter()
                            .any(|c| c.name == name)
                    {
                        return Err(ProjectError::ProviderFailed {
                            command: name.to_owned(),
                            plugin: plugin.clone(),
                            reason: record.reason.clone().unwrap_or_default(),
                        });
                    }
                }
                let all: Vec<String> = enabled
                    .iter()
                    .flat_map(|(_, m)| m.provides.commands.iter().map(|c| c.name.clone()))
                    .collect();
                let suggestion =
                    did_you_mean(name, all.iter().map(String::as_str)).map(str::to_owned);
                Err(ProjectError::UnknownCommand {
                    name: name.to_owned(),
                    suggestion,
                })
            }
            many => Err(ProjectError::AmbiguousCommand {
                name: name.to_owned(),
                qualified: many
                    .iter()
                    .map(|(p, c)| format!("{p}:{}", c.name))
                    .collect(),
            }),
        }
    }

    fn effective_config(&self, name: &str, manifest: &Manifest, config: &ProjectConfig) -> Value {
        let defaults = manifest
            .config
            .as_ref()
            .and_then(|c| c.defaults.clone())
            .unwrap_or_else(|| json!({}));
        let user = config
            .plugins
            .get(name)
            .cloned()
            .unwrap_or_else(|| json!({}));
        apply_defaults(&defaults, &user)
    }

    fn config_context(
        &self,
        name: &str,
    ) -> Result<(Manifest, ConfigValidator, ProjectConfig), ProjectError> {
        let state = self.state()?;
        self.record(&state, name)?;
        let manifest = self.read_manifest(name)?.manifest;
        let schema = manifest
            .config
            .as_ref()
            .and_then(|c| c.schema.clone())
            .ok_or_else(|| ProjectError::NoConfigSchema {
                plugin: name.to_owned(),
            })?;
        let validator =
            ConfigValidator::new(&schema).map_err(|reason| ProjectError::ConfigKey {
                plugin: name.to_owned(),
                key: "config.schema".to_owned(),
                reason,
            })?;
        Ok((manifest, validator, ProjectConfig::read_or_default(self)?))
    }

    /// The effective configuration (defaults applied, `${VAR}` left as written), or one key.
    pub fn config_get(&self, name: &str, key: Option<&str>) -> Result<Value, ProjectError> {
        let state = self.state()?;
        self.record(&state, name)?;
        let manifest = self.read_manifest(name)?.manifest;
        let effective =
            self.effective_config(name, &manifest, &ProjectConfig::read_or_default(self)?);
        let Some(key) = key else { return Ok(effective) };
        let path = self.key_path(name, key)?;
        config::get_path(&effective, &path)
            .cloned()
            .ok_or_else(|| ProjectError::ConfigKey {
                plugin: name.to_owned(),
                key: key.to_owned(),
                reason: "it is not set and has no default".to_owned(),
            })
    }

    fn key_path<'k>(&self, name: &str, key: &'k str) -> Result<Vec<&'k str>, ProjectError> {
        config::key_segments(key).ok_or_else(|| ProjectError::ConfigKey {
            plugin: name.to_owned(),
            key: key.to_owned(),
            reason: "keys are names separated by `.`, like `severity.threshold`".to_owned(),
        })
    }

    /// Sets one key from a command-line value (parsed as YAML: `5`, `true`, `[a, b]`). The new
    /// configuration is validated against the plugin's schema (with `${VAR}`s expanded where
    /// set) before anything is written. Returns the `${VAR}`s that are not set now.
    pub fn config_set(
        &self,
        name: &str,
        key: &str,
        raw: &str,
    ) -> Result<Vec<String>, ProjectError> {
        let path = self.key_path(name, key)?;
        let _lock = self.lock_if_installed(name)?;
        let (manifest, validator, mut config) = self.config_context(name)?;
        check_known_key(
            name,
            key,
            &path,
            manifest.config.as_ref().and_then(|c| c.schema.as_ref()),
        )?;
        let mut user = config
            .plugins
            .get(name)
            .cloned()
            .unwrap_or_else(|| json!({}));
        config::set_path(&mut user, &path, config::parse_cli_value(raw)).map_err(|reason| {
            ProjectError::ConfigKey {
                plugin: name.to_owned(),
                key: key.to_owned(),
                reason,
            }
        })?;
        let missing = self.validate_user_config(name, &manifest, &validator, &user)?;
        config.plugins.insert(name.to_owned(), user);
        config.write(&self.config_path())?;
        self.emit("plugin.configured", json!({"plugin": name, "key": key}));
        Ok(missing)
    }

    /// Removes one key (its default, if any, applies again).
    pub fn config_unset(&self, name: &str, key: &str) -> Result<Transition, ProjectError> {
        let path = self.key_path(name, key)?;
        let _lock = self.lock_if_installed(name)?;
        let (manifest, validator, mut config) = self.config_context(name)?;
        let Some(mut user) = config.plugins.get(name).cloned() else {
            return Ok(Transition::Unchanged);
        };
        if !config::unset_path(&mut user, &path) {
            return Ok(Transition::Unchanged);
        }
        self.validate_user_config(name, &manifest, &validator, &user)?;
        if user.as_object().is_some_and(serde_json::Map::is_empty) {
            config.plugins.remove(name);
        } else {
            config.plugins.insert(name.to_owned(), user);
        }
        config.write(&self.config_path())?;
        self.emit("plugin.configured", json!({"plugin": name, "key": key}));
        Ok(Transition::Changed)
    }

    /// Validates the stored configuration against the schema; reports violations and unset
    /// `${VAR}`s without failing, so callers can show everything at once.
    pub fn config_validate(&self, name: &str) -> Result<ConfigReport, ProjectError> {
        let (manifest, validator, config) = self.config_context(name)?;
        let effective = self.effective_config(name, &manifest, &config);
        let state = self.state()?;
        let record = self.record(&state, name)?;
        let security = self.security()?;
        let grants = self.effective_grants(record, &manifest, &security.policy);
        let expansion = expand_config(
            &effective,
            &trellis_host_api::Grants::from_requests(&grants),
            &*self.env,
        );
        Ok(ConfigReport {
            violations: validator.validate(&expansion.value),
            missing_env: expansion.unset,
            not_granted: expansion.not_granted,
        })
    }

    /// The configuration with `${VAR}`s expanded for a plugin about to be installed or enabled:
    /// every reference must be to a variable its manifest's `environment` capability names, or
    /// the step is refused (nothing else would ever expand it).
    fn expand_requested(
        &self,
        name: &str,
        manifest: &Manifest,
        effective: &Value,
    ) -> Result<Value, ProjectError> {
        let requested = trellis_host_api::Grants::from_requests(&manifest.requires.capabilities);
        let expansion = expand_config(effective, &requested, &*self.env);
        if !expansion.not_granted.is_empty() {
            return Err(ProjectError::ConfigEnvNotRequested {
                plugin: name.to_owned(),
                variables: expansion.not_granted,
            });
        }
        Ok(expansion.value)
    }

    fn validate_user_config(
        &self,
        name: &str,
        manifest: &Manifest,
        validator: &ConfigValidator,
        user: &Value,
    ) -> Result<Vec<String>, ProjectError> {
        let defaults = manifest
            .config
            .as_ref()
            .and_then(|c| c.defaults.clone())
            .unwrap_or_else(|| json!({}));
        let effective = apply_defaults(&defaults, user);
        let requested = trellis_host_api::Grants::from_requests(&manifest.requires.capabilities);
        let expansion = expand_config(&effective, &requested, &*self.env);
        if !expansion.not_granted.is_empty() {
            return Err(ProjectError::ConfigEnvNotRequested {
                plugin: name.to_owned(),
                variables: expansion.not_granted,
            });
        }
        let missing = expansion.unset;
        let violations = validator.validate(&expansion.value);
        if !violations.is_empty() {
            return Err(ProjectError::ConfigInvalid {
                plugin: name.to_owned(),
                violations,
            });
        }
        Ok(missing)
    }

    fn lock_if_installed(&self, name: &str) -> Result<ProjectLock, ProjectError> {
        let state = self.state()?;
        self.record(&state, name)?;
        self.lock()
    }
}

/// A plugin load failure: the reason, and whether it is the plugin's own fault and so is kept
/// in the state as `failed`. A policy refusal depends on files outside the plugin (the
/// admin's policy, the signer lists) and holds only while they say so: the plugin stays
/// enabled and starts again once they allow it.
struct LoadFailure {
    reason: String,
    persist: bool,
}

impl From<ProjectError> for LoadFailure {
    fn from(e: ProjectError) -> Self {
        let persist = !matches!(
            e,
            ProjectError::PolicyRefused { .. } | ProjectError::Policy(_) | ProjectError::Trust(_)
        );
        LoadFailure {
            reason: e.to_string(),
            persist,
        }
    }
}

impl From<String> for LoadFailure {
    fn from(reason: String) -> Self {
        LoadFailure {
            reason,
            persist: true,
        }
    }
}

impl ProjectConfig {
    fn read_or_default(project: &Project) -> Result<ProjectConfig, ProjectError> {
        ProjectConfig::read(&project.config_path())
    }
}

use config::ProjectConfig;

/// Refuses keys the schema does not know, when the schema lists its properties and does not
/// allow others, so that `severty` gets a "did you mean" instead of being stored.
fn check_known_key(
    plugin: &str,
    key: &str,
    path: &[&str],
    schema: Option<&Value>,
) -> Result<(), ProjectError> {
    let mut node = schema;
    for segment in path {
        let Some(current) = node else { return Ok(()) };
        let Some(props) = current.get("properties").and_then(Value::as_object) else {
            return Ok(());
        };
        if let Some(child) = props.get(*segment) {
            node = Some(child);
            continue;
        }
        if current
            .get("additionalProperties")
            .is_some_and(|a| a != &Value::Bool(false))
        {
            return Ok(());
        }
        let known: Vec<&String> = props.keys().collect();
        let suggestion = did_you_mean(segment, known.iter().map(|k| k.as_str()));
        let reason = match suggestion {
            Some(s) => format!("unknown key `{segment}` (did you mean `{s}`?)"),
            None => format!(
                "unknown key `{segment}`; known keys: {}",
                known
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        return Err(ProjectError::ConfigKey {
            plugin: plugin.to_owned(),
            key: key.to_owned(),
            reason,
        });
    }
    Ok(())
}

/// The platform name manifests use.
pub fn current_platform() -> &'static str {
    match std::env::consts::OS {
        "macos" => "macos",
        "windows" => "windows",
        "linux" => "linux",
        other => other,
    }
}
