//! Trust as a project applies it: where the policy and the allowed-signers files are, how a
//! package is verified and installed, which capabilities the user granted, and the re-checks
//! behind `trellis plugin audit` and `trellis policy check`.
//!
//! Install is two steps so that a front end can ask the user in between:
//! [`Project::prepare_install`] verifies the package (signature before anything is extracted),
//! extracts it into a private temporary directory, applies the policy and works out which
//! capabilities need a decision; [`Project::commit_install`] then writes it all under the
//! project lock in one commit. Nothing reaches `.trellis/` before the commit.

use std::fs;
use std::path::{Path, PathBuf};

use chrono::Utc;
use serde::Serialize;
use serde_json::json;
use trellis_audit::AuditEvent;
use trellis_manifest::{CapabilityRequest, Manifest, did_you_mean};
use trellis_package::{ExtractLimits, FileList, TreeChange};
use trellis_policy::{PluginFacts, Policy, Violation};
use trellis_trust::{AllowedSigners, Certifier, TrustContext, TrustLevel, Verification};

use crate::fsutil::{copy_tree, io_err, remove_tree, tree_checksum, write_atomic};
use crate::journal::Journal;
use crate::state::{GrantSet, PackageRecord, PluginRecord, TrustRecord};
use crate::{InstallReport, LifecycleState, Project, ProjectError};

/// The system admin directory: the admin policy is `policy.yaml` and the admin's allowed
/// signers `allowed_signers` in it. `TRELLIS_POLICY` names a second admin policy, whose
/// directory holds its own `allowed_signers`.
pub const SYSTEM_ADMIN_DIR: &str = "/etc/trellis";

/// The policy files and signer lists that apply to this project, read fresh for each decision
/// so that an admin's change takes effect at the next command.
pub struct SecuritySettings {
    pub policy: Policy,
    pub trust: TrustContext,
    /// The allowed-signers files consulted (user's, then admin's), existing or not.
    pub allowed_signers_files: Vec<PathBuf>,
    /// The user's allowed-signers file, when an admin policy is in force and it is therefore
    /// not consulted.
    pub ignored_user_signers: Option<PathBuf>,
}

/// The user's per-user settings directory: `TRELLIS_CONFIG_DIR`, else
/// `$XDG_CONFIG_HOME/trellis`, else `~/.config/trellis`.
pub fn user_config_dir(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    if let Some(dir) = env("TRELLIS_CONFIG_DIR").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    if let Some(dir) = env("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("trellis"));
    }
    env("HOME")
        .filter(|d| !d.is_empty())
        .map(|home| PathBuf::from(home).join(".config").join("trellis"))
}

/// The user's cache of compiled components and remembered file digests: `TRELLIS_CACHE_DIR`,
/// else `$XDG_CACHE_HOME/trellis/components`, else `~/.cache/trellis/components`.
pub fn user_cache_dir(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    if let Some(dir) = env("TRELLIS_CACHE_DIR").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    let base = env("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            env("HOME")
                .filter(|d| !d.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })?;
    Some(base.join("trellis").join("components"))
}

/// A capability waiting for the user's decision.
#[derive(Debug, Clone, Serialize)]
pub struct PendingGrant {
    pub request: CapabilityRequest,
    /// The policy file that says this capability needs an explicit approval (`--yes` will not
    /// grant it).
    pub approval_required_by: Option<PathBuf>,
    /// The previous package requested this capability too, with another scope.
    pub changed: bool,
}

/// What an install or update asks of the user: only the difference to what was decided for
/// the previous package of the same plugin.
#[derive(Debug, Clone, Serialize)]
pub struct GrantPlan {
    pub plugin: String,
    /// Granted before for an identical request; kept without asking.
    pub carried: Vec<CapabilityRequest>,
    /// Refused before for an identical request; stays refused without asking.
    pub carried_refusals: Vec<CapabilityRequest>,
    /// Of `carried`, those the user approved one by one before.
    pub carried_approved: Vec<String>,
    /// New or changed requests.
    pub pending: Vec<PendingGrant>,
    /// Granted before, no longer requested.
    pub dropped: Vec<String>,
}

