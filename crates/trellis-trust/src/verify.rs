//! Checking a package's signatures and deciding its trust level.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use ssh_key::{PublicKey, SshSig};

use crate::allowed_signers::{AllowedSigners, SignerEntry, Validity};
use crate::{
    CERTIFY_NAMESPACE, PACKAGE_NAMESPACE, TrustError, TrustLevel, certification_path,
    key_fingerprint, signature_path,
};

/// What a verification is measured against: the signer lists, the certifier keys and the time.
#[derive(Debug, Clone)]
pub struct TrustContext {
    /// Every allowed-signers file that applies (the user's, the admin's); a key listed in any
    /// of them counts.
    pub allowed_signers: Vec<AllowedSigners>,
    pub certifiers: Vec<Certifier>,
    /// The time validity windows are checked at; passed in so that a check is reproducible.
    pub now: DateTime<Utc>,
}

/// A key whose countersignature makes a verified package certified.
#[derive(Debug, Clone)]
pub struct Certifier {
    pub key: PublicKey,
    /// Where the key was configured, e.g. `/etc/trellis/policy.yaml`.
    pub source: String,
}

impl Certifier {
    /// Parses one OpenSSH public key line (`ssh-ed25519 AAAA… comment`).
    pub fn parse(line: &str, source: &str) -> Result<Certifier, TrustError> {
        let key = PublicKey::from_openssh(line.trim()).map_err(|e| TrustError::CertifierKey {
            file: source.to_owned(),
            key: line.trim().to_owned(),
            reason: e.to_string(),
        })?;
        Ok(Certifier {
            key,
            source: source.to_owned(),
        })
    }
}

/// The archive to verify: a file, or bytes already in memory with the file name they came from
/// (messages name `<name>.sig`).
#[derive(Debug, Clone, Copy)]
pub enum PackageSource<'a> {
    File(&'a Path),
    Bytes { bytes: &'a [u8], name: &'a Path },
}

impl<'a> From<&'a Path> for PackageSource<'a> {
    fn from(path: &'a Path) -> Self {
        PackageSource::File(path)
    }
}

impl<'a> From<&'a PathBuf> for PackageSource<'a> {
    fn from(path: &'a PathBuf) -> Self {
        PackageSource::File(path)
    }
}

impl PackageSource<'_> {
    fn path(&self) -> &Path {
        match self {
            PackageSource::File(path) => path,
            PackageSource::Bytes { name, .. } => name,
        }
    }
}

/// The outcome of [`verify_package`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verification {
    pub level: TrustLevel,
    /// Lowercase hex SHA-256 of the archive bytes that were verified.
    pub package_sha256: String,
    /// Who signed, when the package is signed.
    pub signer: Option<SignerInfo>,
    /// Who certified, only when the certification counts (the level is `Certified`).
    pub certifier: Option<SignerInfo>,
    /// What was noticed but did not change the outcome, in words for people.
    pub notes: Vec<String>,
}

/// A key that signed, and what the signer lists say about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignerInfo {
    /// The principal the allowed-signers entry gives the key (a certifier's key comment);
    /// `None` for a key nobody vouches for.
    pub principal: Option<String>,
    /// `SHA256:…` as `ssh-keygen -l` prints it.
    pub fingerprint: String,
    /// The key as one OpenSSH line.
    pub public_key: String,
    /// `file:line` of the allowed-signers entry, or the file that configured a certifier.
    pub listed_in: Option<String>,
}

