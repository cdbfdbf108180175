//! The quality gates a package must pass to be published (seed 001 §12.2), shared by the
//! registry server and `trellis plugin publish`, which runs them locally before uploading.
//!
//! A package is accepted when its archive extracts safely and matches its file list, its
//! manifest is valid, it ships a README, its license is an OSI-approved SPDX expression, it is
//! signed by a key the registry has registered for the signer's principal, its version is newer
//! than every published one, and its name is not a near-copy of another owner's plugin.

use std::path::Path;

use chrono::{DateTime, Utc};
use trellis_manifest::Manifest;
use trellis_trust::{AllowedSigners, TrustContext, TrustLevel};

use crate::RegistryError;
use crate::index::{IndexEntry, IndexSigner, RegistryConfig};

/// A package checked and ready to be added to the index.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub manifest: Manifest,
    pub entry: IndexEntry,
}

/// What the registry already holds, as the gates need it.
pub trait Published {
    /// Every published version of `name`, in publish order.
    fn versions(&self, name: &str) -> Result<Vec<IndexEntry>, RegistryError>;
    /// Every plugin name in the registry.
    fn names(&self) -> Result<Vec<String>, RegistryError>;
}

/// The publisher keys a registry config lists, as an allowed-signers list.
pub fn publisher_signers(config: &RegistryConfig) -> Result<AllowedSigners, RegistryError> {
    let text: String = config
        .keys
        .iter()
        .map(|k| format!("{} {}\n", k.principal, k.key))
        .collect();
    AllowedSigners::parse(
        &text,
        &format!("registry `{}` (publisher keys in config.json)", config.name),
    )
    .map_err(|e| RegistryError::Trust(Box::new(e)))
}

fn gate(gate: &'static str, reason: String, hint: &str) -> RegistryError {
    RegistryError::GateFailed {
        gate,
        reason,
        hint: hint.to_owned(),
    }
}

/// Runs every gate on `archive` (with its `.sig` and `.cert.sig` texts) against `registry`.
pub fn check_package(
    archive: &Path,
    signature: Option<&str>,
    certification: Option<&str>,
    config: &RegistryConfig,
    registry: &dyn Published,
    now: DateTime<Utc>,
) -> Result<Accepted, RegistryError> {
    let workdir = tempfile::tempdir().map_err(|source| RegistryError::Io {
        path: std::env::temp_dir(),
        source,
    })?;
    let extracted = workdir.path().join("package");
    let unpacked = trellis_package::extract(
        archive,
        &extracted,
        &trellis_package::ExtractLimits::default(),
    )
    .map_err(|e| {
        gate(
            "archive",
            e.to_string(),
            "rebuild it with `trellis plugin build`",
        )
    })?;
    let manifest = trellis_manifest::load_dir(&extracted)
        .map_err(|e| {
            gate(
                "manifest",
                e.to_string(),
                "fix the manifest; `trellis plugin validate` shows every problem",
            )
        })?
        .manifest;
    let name = manifest.metadata.name.clone();
    let version = manifest.metadata.version.clone();

    let has_readme = unpacked.file_list.files.iter().any(|f| {
        let lower = f.path.to_lowercase();
        lower == "readme.md" || lower == "readme" || lower == "readme.txt"
    });
    if !has_readme {
        return Err(gate(
            "readme",
            format!("{name} {version} has no README.md"),
            "add a README.md saying what the plugin does and how to configure it",
        ));
    }

    check_license(manifest.metadata.license.as_deref(), &name)?;

    let Some(signature) = signature else {
        return Err(gate(
            "signature",
            format!("{name} {version} is not signed"),
            "sign it with `trellis plugin sign ARCHIVE` using a key registered with this registry",
        ));
    };
    let ctx = TrustContext {
        allowed_signers: vec![publisher_signers(config)?],
        certifiers: Vec::new(),
        now,
    };
    let claimed = manifest
        .signatures
        .as_ref()
        .and_then(|s| s.signer.as_deref());
    let verification = trellis_trust::verify_package(
        archive,
        Some(signature),
        certification,
        claimed,
        &ctx,
    )
    .map_err(|e| {
        gate(
            "signature",
            e.to_string(),
            "sign with the key registered for you, or ask the registry's admin to register yours",
        )
    })?;
    let signer = verification.signer.as_ref();
    let principal = signer.and_then(|s| s.principal.clone());
    if verification.level < TrustLevel::Verified || principal.is_none() {
        return Err(gate(
            "signature",
            format!(
                "{name} {version} is signed by key {}, which is not registered with this registry for a publisher",
                signer.map(|s| s.fingerprint.as_str()).unwrap_or("?")
            ),
            "register the key (`trellis registry key add PRINCIPAL KEY`) or sign with a registered one",
        ));
    }

    let published = registry.versions(&name)?;
    if let Some(same) = published.iter().find(|e| e.version == version) {
        return Err(gate(
            "version",
            format!(
                "{name} {version} is already published (sha256 {}); published versions are immutable",
                same.sha256
            ),
            "bump the version in plugin.yaml and build again",
        ));
    }
    if let Some(newest) = published.iter().map(|e| &e.version).max()
        && &version < newest
    {
        return Err(gate(
            "version",
            format!("{name} {version} is older than the newest published version {newest}"),
            "publish a version newer than the last one",
        ));
    }

    let owner = principal.clone().unwrap_or_default();
    if published.is_empty() {
        check_name(&name, &owner, registry)?;
    } else if let Some(first_owner) = published
        .first()
        .and_then(|e| e.signer.as_ref())
        .and_then(|s| s.principal.clone())
        && first_owner != owner
    {
        return Err(gate(
            "owner",
            format!("{name} belongs to {first_owner}; this package is signed by {owner}"),
            "ask the owner to publish it, or to add you as an owner",
        ));
    }

    let sha256 = verification.package_sha256.clone();
    let size = std::fs::metadata(archive)
        .map_err(|source| RegistryError::Io {
            path: archive.to_owned(),
            source,
        })?
        .len();
    let entry = IndexEntry::for_package(
        &manifest,
        &sha256,
        size,
        signer.map(|s| IndexSigner {
            principal: s.principal.clone(),
            fingerprint: s.fingerprint.clone(),
        }),
        verification.level.as_str(),
        now,
    );
    Ok(Accepted { manifest, entry })
}