/// How a front end answers a [`GrantPlan`] without asking: `--yes`, `--grant`, `--deny`.
#[derive(Debug, Clone, Default)]
pub struct GrantChoices {
    /// Grant every pending capability the policy does not require approval for.
    pub yes: bool,
    pub grant: Vec<String>,
    pub deny: Vec<String>,
}

/// Asks the user about one capability; `Ok(true)` grants it.
pub type GrantPrompt<'a> = &'a mut dyn FnMut(&PendingGrant) -> std::io::Result<bool>;

#[derive(Debug, Clone, Default, Serialize)]
pub struct GrantDecisions {
    pub granted: Vec<CapabilityRequest>,
    pub refused: Vec<String>,
    /// Of `granted`, those decided one by one rather than by `--yes`.
    pub approved: Vec<String>,
}

impl GrantPlan {
    /// Decides every pending capability from `choices`, then by `prompt` when there is a
    /// terminal. Without a prompt, anything still undecided fails the whole step and lists
    /// what to pass: nothing is granted by default.
    pub fn decide(
        &self,
        choices: &GrantChoices,
        mut prompt: Option<GrantPrompt<'_>>,
    ) -> Result<GrantDecisions, ProjectError> {
        let requested: Vec<&str> = self
            .carried
            .iter()
            .map(|c| c.name.as_str())
            .chain(self.carried_refusals.iter().map(|c| c.name.as_str()))
            .chain(self.pending.iter().map(|p| p.request.name.as_str()))
            .collect();
        for name in choices.grant.iter().chain(&choices.deny) {
            if !requested.contains(&name.as_str()) {
                return Err(ProjectError::UnknownGrant {
                    plugin: self.plugin.clone(),
                    capability: name.clone(),
                    requested: requested.iter().map(|s| (*s).to_owned()).collect(),
                    suggestion: did_you_mean(name, requested.iter().copied()).map(str::to_owned),
                });
            }
            if choices.grant.contains(name) && choices.deny.contains(name) {
                return Err(ProjectError::ContradictoryGrant {
                    capability: name.clone(),
                });
            }
        }
        // An explicit flag also overrides a decision carried from the previous package.
        let mut decisions = GrantDecisions::default();
        for request in &self.carried {
            if choices.deny.contains(&request.name) {
                decisions.refused.push(request.name.clone());
            } else {
                decisions.granted.push(request.clone());
                if self.carried_approved.contains(&request.name)
                    || choices.grant.contains(&request.name)
                {
                    decisions.approved.push(request.name.clone());
                }
            }
        }
        for request in &self.carried_refusals {
            if choices.grant.contains(&request.name) {
                decisions.granted.push(request.clone());
                decisions.approved.push(request.name.clone());
            } else {
                decisions.refused.push(request.name.clone());
            }
        }

        let mut undecided = Vec::new();
        for pending in &self.pending {
            let name = &pending.request.name;
            let (grant, one_by_one) = if choices.deny.contains(name) {
                (false, true)
            } else if choices.grant.contains(name) {
                (true, true)
            } else if choices.yes && pending.approval_required_by.is_none() {
                (true, false)
            } else if let Some(ask) = prompt.as_mut() {
                let answer = ask(pending).map_err(|source| ProjectError::Io {
                    path: PathBuf::from("/dev/tty"),
                    source,
                })?;
                (answer, true)
            } else {
                undecided.push(pending.clone());
                continue;
            };
            if grant {
                decisions.granted.push(pending.request.clone());
                if one_by_one {
                    decisions.approved.push(name.clone());
                }
            } else {
                decisions.refused.push(name.clone());
            }
        }
        if !undecided.is_empty() {
            return Err(ProjectError::GrantsUndecided {
                plugin: self.plugin.clone(),
                pending: undecided,
            });
        }
        Ok(decisions)
    }
}

