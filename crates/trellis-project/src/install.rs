//! Installing a package in two steps, so that a front end can ask the user in between:
//! [`Project::prepare_install`] verifies the package (signature before anything is extracted),
//! extracts it into a private temporary directory, applies the policy and works out which
//! capabilities need a decision; [`Project::commit_install`] then writes it all under the
//! project lock in one journalled commit. Nothing reaches `.trellis/` before the commit.

use std::fs;
use std::path::{Path, PathBuf};

use chrono::Utc;
use serde_json::json;
use trellis_audit::AuditEvent;
use trellis_manifest::Manifest;
use trellis_package::{ExtractLimits, FileList};
use trellis_trust::Verification;

use crate::fsutil::{copy_tree, io_err, remove_tree, tree_checksum, write_atomic};

use crate::journal::Journal;

use crate::grants::{GrantDecisions, GrantPlan, grant_plan, scope_text};
use crate::security::{capability_list, read_optional, sha256_tag, trust_record};
use crate::state::{GrantSet, PackageRecord, PluginRecord};
use crate::{InstallReport, LifecycleState, Project, ProjectError};

/// Where a package being installed was downloaded from.
#[derive(Debug, Clone)]
pub struct RegistryOrigin {
    /// The registry's name, as configured.
    pub registry: String,
    pub url: String,
}

/// The staging directories of one package being committed.
pub(crate) struct Staged {
    plugin: PathBuf,
    package: PathBuf,
    /// The Python environment built for it, with what it holds.
    python_env: Option<(PathBuf, trellis_process::python_env::PythonEnv)>,
}

/// A verified, extracted package waiting for the user's grant decisions. Dropping it removes
/// its temporary files; nothing of it is in the project yet.
pub struct PreparedInstall {
    workdir: tempfile::TempDir,
    archive: PathBuf,
    archive_name: String,
    signature: Option<String>,
    certification: Option<String>,
    extracted: PathBuf,
    pub manifest: Manifest,
    pub verification: Verification,
    /// `sha256:<hex>` of the archive.
    pub package_sha256: String,
    pub file_list: FileList,
    /// Where it came from, as the state and the lockfile record it.
    pub source: String,
    /// The configured registry it was downloaded from, if any.
    pub registry: Option<String>,
    pub previous: Option<PluginRecord>,
    pub plan: GrantPlan,
}

impl PreparedInstall {
    /// Where the verified package was extracted (private, removed with this value).
    pub fn extracted_dir(&self) -> &Path {
        &self.extracted
    }

    pub fn name(&self) -> &str {
        &self.manifest.metadata.name
    }
}

impl std::fmt::Debug for PreparedInstall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedInstall")
            .field("name", &self.manifest.metadata.name)
            .field("package_sha256", &self.package_sha256)
            .field("workdir", &self.workdir.path())
            .finish_non_exhaustive()
    }
}

impl Project {
    /// Verifies a package (a `.tar.gz` with its `.sig` and `.cert.sig` beside it, or a plugin
    /// directory, which is packaged first and is then unsigned), extracts it privately and
    /// applies the policy. See the module documentation.
    pub fn prepare_install(&self, source: &Path) -> Result<PreparedInstall, ProjectError> {
        self.prepare_install_from(source, None)
    }

