//! The Update Framework (TUF) for a static registry: signing its files on the server side and
//! verifying them on the client side, so a client can trust what it reads even from a
//! compromised server or mirror.
//!
//! The writer ([`generate_keys`], [`init_repository`], [`sign_repository`],
//! [`refresh_timestamp`], [`rotate_root`]) keeps the registry in this layout, which any static
//! host can serve:
//!
//! ```text
//! <registry>/metadata/1.root.json, root.json, targets.json, snapshot.json, timestamp.json
//! <registry>/metadata/2.root.json, 3.root.json, …   (one per root rotation, kept for clients)
//! <registry>/targets/<target name>      (config.json, index/alpha.jsonl, archives/alpha/…)
//! ```
//!
//! Target names are the paths under `targets/` with `/` separators. Files and directories whose
//! name starts with `.` (temporary files, locks) are not targets. Consistent snapshots are off,
//! so every file is at a plain path; the price is that a reader that fetches `timestamp.json`
//! just before a re-signing and `snapshot.json` just after sees files from two signings and
//! refuses them (the reader retries once).
//!
//! The signing keys live outside the registry, one Ed25519 key per role in PKCS#8 PEM files
//! (mode 0600): `root.pem` (plus `root-2.pem`, `root-3.pem`, … for a root threshold above one),
//! `targets.pem`, `snapshot.pem` and `timestamp.pem`. A rotation with new keys moves the keys
//! it replaces to `retired/<N>/` (N: the root version they belonged to) beside them.
//!
//! The reader ([`VerifiedRegistry`]) starts from the `root.json` pinned when the registry was
//! added, follows root rotations (`2.root.json`, …), and keeps what it last saw in a datastore
//! directory, so that metadata older than what it has seen (a rollback attack), expired
//! metadata (a freeze attack), metadata from different signings (a mix-and-match attack) and
//! targets whose length or sha256 differ from what `targets.json` lists are refused.
//!
//! The parts: `keys` (the role keys), `signing` (first signing, re-signing, the timestamp,
//! external targets), `rotation` (root rotation and key retirement), `client` (the verifying
//! reader); this module keeps the layout, the metadata files and what they share.
//!
//! The work is done by AWS's `tough` crate, which is async; this module's functions are
//! synchronous and run a current-thread tokio runtime of their own, so they must not be called
//! from inside an async runtime.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use std::time::Duration as StdDuration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::Ed25519KeyPair;
use futures::StreamExt;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use tough::editor::RepositoryEditor;
use tough::editor::signed::SignedRole;
use tough::key_source::KeySource;
use tough::schema::decoded::{Decoded, Hex};
use tough::schema::key::Key;
use tough::schema::{
    Hashes, KeyHolder, Metafile, RoleKeys, RoleType, Root, Signed, Snapshot, Target, Targets,
    Timestamp,
};
use tough::sign::Sign;
use tough::{
    DefaultTransport, ExpirationEnforcement, HttpTransportBuilder, Repository, RepositoryLoader,
    TargetName, Transport, TransportErrorKind,
};
use url::Url;

use crate::RegistryError;

mod client;
mod keys;
mod rotation;
mod signing;

pub use client::*;
pub use keys::*;
pub use rotation::*;
pub use signing::*;

/// The directory under a registry that holds its TUF metadata.
pub const METADATA_DIR: &str = "metadata";
/// The directory under a registry that holds its targets (everything the metadata signs).
pub const TARGETS_DIR: &str = "targets";

const SPEC_VERSION: &str = "1.0.0";
/// Beside tough's files in a client's datastore: the sha256 of the pinned root the datastore's
/// `root.json` descends from.
const PINNED_ROOT_MARKER: &str = "trellis-pinned-root.sha256";
/// How long one fetch (one metadata file or one archive) may take over http(s), per try.
const HTTP_TIMEOUT: StdDuration = StdDuration::from_secs(300);
/// How long to wait before the one retry after seeing files from two signings.
const MIX_RETRY_DELAY: StdDuration = StdDuration::from_millis(250);

// =================================================================================================
// Expiries and versions
// =================================================================================================

/// How long each role's metadata stays valid after it is signed.
///
/// A client refuses expired metadata (a freeze attack, or a registry nobody refreshes), so
/// `timestamp` bounds how stale a mirror can be: run [`refresh_timestamp`] well within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiries {
    pub root: chrono::Duration,
    pub targets: chrono::Duration,
    pub snapshot: chrono::Duration,
    pub timestamp: chrono::Duration,
}

impl Default for Expiries {
    /// Root 365 days, targets 90 days, snapshot 7 days, timestamp 1 day.
    fn default() -> Self {
        Expiries {
            root: chrono::Duration::days(365),
            targets: chrono::Duration::days(90),
            snapshot: chrono::Duration::days(7),
            timestamp: chrono::Duration::days(1),
        }
    }
}

