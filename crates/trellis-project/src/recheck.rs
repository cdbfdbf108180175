//! The re-checks made at every start and by `trellis plugin audit`: installed files against
//! the package they came from, the kept package's signature against today's signer lists.

use serde::Serialize;
use trellis_package::{FileList, TreeChange};
use trellis_trust::{TrustLevel, Verification};

use crate::fsutil::{io_err, tree_checksum};

use crate::grants::{WithheldGrant, grant_status};
use crate::security::{SecuritySettings, capability_list, read_optional, sha256_tag};
use crate::state::PluginRecord;
use crate::{LifecycleState, Project, ProjectError};

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

/// A plugin's signature as verified now.
pub(crate) struct Recheck {
    pub(crate) level: TrustLevel,
    pub(crate) principal: Option<String>,
    pub(crate) fingerprint: Option<String>,
    /// `valid`, `unsigned`, or `invalid: <why>`.
    pub(crate) signature: String,
}

impl Project {
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
}
