//! Signatures and trust levels for plugin packages.
//!
//! Signs and verifies package archives with SSH signatures (the `ssh-keygen -Y sign` format),
//! reads OpenSSH allowed-signers files, and decides a package's trust level. It knows nothing of
//! projects, policies, the CLI or any runtime: callers pass in the keys and signer lists to use.
//!
//! # Files
//!
//! - `<archive>.sig`: the author's signature over the archive bytes, namespace
//!   [`PACKAGE_NAMESPACE`]. Anyone can check it with
//!   `ssh-keygen -Y verify -f allowed_signers -I <principal> -n trellis-plugin -s <archive>.sig < <archive>`.
//! - `<archive>.cert.sig`: a certifier's countersignature over the same bytes, namespace
//!   [`CERTIFY_NAMESPACE`], so an author signature can never pass for a certification or the
//!   other way round.
//! - `allowed_signers`: the OpenSSH format (`man ssh-keygen`, ALLOWED SIGNERS), shared with git
//!   commit signing. `cert-authority` lines are refused rather than ignored, since trellis does
//!   not verify SSH certificates and silently skipping a line would hide a trust decision.
//!
//! # Trust levels
//!
//! [`verify_package`] decides the level: no signature is [`TrustLevel::Unsigned`]; a valid
//! signature by a key no allowed-signers file lists is [`TrustLevel::SelfSigned`]; a key listed
//! for a principal, for this namespace and now, is [`TrustLevel::Verified`]; verified plus a valid
//! countersignature by a configured certifier is [`TrustLevel::Certified`]. A signature that does
//! not match is an error, never a downgrade.
//!
//! A certification only raises a *verified* package. On a self-signed package it is reported in
//! the notes and ignored: a certifier vouches for a known author's package, and an unknown key's
//! package with a countersignature would otherwise be certified with nobody able to say who made
//! it.

mod allowed_signers;
mod error;
mod key;
mod verify;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use allowed_signers::{AllowedSigners, SignerEntry, Validity};
pub use error::TrustError;
pub use key::{PASSPHRASE_ENV, SigningKey, default_key_candidates};
pub use ssh_key::PublicKey;
pub use verify::{
    Certifier, PackageSource, SignerInfo, TrustContext, Verification, verify_package,
};

/// The sshsig namespace of an author's package signature.
pub const PACKAGE_NAMESPACE: &str = "trellis-plugin";

/// The sshsig namespace of a certifier's countersignature.
pub const CERTIFY_NAMESPACE: &str = "trellis-certify";

/// Where the author's signature of `archive` lives: `<archive>.sig`.
pub fn signature_path(archive: &Path) -> PathBuf {
    with_suffix(archive, ".sig")
}

/// Where the certifier's countersignature of `archive` lives: `<archive>.cert.sig`.
pub fn certification_path(archive: &Path) -> PathBuf {
    with_suffix(archive, ".cert.sig")
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(suffix);
    PathBuf::from(name)
}

/// The SHA-256 fingerprint of a key as `ssh-keygen -l` prints it: `SHA256:<base64>`.
pub fn key_fingerprint(key: &PublicKey) -> String {
    key.fingerprint(ssh_key::HashAlg::Sha256).to_string()
}

/// How far a package is trusted, from least to most. Ordered, so a policy's minimum is a
/// comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrustLevel {
    /// No signature.
    Unsigned,
    /// A valid signature by a key that no allowed-signers file lists for its principal.
    SelfSigned,
    /// A valid signature by a key listed for its principal in the user's or admin's
    /// allowed-signers file (or attested by a configured registry).
    Verified,
    /// Verified, and countersigned by a certifier key that the policy names.
    Certified,
}

impl TrustLevel {
    pub const ALL: [TrustLevel; 4] = [
        TrustLevel::Unsigned,
        TrustLevel::SelfSigned,
        TrustLevel::Verified,
        TrustLevel::Certified,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TrustLevel::Unsigned => "unsigned",
            TrustLevel::SelfSigned => "self-signed",
            TrustLevel::Verified => "verified",
            TrustLevel::Certified => "certified",
        }
    }

    pub fn parse(s: &str) -> Option<TrustLevel> {
        TrustLevel::ALL.into_iter().find(|l| l.as_str() == s)
    }
}

impl std::fmt::Display for TrustLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