    /// [`Project::prepare_install`] for an archive downloaded from a registry: the registry's
    /// URL is what the policy's `registries` rules judge, and the source recorded says where
    /// it came from.
    pub fn prepare_install_from(
        &self,
        source: &Path,
        origin: Option<&RegistryOrigin>,
    ) -> Result<PreparedInstall, ProjectError> {
        let workdir = tempfile::Builder::new()
            .prefix("trellis-install-")
            .tempdir()
            .map_err(io_err(&std::env::temp_dir()))?;
        let meta = fs::metadata(source).map_err(io_err(source))?;
        let (archive, signature, certification, source_text) =
            if meta.is_file() && trellis_process::python_wheel::is_wheel(source) {
                // A Python plugin shipped as a wheel becomes a plugin directory (its manifest,
                // its requirements and the wheel itself), packaged like any directory: unsigned.
                let dir = workdir.path().join("wheel-plugin");
                trellis_process::python_wheel::unpack(source, &dir).map_err(|reason| {
                    ProjectError::Wheel {
                        file: source.to_owned(),
                        reason,
                    }
                })?;
                let built = trellis_package::build(&dir, workdir.path())?;
                let canonical = fs::canonicalize(source).unwrap_or_else(|_| source.to_owned());
                (
                    built.archive,
                    None,
                    None,
                    format!("wheel+file://{}", canonical.display()),
                )
            } else if meta.is_dir() {
                let built = trellis_package::build(source, workdir.path())?;
                let canonical = fs::canonicalize(source).unwrap_or_else(|_| source.to_owned());
                (
                    built.archive,
                    None,
                    None,
                    format!("path+file://{}", canonical.display()),
                )
            } else {
                // Work on a private copy so that the bytes verified are the bytes installed.
                let file_name = source
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "package.tar.gz".to_owned());
                let copy = workdir.path().join(&file_name);
                fs::copy(source, &copy).map_err(io_err(source))?;
                let canonical = fs::canonicalize(source).unwrap_or_else(|_| source.to_owned());
                (
                    copy,
                    read_optional(&trellis_trust::signature_path(source))?,
                    read_optional(&trellis_trust::certification_path(source))?,
                    format!("archive+file://{}", canonical.display()),
                )
            };
        let archive_name = archive
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let limits = ExtractLimits::default();
        // The claimed signer is inside the package; read just the file list's manifest claim
        // after the signature itself has been checked against the archive bytes.
        let security = self.security()?;
        let verification = trellis_trust::verify_package(
            &archive,
            signature.as_deref(),
            certification.as_deref(),
            None,
            &security.trust,
        )
        .map_err(|e| self.refuse_untrusted(source, e))?;
        let extracted = workdir.path().join("extracted");
        let unpacked = trellis_package::extract(&archive, &extracted, &limits)?;
        let loaded = trellis_manifest::load_dir(&extracted)?;
        let manifest = loaded.manifest;
        // The manifest may claim who signed it; that claim is only readable once the archive
        // has been verified and extracted, so check it against the signer lists now.
        let verification = match manifest
            .signatures
            .as_ref()
            .and_then(|s| s.signer.as_deref())
        {
            Some(claimed) if verification.signer.is_some() => trellis_trust::verify_package(
                &archive,
                signature.as_deref(),
                certification.as_deref(),
                Some(claimed),
                &security.trust,
            )
            .map_err(|e| self.refuse_untrusted(source, e))?,
            _ => verification,
        };
        let name = manifest.metadata.name.clone();
        self.check_compatibility(&manifest, &loaded.file)?;
        self.check_interpreter(&manifest, &loaded.file)?;

        let capabilities = capability_list(&manifest);
        let principal = verification
            .signer
            .as_ref()
            .and_then(|s| s.principal.as_deref());
        let mut facts = Self::plugin_facts(&name, verification.level, principal, &capabilities);
        facts.registry = origin.map(|o| o.url.as_str());
        let violations = security.policy.check_plugin(&facts);
        if !violations.is_empty() {
            return Err(self.refuse_by_policy(&name, "install", violations));
        }
        if let Some(check) = &self.code_check {
            check(&extracted, &manifest).map_err(|(kind, message)| ProjectError::CodeCheck {
                plugin: name.clone(),
                kind,
                message,
            })?;
        }