/// Verifies a package's signature and certification and decides its trust level.
///
/// `signature` and `certification` are the texts of `<archive>.sig` and `<archive>.cert.sig`
/// when they exist. `claimed_signer` is the principal the package's manifest names
/// (`signatures.signer`); the signer lists must then give the signing key to that principal.
pub fn verify_package<'a>(
    package: impl Into<PackageSource<'a>>,
    signature: Option<&str>,
    certification: Option<&str>,
    claimed_signer: Option<&str>,
    ctx: &TrustContext,
) -> Result<Verification, TrustError> {
    let package = package.into();
    let archive = package.path();
    let read;
    let bytes = match package {
        PackageSource::File(path) => {
            read = std::fs::read(path).map_err(|source| TrustError::Read {
                path: path.to_owned(),
                source,
            })?;
            &read[..]
        }
        PackageSource::Bytes { bytes, .. } => bytes,
    };
    let package_sha256 = hex::encode(Sha256::digest(bytes));

    let Some(signature) = signature else {
        if certification.is_some() {
            return Err(TrustError::CertificationWithoutSignature {
                file: certification_path(archive),
                signature_file: signature_path(archive),
            });
        }
        let notes = claimed_signer
            .map(|claimed| {
                format!("the package names `{claimed}` as its signer, but it is not signed")
            })
            .into_iter()
            .collect();
        return Ok(Verification {
            level: TrustLevel::Unsigned,
            package_sha256,
            signer: None,
            certifier: None,
            notes,
        });
    };

    let mut notes = Vec::new();
    let author_key = check_signature(
        signature,
        bytes,
        PACKAGE_NAMESPACE,
        &signature_path(archive),
        archive,
    )?;
    let (level, signer) = identify_author(&author_key, claimed_signer, ctx, &mut notes)?;

    let mut verification = Verification {
        level,
        package_sha256,
        signer: Some(signer),
        certifier: None,
        notes,
    };
    if let Some(certification) = certification {
        let certifier_key = check_signature(
            certification,
            bytes,
            CERTIFY_NAMESPACE,
            &certification_path(archive),
            archive,
        )?;
        apply_certification(&mut verification, &certifier_key, ctx);
    }
    Ok(verification)
}

/// Checks an armored signature over `bytes` for `namespace` and returns the key that made it.
fn check_signature(
    armored: &str,
    bytes: &[u8],
    namespace: &str,
    file: &Path,
    archive: &Path,
) -> Result<PublicKey, TrustError> {
    let signature =
        SshSig::from_pem(armored.trim()).map_err(|e| TrustError::MalformedSignature {
            file: file.to_owned(),
            reason: e.to_string(),
        })?;
    if signature.namespace() != namespace {
        return Err(TrustError::WrongNamespace {
            file: file.to_owned(),
            found: signature.namespace().to_owned(),
            expected: namespace.to_owned(),
        });
    }
    let key = PublicKey::from(signature.public_key().clone());
    key.verify(namespace, bytes, &signature)
        .map_err(|_| TrustError::SignatureMismatch {
            file: file.to_owned(),
            archive: archive.to_owned(),
            fingerprint: key_fingerprint(&key),
        })?;
    Ok(key)
}