/// The version of each top-level role's metadata: what was signed, or what a client verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SignedVersions {
    pub root: u64,
    pub targets: u64,
    pub snapshot: u64,
    pub timestamp: u64,
}

// =================================================================================================
// Keys
// =================================================================================================

/// `metadata/root.json`, or `NotARegistry` when it is missing.
pub(crate) fn read_root(registry_dir: &Path) -> Result<(Signed<Root>, Vec<u8>), RegistryError> {
    let path = registry_dir.join(METADATA_DIR).join("root.json");
    if !path.exists() {
        return Err(RegistryError::NotARegistry {
            path: registry_dir.to_owned(),
        });
    }
    read_metadata(&path)
}

pub(crate) fn read_metadata<T: DeserializeOwned>(
    path: &Path,
) -> Result<(Signed<T>, Vec<u8>), RegistryError> {
    let bytes = fs::read(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            RegistryError::InvalidMetadata {
                path: path.to_owned(),
                reason: "the file is missing".to_owned(),
            }
        } else {
            io_err(path)(e)
        }
    })?;
    let signed = serde_json::from_slice(&bytes).map_err(|e| RegistryError::InvalidMetadata {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    Ok((signed, bytes))
}

/// Only [`rotate_root`] re-signs the root, and clients refuse an expired one: say so a month
/// ahead, naming the command that fixes it.
pub(crate) fn warn_if_root_expires_soon(root: &Root, registry_dir: &Path) {
    let soon = jiff::Timestamp::now().as_second() + 30 * 24 * 3600;
    if root.expires.as_second() < soon {
        tracing::warn!(
            "{} expires at {}: clients will refuse the registry after that; sign a new root before then with `trellis registry rotate-root {}`",
            registry_dir.join(METADATA_DIR).join("root.json").display(),
            root.expires,
            registry_dir.display()
        );
    }
}

/// The next versions of targets, snapshot and timestamp: one over what `metadata/` holds.
pub(crate) fn next_versions(metadata_dir: &Path) -> Result<[NonZeroU64; 3], RegistryError> {
    let targets_path = metadata_dir.join("targets.json");
    let snapshot_path = metadata_dir.join("snapshot.json");
    let timestamp_path = metadata_dir.join("timestamp.json");
    let (targets, _) = read_metadata::<Targets>(&targets_path)?;
    let (snapshot, _) = read_metadata::<Snapshot>(&snapshot_path)?;
    let (timestamp, _) = read_metadata::<Timestamp>(&timestamp_path)?;
    Ok([
        next_version(targets.signed.version, &targets_path)?,
        next_version(snapshot.signed.version, &snapshot_path)?,
        next_version(timestamp.signed.version, &timestamp_path)?,
    ])
}

pub(crate) fn next_version(current: NonZeroU64, path: &Path) -> Result<NonZeroU64, RegistryError> {
    current
        .checked_add(1)
        .ok_or_else(|| RegistryError::InvalidMetadata {
            path: path.to_owned(),
            reason: format!("version {current} cannot go up"),
        })
}

/// `now + period`, to the second; the period must be at least a second.
pub(crate) fn expires_at(
    now: jiff::Timestamp,
    period: chrono::Duration,
    role: RoleType,
) -> Result<jiff::Timestamp, RegistryError> {
    let seconds = period.num_seconds();
    let invalid = |reason: &str| RegistryError::InvalidExpiry {
        role: role.to_string(),
        reason: reason.to_owned(),
    };
    if seconds <= 0 {
        return Err(invalid("it must be at least one second"));
    }
    now.as_second()
        .checked_add(seconds)
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .ok_or_else(|| invalid("it is too far in the future"))
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename, so a
/// reader sees the old file or the new one. The file is made world-readable (mode 0644): it is
/// meant to be served.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), RegistryError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let mut file = open_readable(path)?;
    file.write_all(bytes).map_err(io_err(path))?;
    file.commit().map_err(io_err(path))
}

/// A file that replaces `path` atomically when committed (`atomic-write-file`: temporary file,
/// fsync, rename, fsync of the directory), world-readable whatever the old file's mode was.
pub(crate) fn open_readable(
    path: &Path,
) -> Result<atomic_write_file::AtomicWriteFile, RegistryError> {
    let file = atomic_write_file::AtomicWriteFile::open(path).map_err(io_err(path))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.as_file()
            .set_permissions(fs::Permissions::from_mode(0o644))
            .map_err(io_err(path))?;
    }
    Ok(file)
}

/// Makes renames in `dir` durable where the platform allows it (best effort).
pub(crate) fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

pub(crate) fn signing_error(what: &str, e: &tough::error::Error) -> RegistryError {
    RegistryError::Signing {
        what: what.to_owned(),
        reason: e.to_string(),
    }
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RegistryError + '_ {
    move |source| RegistryError::Io {
        path: path.to_owned(),
        source,
    }
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, RegistryError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(RegistryError::Runtime)
}

// =================================================================================================
// Reading a registry
// =================================================================================================
