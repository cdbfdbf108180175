//! The registries a project installs from: `.trellis/registries.yaml` (names, URLs,
//! priorities, token variables), the TUF root pinned for each in
//! `.trellis/registries/<name>.root.json`, and a verified, cached view of their indexes.
//!
//! Both files are meant to be committed: a team shares which registries it uses and which
//! root keys it trusts for them. What a client last saw of each registry (for rollback and
//! freeze protection) and the verified index copies used by `--offline` are per machine, in
//! the cache directory.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::Digest;
use trellis_registry::RegistryError;
use trellis_registry::index::{
    CONFIG_TARGET, IndexEntry, RegistryConfig, parse_index, plugin_of_index_target,
};
use trellis_registry::resolve::{Catalog, Listing};
use trellis_registry::tuf::VerifiedRegistry;

use crate::fsutil::{io_err, write_atomic};
use crate::{Project, ProjectError};

/// One configured registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrySource {
    pub name: String,
    /// `file:///path`, `https://host/base`: the registry's static form is below it
    /// (`metadata/`, `targets/`).
    pub url: String,
    /// Lower is consulted first; a name resolves from the first registry that lists it.
    #[serde(default = "default_priority")]
    pub priority: i64,
    /// The environment variable holding a token for this registry's API (publish, yank).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_env: Option<String>,
}

fn default_priority() -> i64 {
    DEFAULT_PRIORITY
}

/// The priority of a registry added without `--priority`.
pub const DEFAULT_PRIORITY: i64 = 100;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistriesFile {
    #[serde(default)]
    registries: Vec<RegistrySource>,
}

/// A registry as the catalog holds it: its config and every index it lists.
#[derive(Debug, Clone)]
pub struct RegistryView {
    pub source: RegistrySource,
    pub config: RegistryConfig,
    pub indexes: BTreeMap<String, Vec<IndexEntry>>,
    /// Read from the local cache without checking freshness (`--offline`).
    pub offline: bool,
    verified: Option<VerifiedRegistryHandle>,
}

/// The verified registry, kept to download archives with.
#[derive(Clone)]
struct VerifiedRegistryHandle(std::sync::Arc<VerifiedRegistry>);

impl std::fmt::Debug for VerifiedRegistryHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VerifiedRegistry")
    }
}

/// Every configured registry, read and verified, in priority order.
#[derive(Debug, Clone, Default)]
pub struct RegistryCatalog {
    pub registries: Vec<RegistryView>,
}

impl Catalog for RegistryCatalog {
    fn listings(&self, name: &str) -> Vec<Listing> {
        self.registries
            .iter()
            .filter_map(|r| {
                r.indexes.get(name).map(|entries| Listing {
                    registry: r.source.name.clone(),
                    entries: entries.clone(),
                })
            })
            .collect()
    }
}

/// The base URL of a registry, from a URL or a local path.
pub fn registry_url(text: &str) -> Result<url::Url, ProjectError> {
    let invalid = |reason: String| ProjectError::InvalidRegistry {
        field: "url",
        value: text.to_owned(),
        reason,
    };
    let mut url = if text.contains("://") {
        url::Url::parse(text).map_err(|e| invalid(e.to_string()))?
    } else {
        let path = fs::canonicalize(text)
            .map_err(|e| invalid(format!("not a URL, and not a directory here: {e}")))?;
        url::Url::from_directory_path(&path)
            .map_err(|()| invalid("not an absolute directory path".to_owned()))?
    };
    if !matches!(url.scheme(), "file" | "http" | "https") {
        return Err(invalid(format!(
            "scheme `{}` is not supported: use file://, http:// or https://",
            url.scheme()
        )));
    }
    if !url.path().ends_with('/') {
        url.set_path(&format!("{}/", url.path()));
    }
    Ok(url)
}

fn registry_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
}

impl Project {
    fn registries_path(&self) -> PathBuf {
        self.dir.join("registries.yaml")
    }

