//! The machine-owned record of what is installed and in which state (`.trellis/state.json`),
//! and the lockfile derived from it (`.trellis/trellis.lock`).
//!
//! `state.json` is the commit point of every lifecycle transition: a plugin directory exists
//! under `plugins/` before its entry is written and is deleted only after its entry is gone,
//! so a crash in between leaves an orphan directory (cleaned on the next write), never an
//! entry without files. The lockfile is rewritten from the state after each commit; if the two
//! ever disagree, the state wins.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use chrono::{DateTime, Utc};
use semver::Version;
use serde::{Deserialize, Serialize};

use trellis_manifest::CapabilityRequest;
use trellis_package::PackagedFile;
pub use trellis_process::python_env::PythonEnv;
use trellis_trust::TrustLevel;

use crate::ProjectError;
use crate::fsutil::write_atomic;

/// 2 added packages, trust and grants: an older trellis must not rewrite the state without
/// them (it would run plugins with every capability they request).
pub const STATE_FORMAT_VERSION: u32 = 2;
pub const LOCK_FORMAT_VERSION: u32 = 1;

/// Where a plugin is in its lifecycle. `available` (in a registry, not installed) and `removed`
/// are not stored: a removed plugin has no entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LifecycleState {
    Installed,
    Enabled,
    Disabled,
    Failed,
}

impl LifecycleState {
    pub fn as_str(self) -> &'static str {
        match self {
            LifecycleState::Installed => "installed",
            LifecycleState::Enabled => "enabled",
            LifecycleState::Disabled => "disabled",
            LifecycleState::Failed => "failed",
        }
    }
}

impl std::fmt::Display for LifecycleState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginRecord {
    pub version: Version,
    pub state: LifecycleState,
    /// Why the plugin is `failed`; kept until the next successful transition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The state a failed plugin was meant to be in (so `enable` after a fix knows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_from: Option<LifecycleState>,
    /// `path+file:///abs/dir` for local installs; registry sources later.
    pub source: String,
    /// `sha256:` content hash of the installed tree at install time.
    pub checksum: String,
    pub installed_at: DateTime<Utc>,
    pub changed_at: DateTime<Utc>,
    /// The user accepted name conflicts with other enabled plugins; their shared names are
    /// then reachable only as `<plugin>:<name>`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_conflicts: bool,
    /// The package this plugin was installed from and what its signature said then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<PackageRecord>,
    /// The capabilities the user granted, for exactly that package.
    #[serde(default)]
    pub grants: GrantSet,
    /// The configured registry it was installed from, when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,
    /// The plugin's own Python environment (`.trellis/envs/<name>/`), when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python_env: Option<PythonEnv>,
}

impl PluginRecord {
    pub fn trust_level(&self) -> TrustLevel {
        self.package
            .as_ref()
            .map_or(TrustLevel::Unsigned, |p| p.trust.level)
    }

    pub fn signer(&self) -> Option<&str> {
        self.package
            .as_ref()
            .and_then(|p| p.trust.principal.as_deref())
    }
}

/// What was installed: the archive's hash, its signature as verified at install, and the
/// SHA-256 of every file, so that later changes to the installed copy can be named.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PackageRecord {
    /// `sha256:<hex>` of the package archive.
    pub sha256: String,
    /// The archive file name kept under `.trellis/packages/<name>/`.
    pub archive: String,
    pub trust: TrustRecord,
    /// The package's file list: path, SHA-256, size and mode of every installed file.
    pub files: Vec<PackagedFile>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrustRecord {
    pub level: TrustLevel,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certifier: Option<String>,
}

/// The user's decisions about one plugin's requested capabilities. They hold only for the
/// package whose hash they carry: a different package asks again for whatever changed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GrantSet {
    /// `sha256:<hex>` of the package the decisions were made for.
    #[serde(default)]
    pub package: String,
    /// Granted capabilities with the scope (paths, hosts, ...) they were granted with.
    #[serde(default)]
    pub granted: Vec<CapabilityRequest>,
    /// Capabilities the user refused.
    #[serde(default)]
    pub refused: Vec<String>,
    /// Granted capabilities the user decided one by one (at a prompt, with `--grant`, or with
    /// `trellis plugin grants NAME grant CAP`) rather than with a blanket `--yes`. Only these
    /// count for a capability the policy says requires approval, even when that rule came
    /// after the grant.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approved: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProjectState {
    pub format: u32,
    #[serde(default)]
    pub plugins: BTreeMap<String, PluginRecord>,
    /// The id of the last journalled change (install, update, remove) this state commits;
    /// how an interrupted change is told committed or not (see the journal module).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction: Option<String>,
}

impl Default for ProjectState {
    fn default() -> Self {
        ProjectState {
            format: STATE_FORMAT_VERSION,
            plugins: BTreeMap::new(),
            transaction: None,
        }
    }
}

impl ProjectState {
    pub(crate) fn read(path: &Path) -> Result<Self, ProjectError> {
        let text = match fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(ProjectState::default());
            }
            Err(source) => {
                return Err(ProjectError::Io {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        let state: ProjectState =
            serde_json::from_str(&text).map_err(|e| ProjectError::CorruptState {
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
        if state.format > STATE_FORMAT_VERSION {
            return Err(ProjectError::CorruptState {
                path: path.to_owned(),
                reason: format!(
                    "format {} was written by a newer trellis (this one reads up to {STATE_FORMAT_VERSION}); upgrade trellis",
                    state.format
                ),
            });
        }
        Ok(state)
    }

    pub(crate) fn write(&self, path: &Path) -> Result<(), ProjectError> {
        let mut bytes =
            serde_json::to_vec_pretty(self).map_err(|e| ProjectError::CorruptState {
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
        bytes.push(b'\n');
        write_atomic(path, &bytes)
    }
}

/// `.trellis/trellis.lock`: exact versions, checksums and sources, for reproducing a project's
/// plugin set elsewhere.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lockfile {
    pub version: u32,
    #[serde(default, rename = "plugin")]
    pub plugins: Vec<LockedPlugin>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockedPlugin {
    pub name: String,
    pub version: Version,
    pub source: String,
    pub checksum: String,
    /// `sha256:<hex>` of the package archive, when installed from one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    /// The registry it resolved from, when it did; `install --locked` requires the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dependencies: Vec<String>,
    /// What its own Python environment holds, exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python_env: Option<PythonEnv>,
}

impl Lockfile {
    pub(crate) fn write(&self, path: &Path) -> Result<(), ProjectError> {
        let body = toml::to_string_pretty(self).map_err(|e| ProjectError::CorruptState {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        let text = format!(
            "# Generated by trellis. Do not edit: run `trellis plugin install` and friends.\n{body}"
        );
        write_atomic(path, text.as_bytes())
    }

    pub fn read(path: &Path) -> Result<Option<Self>, ProjectError> {
        let text = match fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(ProjectError::Io {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        toml::from_str(&text)
            .map(Some)
            .map_err(|e| ProjectError::CorruptState {
                path: path.to_owned(),
                reason: e.to_string(),
            })
    }
}