/// The license must be an SPDX expression that can be satisfied with OSI-approved licenses.
fn check_license(license: Option<&str>, name: &str) -> Result<(), RegistryError> {
    let hint = "set metadata.license to an OSI-approved SPDX identifier such as MIT or Apache-2.0";
    let Some(license) = license else {
        return Err(gate(
            "license",
            format!("{name} names no license (metadata.license)"),
            hint,
        ));
    };
    let expression = spdx::Expression::parse(license).map_err(|e| {
        gate(
            "license",
            format!("metadata.license `{license}` is not an SPDX expression: {e}"),
            hint,
        )
    })?;
    let osi = expression.evaluate(|req| match &req.license {
        spdx::LicenseItem::Spdx { id, .. } => id.is_osi_approved(),
        spdx::LicenseItem::Other(_) => false,
    });
    if osi {
        Ok(())
    } else {
        Err(gate(
            "license",
            format!("metadata.license `{license}` is not OSI-approved"),
            hint,
        ))
    }
}

/// Two names a person could mistake for each other: equal once case, `-`, `_` and `.` are
/// ignored, or one edit apart (a typo).
pub fn confusable(a: &str, b: &str) -> bool {
    let squash = |s: &str| {
        s.chars()
            .filter(|c| !matches!(c, '-' | '_' | '.'))
            .flat_map(char::to_lowercase)
            .collect::<String>()
    };
    let (sa, sb) = (squash(a), squash(b));
    sa == sb || (sa.len().min(sb.len()) >= 4 && strsim::damerau_levenshtein(&sa, &sb) <= 1)
}

/// A new name too close to another owner's plugin is refused (typosquatting).
fn check_name(name: &str, owner: &str, registry: &dyn Published) -> Result<(), RegistryError> {
    for other in registry.names()? {
        if other == name || !confusable(name, &other) {
            continue;
        }
        let other_owner = registry
            .versions(&other)?
            .first()
            .and_then(|e| e.signer.as_ref())
            .and_then(|s| s.principal.clone());
        if other_owner.as_deref() != Some(owner) {
            return Err(gate(
                "name",
                format!(
                    "`{name}` is too close to `{other}`, published by {}; users could install one for the other",
                    other_owner.as_deref().unwrap_or("someone else")
                ),
                "choose a clearly different name",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confusable_names_are_caught() {
        assert!(confusable("security-scanner", "security_scanner"));
        assert!(confusable("security-scanner", "securty-scanner"));
        assert!(confusable("security-scanner", "Security.Scanner"));
        assert!(confusable("scanner", "scnaner"));
        assert!(!confusable("security-scanner", "secret-scanner"));
        assert!(!confusable("jira", "jinja"));
        assert!(!confusable("ab", "ac"));
    }

    #[test]
    fn licenses_must_be_osi_approved_spdx() {
        assert!(check_license(Some("MIT"), "p").is_ok());
        assert!(check_license(Some("Apache-2.0 OR MIT"), "p").is_ok());
        assert!(check_license(Some("MIT OR LicenseRef-Proprietary"), "p").is_ok());
        for bad in [
            None,
            Some("Proprietary"),
            Some("CC-BY-NC-4.0"),
            Some("LicenseRef-Mine"),
        ] {
            let err = check_license(bad, "p").unwrap_err();
            assert!(err.to_string().contains("license"), "{err}");
        }
    }
}