/// Where a package being installed was downloaded from.
#[derive(Debug, Clone)]
pub struct RegistryOrigin {
    /// The registry's name, as configured.
    pub registry: String,
    pub url: String,
}

/// The staging directories of one package being committed.
struct Staged {
    plugin: PathBuf,
    package: PathBuf,
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

/// One installed plugin re-checked by `trellis plugin audit`.
#[derive(Debug, Clone, Serialize)]
pub struct PluginAudit {
    pub name: String,
    pub version: String,
    pub state: LifecycleState,
    /// The trust level now (allowed signers and certifiers may have changed since install).
    pub trust: TrustLevel,
    pub signer: Option<String>,
    pub fingerprint: Option<String>,
    /// `valid`, `unsigned`, or why the stored package no longer verifies.
    pub signature: String,
    pub changed_files: Vec<TreeChange>,
    /// Granted and in effect now.
    pub granted: Vec<String>,
    /// Granted, but not in effect now.
    pub withheld: Vec<WithheldGrant>,
    pub refused: Vec<String>,
    /// Grants decided for another package than the one installed.
    pub grants_stale: bool,
    pub violations: Vec<String>,
}

impl PluginAudit {
    pub fn is_ok(&self) -> bool {
        (self.signature == "valid" || self.signature == "unsigned")
            && self.changed_files.is_empty()
            && !self.grants_stale
            && self.violations.is_empty()
    }
}

/// The names of the capabilities a manifest requests, as the policy takes them.
fn capability_list(manifest: &Manifest) -> Vec<String> {
    manifest
        .capability_names()
        .into_iter()
        .map(str::to_owned)
        .collect()
}

/// A plugin's signature as verified now.
pub(crate) struct Recheck {
    pub(crate) level: TrustLevel,
    pub(crate) principal: Option<String>,
    pub(crate) fingerprint: Option<String>,
    /// `valid`, `unsigned`, or `invalid: <why>`.
    pub(crate) signature: String,
}

fn sha256_tag(hex: &str) -> String {
    format!("sha256:{hex}")
}

fn read_optional(path: &Path) -> Result<Option<String>, ProjectError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ProjectError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

fn trust_record(v: &Verification) -> TrustRecord {
    TrustRecord {
        level: v.level,
        principal: v.signer.as_ref().and_then(|s| s.principal.clone()),
        fingerprint: v.signer.as_ref().map(|s| s.fingerprint.clone()),
        certifier: v.certifier.as_ref().map(|c| c.fingerprint.clone()),
    }
}

impl Project {
    /// Reads the policy files and the allowed-signers files that apply now.
    pub fn security(&self) -> Result<SecuritySettings, ProjectError> {
        let env = |k: &str| (self.env)(k);
        let policy = Policy::discover(&self.dir, &env)?;
        let user_file = user_config_dir(&env).map(|dir| dir.join("allowed_signers"));
        let admin_files = policy.admin_files();
        // Under an admin policy the admin decides whom to trust: were the user's own list
        // consulted, anyone could raise a package past the admin's `minimum_level` or
        // `allowed_signers` by listing its key. Without one, both lists count.
        let mut files: Vec<PathBuf> = Vec::new();
        let mut ignored_user_signers = None;
        if admin_files.is_empty() {
            files.extend(user_file);
            files.push(Path::new(SYSTEM_ADMIN_DIR).join("allowed_signers"));
        } else {
            ignored_user_signers = user_file.filter(|f| f.exists());
            for admin in admin_files {
                let beside = admin
                    .parent()
                    .unwrap_or(Path::new("."))
                    .join("allowed_signers");
                if !files.contains(&beside) {
                    files.push(beside);
                }
            }
        }
        let mut allowed_signers = files
            .iter()
            .map(|f| AllowedSigners::load(f))
            .collect::<Result<Vec<_>, _>>()?;
        // A configured registry the policy allows attests its publishers' keys: a package
        // signed by one of them, for that publisher, is verified.
        allowed_signers.extend(self.registry_attestations(&policy)?);
        let certifiers = policy
            .certifiers()
            .into_iter()
            .map(|(line, file)| Certifier::parse(&line, &file.display().to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SecuritySettings {
            policy,
            trust: TrustContext {
                allowed_signers,
                certifiers,
                now: Utc::now(),
            },
            allowed_signers_files: files,
            ignored_user_signers,
        })
    }

    fn plugin_facts<'a>(
        name: &'a str,
        trust: TrustLevel,
        signer: Option<&'a str>,
        capabilities: &'a [String],
    ) -> PluginFacts<'a> {
        PluginFacts {
            name,
            trust,
            signer,
            capabilities,
            registry: None,
        }
    }

