use std::path::PathBuf;

use crate::key::PASSPHRASE_ENV;

/// Everything that can go wrong with keys, signer lists and signatures. Each message names the
/// file (and line) involved and what to do, because the CLI shows it as it is.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("cannot read {}: {source}; check that it exists and that you may read it", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("cannot write {}: {source}; check that its directory is writable and the disk is not full", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error(
        "{} is not a usable OpenSSH private key: {reason}; give a key made by `trellis plugin keygen` or `ssh-keygen -t ed25519`",
        path.display()
    )]
    KeyFormat { path: PathBuf, reason: String },

    #[error(
        "{} is an {algorithm} key, but trellis signs only with Ed25519 keys; make one with `trellis plugin keygen` or `ssh-keygen -t ed25519` and pass it with --key",
        path.display()
    )]
    UnsupportedKeyAlgorithm { path: PathBuf, algorithm: String },

    #[error(
        "{} is encrypted with a passphrase: set {PASSPHRASE_ENV} to it (or run the command on a terminal to be asked)",
        path.display()
    )]
    PassphraseNeeded { path: PathBuf },

    #[error("the passphrase for {} is wrong: check {PASSPHRASE_ENV}", path.display())]
    WrongPassphrase { path: PathBuf },

    #[error(
        "{} already exists and trellis never overwrites a key: choose another path, or move the old key away yourself",
        path.display()
    )]
    KeyExists { path: PathBuf },

    #[error("cannot encode the key for {}: {reason}", path.display())]
    KeyEncoding { path: PathBuf, reason: String },

    #[error("cannot sign with key {fingerprint} in namespace `{namespace}`: {reason}")]
    Sign {
        fingerprint: String,
        namespace: String,
        reason: String,
    },

    #[error(
        "{file}:{line}: {problem}; an entry is `principals [options] keytype base64key [comment]` (see `man ssh-keygen`, ALLOWED SIGNERS)"
    )]
    AllowedSignersSyntax {
        file: String,
        line: usize,
        problem: String,
    },

    #[error(
        "{file}:{line}: `cert-authority` entries are not supported, because trellis verifies plain keys, not SSH certificates; list the signer's own public key instead"
    )]
    CertAuthorityUnsupported { file: String, line: usize },

    #[error(
        "{file}: the certifier key `{key}` is not an OpenSSH public key ({reason}); write it as the one line of the certifier's `.pub` file, `ssh-ed25519 AAAA… comment`"
    )]
    CertifierKey {
        file: String,
        key: String,
        reason: String,
    },

    #[error(
        "{} is not an SSH signature ({reason}); sign the package again with `trellis plugin sign` or remove the file",
        file.display()
    )]
    MalformedSignature { file: PathBuf, reason: String },

    #[error(
        "{} was made for the namespace `{found}`, not `{expected}`: it is not this kind of signature; sign the package again with `trellis plugin {}`",
        file.display(),
        if expected == crate::CERTIFY_NAMESPACE { "certify" } else { "sign" }
    )]
    WrongNamespace {
        file: PathBuf,
        found: String,
        expected: String,
    },

    #[error(
        "{} does not match {}: the signature by key {fingerprint} was made over other bytes, so the archive was changed after signing or the signature belongs to another file; do not install it, and get the package again from its author",
        file.display(),
        archive.display()
    )]
    SignatureMismatch {
        file: PathBuf,
        archive: PathBuf,
        fingerprint: String,
    },

    #[error(
        "{} certifies a package that has no author signature ({} is missing); the author must sign the package before a certification counts",
        file.display(),
        signature_file.display()
    )]
    CertificationWithoutSignature {
        file: PathBuf,
        signature_file: PathBuf,
    },

    #[error(
        "the key {fingerprint} of `{principal}` has expired ({window}; {listed_in}): ask the signer for a package signed with their current key, or update that allowed-signers entry"
    )]
    ExpiredKey {
        principal: String,
        fingerprint: String,
        window: String,
        listed_in: String,
    },

    #[error(
        "the key {fingerprint} of `{principal}` is not valid yet ({window}; {listed_in}): check this machine's clock, or that entry's valid-after"
    )]
    KeyNotYetValid {
        principal: String,
        fingerprint: String,
        window: String,
        listed_in: String,
    },

    #[error("{}", wrong_signer_message(claimed, fingerprint, key_owner.as_deref(), listed_in))]
    WrongSigner {
        /// The principal the package says signed it.
        claimed: String,
        /// The fingerprint of the key that actually signed it.
        fingerprint: String,
        /// The principal the allowed-signers files give the signing key to, when they do.
        key_owner: Option<String>,
        /// `file:line` of the entries that contradict the claim.
        listed_in: Vec<String>,
    },
}

impl TrustError {
    /// True when a key could not be loaded only for want of its passphrase, so a caller with a
    /// terminal can ask for it and try again.
    pub fn is_passphrase_needed(&self) -> bool {
        matches!(self, TrustError::PassphraseNeeded { .. })
    }
}

fn wrong_signer_message(
    claimed: &str,
    fingerprint: &str,
    key_owner: Option<&str>,
    listed_in: &[String],
) -> String {
    let entries = listed_in.join(", ");
    match key_owner {
        Some(owner) => format!(
            "the package claims to be signed by `{claimed}`, but its signing key {fingerprint} belongs to `{owner}` ({entries}): do not install it unless `{claimed}` confirms they published it"
        ),
        None => format!(
            "the package claims to be signed by `{claimed}`, but its signing key {fingerprint} is not one of the keys listed for `{claimed}` ({entries}): someone else signed it; do not install it unless `{claimed}` confirms the key, and then add it to the allowed-signers file"
        ),
    }
}
