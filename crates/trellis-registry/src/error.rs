use std::path::PathBuf;

/// Everything that can go wrong reading or writing a registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    // --- A registry directory ---
    #[error("{path} already holds a registry (metadata/root.json exists)")]
    AlreadyExists { path: PathBuf },

    #[error("{path} is not empty: export into a new or empty directory")]
    NotEmpty { path: PathBuf },

    #[error(
        "{path} is not a registry directory (no metadata/root.json): create one with `trellis registry init {path}`"
    )]
    NotARegistry { path: PathBuf },

    #[error(
        "this registry's download template `{template}` is an absolute URL: archives must be uploaded there, not into the directory"
    )]
    RemoteDownload { template: String },

    #[error("the archive `{target}` is kept in object storage, which cannot give it ({store})")]
    ArchiveMissing { target: String, store: String },

    #[error("object storage {store}: {reason}")]
    ArchiveStore { store: String, reason: String },

    #[error("{name} {version} is not published here (published: {})", published.join(", "))]
    UnknownVersion {
        name: String,
        version: semver::Version,
        published: Vec<String>,
    },

    // --- Publishing ---
    #[error("not publishable ({gate} gate): {reason}")]
    GateFailed {
        gate: &'static str,
        reason: String,
        hint: String,
    },

    #[error(transparent)]
    Trust(Box<trellis_trust::TrustError>),

    // --- The index and config files ---
    #[error("{source_name}:{line}: {reason}")]
    InvalidIndex {
        source_name: String,
        line: usize,
        reason: String,
    },

    #[error(
        "{source_name} is in format {found}, written by a newer trellis (this one reads up to {supported}): upgrade trellis"
    )]
    NewerFormat {
        source_name: String,
        found: u32,
        supported: u32,
    },

    // --- TUF: keys and signing (crate::tuf) ---
    #[error("cannot generate keys in {keys_dir}: a registry needs at least one root key")]
    NoRootKeys { keys_dir: PathBuf },

    #[error(
        "{path} already exists: refusing to overwrite a signing key (what was signed with it would no longer verify); move it away first if you really mean to replace it"
    )]
    KeyExists { path: PathBuf },

    #[error("generating the key {path} failed: {reason}: check the system's random number source")]
    KeyGeneration { path: PathBuf, reason: String },

    #[error(
        "{path}: signing key not found: point at the keys directory the registry was initialised with (or generate keys before initialising a registry)"
    )]
    KeyMissing { path: PathBuf },

    #[error(
        "{path} is not a usable signing key: {reason}: it must be an Ed25519 private key in PKCS#8 PEM (`openssl genpkey -algorithm ed25519`)"
    )]
    InvalidKey { path: PathBuf, reason: String },

    #[error(
        "{key} is not a {role} key {root} lists: sign with the keys directory this registry was initialised with"
    )]
    KeyNotInRoot {
        key: PathBuf,
        role: String,
        root: PathBuf,
    },

    #[error(
        "a root threshold of {threshold} cannot be met by the {available} distinct root key(s) in {keys_dir} (root.pem, root-2.pem, …): the threshold must be at least 1 and at most the number of root keys; generate more root keys or lower the threshold"
    )]
    RootThreshold {
        threshold: u64,
        available: usize,
        keys_dir: PathBuf,
    },

    #[error(
        "signing a new root needs {threshold} of the root keys {root} lists, and {keys_dir} holds {available} of them (root.pem, root-2.pem, …): gather the registry's current root keys in the keys directory"
    )]
    RootSignersMissing {
        threshold: u64,
        available: usize,
        keys_dir: PathBuf,
        root: PathBuf,
    },

    #[error(
        "a root rotation of {registry} was interrupted ({reason}): run `trellis registry rotate-root {registry}` again to finish it; nothing else is signed until then"
    )]
    RotationInterrupted { registry: PathBuf, reason: String },

    #[error(
        "{path}: {reason}: the registry's TUF metadata is damaged; restore metadata/ from a backup"
    )]
    InvalidMetadata { path: PathBuf, reason: String },

    #[error("{path} cannot be signed as a target: {reason}: rename or remove it")]
    InvalidTarget { path: PathBuf, reason: String },

    #[error(
        "the {role} expiry period is invalid: {reason}: use a positive period (e.g. a day for timestamp.json)"
    )]
    InvalidExpiry { role: String, reason: String },

    #[error(
        "signing {what} failed: {reason}: check the keys directory and that the registry directory is writable"
    )]
    Signing { what: String, reason: String },

    #[error(
        "cannot start the async runtime TUF needs: {0}: the system may be out of threads or file descriptors"
    )]
    Runtime(std::io::Error),

    // --- TUF: verifying a registry (crate::tuf::VerifiedRegistry) ---
    #[error(
        "registry {registry}: the pinned root.json cannot be trusted: {reason}: re-add the registry with the root.json its operator publishes (and check it out of band)"
    )]
    UntrustedRoot { registry: String, reason: String },

    #[error(
        "registry {registry}: {file} expired{}: {}",
        expired_at.as_ref().map(|t| format!(" at {t}")).unwrap_or_default(),
        expired_advice(file)
    )]
    Expired {
        registry: String,
        file: String,
        expired_at: Option<String>,
    },

    #[error(
        "registry {registry}: {file} version {found} is older than version {seen} seen before (a rollback attack, or a mirror serving old files); refusing it: try again later or another mirror, and tell the registry's operator if it persists"
    )]
    Rollback {
        registry: String,
        file: String,
        found: u64,
        seen: u64,
    },

    #[error(
        "registry {registry}: {file} does not match the metadata that lists it: {reason} (files from different signings: a mix-and-match attack, or the registry was being updated); try again, and tell its operator if it persists"
    )]
    MetadataMismatch {
        registry: String,
        file: String,
        reason: String,
    },

    #[error(
        "registry {registry}: {file} is not signed by enough trusted keys ({reason}): it may have been tampered with; do not use this registry until its operator confirms its keys"
    )]
    BadSignature {
        registry: String,
        file: String,
        reason: String,
    },

    #[error(
        "registry {registry}: target {target} ({url}) does not match targets.json: {reason}: the file was altered on the server or a mirror and was not used; tell the registry's operator"
    )]
    TargetMismatch {
        registry: String,
        target: String,
        url: String,
        reason: String,
    },

    #[error("cannot fetch {url}: {reason}: check the registry's URL and your network connection")]
    Fetch { url: String, reason: String },

    #[error("registry {registry}: {reason}: {hint}")]
    Tuf {
        registry: String,
        reason: String,
        hint: String,
    },

    /// A registry server refused a publish; `kind` and `hint` are the server's.
    #[error("{registry} refused the package ({status}): {message}")]
    Refused {
        registry: String,
        status: u16,
        kind: String,
        message: String,
        hint: Option<String>,
    },
}

/// What an expired file means and what to do: the root is renewed by the registry's operator
/// (a rotation), the other files by any re-signing.
fn expired_advice(file: &str) -> &'static str {
    if file == "root.json" {
        "its root of trust was not renewed in time (or a freeze attack or a stale mirror is serving an old one); its operator must sign a new root with `trellis registry rotate-root`, which clients then follow"
    } else {
        "the registry has not been refreshed (a freeze attack or a stale mirror); try again later or ask its operator"
    }
}

impl RegistryError {
    /// What to do about it, where the message does not already say.
    pub fn hint(&self) -> Option<String> {
        match self {
            RegistryError::GateFailed { hint, .. } => Some(hint.clone()),
            RegistryError::Refused { hint, .. } => hint.clone(),
            RegistryError::InvalidIndex { .. } => Some(
                "the registry's index is damaged: tell its operator; an index line is one JSON object per published version"
                    .to_owned(),
            ),
            RegistryError::ArchiveMissing { .. } => Some(
                "give the registry's archive store (`--archives s3://BUCKET/PREFIX` with the AWS_* variables); if it is given, the object was deleted from the bucket"
                    .to_owned(),
            ),
            _ => None,
        }
    }
}
