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
//!   envs/<name>/           a Python plugin's own virtual environment, made at install
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
//! The work is split by job: `lifecycle` (install, enable, disable, remove), `loading` (what a
//! host starts, checked at every start), `queries` (lists, details, command lookup),
//! `plugin_config` (configuration values), `compatibility`, `security` (the verified install
//! pipeline, grants, re-checks), `registries` and `update`.
//!
//! This crate knows manifests, the event bus, packages, signatures, policies, the audit log,
//! the registries a project installs from (through `trellis-registry`) and the host API's scope
//! rules (to expand configuration within grants and to describe scopes as enforced); it knows
//! nothing of the CLI, the registry server, or any runtime's internals.

// Errors here carry the full context a person needs (plugin, versions, requirement, file) and
// are only built on the way out of a refused step, so their size never costs anything that
// matters; boxing every field would only make them harder to match on.
#![allow(clippy::result_large_err)]

mod compatibility;
mod config;
mod deps;
mod error;
mod fsutil;
mod journal;
mod lifecycle;
mod loading;
mod plugin_config;
mod queries;
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
mod grants;
mod install;
mod recheck;
mod security;
mod state;

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use semver::Version;
use serde::Serialize;
use serde_json::Value;
use trellis_audit::{AuditLog, AuditSink};
use trellis_core::{EventBus, EventLog};
use trellis_manifest::config_schema::ConfigViolation;
use trellis_manifest::{CapabilityRequest, LoadedManifest, Manifest, did_you_mean};
pub use trellis_policy::LimitCaps;

pub use error::{Conflict, ProjectError};
pub use grants::{
    GrantChoices, GrantDecisions, GrantPlan, GrantPrompt, PendingGrant, WithheldGrant, same_grant,
    scope_text,
};
pub use install::{PreparedInstall, RegistryOrigin};
pub use recheck::PluginAudit;
pub use security::{SYSTEM_ADMIN_DIR, SecuritySettings, user_cache_dir, user_config_dir};
pub use state::{
    GrantSet, LifecycleState, LockedPlugin, Lockfile, PackageRecord, PluginRecord, ProjectState,
    PythonEnv, TrustRecord,
};
pub use trellis_host_api::{Expansion, env_references, expand_config};
pub use trellis_trust::TrustLevel;

use fsutil::io_err;

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
    /// Its own Python environment: where it is and what it holds.
    pub python_env: Option<(PathBuf, PythonEnv)>,
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

/// Starts a package's code once before it is installed and compares what it implements with
/// its manifest (the extracted package's directory and manifest); an error is the failure's
/// stable kind and its message. Set by programs that can run plugins (see
/// [`Project::with_code_check`]); this crate does not run plugins itself.
pub type CodeCheck = Arc<
    dyn Fn(&Path, &trellis_manifest::Manifest) -> Result<(), (&'static str, String)> + Send + Sync,
>;

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
    code_check: Option<CodeCheck>,
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
            code_check: None,
        }
    }

    /// Has every install and update run `check` on the package, once its trust and the policy
    /// have passed and before anything is written: a plugin whose code does not implement
    /// what its manifest declares is refused.
    pub fn with_code_check(mut self, check: CodeCheck) -> Self {
        self.code_check = Some(check);
        self
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

    /// An environment variable, looked up the way this project looks them all up (see
    /// [`Project::with_env`]).
    pub fn env_var(&self, name: &str) -> Option<String> {
        (self.env)(name)
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
    /// Where a plugin's own Python environment lives (outside its package, which stays as
    /// installed and verifiable).
    pub fn python_env_dir(&self, name: &str) -> PathBuf {
        name.split('/')
            .fold(self.dir.join("envs"), |p, part| p.join(part))
    }

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
                python_env: record.python_env.clone(),
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

    fn emit(&self, topic: &str, payload: Value) {
        // The transition is already committed; a failing event log must not undo or fail it.
        if let Err(e) = self.bus.emit(topic, payload) {
            tracing::warn!(%topic, error = %e, "could not record event");
        }
    }
}