        let package_sha256 = sha256_tag(&unpacked.archive_sha256);
        let previous = self.state()?.plugins.get(&name).cloned();
        let plan = grant_plan(
            &name,
            &manifest,
            previous.as_ref().map(|p| &p.grants),
            &package_sha256,
            &security.policy,
        );
        let source = match origin {
            Some(o) => format!("registry+{}#{}@{}", o.url, name, manifest.metadata.version),
            None => source_text,
        };
        Ok(PreparedInstall {
            workdir,
            archive,
            archive_name,
            signature,
            certification,
            extracted,
            manifest,
            verification,
            package_sha256,
            file_list: unpacked.file_list,
            registry: origin.map(|o| o.registry.clone()),
            source,
            previous,
            plan,
        })
    }

    /// Writes a prepared package into the project with the user's grant decisions: the plugin
    /// tree, a copy of the package and its signatures under `.trellis/packages/<name>/`, and
    /// the state entry, committed at once. With `force` an installed plugin of the same name is
    /// replaced (an update) and keeps its lifecycle state.
    pub fn commit_install(
        &self,
        prepared: PreparedInstall,
        decisions: GrantDecisions,
        force: bool,
    ) -> Result<InstallReport, ProjectError> {
        let mut reports = self.commit_installs(vec![(prepared, decisions)], force)?;
        reports.pop().ok_or_else(|| ProjectError::Io {
            path: self.dir.clone(),
            source: std::io::Error::other("no install was committed"),
        })
    }

    /// Commits several prepared packages (a plugin with its dependencies) as one change: all of
    /// them are installed, or, on any error or crash, none.
    pub fn commit_installs(
        &self,
        items: Vec<(PreparedInstall, GrantDecisions)>,
        force: bool,
    ) -> Result<Vec<InstallReport>, ProjectError> {
        self.commit_installs_enabling(items, force, &[])
    }

    /// [`Project::commit_installs`], with the newly installed plugins named in `enable`
    /// enabled in the same change (new dependencies of an enabled plugin being updated).
    pub(crate) fn commit_installs_enabling(
        &self,
        items: Vec<(PreparedInstall, GrantDecisions)>,
        force: bool,
        enable: &[String],
    ) -> Result<Vec<InstallReport>, ProjectError> {
        let _lock = self.lock()?;
        let mut state = self.state()?;
        for (prepared, _) in &items {
            let name = prepared.name();
            let previous = state.plugins.get(name);
            // The grant plan was made from the state at prepare time; deciding on top of a
            // state that changed since would undo, say, a revoke made in the meantime.
            if previous != prepared.previous.as_ref() {
                return Err(ProjectError::ChangedMeanwhile {
                    plugin: name.to_owned(),
                    step: if prepared.previous.is_some() {
                        "update"
                    } else {
                        "install"
                    },
                });
            }
            if let Some(prev) = previous
                && !force
            {
                return Err(ProjectError::AlreadyInstalled {
                    name: name.to_owned(),
                    installed: prev.version.clone(),
                    source_text: prev.source.clone(),
                });
            }
        }
        self.clean_orphans(&state)?;

        let plugins_dir = self.plugins_dir();
        fs::create_dir_all(&plugins_dir).map_err(io_err(&plugins_dir))?;
        let packages_root = self.dir.join("packages");
        let mut staged: Vec<Staged> = Vec::new();
        let cleanup = |staged: &[Staged]| {
            for s in staged {
                let _ = remove_tree(&s.plugin);
                let _ = remove_tree(&s.package);
                if let Some((env, _)) = &s.python_env {
                    let _ = remove_tree(env);
                }
            }
        };
        let envs_root = self.dir.join("envs");
        let now = Utc::now();
        for (prepared, decisions) in &items {
            let mut item = Staged {
                plugin: plugins_dir.join(format!(".staging-{}", ulid::Ulid::generate())),
                package: packages_root.join(format!(".staging-{}", ulid::Ulid::generate())),
                python_env: None,
            };
            let result = (|| -> Result<String, ProjectError> {
                copy_tree(&prepared.extracted, &item.plugin)?;
                fs::create_dir_all(&item.package).map_err(io_err(&item.package))?;
                let kept = item.package.join(&prepared.archive_name);
                fs::copy(&prepared.archive, &kept).map_err(io_err(&kept))?;
                if let Some(sig) = &prepared.signature {
                    write_atomic(&trellis_trust::signature_path(&kept), sig.as_bytes())?;
                }
                if let Some(cert) = &prepared.certification {
                    write_atomic(&trellis_trust::certification_path(&kept), cert.as_bytes())?;
                }
                let checksum = tree_checksum(&item.plugin)?;
                // Built from the staged copy, so it holds exactly what is being installed.
                let env = envs_root.join(format!(".staging-{}", ulid::Ulid::generate()));
                fs::create_dir_all(&envs_root).map_err(io_err(&envs_root))?;
                let built = trellis_process::python_env::build(
                    &prepared.manifest,
                    &item.plugin,
                    &env,
                    self.cache_dir().as_deref(),
                );
                match built {
                    Ok(Some(record)) => item.python_env = Some((env, record)),
                    Ok(None) => {}
                    Err(reason) => {
                        let _ = remove_tree(&env);
                        return Err(ProjectError::PythonEnv {
                            plugin: prepared.name().to_owned(),
                            reason,
                        });
                    }
                }
                Ok(checksum)
            })();
            staged.push(item);
            let checksum = match result {
                Ok(c) => c,
                Err(e) => {
                    cleanup(&staged);
                    return Err(e);
                }
            };
            let previous = prepared.previous.as_ref();
            let record = PluginRecord {
                version: prepared.manifest.metadata.version.clone(),
                state: match previous.map(|p| p.state) {
                    None if enable.iter().any(|n| n == prepared.name()) => LifecycleState::Enabled,
                    None | Some(LifecycleState::Failed) => LifecycleState::Installed,
                    Some(s) => s,
                },
                reason: None,
                failed_from: None,
                source: prepared.source.clone(),
                checksum,
                installed_at: now,
                changed_at: now,
                allow_conflicts: previous.is_some_and(|p| p.allow_conflicts),
                package: Some(PackageRecord {
                    sha256: prepared.package_sha256.clone(),
                    archive: prepared.archive_name.clone(),
                    trust: trust_record(&prepared.verification),
                    files: prepared.file_list.files.clone(),
                }),
                grants: GrantSet {
                    package: prepared.package_sha256.clone(),
                    granted: decisions.granted.clone(),
                    refused: decisions.refused.clone(),
                    approved: decisions.approved.clone(),
                    decided_at: Some(now),
                },
                registry: prepared.registry.clone(),
                python_env: staged
                    .last()
                    .and_then(|s| s.python_env.as_ref())
                    .map(|(_, record)| record.clone()),
            };
            state.plugins.insert(prepared.name().to_owned(), record);
        }

        // An enabled plugin being replaced must still be enableable with everything new.
        for (prepared, _) in &items {
            let record = &state.plugins[prepared.name()];
            if record.state == LifecycleState::Enabled
                && let Err(e) = self.check_enable(
                    &state,
                    prepared.name(),
                    &prepared.manifest,
                    record.allow_conflicts,
                )
            {
                cleanup(&staged);
                return Err(e);
            }
        }

        let names: Vec<&str> = items.iter().map(|(p, _)| p.name()).collect();
        let mut journal = Journal::new("install", &names.join(", "));
        for ((prepared, _), item) in items.iter().zip(&staged) {
            journal
                .slot(self, &self.plugin_dir(prepared.name()), Some(&item.plugin))
                .slot(
                    self,
                    &self.packages_dir(prepared.name()),
                    Some(&item.package),
                )
                .slot(
                    self,
                    &self.python_env_dir(prepared.name()),
                    item.python_env.as_ref().map(|(env, _)| env.as_path()),
                );
        }
        if let Err(e) = self.apply_journal(&journal, &mut state) {
            cleanup(&staged);
            return Err(e);
        }

        let mut reports = Vec::new();
        for (prepared, decisions) in items {
            reports.push(self.report_install(&state, prepared, decisions));
        }
        for name in enable {
            if reports.iter().any(|r| &r.name == name) {
                self.audit.record(
                    AuditEvent::new("plugin.enabled", "ok")
                        .plugin(name)
                        .detail("because", json!("a dependency of a plugin being updated")),
                );
                self.emit("plugin.enabled", json!({"plugin": name}));
            }
        }
        Ok(reports)
    }

    /// Audits and announces one committed install.
    pub(crate) fn report_install(
        &self,
        state: &crate::ProjectState,
        prepared: PreparedInstall,
        decisions: GrantDecisions,
    ) -> InstallReport {
        let name = prepared.name().to_owned();
        let record = &state.plugins[&name];
        let previous = prepared.previous.as_ref();
        let action = if previous.is_some() {
            "plugin.updated"
        } else {
            "plugin.installed"
        };
        self.audit.record(
            AuditEvent::new(action, "ok")
                .plugin(&name)
                .detail("version", json!(record.version.to_string()))
                .detail("previous", json!(previous.map(|p| p.version.to_string())))
                .detail("package", json!(prepared.package_sha256))
                .detail("trust", json!(prepared.verification.level.as_str()))
                .detail("signer", json!(record.signer()))
                .detail("source", json!(record.source)),
        );
        for cap in &decisions.granted {
            if !prepared.plan.carried.contains(cap) {
                self.audit.record(
                    AuditEvent::new("grant.granted", "ok")
                        .plugin(&name)
                        .capability(&cap.name)
                        .detail("scope", json!(scope_text(cap)))
                        .detail("package", json!(prepared.package_sha256)),
                );
            }
        }
        for cap in &decisions.refused {
            self.audit.record(
                AuditEvent::new("grant.refused", "refused")
                    .plugin(&name)
                    .capability(cap)
                    .detail("package", json!(prepared.package_sha256)),
            );
        }
        self.emit(
            "plugin.installed",
            json!({"plugin": name, "version": record.version.to_string(), "source": record.source,
                   "replaced": previous.map(|p| p.version.to_string()),
                   "trust": prepared.verification.level.as_str()}),
        );
        InstallReport {
            name: name.clone(),
            version: record.version.clone(),
            replaced: previous.map(|p| p.version.clone()),
            checksum: record.checksum.clone(),
            path: self.plugin_dir(&name),
            state: record.state,
            trust: prepared.verification.level,
            signer: record
                .package
                .as_ref()
                .and_then(|p| p.trust.principal.clone()),
            package_sha256: prepared.package_sha256,
            granted: decisions.granted.iter().map(|c| c.name.clone()).collect(),
            refused: decisions.refused,
        }
    }

    /// Where the installed package of a plugin and its signatures are kept.
    pub fn packages_dir(&self, name: &str) -> PathBuf {
        name.split('/')
            .fold(self.dir.join("packages"), |p, part| p.join(part))
    }
}