    /// Refuses with every violation, after writing each to the audit log.
    pub(crate) fn refuse_by_policy(
        &self,
        plugin: &str,
        step: &'static str,
        violations: Vec<Violation>,
    ) -> ProjectError {
        for v in &violations {
            self.audit.record(
                AuditEvent::new("policy.refused", "refused")
                    .plugin(plugin)
                    .attempted(step)
                    .detail("rule", json!(v.rule))
                    .detail("file", json!(v.file.display().to_string()))
                    .detail("message", json!(v.message)),
            );
        }
        ProjectError::PolicyRefused {
            plugin: plugin.to_owned(),
            step,
            // The hints are shown once, after the violations.
            violations: violations
                .iter()
                .map(|v| {
                    format!(
                        "refused by {} in {} ({} policy): {}",
                        v.rule,
                        v.file.display(),
                        v.scope,
                        v.message
                    )
                })
                .collect(),
            hints: violations.iter().map(|v| v.hint.clone()).collect(),
        }
    }

    /// A package whose signature does not hold is a trust decision: audited, then refused.
    fn refuse_untrusted(&self, source: &Path, error: trellis_trust::TrustError) -> ProjectError {
        self.audit.record(
            AuditEvent::new("install.refused", "refused")
                .attempted(format!("install {}", source.display()))
                .detail("reason", json!(error.to_string())),
        );
        ProjectError::Trust(error)
    }

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
        let (archive, signature, certification, source_text) = if meta.is_dir() {
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
            }
        };
        let now = Utc::now();
        for (prepared, decisions) in &items {
            let item = Staged {
                plugin: plugins_dir.join(format!(".staging-{}", ulid::Ulid::generate())),
                package: packages_root.join(format!(".staging-{}", ulid::Ulid::generate())),
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
                tree_checksum(&item.plugin)
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
    fn report_install(
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

    /// The grants of one installed plugin.
    pub fn grants(&self, name: &str) -> Result<GrantSet, ProjectError> {
        let state = self.state()?;
        Ok(self.record(&state, name)?.grants.clone())
    }

    /// Withdraws a granted capability; the plugin is denied it from its next call on.
    pub fn revoke_grant(
        &self,
        name: &str,
        capability: &str,
    ) -> Result<crate::Transition, ProjectError> {
        self.change_grant(name, capability, false)
    }

    /// Grants a capability the plugin requests and the policy does not block.
    pub fn grant(&self, name: &str, capability: &str) -> Result<crate::Transition, ProjectError> {
        self.change_grant(name, capability, true)
    }

    fn change_grant(
        &self,
        name: &str,
        capability: &str,
        grant: bool,
    ) -> Result<crate::Transition, ProjectError> {
        let state = self.state()?;
        self.record(&state, name)?;
        let manifest = self.read_manifest(name)?.manifest;
        let request = manifest
            .requires
            .capabilities
            .iter()
            .find(|c| c.name == capability)
            .cloned();
        let Some(request) = request else {
            let requested = manifest.capability_names();
            return Err(ProjectError::UnknownGrant {
                plugin: name.to_owned(),
                capability: capability.to_owned(),
                requested: requested.iter().map(|s| (*s).to_owned()).collect(),
                suggestion: did_you_mean(capability, requested.iter().copied()).map(str::to_owned),
            });
        };
        if grant {
            let security = self.security()?;
            if let Some(v) = security.policy.blocked_capability(capability) {
                return Err(self.refuse_by_policy(name, "grant", vec![v]));
            }
        }
        let _lock = self.lock()?;
        let mut state = self.state()?;
        let record = self.record(&state, name)?.clone();
        let mut grants = record.grants.clone();
        let was_granted = grants.granted.iter().any(|c| c.name == capability);
        let was_approved = grants.approved.iter().any(|c| c == capability);
        // Granting again what `--yes` granted is how a user approves it one by one.
        if was_granted == grant && (!grant || was_approved) {
            return Ok(crate::Transition::Unchanged);
        }
        if grant {
            grants.granted.retain(|c| c.name != capability);
            grants.granted.push(request.clone());
            grants.refused.retain(|c| c != capability);
            grants.approved.push(capability.to_owned());
        } else {
            grants.granted.retain(|c| c.name != capability);
            grants.approved.retain(|c| c != capability);
            if !grants.refused.iter().any(|c| c == capability) {
                grants.refused.push(capability.to_owned());
            }
        }
        grants.decided_at = Some(Utc::now());
        // The decision is about the package installed now.
        if let Some(package) = &record.package {
            grants.package = package.sha256.clone();
        }
        if let Some(entry) = state.plugins.get_mut(name) {
            entry.grants = grants;
            entry.changed_at = Utc::now();
        }
        self.commit(&state)?;
        let (action, outcome) = if grant {
            ("grant.granted", "ok")
        } else {
            ("grant.revoked", "ok")
        };
        self.audit.record(
            AuditEvent::new(action, outcome)
                .plugin(name)
                .capability(capability)
                .detail("scope", json!(scope_text(&request))),
        );
        Ok(crate::Transition::Changed)
    }

    /// The capabilities a plugin may use now: requested by its manifest, granted by the user
    /// for this very package (same request, same scope), not blocked by the policy, and
    /// approved one by one where the policy requires approval.
    pub(crate) fn effective_grants(
        &self,
        record: &PluginRecord,
        manifest: &Manifest,
        policy: &Policy,
    ) -> Vec<CapabilityRequest> {
        grant_status(record, manifest, policy).0
    }
    /// Checks one plugin against the policy as it is now (enable and every start). The trust
    /// level is re-verified from the kept package against today's signer lists, never taken
    /// from the state file: a key removed from allowed_signers or past its validity stops the
    /// plugin, and editing state.json cannot raise its trust.
    pub(crate) fn check_policy(
        &self,
        security: &SecuritySettings,
        name: &str,
        record: &PluginRecord,
        manifest: &Manifest,
        step: &'static str,
    ) -> Result<(), ProjectError> {
        let capabilities = capability_list(manifest);
        let fresh = self.recheck_signature(name, record, security);
        let violations = security.policy.check_plugin(&Self::plugin_facts(
            name,
            fresh.level,
            fresh.principal.as_deref(),
            &capabilities,
        ));
        if violations.is_empty() {
            Ok(())
        } else {
            Err(self.refuse_by_policy(name, step, violations))
        }
    }

    /// Files of an installed plugin that differ from its package (none for an intact plugin).
    pub(crate) fn changed_files(
        &self,
        name: &str,
        record: &PluginRecord,
    ) -> Result<Vec<TreeChange>, ProjectError> {
        let dir = self.plugin_dir(name);
        match &record.package {
            Some(package) => {
                let list = FileList {
                    format: trellis_package::FILE_LIST_FORMAT,
                    name: name.to_owned(),
                    version: record.version.to_string(),
                    files: package.files.clone(),
                };
                // Unchanged files are not read again: their remembered digest is used.
                let digests = self.file_digests();
                Ok(trellis_package::verify_tree_with(&dir, &list, &|path| {
                    digests.digest(path).map(|d| d.sha256)
                })?)
            }
            // Installed before packages were recorded: only the tree hash is known.
            None if tree_checksum(&dir)? != record.checksum => Ok(vec![TreeChange::Modified {
                path: ".".to_owned(),
            }]),
            None => Ok(Vec::new()),
        }
    }

    /// Re-checks every installed plugin: the stored package's signature against today's
    /// signer lists, the installed files against the package, grants and the policy.
    pub fn audit_plugins(&self) -> Result<Vec<PluginAudit>, ProjectError> {
        self.settle_before_read()?;
        let state = self.state()?;
        let security = self.security()?;
        let mut out = Vec::new();
        for (name, record) in &state.plugins {
            let fresh = self.recheck_signature(name, record, &security);
            let (trust, signer, fingerprint, mut signature) = (
                fresh.level,
                fresh.principal,
                fresh.fingerprint,
                fresh.signature,
            );
            let installed_level = record.trust_level();
            if trust < installed_level && !signature.starts_with("invalid") {
                // E.g. the .sig was deleted, or the key left allowed_signers.
                signature = format!("trust dropped from {installed_level} at install to {trust}");
            }
            let changed_files = match self.changed_files(name, record) {
                Ok(changes) => changes,
                Err(e) => vec![TreeChange::Missing {
                    path: format!(". ({e})"),
                }],
            };
            let mut violations = Vec::new();
            let (mut granted, mut withheld) = (Vec::new(), Vec::new());
            match self.read_manifest(name) {
                Ok(loaded) => {
                    let capabilities = capability_list(&loaded.manifest);
                    violations.extend(
                        security
                            .policy
                            .check_plugin(&Self::plugin_facts(
                                name,
                                trust,
                                signer.as_deref(),
                                &capabilities,
                            ))
                            .iter()
                            .map(ToString::to_string),
                    );
                    let (effective, held) =
                        grant_status(record, &loaded.manifest, &security.policy);
                    granted = effective.into_iter().map(|c| c.name).collect();
                    withheld = held;
                }
                Err(e) => violations.push(format!("manifest unreadable: {e}")),
            }
            let grants_stale = record.package.as_ref().map(|p| p.sha256.as_str())
                != Some(record.grants.package.as_str());
            out.push(PluginAudit {
                name: name.clone(),
                version: record.version.to_string(),
                state: record.state,
                trust,
                signer,
                fingerprint,
                signature,
                changed_files,
                granted,
                withheld,
                refused: record.grants.refused.clone(),
                grants_stale,
                violations,
            });
        }
        Ok(out)
    }

    pub(crate) fn recheck_signature(
        &self,
        name: &str,
        record: &PluginRecord,
        security: &SecuritySettings,
    ) -> Recheck {
        let Some(package) = &record.package else {
            return Recheck {
                level: TrustLevel::Unsigned,
                principal: None,
                fingerprint: None,
                signature: "unsigned".to_owned(),
            };
        };
        let archive = self.packages_dir(name).join(&package.archive);
        let outcome = (|| -> Result<Verification, ProjectError> {
            let sig = read_optional(&trellis_trust::signature_path(&archive))?;
            let cert = read_optional(&trellis_trust::certification_path(&archive))?;
            let verification = if sig.is_none() && cert.is_none() {
                // Nothing to verify but the hash that proves the kept package is the one
                // installed: the remembered digest serves while the archive is unchanged.
                let digest = self
                    .file_digests()
                    .digest(&archive)
                    .map_err(io_err(&archive))?;
                Verification {
                    level: TrustLevel::Unsigned,
                    package_sha256: digest.sha256,
                    signer: None,
                    certifier: None,
                    notes: Vec::new(),
                }
            } else {
                // verify_package hashes the archive as it checks the signature: one read.
                trellis_trust::verify_package(
                    &archive,
                    sig.as_deref(),
                    cert.as_deref(),
                    None,
                    &security.trust,
                )?
            };
            let actual = sha256_tag(&verification.package_sha256);
            if actual != package.sha256 {
                return Err(ProjectError::PackageChanged {
                    path: archive.clone(),
                    expected: package.sha256.clone(),
                    actual,
                });
            }
            Ok(verification)
        })();
        match outcome {
            Ok(v) => Recheck {
                signature: if v.level == TrustLevel::Unsigned {
                    "unsigned".to_owned()
                } else {
                    "valid".to_owned()
                },
                level: v.level,
                principal: v.signer.as_ref().and_then(|s| s.principal.clone()),
                fingerprint: v.signer.as_ref().map(|s| s.fingerprint.clone()),
            },
            // A package that no longer verifies counts as unsigned, and its recorded signer
            // vouches for nothing.
            Err(e) => Recheck {
                level: TrustLevel::Unsigned,
                principal: None,
                fingerprint: package.trust.fingerprint.clone(),
                signature: format!("invalid: {e}"),
            },
        }
    }

    /// Every violation of the current policy by the installed plugins, as
    /// (plugin, violation) pairs; empty when all comply.
    pub fn policy_check(&self) -> Result<Vec<(String, String)>, ProjectError> {
        let state = self.state()?;
        let security = self.security()?;
        let mut out = Vec::new();
        for (name, record) in &state.plugins {
            let loaded = match self.read_manifest(name) {
                Ok(loaded) => loaded,
                Err(e) => {
                    out.push((name.clone(), format!("cannot be checked: {e}")));
                    continue;
                }
            };
            let capabilities = capability_list(&loaded.manifest);
            let fresh = self.recheck_signature(name, record, &security);
            for v in security.policy.check_plugin(&Self::plugin_facts(
                name,
                fresh.level,
                fresh.principal.as_deref(),
                &capabilities,
            )) {
                out.push((name.clone(), v.to_string()));
            }
        }
        Ok(out)
    }
}

/// A capability the user granted that the plugin may not use now, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WithheldGrant {
    pub capability: String,
    pub reason: String,
}

/// Splits a plugin's grants into those in effect (see [`Project::effective_grants`]) and those
/// withheld, with the reason for each.
pub(crate) fn grant_status(
    record: &PluginRecord,
    manifest: &Manifest,
    policy: &Policy,
) -> (Vec<CapabilityRequest>, Vec<WithheldGrant>) {
    let name = &manifest.metadata.name;
    let package = record.package.as_ref().map(|p| p.sha256.as_str());
    let stale = package != Some(record.grants.package.as_str());
    let mut effective = Vec::new();
    let mut withheld = Vec::new();
    for granted in &record.grants.granted {
        let withhold = |reason: String| WithheldGrant {
            capability: granted.name.clone(),
            reason,
        };
        let request = manifest
            .requires
            .capabilities
            .iter()
            .find(|r| r.name == granted.name);
        let Some(request) = request else {
            withheld.push(withhold("no longer requested by the plugin".to_owned()));
            continue;
        };
        if stale {
            withheld.push(withhold(format!(
                "granted for another package ({}); reinstall or update to decide again",
                record.grants.package
            )));
        } else if !same_grant(granted, request) {
            withheld.push(withhold(format!(
                "granted for another scope ({}); the plugin now asks for {}",
                scope_text(granted),
                scope_text(request)
            )));
        } else if let Some(v) = policy.blocked_capability(&granted.name) {
            withheld.push(withhold(format!(
                "blocked by {} in {}",
                v.rule,
                v.file.display()
            )));
        } else if let Some((_, file)) = policy
            .approval_required(&granted.name)
            .filter(|_| !record.grants.approved.contains(&granted.name))
        {
            withheld.push(withhold(format!(
                "needs approval (capabilities.require_approval in {}): run `trellis plugin grants {name} grant {}`",
                file.display(),
                granted.name
            )));
        } else {
            effective.push(request.clone());
        }
    }
    // In manifest order, as the author listed them.
    effective.sort_by_key(|c| {
        manifest
            .requires
            .capabilities
            .iter()
            .position(|r| r.name == c.name)
    });
    (effective, withheld)
}

/// What to ask, given what was decided for the previous package of the same plugin.
fn grant_plan(
    name: &str,
    manifest: &Manifest,
    previous: Option<&GrantSet>,
    package_sha256: &str,
    policy: &Policy,
) -> GrantPlan {
    let mut plan = GrantPlan {
        plugin: name.to_owned(),
        carried: Vec::new(),
        carried_refusals: Vec::new(),
        carried_approved: Vec::new(),
        pending: Vec::new(),
        dropped: Vec::new(),
    };
    // In manifest order: the author lists what matters most first.
    let requested: Vec<&CapabilityRequest> = manifest.requires.capabilities.iter().collect();
    for request in &requested {
        let before = previous.and_then(|p| p.granted.iter().find(|g| g.name == request.name));
        let refused_before = previous.is_some_and(|p| p.refused.contains(&request.name));
        let same_package = previous.is_some_and(|p| p.package == package_sha256);
        let approved_before = previous.is_some_and(|p| p.approved.contains(&request.name));
        let needs_approval = policy.approval_required(&request.name).is_some();
        match before {
            // A blanket grant from before an approval rule does not carry past that rule.
            Some(g) if same_grant(g, request) && (approved_before || !needs_approval) => {
                plan.carried.push((*request).clone());
                if approved_before {
                    plan.carried_approved.push(request.name.clone());
                }
            }
            // Refusals carry no scope: keep one only for the same package or a bare request.
            None if refused_before
                && (same_package
                    || same_grant(request, &CapabilityRequest::named(&request.name))) =>
            {
                plan.carried_refusals.push((*request).clone());
            }
            other => plan.pending.push(PendingGrant {
                request: (*request).clone(),
                approval_required_by: policy
                    .approval_required(&request.name)
                    .map(|(_, file)| file),
                changed: other.is_some_and(|g| !same_grant(g, request)),
            }),
        }
    }
    if let Some(previous) = previous {
        plan.dropped = previous
            .granted
            .iter()
            .filter(|g| !requested.iter().any(|r| r.name == g.name))
            .map(|g| g.name.clone())
            .collect();
    }
    plan
}

/// Whether a grant covers a request: same capability, same scope. The author's reason and the
/// order of scope entries do not matter.
pub fn same_grant(a: &CapabilityRequest, b: &CapabilityRequest) -> bool {
    let sorted = |v: &Vec<String>| {
        let mut v = v.clone();
        v.sort();
        v.dedup();
        v
    };
    a.name == b.name
        && sorted(&a.paths) == sorted(&b.paths)
        && sorted(&a.hosts) == sorted(&b.hosts)
        && sorted(&a.commands) == sorted(&b.commands)
        && sorted(&a.variables) == sorted(&b.variables)
}

/// A requested capability's scope in words, exactly as the runtime enforces it (the install
/// prompt, `plugin grants` and the audit trail show this): `paths: README.md only, src/ and
/// everything in it`, `hosts: api.example.com`, `commands: git log *`. Empty for capabilities
/// without a scope.
pub fn scope_text(c: &CapabilityRequest) -> String {
    trellis_host_api::describe_scope(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_config_dir_follows_the_environment() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |key: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let all = env(&[
            ("TRELLIS_CONFIG_DIR", "/custom"),
            ("XDG_CONFIG_HOME", "/xdg"),
            ("HOME", "/home/u"),
        ]);
        assert_eq!(user_config_dir(&all), Some(PathBuf::from("/custom")));
        let xdg = env(&[
            ("TRELLIS_CONFIG_DIR", ""),
            ("XDG_CONFIG_HOME", "/xdg"),
            ("HOME", "/home/u"),
        ]);
        assert_eq!(user_config_dir(&xdg), Some(PathBuf::from("/xdg/trellis")));
        let home = env(&[("HOME", "/home/u")]);
        assert_eq!(
            user_config_dir(&home),
            Some(PathBuf::from("/home/u/.config/trellis"))
        );
        assert_eq!(user_config_dir(&env(&[])), None);
    }
}