/// Decides between self-signed and verified, or refuses, from the signer lists.
fn identify_author(
    key: &PublicKey,
    claimed: Option<&str>,
    ctx: &TrustContext,
    notes: &mut Vec<String>,
) -> Result<(TrustLevel, SignerInfo), TrustError> {
    let fingerprint = key_fingerprint(key);
    let entries = || ctx.allowed_signers.iter().flat_map(|f| f.entries());
    let for_key: Vec<&SignerEntry> = entries()
        .filter(|e| e.lists_key(key) && e.allows_namespace(PACKAGE_NAMESPACE))
        .collect();
    let current: Vec<&SignerEntry> = for_key
        .iter()
        .copied()
        .filter(|e| e.validity_at(ctx.now) == Validity::Valid)
        .collect();
    let info = |principal: Option<String>, entry: Option<&SignerEntry>| SignerInfo {
        principal,
        fingerprint: fingerprint.clone(),
        public_key: openssh_line(key),
        listed_in: entry.map(SignerEntry::location),
    };

    let verified = match claimed {
        Some(claimed) => current
            .iter()
            .find(|e| e.matches_principal(claimed))
            .map(|e| (Some(claimed.to_owned()), *e)),
        // Without a claim the entry must name exactly one principal: a pattern such as
        // `*@example.com` vouches for the key but does not say which of its names signed.
        None => current
            .iter()
            .find_map(|e| e.single_principal().map(|p| (Some(p.to_owned()), *e)))
            .or_else(|| current.first().map(|e| (None, *e))),
    };
    if let Some((principal, entry)) = verified {
        if principal.is_none() {
            notes.push(format!(
                "{} lists key {fingerprint} for `{}`, a pattern: the package names no signer (`signatures.signer` in its manifest), so rules about signers cannot match it",
                entry.location(),
                entry.principals
            ));
        }
        return Ok((TrustLevel::Verified, info(principal, Some(entry))));
    }

    if let Some(claimed) = claimed
        && !current.is_empty()
    {
        return Err(TrustError::WrongSigner {
            claimed: claimed.to_owned(),
            fingerprint,
            key_owner: Some(current[0].principals.clone()),
            listed_in: current.iter().map(|e| e.location()).collect(),
        });
    }

    // Listed, but only outside its validity window: refusing says why, where a downgrade to
    // self-signed would hide that the signer list speaks about this key.
    let out_of_window = claimed
        .and_then(|c| for_key.iter().find(|e| e.matches_principal(c)))
        .or(for_key.first());
    if let Some(entry) = out_of_window {
        let principal = claimed
            .filter(|c| entry.matches_principal(c))
            .map_or_else(|| entry.principals.clone(), str::to_owned);
        let (principal, window, listed_in) = (principal, entry.window(), entry.location());
        return Err(match entry.validity_at(ctx.now) {
            Validity::NotYetValid => TrustError::KeyNotYetValid {
                principal,
                fingerprint,
                window,
                listed_in,
            },
            _ => TrustError::ExpiredKey {
                principal,
                fingerprint,
                window,
                listed_in,
            },
        });
    }

    if let Some(claimed) = claimed {
        let claimants: Vec<String> = entries()
            .filter(|e| e.matches_principal(claimed) && e.allows_namespace(PACKAGE_NAMESPACE))
            .map(SignerEntry::location)
            .collect();
        if !claimants.is_empty() {
            return Err(TrustError::WrongSigner {
                claimed: claimed.to_owned(),
                fingerprint,
                key_owner: None,
                listed_in: claimants,
            });
        }
    }

    for entry in entries().filter(|e| e.lists_key(key) && !e.allows_namespace(PACKAGE_NAMESPACE)) {
        notes.push(format!(
            "{} lists key {fingerprint} for `{}`, but only for the namespaces `{}`, not `{PACKAGE_NAMESPACE}`",
            entry.location(),
            entry.principals,
            entry.namespaces.as_deref().unwrap_or_default()
        ));
    }
    let files = ctx
        .allowed_signers
        .iter()
        .map(AllowedSigners::source)
        .collect::<Vec<_>>()
        .join(", ");
    let checked = if files.is_empty() {
        "no allowed-signers file was given".to_owned()
    } else {
        format!("no allowed-signers file lists key {fingerprint} (checked {files})")
    };
    notes.push(match claimed {
        Some(claimed) => format!(
            "signer `{claimed}` claimed, unverified: {checked}; if you trust it, add `{claimed} {}` to your allowed_signers file",
            openssh_line(key)
        ),
        None => format!("{checked}; whoever signed it cannot be told apart from anyone else"),
    });
    Ok((TrustLevel::SelfSigned, info(None, None)))
}

fn apply_certification(verification: &mut Verification, key: &PublicKey, ctx: &TrustContext) {
    let fingerprint = key_fingerprint(key);
    let certifier = ctx
        .certifiers
        .iter()
        .find(|c| c.key.key_data() == key.key_data());
    match (verification.level, certifier) {
        (TrustLevel::Verified, Some(certifier)) => {
            verification.level = TrustLevel::Certified;
            verification.certifier = Some(SignerInfo {
                principal: Some(certifier.key.comment())
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned),
                fingerprint,
                public_key: openssh_line(key),
                listed_in: Some(certifier.source.clone()),
            });
        }
        (TrustLevel::Verified, None) => verification.notes.push(format!(
            "certification by key {fingerprint} ignored: no policy lists it as a certifier; the package stays verified"
        )),
        (level, _) => verification.notes.push(format!(
            "certification by key {fingerprint} ignored: a certification counts only for a verified author, and the author's signature is {level}"
        )),
    }
}

/// The key without its comment: signatures carry none, and a comment is not part of the key.
fn openssh_line(key: &PublicKey) -> String {
    PublicKey::new(key.key_data().clone(), "").to_string()
}
