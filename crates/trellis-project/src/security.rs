//! Trust as a project applies it: where the policy and the allowed-signers files are, and the
//! policy's verdicts on a plugin (`trellis policy check` among them). The install pipeline is
//! in `install`, grants in `grants`, the re-checks at every start in `recheck`.

use std::fs;
use std::path::{Path, PathBuf};

use chrono::Utc;
use serde_json::json;
use trellis_audit::AuditEvent;
use trellis_manifest::Manifest;
use trellis_policy::{PluginFacts, Policy, Violation};
use trellis_trust::{AllowedSigners, Certifier, TrustContext, TrustLevel, Verification};

use crate::state::{PluginRecord, TrustRecord};
use crate::{Project, ProjectError};

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

/// The names of the capabilities a manifest requests, as the policy takes them.
pub(crate) fn capability_list(manifest: &Manifest) -> Vec<String> {
    manifest
        .capability_names()
        .into_iter()
        .map(str::to_owned)
        .collect()
}

pub(crate) fn sha256_tag(hex: &str) -> String {
    format!("sha256:{hex}")
}

pub(crate) fn read_optional(path: &Path) -> Result<Option<String>, ProjectError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ProjectError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

pub(crate) fn trust_record(v: &Verification) -> TrustRecord {
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

    pub(crate) fn plugin_facts<'a>(
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
    pub(crate) fn refuse_untrusted(
        &self,
        source: &Path,
        error: trellis_trust::TrustError,
    ) -> ProjectError {
        self.audit.record(
            AuditEvent::new("install.refused", "refused")
                .attempted(format!("install {}", source.display()))
                .detail("reason", json!(error.to_string())),
        );
        ProjectError::Trust(error)
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