    fn root_pin_path(&self, name: &str) -> PathBuf {
        self.dir
            .join("registries")
            .join(format!("{name}.root.json"))
    }

    fn registry_cache(&self, name: &str) -> Result<PathBuf, ProjectError> {
        let base = match (self.env)("TRELLIS_CACHE_DIR").filter(|d| !d.is_empty()) {
            Some(dir) => PathBuf::from(dir),
            None => match (self.env)("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
                Some(dir) => PathBuf::from(dir).join("trellis"),
                None => (self.env)("HOME")
                    .filter(|d| !d.is_empty())
                    .map(|h| PathBuf::from(h).join(".cache").join("trellis"))
                    .unwrap_or_else(|| self.dir.join("cache")),
            },
        };
        // Per project as well as per registry name: two projects may give one name to two
        // registries, and what one saw must not judge the other.
        let digest = hex::encode(sha2::Sha256::digest(self.dir.to_string_lossy().as_bytes()));
        let project_key = &digest[..16];
        Ok(base.join("registries").join(project_key).join(name))
    }

    fn read_registries(&self) -> Result<RegistriesFile, ProjectError> {
        let path = self.registries_path();
        match fs::read_to_string(&path) {
            Ok(text) => {
                serde_norway::from_str(&text).map_err(|e| ProjectError::InvalidConfigFile {
                    path: path.clone(),
                    reason: e.to_string(),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(RegistriesFile::default()),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    fn write_registries(&self, file: &RegistriesFile) -> Result<(), ProjectError> {
        let path = self.registries_path();
        let text = serde_norway::to_string(file).map_err(|e| ProjectError::InvalidConfigFile {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        write_atomic(
            &path,
            format!("# Registries this project installs from; see docs/registry.md.\n{text}")
                .as_bytes(),
        )
    }

    /// The configured registries, lowest priority number first.
    pub fn registries(&self) -> Result<Vec<RegistrySource>, ProjectError> {
        let mut list = self.read_registries()?.registries;
        list.sort_by(|a, b| a.priority.cmp(&b.priority).then(a.name.cmp(&b.name)));
        Ok(list)
    }

    /// Adds a registry: checks the policy allows it, pins its root metadata (`root` when
    /// given, else the registry's own `metadata/1.root.json`, trusted on first use), and
    /// verifies that the registry loads with it.
    pub fn add_registry(
        &self,
        source: RegistrySource,
        root: Option<&Path>,
    ) -> Result<RegistryView, ProjectError> {
        if !registry_name_ok(&source.name) {
            return Err(ProjectError::InvalidRegistry {
                field: "name",
                value: source.name.clone(),
                reason: "use lowercase letters, digits and `-`".to_owned(),
            });
        }
        let url = registry_url(&source.url)?;
        let source = RegistrySource {
            url: url.to_string(),
            ..source
        };
        self.check_registry_policy(&source)?;
        let _lock = self.lock()?;
        let mut file = self.read_registries()?;
        if file.registries.iter().any(|r| r.name == source.name) {
            return Err(ProjectError::InvalidRegistry {
                field: "name",
                value: source.name.clone(),
                reason: format!(
                    "a registry with this name is already configured; remove it first with `trellis plugin registry remove {}`",
                    source.name
                ),
            });
        }
        let root_bytes = match root {
            Some(path) => fs::read(path).map_err(io_err(path))?,
            None => trellis_registry::tuf::fetch_initial_root(&metadata_url(&url)?)
                .map_err(|e| registry_error(&source.name, e))?,
        };
        // A fresh datastore: what a previous registry of that name showed does not count.
        let cache = self.registry_cache(&source.name)?;
        let _ = fs::remove_dir_all(&cache);
        let view = self.load_registry(&source, &root_bytes, false)?;
        // The newest root verified from the one given: the registry may have rotated it.
        let pinned = newer_root(&view, &root_bytes)?.unwrap_or(root_bytes);
        write_atomic(&self.root_pin_path(&source.name), &pinned)?;
        file.registries.push(source.clone());
        self.write_registries(&file)?;
        self.audit.record(
            trellis_audit::AuditEvent::new("registry.added", "ok")
                .detail("registry", serde_json::json!(source.name))
                .detail("url", serde_json::json!(source.url)),
        );
        Ok(view)
    }

    /// Removes a registry and its pinned root. Installed plugins stay.
    pub fn remove_registry(&self, name: &str) -> Result<(), ProjectError> {
        let _lock = self.lock()?;
        let mut file = self.read_registries()?;
        let before = file.registries.len();
        file.registries.retain(|r| r.name != name);
        if file.registries.len() == before {
            return Err(ProjectError::UnknownRegistry {
                name: name.to_owned(),
                configured: file.registries.iter().map(|r| r.name.clone()).collect(),
            });
        }
        self.write_registries(&file)?;
        let pin = self.root_pin_path(name);
        if let Err(e) = fs::remove_file(&pin)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            return Err(io_err(&pin)(e));
        }
        let _ = fs::remove_dir_all(self.registry_cache(name)?);
        self.audit.record(
            trellis_audit::AuditEvent::new("registry.removed", "ok")
                .detail("registry", serde_json::json!(name)),
        );
        Ok(())
    }

    /// The publisher keys of every configured registry the policy allows, from the copy of
    /// its config verified at the last online read.
    pub(crate) fn registry_attestations(
        &self,
        policy: &trellis_policy::Policy,
    ) -> Result<Vec<trellis_trust::AllowedSigners>, ProjectError> {
        let mut out = Vec::new();
        for source in self.registries()? {
            if !policy.check_registry(&source.url).is_empty() {
                continue;
            }
            let path = self
                .registry_cache(&source.name)?
                .join("verified")
                .join(CONFIG_TARGET);
            let Ok(bytes) = fs::read(&path) else {
                continue;
            };
            let config = RegistryConfig::parse(&bytes, &path.display().to_string())
                .map_err(|e| registry_error(&source.name, e))?;
            out.push(
                trellis_registry::publish::publisher_signers(&config)
                    .map_err(|e| registry_error(&source.name, e))?,
            );
        }
        Ok(out)
    }

    fn check_registry_policy(&self, source: &RegistrySource) -> Result<(), ProjectError> {
        let security = self.security()?;
        let violations = security.policy.check_registry(&source.url);
        if violations.is_empty() {
            Ok(())
        } else {
            Err(self.refuse_by_policy(&source.name, "use the registry", violations))
        }
    }

    /// Reads every configured registry: verified against its pinned root and what this machine
    /// saw last, or with `offline` from the verified copies cached by the last online read.
    pub fn registry_catalog(&self, offline: bool) -> Result<RegistryCatalog, ProjectError> {
        let mut catalog = RegistryCatalog::default();
        for source in self.registries()? {
            self.check_registry_policy(&source)?;
            let pin = self.root_pin_path(&source.name);
            let root = fs::read(&pin).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => ProjectError::InvalidRegistry {
                    field: "root",
                    value: pin.display().to_string(),
                    reason: format!(
                        "the pinned root of `{}` is missing: remove and add the registry again",
                        source.name
                    ),
                },
                _ => io_err(&pin)(e),
            })?;
            let view = self.load_registry(&source, &root, offline)?;
            if let Some(newer) = newer_root(&view, &root)? {
                self.update_root_pin(&source.name, &pin, &root, &newer)?;
            }
            catalog.registries.push(view);
        }
        Ok(catalog)
    }

    /// Pins `newer`, a root the registry rotated to and that verified from the pinned `old`:
    /// from now on it is what is trusted, so a fresh cache (another machine, CI) starts from
    /// it rather than from keys the registry has retired. The pin is a committed file: the
    /// change shows up for review like any other.
    fn update_root_pin(
        &self,
        name: &str,
        pin: &Path,
        old: &[u8],
        newer: &[u8],
    ) -> Result<(), ProjectError> {
        write_atomic(pin, newer)?;
        let (from, to) = (root_version(old), root_version(newer));
        // Shown by default: the team should commit the new pin.
        tracing::warn!(
            "registry `{name}` rotated its root (version {} → {}): {} now pins the new one; commit it",
            from.unwrap_or_default(),
            to.unwrap_or_default(),
            pin.display()
        );
        self.audit.record(
            trellis_audit::AuditEvent::new("registry.root_updated", "ok")
                .detail("registry", serde_json::json!(name))
                .detail("from_version", serde_json::json!(from))
                .detail("to_version", serde_json::json!(to)),
        );
        Ok(())
    }

    fn load_registry(
        &self,
        source: &RegistrySource,
        root: &[u8],
        offline: bool,
    ) -> Result<RegistryView, ProjectError> {
        let cache = self.registry_cache(&source.name)?;
        let copies = cache.join("verified");
        if offline {
            return read_cached(source, &copies);
        }
        let url = registry_url(&source.url)?;
        let verified = VerifiedRegistry::load(
            root,
            &metadata_url(&url)?,
            &targets_url(&url)?,
            &cache.join("tuf"),
        )
        .map_err(|e| registry_error(&source.name, e))?;
        let config_bytes = verified
            .read_target(CONFIG_TARGET)
            .map_err(|e| registry_error(&source.name, e))?
            .ok_or_else(|| ProjectError::InvalidRegistry {
                field: "url",
                value: source.url.clone(),
                reason: "the registry lists no config.json".to_owned(),
            })?;
        let config = RegistryConfig::parse(&config_bytes, &format!("{}: config.json", source.name))
            .map_err(|e| registry_error(&source.name, e))?;
        // Replace the offline copies as a whole, so they are always one consistent snapshot.
        let staging = cache.join(format!(".verified-{}", ulid::Ulid::generate()));
        write_atomic(&staging.join(CONFIG_TARGET), &config_bytes)?;
        let mut indexes = BTreeMap::new();
        for target in verified.target_names() {
            let Some(name) = plugin_of_index_target(&target) else {
                continue;
            };
            let bytes = verified
                .read_target(&target)
                .map_err(|e| registry_error(&source.name, e))?
                .unwrap_or_default();
            let text = String::from_utf8_lossy(&bytes);
            let entries = parse_index(name, &text, &format!("{}: {target}", source.name))
                .map_err(|e| registry_error(&source.name, e))?;
            write_atomic(&staging.join(&target), &bytes)?;
            indexes.insert(name.to_owned(), entries);
        }
        let _ = fs::remove_dir_all(&copies);
        fs::rename(&staging, &copies).map_err(io_err(&copies))?;
        Ok(RegistryView {
            source: source.clone(),
            config,
            indexes,
            offline: false,
            verified: Some(VerifiedRegistryHandle(std::sync::Arc::new(verified))),
        })
    }

    /// Downloads the archive of `entry` from `view` into `dir` (with its signatures), checked
    /// against the TUF targets and the index's SHA-256. Returns the archive's path.
    pub(crate) fn download_archive(
        &self,
        view: &RegistryView,
        entry: &IndexEntry,
        dir: &Path,
    ) -> Result<PathBuf, ProjectError> {
        let location = view.config.download_location(&entry.name, &entry.version);
        let file_name = location.rsplit('/').next().unwrap_or("package.tar.gz");
        let dest = dir.join(file_name);
        // Archives verified before are kept by hash, for --offline and to save downloads.
        let cached = self
            .registry_cache(&view.source.name)?
            .join("archives")
            .join(format!("{}.tar.gz", entry.sha256));
        if cached.is_file()
            && trellis_package::sha256_file(&cached).is_ok_and(|h| h == entry.sha256)
        {
            fs::copy(&cached, &dest).map_err(io_err(&dest))?;
            for (from, to) in [
                (
                    trellis_trust::signature_path(&cached),
                    trellis_trust::signature_path(&dest),
                ),
                (
                    trellis_trust::certification_path(&cached),
                    trellis_trust::certification_path(&dest),
                ),
            ] {
                if from.is_file() {
                    fs::copy(&from, &to).map_err(io_err(&to))?;
                }
            }
            return Ok(dest);
        }
        let Some(verified) = &view.verified else {
            return Err(ProjectError::Offline {
                registry: view.source.name.clone(),
                what: format!("the archive of {} {}", entry.name, entry.version),
            });
        };
        let found = verified
            .0
            .read_target_to(&location, &dest)
            .map_err(|e| registry_error(&view.source.name, e))?;
        if !found {
            return Err(ProjectError::InvalidRegistry {
                field: "download",
                value: location,
                reason: format!(
                    "{} lists {} {} but not its archive",
                    view.source.name, entry.name, entry.version
                ),
            });
        }
        let actual = trellis_package::sha256_file(&dest).map_err(io_err(&dest))?;
        if actual != entry.sha256 {
            return Err(ProjectError::PackageChanged {
                path: dest,
                expected: entry.sha256.clone(),
                actual,
            });
        }
        for (target, path) in [
            (
                format!("{location}.sig"),
                trellis_trust::signature_path(&dest),
            ),
            (
                format!("{location}.cert.sig"),
                trellis_trust::certification_path(&dest),
            ),
        ] {
            if let Some(bytes) = verified
                .0
                .read_target(&target)
                .map_err(|e| registry_error(&view.source.name, e))?
            {
                write_atomic(&path, &bytes)?;
            }
        }
        // Keeping a copy is a convenience: a full disk must not fail the install.
        let keep = || -> Result<(), ProjectError> {
            write_atomic(&cached, &fs::read(&dest).map_err(io_err(&dest))?)?;
            for (from, to) in [
                (
                    trellis_trust::signature_path(&dest),
                    trellis_trust::signature_path(&cached),
                ),
                (
                    trellis_trust::certification_path(&dest),
                    trellis_trust::certification_path(&cached),
                ),
            ] {
                if from.is_file() {
                    write_atomic(&to, &fs::read(&from).map_err(io_err(&from))?)?;
                }
            }
            Ok(())
        };
        if let Err(e) = keep() {
            tracing::warn!(error = %e, "could not keep a copy of the archive for --offline");
        }
        Ok(dest)
    }
}

fn read_cached(source: &RegistrySource, copies: &Path) -> Result<RegistryView, ProjectError> {
    let config_path = copies.join(CONFIG_TARGET);
    let config_bytes = fs::read(&config_path).map_err(|_| ProjectError::Offline {
        registry: source.name.clone(),
        what: "its index (never read online on this machine)".to_owned(),
    })?;
    let config = RegistryConfig::parse(&config_bytes, &config_path.display().to_string())
        .map_err(|e| registry_error(&source.name, e))?;
    let mut indexes = BTreeMap::new();
    let index_dir = copies.join("index");
    if index_dir.is_dir() {
        for file in walkdir::WalkDir::new(&index_dir).min_depth(1) {
            let file = file.map_err(|e| io_err(&index_dir)(e.into()))?;
            if !file.file_type().is_file() {
                continue;
            }
            let relative = file
                .path()
                .strip_prefix(copies)
                .unwrap_or(file.path())
                .to_string_lossy()
                .replace('\\', "/");
            let Some(name) = plugin_of_index_target(&relative) else {
                continue;
            };
            let text = fs::read_to_string(file.path()).map_err(io_err(file.path()))?;
            let entries = parse_index(name, &text, &file.path().display().to_string())
                .map_err(|e| registry_error(&source.name, e))?;
            indexes.insert(name.to_owned(), entries);
        }
    }
    Ok(RegistryView {
        source: source.clone(),
        config,
        indexes,
        offline: true,
        verified: None,
    })
}

/// The version a root metadata file claims (it is checked by TUF, not here).
fn root_version(bytes: &[u8]) -> Option<u64> {
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    value["signed"]["version"].as_u64()
}

/// The root `view` was verified with, when it is newer than `pinned`: the registry rotated its
/// root since it was pinned, and TUF followed the rotation from the pin.
fn newer_root(view: &RegistryView, pinned: &[u8]) -> Result<Option<Vec<u8>>, ProjectError> {
    let Some(verified) = &view.verified else {
        return Ok(None);
    };
    let verified = &verified.0;
    if root_version(pinned).is_some_and(|v| v >= verified.root().signed.version.get()) {
        return Ok(None);
    }
    verified
        .root_json()
        .map(Some)
        .map_err(|e| registry_error(&view.source.name, e))
}

fn metadata_url(base: &url::Url) -> Result<url::Url, ProjectError> {
    join(base, "metadata/")
}

fn targets_url(base: &url::Url) -> Result<url::Url, ProjectError> {
    join(base, "targets/")
}

fn join(base: &url::Url, path: &str) -> Result<url::Url, ProjectError> {
    base.join(path).map_err(|e| ProjectError::InvalidRegistry {
        field: "url",
        value: base.to_string(),
        reason: e.to_string(),
    })
}

fn registry_error(registry: &str, source: RegistryError) -> ProjectError {
    ProjectError::Registry {
        registry: registry.to_owned(),
        source: Box::new(source),
    }
}

/// What `trellis plugin install NAME[@REQ]` is about to do.
#[derive(Debug, Clone)]
pub struct RegistryPlan {
    pub catalog: RegistryCatalog,
    /// Everything the request needs, dependencies first.
    pub resolved: Vec<trellis_registry::resolve::Resolved>,
    /// Of `resolved`, the names already installed at exactly that package: nothing to do.
    pub unchanged: Vec<String>,
}

impl RegistryPlan {
    /// The plugins to download and install.
    pub fn to_install(&self) -> impl Iterator<Item = &trellis_registry::resolve::Resolved> {
        self.resolved
            .iter()
            .filter(|r| !self.unchanged.contains(&r.entry.name))
    }
}

/// Parses `NAME` or `NAME@REQ` (`scanner@^1.2`, `@acme/scan@1.0.0`).
pub fn parse_spec(spec: &str) -> Result<(String, semver::VersionReq), ProjectError> {
    let (name, req) = match spec.rfind('@') {
        Some(at) if at > 0 => (&spec[..at], Some(&spec[at + 1..])),
        _ => (spec, None),
    };
    let req = match req {
        None => semver::VersionReq::STAR,
        Some(text) => {
            // A bare version means exactly that version, as users expect from `name@1.2.0`.
            let text = if semver::Version::parse(text).is_ok() {
                format!("={text}")
            } else {
                text.to_owned()
            };
            semver::VersionReq::parse(&text).map_err(|e| ProjectError::InvalidRegistry {
                field: "version requirement",
                value: spec.to_owned(),
                reason: format!("{e}; write NAME, NAME@1.2.3 or NAME@^1.2"),
            })?
        }
    };
    Ok((name.to_owned(), req))
}

impl Project {
    /// Resolves `specs` against the configured registries. The lockfile's pins and the
    /// installed packages are preferred when they still satisfy the requirements; with
    /// `locked` only they may be used.
    pub fn plan_registry_install(
        &self,
        specs: &[(String, semver::VersionReq)],
        locked: bool,
        offline: bool,
    ) -> Result<RegistryPlan, ProjectError> {
        let catalog = self.registry_catalog(offline)?;
        self.resolve_against(catalog, specs, locked)
    }

    /// Resolves `specs` against an already read catalog (see [`Project::plan_registry_install`]).
    pub(crate) fn resolve_against(
        &self,
        catalog: RegistryCatalog,
        specs: &[(String, semver::VersionReq)],
        locked: bool,
    ) -> Result<RegistryPlan, ProjectError> {
        if catalog.registries.is_empty() {
            return Err(ProjectError::UnknownRegistry {
                name: "(any)".to_owned(),
                configured: Vec::new(),
            });
        }
        let state = self.state()?;
        let mut pins = BTreeMap::new();
        if let Some(lock) = crate::state::Lockfile::read(&self.lock_path())? {
            for p in lock.plugins {
                if let (Some(package), Some(registry)) = (p.package, p.registry) {
                    pins.insert(
                        p.name,
                        trellis_registry::resolve::Pin {
                            version: p.version,
                            sha256: package.trim_start_matches("sha256:").to_owned(),
                            registry,
                        },
                    );
                }
            }
        }
        for (name, record) in &state.plugins {
            if let (Some(package), Some(registry)) = (&record.package, &record.registry) {
                pins.entry(name.clone())
                    .or_insert_with(|| trellis_registry::resolve::Pin {
                        version: record.version.clone(),
                        sha256: package.sha256.trim_start_matches("sha256:").to_owned(),
                        registry: registry.clone(),
                    });
            }
        }
        let request = trellis_registry::resolve::Request {
            roots: specs.to_vec(),
            trellis: &self.trellis_version,
            pins: &pins,
            locked,
        };
        let resolved = trellis_registry::resolve::resolve(&catalog, &request)
            .map_err(ProjectError::Resolve)?;
        let unchanged = resolved
            .iter()
            .filter(|r| {
                state.plugins.get(&r.entry.name).is_some_and(|rec| {
                    rec.package
                        .as_ref()
                        .is_some_and(|p| p.sha256 == format!("sha256:{}", r.entry.sha256))
                })
            })
            .map(|r| r.entry.name.clone())
            .collect();
        Ok(RegistryPlan {
            catalog,
            resolved,
            unchanged,
        })
    }

    /// Downloads and verifies every package the plan installs (checksum against the signed
    /// index, then signature, trust and policy as for any install) into private temporary
    /// directories. Nothing is written to the project.
    pub fn prepare_registry_install(
        &self,
        plan: &RegistryPlan,
        progress: &mut dyn FnMut(&str, u64),
    ) -> Result<Vec<crate::PreparedInstall>, ProjectError> {
        let mut prepared = Vec::new();
        for item in plan.to_install() {
            let view = plan
                .catalog
                .registries
                .iter()
                .find(|v| v.source.name == item.registry)
                .ok_or_else(|| ProjectError::UnknownRegistry {
                    name: item.registry.clone(),
                    configured: plan
                        .catalog
                        .registries
                        .iter()
                        .map(|v| v.source.name.clone())
                        .collect(),
                })?;
            progress(
                &format!("{} {}", item.entry.name, item.entry.version),
                item.entry.size,
            );
            let download = tempfile::Builder::new()
                .prefix("trellis-download-")
                .tempdir()
                .map_err(io_err(&std::env::temp_dir()))?;
            let archive = self.download_archive(view, &item.entry, download.path())?;
            let origin = crate::RegistryOrigin {
                registry: view.source.name.clone(),
                url: view.source.url.clone(),
            };
            let ready = self.prepare_install_from(&archive, Some(&origin))?;
            if ready.name() != item.entry.name
                || ready.manifest.metadata.version != item.entry.version
            {
                return Err(ProjectError::InvalidRegistry {
                    field: "download",
                    value: archive.display().to_string(),
                    reason: format!(
                        "the index says {} {}, the package inside is {} {}",
                        item.entry.name,
                        item.entry.version,
                        ready.name(),
                        ready.manifest.metadata.version
                    ),
                });
            }
            prepared.push(ready);
        }
        Ok(prepared)
    }
}
