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

/// The key file for a role: `root.pem` (the first root key), `targets.pem`, `snapshot.pem`,
/// `timestamp.pem`.
pub fn key_path(keys_dir: &Path, role: RoleType) -> PathBuf {
    let name = match role {
        RoleType::Root => "root",
        RoleType::Targets => "targets",
        RoleType::Snapshot => "snapshot",
        RoleType::Timestamp => "timestamp",
        RoleType::DelegatedTargets => "delegated-targets",
    };
    keys_dir.join(format!("{name}.pem"))
}

/// The path of root key number `n` (1-based): `root.pem`, `root-2.pem`, `root-3.pem`, ….
fn root_key_path(keys_dir: &Path, n: usize) -> PathBuf {
    if n <= 1 {
        key_path(keys_dir, RoleType::Root)
    } else {
        keys_dir.join(format!("root-{n}.pem"))
    }
}

/// The root keys present in `keys_dir`: `root.pem`, then `root-2.pem`, … up to the first gap.
fn root_key_paths(keys_dir: &Path) -> Vec<PathBuf> {
    (1..)
        .map(|n| root_key_path(keys_dir, n))
        .take_while(|p| p.exists())
        .collect()
}

/// Generates one Ed25519 key per role in `keys_dir` (created if missing, mode 0700): `root.pem`
/// and `root_keys - 1` more root keys (`root-2.pem`, …), `targets.pem`, `snapshot.pem` and
/// `timestamp.pem`, each PKCS#8 PEM with mode 0600.
///
/// Refuses, writing nothing, when any of these files already exists: replacing a key would
/// make everything signed with it unverifiable.
pub fn generate_keys(keys_dir: &Path, root_keys: usize) -> Result<(), RegistryError> {
    if root_keys == 0 {
        return Err(RegistryError::NoRootKeys {
            keys_dir: keys_dir.to_owned(),
        });
    }
    let mut paths: Vec<PathBuf> = (1..=root_keys)
        .map(|n| root_key_path(keys_dir, n))
        .collect();
    paths.extend(
        [RoleType::Targets, RoleType::Snapshot, RoleType::Timestamp]
            .into_iter()
            .map(|role| key_path(keys_dir, role)),
    );
    if let Some(existing) = paths.iter().find(|p| fs::symlink_metadata(p).is_ok()) {
        return Err(RegistryError::KeyExists {
            path: existing.clone(),
        });
    }
    if !keys_dir.exists() {
        create_private_dir(keys_dir)?;
    }
    let rng = SystemRandom::new();
    for path in &paths {
        let pkcs8 =
            Ed25519KeyPair::generate_pkcs8v1(&rng).map_err(|e| RegistryError::KeyGeneration {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        let text = pem::encode_config(
            &pem::Pem::new("PRIVATE KEY", pkcs8.as_ref()),
            pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
        );
        write_private_file(path, text.as_bytes())?;
    }
    Ok(())
}

fn create_private_dir(dir: &Path) -> Result<(), RegistryError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(io_err(dir))
}

/// Creates `path` (which must not exist) readable by its owner only, and writes `bytes` to it.
fn write_private_file(path: &Path, bytes: &[u8]) -> Result<(), RegistryError> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            RegistryError::KeyExists {
                path: path.to_owned(),
            }
        } else {
            io_err(path)(e)
        }
    })?;
    file.write_all(bytes).map_err(io_err(path))?;
    file.sync_all().map_err(io_err(path))
}

/// An Ed25519 private key in a PKCS#8 PEM file, as a `tough` [`KeySource`].
///
/// (tough's own `LocalKeySource` reads Ed25519 keys only as raw DER, and PEM only for RSA.)
pub struct Ed25519PemKey {
    path: PathBuf,
    pkcs8: Vec<u8>,
}

impl std::fmt::Debug for Ed25519PemKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key itself.
        f.debug_struct("Ed25519PemKey")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Ed25519PemKey {
    /// Reads and checks the key at `path`.
    pub fn load(path: &Path) -> Result<Self, RegistryError> {
        let bytes = fs::read(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                RegistryError::KeyMissing {
                    path: path.to_owned(),
                }
            } else {
                io_err(path)(e)
            }
        })?;
        #[cfg(unix)]
        if let Ok(meta) = fs::metadata(path) {
            use std::os::unix::fs::PermissionsExt;
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(
                    "{} is readable by other users; a signing key should be mode 0600 (chmod 600 it)",
                    path.display()
                );
            }
        }
        let invalid = |reason: String| RegistryError::InvalidKey {
            path: path.to_owned(),
            reason,
        };
        let block = pem::parse(&bytes).map_err(|e| invalid(format!("not PEM ({e})")))?;
        if block.tag() != "PRIVATE KEY" {
            return Err(invalid(format!(
                "a PEM block of type `{}`, not `PRIVATE KEY`",
                block.tag()
            )));
        }
        let pkcs8 = block.into_contents();
        Ed25519KeyPair::from_pkcs8(&pkcs8)
            .map_err(|e| invalid(format!("not an Ed25519 PKCS#8 key ({e})")))?;
        Ok(Ed25519PemKey {
            path: path.to_owned(),
            pkcs8,
        })
    }

    /// Where the key was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn key_pair(&self) -> Result<Ed25519KeyPair, RegistryError> {
        Ed25519KeyPair::from_pkcs8(&self.pkcs8).map_err(|e| RegistryError::InvalidKey {
            path: self.path.clone(),
            reason: e.to_string(),
        })
    }

    /// The public key, as `root.json` lists it.
    pub fn public_key(&self) -> Result<Key, RegistryError> {
        Ok(Sign::tuf_key(&self.key_pair()?))
    }

    /// The TUF key ID of the public key.
    pub fn key_id(&self) -> Result<Decoded<Hex>, RegistryError> {
        self.public_key()?
            .key_id()
            .map_err(|e| RegistryError::InvalidKey {
                path: self.path.clone(),
                reason: e.to_string(),
            })
    }
}

#[tough::async_trait]
impl KeySource for Ed25519PemKey {
    async fn as_sign(
        &self,
    ) -> Result<Box<dyn Sign>, Box<dyn std::error::Error + Send + Sync + 'static>> {
        let pair = Ed25519KeyPair::from_pkcs8(&self.pkcs8)?;
        Ok(Box::new(pair))
    }

    async fn write(
        &self,
        _value: &str,
        _key_id_hex: &str,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync + 'static>> {
        Err(format!(
            "{}: trellis does not write keys through tough",
            self.path.display()
        )
        .into())
    }
}

/// The keys for targets, snapshot and timestamp, checked against what `root` lists.
struct RoleKeySet {
    targets: Ed25519PemKey,
    snapshot: Ed25519PemKey,
    timestamp: Ed25519PemKey,
}

impl RoleKeySet {
    fn load(keys_dir: &Path) -> Result<Self, RegistryError> {
        Ok(RoleKeySet {
            targets: Ed25519PemKey::load(&key_path(keys_dir, RoleType::Targets))?,
            snapshot: Ed25519PemKey::load(&key_path(keys_dir, RoleType::Snapshot))?,
            timestamp: Ed25519PemKey::load(&key_path(keys_dir, RoleType::Timestamp))?,
        })
    }

    fn check(&self, root: &Root, root_path: &Path) -> Result<(), RegistryError> {
        check_role_key(root, root_path, RoleType::Targets, &self.targets)?;
        check_role_key(root, root_path, RoleType::Snapshot, &self.snapshot)?;
        check_role_key(root, root_path, RoleType::Timestamp, &self.timestamp)
    }

    fn into_sources(self) -> Vec<Box<dyn KeySource>> {
        vec![
            Box::new(self.targets),
            Box::new(self.snapshot),
            Box::new(self.timestamp),
        ]
    }
}

/// Fails unless `key` is one `root` lists for `role`.
fn check_role_key(
    root: &Root,
    root_path: &Path,
    role: RoleType,
    key: &Ed25519PemKey,
) -> Result<(), RegistryError> {
    let id = key.key_id()?;
    let listed = root
        .roles
        .get(&role)
        .is_some_and(|keys| keys.keyids.contains(&id));
    if listed {
        Ok(())
    } else {
        Err(RegistryError::KeyNotInRoot {
            key: key.path.clone(),
            role: role.to_string(),
            root: root_path.to_owned(),
        })
    }
}

// =================================================================================================
// Writing a registry
// =================================================================================================

/// Creates the registry's TUF metadata: `metadata/1.root.json` and `metadata/root.json`, then
/// signs the current `targets/` tree (created if missing) with targets, snapshot and timestamp
/// at version 1.
///
/// The root role lists every root key in `keys_dir` (`root.pem`, `root-2.pem`, … up to the
/// first gap) with threshold `root_threshold`, and is signed by all of them, so there must be
/// at least `root_threshold`. Targets, snapshot and timestamp have one key each, threshold 1.
/// Refuses when `metadata/root.json` exists: re-initialising would replace the registry's root
/// of trust, which every client has pinned.
pub fn init_repository(
    registry_dir: &Path,
    keys_dir: &Path,
    root_threshold: u64,
    expiries: &Expiries,
) -> Result<(), RegistryError> {
    let metadata_dir = registry_dir.join(METADATA_DIR);
    if metadata_dir.join("root.json").exists() {
        return Err(RegistryError::AlreadyExists {
            path: registry_dir.to_owned(),
        });
    }
    let root_paths = root_key_paths(keys_dir);
    if root_paths.is_empty() {
        return Err(RegistryError::KeyMissing {
            path: key_path(keys_dir, RoleType::Root),
        });
    }
    let threshold = NonZeroU64::new(root_threshold)
        .filter(|t| usize::try_from(t.get()).is_ok_and(|t| t <= root_paths.len()))
        .ok_or_else(|| RegistryError::RootThreshold {
            threshold: root_threshold,
            available: root_paths.len(),
            keys_dir: keys_dir.to_owned(),
        })?;
    let root_keys = root_paths
        .iter()
        .map(|p| Ed25519PemKey::load(p))
        .collect::<Result<Vec<_>, _>>()?;
    let role_keys = RoleKeySet::load(keys_dir)?;

    let now = jiff::Timestamp::now();
    let root_expires = expires_at(now, expiries.root, RoleType::Root)?;
    let (keys, roles, distinct_root_keys) = key_layout(&root_keys, &role_keys, threshold)?;
    if (distinct_root_keys as u64) < threshold.get() {
        // Two root key files holding the same key do not make two signatures.
        return Err(RegistryError::RootThreshold {
            threshold: root_threshold,
            available: distinct_root_keys,
            keys_dir: keys_dir.to_owned(),
        });
    }
    let root = Root {
        spec_version: SPEC_VERSION.to_owned(),
        consistent_snapshot: false,
        version: NonZeroU64::MIN,
        expires: root_expires,
        keys,
        roles,
        _extra: HashMap::new(),
    };

    fs::create_dir_all(&metadata_dir).map_err(io_err(&metadata_dir))?;
    let targets_dir = registry_dir.join(TARGETS_DIR);
    fs::create_dir_all(&targets_dir).map_err(io_err(&targets_dir))?;

    let rt = runtime()?;
    let root_sources: Vec<Box<dyn KeySource>> = root_keys
        .into_iter()
        .map(|k| Box::new(k) as Box<dyn KeySource>)
        .collect();
    let holder = KeyHolder::Root(root.clone());
    let signed_root = rt
        .block_on(SignedRole::new(
            root,
            &holder,
            &root_sources,
            &SystemRandom::new(),
        ))
        .map_err(|e| signing_error("metadata/root.json", &e))?;
    // What a client will check first: that the root is signed by its own threshold.
    signed_root
        .signed()
        .signed
        .verify_role(signed_root.signed())
        .map_err(|e| RegistryError::Signing {
            what: "metadata/root.json".to_owned(),
            reason: e.to_string(),
        })?;
    // root.json last: until it exists the registry is not initialised, and init can be re-run.
    let first_root = metadata_dir.join("1.root.json");
    write_atomic(&first_root, signed_root.buffer())?;
    let one = NonZeroU64::MIN;
    rt.block_on(sign_targets(
        registry_dir,
        &first_root,
        role_keys.into_sources(),
        [one, one, one],
        expiries,
    ))?;
    write_atomic(&metadata_dir.join("root.json"), signed_root.buffer())?;
    sync_dir(&metadata_dir);
    Ok(())
}

/// A root's `keys` and `roles`, and how many distinct root keys there are.
type KeyLayout = (
    HashMap<Decoded<Hex>, Key>,
    HashMap<RoleType, RoleKeys>,
    usize,
);

/// Root metadata as read from a file, and the file's bytes.
type RootFile = (Signed<Root>, Vec<u8>);

/// The keys and roles a root lists: `root_keys` for the root role with `root_threshold`, and
/// `role_keys`' one key each for targets, snapshot and timestamp with threshold 1. Also returns
/// how many distinct root keys there are (two files may hold one key).
fn key_layout(
    root_keys: &[Ed25519PemKey],
    role_keys: &RoleKeySet,
    root_threshold: NonZeroU64,
) -> Result<KeyLayout, RegistryError> {
    let mut keys: HashMap<Decoded<Hex>, Key> = HashMap::new();
    let mut role_ids = |pairs: &[&Ed25519PemKey]| -> Result<Vec<Decoded<Hex>>, RegistryError> {
        let mut ids = Vec::new();
        for pair in pairs {
            let id = pair.key_id()?;
            keys.insert(id.clone(), pair.public_key()?);
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        Ok(ids)
    };
    let root_ids = role_ids(&root_keys.iter().collect::<Vec<_>>())?;
    let distinct_root_keys = root_ids.len();
    let targets_ids = role_ids(&[&role_keys.targets])?;
    let snapshot_ids = role_ids(&[&role_keys.snapshot])?;
    let timestamp_ids = role_ids(&[&role_keys.timestamp])?;
    let role = |keyids: Vec<Decoded<Hex>>, threshold: NonZeroU64| RoleKeys {
        keyids,
        threshold,
        _extra: HashMap::new(),
    };
    let mut roles = HashMap::new();
    roles.insert(RoleType::Root, role(root_ids, root_threshold));
    roles.insert(RoleType::Targets, role(targets_ids, NonZeroU64::MIN));
    roles.insert(RoleType::Snapshot, role(snapshot_ids, NonZeroU64::MIN));
    roles.insert(RoleType::Timestamp, role(timestamp_ids, NonZeroU64::MIN));
    Ok((keys, roles, distinct_root_keys))
}

/// Re-signs the registry after files under `targets/` changed: `targets.json` lists every file
/// under `targets/` (sha256 and length), and targets, snapshot and timestamp each go up one
/// version over what `metadata/` holds. Each file is replaced atomically (a temporary file and
/// a rename), `timestamp.json` last, so a reader never sees a timestamp naming a snapshot not
/// yet written.
///
/// The caller must keep other writers out of the registry meanwhile (a lock).
pub fn sign_repository(
    registry_dir: &Path,
    keys_dir: &Path,
    expiries: &Expiries,
) -> Result<SignedVersions, RegistryError> {
    let metadata_dir = registry_dir.join(METADATA_DIR);
    let (root, _) = read_root(registry_dir)?;
    check_no_rotation_in_progress(registry_dir, keys_dir, &root.signed)?;
    let keys = RoleKeySet::load(keys_dir)?;
    keys.check(&root.signed, &metadata_dir.join("root.json"))?;
    let versions = next_versions(&metadata_dir)?;
    warn_if_root_expires_soon(&root.signed, registry_dir);
    runtime()?.block_on(sign_targets(
        registry_dir,
        &metadata_dir.join("root.json"),
        keys.into_sources(),
        versions,
        expiries,
    ))?;
    Ok(SignedVersions {
        root: root.signed.version.get(),
        targets: versions[0].get(),
        snapshot: versions[1].get(),
        timestamp: versions[2].get(),
    })
}

/// Re-signs only `timestamp.json`, with a new expiry and its version up one, naming the
/// current `snapshot.json`: what a server runs periodically (well within the timestamp expiry)
/// so clients can tell a live registry from a frozen mirror. Returns the new version.
pub fn refresh_timestamp(
    registry_dir: &Path,
    keys_dir: &Path,
    expiries: &Expiries,
) -> Result<u64, RegistryError> {
    let metadata_dir = registry_dir.join(METADATA_DIR);
    let (root, _) = read_root(registry_dir)?;
    check_no_rotation_in_progress(registry_dir, keys_dir, &root.signed)?;
    let snapshot_path = metadata_dir.join("snapshot.json");
    let (snapshot, snapshot_bytes) = read_metadata::<Snapshot>(&snapshot_path)?;
    let timestamp_path = metadata_dir.join("timestamp.json");
    let (old, _) = read_metadata::<Timestamp>(&timestamp_path)?;
    let key = Ed25519PemKey::load(&key_path(keys_dir, RoleType::Timestamp))?;
    check_role_key(
        &root.signed,
        &metadata_dir.join("root.json"),
        RoleType::Timestamp,
        &key,
    )?;

    warn_if_root_expires_soon(&root.signed, registry_dir);
    let version = next_version(old.signed.version, &timestamp_path)?;
    let expires = expires_at(
        jiff::Timestamp::now(),
        expiries.timestamp,
        RoleType::Timestamp,
    )?;
    let mut timestamp = Timestamp::new(SPEC_VERSION.to_owned(), version, expires);
    timestamp.meta.insert(
        "snapshot.json".to_owned(),
        Metafile {
            length: Some(snapshot_bytes.len() as u64),
            hashes: Some(Hashes {
                sha256: Decoded::from(Sha256::digest(&snapshot_bytes).to_vec()),
                _extra: HashMap::new(),
            }),
            version: snapshot.signed.version,
            _extra: HashMap::new(),
        },
    );
    let holder = KeyHolder::Root(root.signed);
    let sources: Vec<Box<dyn KeySource>> = vec![Box::new(key)];
    let signed = runtime()?
        .block_on(SignedRole::new(
            timestamp,
            &holder,
            &sources,
            &SystemRandom::new(),
        ))
        .map_err(|e| signing_error("metadata/timestamp.json", &e))?;
    write_atomic(&timestamp_path, signed.buffer())?;
    sync_dir(&metadata_dir);
    Ok(version.get())
}

// =================================================================================================
// Rotating the root
// =================================================================================================

/// Under the keys directory: the new keys of a rotation with new keys, from when they are
/// generated until they replace the old ones. The directory appears whole (the keys are
/// generated in a temporary directory beside it, which is then renamed), so when it exists it
/// holds a complete set.
pub const ROTATING_KEYS_DIR: &str = "rotating";
/// Under the keys directory: `retired/<N>/` holds the keys of root version N once a rotation
/// with new keys replaced them. Nothing signs with them any more; keep them offline or destroy
/// them.
pub const RETIRED_KEYS_DIR: &str = "retired";

/// Signs root version N+1 (N being `metadata/root.json`'s version) with a new expiry
/// (`expiries.root` from now) and writes it as `metadata/<N+1>.root.json` and
/// `metadata/root.json`. Returns the new root version.
///
/// The new root is signed by a threshold of the current root's keys (which must be in
/// `keys_dir`) and of its own, as TUF requires for a client to follow it from the root it
/// trusts. Without `new_keys` the keys stay the same and only the root is re-signed.
///
/// With `new_keys`, a new key is generated for every role (as many root keys as the current
/// root lists, with the same threshold) and the new root lists only them. The old keys end up
/// in `keys_dir/retired/<N>/` and the new ones in their place (`root.pem`, `targets.pem`, …),
/// so later signing uses the new keys without any other change.
///
/// The order keeps the registry verifiable for clients at every step, and after a crash at
/// any point:
///
/// 1. The new keys are generated into `keys_dir/rotating/` (nothing published changes).
/// 2. targets, snapshot and timestamp are re-signed (versions up one) by the old keys *and*
///    the new ones. A client still on root N checks the old signatures, one that already
///    follows root N+1 the new ones: either verifies, so this can happen before the root.
/// 3. `<N+1>.root.json` is written (clients follow it from here), then `root.json`.
/// 4. The old keys are moved to `retired/<N>/` and the new ones into place, file by file.
///
/// Running it again after an interruption finishes the rotation instead of starting another:
/// a `<N+1>.root.json` newer than `root.json` is copied to `root.json`, and new keys the root
/// already lists are moved into place; new keys staged before the root was written are used
/// for the rotation (whatever `new_keys` says). Until it is finished, [`sign_repository`] and
/// [`refresh_timestamp`] refuse to sign (they would sign with keys the new root may not list).
///
/// The caller must keep other writers out of the registry meanwhile (a lock).
pub fn rotate_root(
    registry_dir: &Path,
    keys_dir: &Path,
    expiries: &Expiries,
    new_keys: bool,
) -> Result<u64, RegistryError> {
    let metadata_dir = registry_dir.join(METADATA_DIR);
    let root_path = metadata_dir.join("root.json");
    let (current, _) = read_root(registry_dir)?;
    let staged = keys_dir.join(ROTATING_KEYS_DIR);

    // An interrupted rotation is finished first (steps 3 and 4).
    if let Some((tip, tip_bytes)) = newer_root_file(&metadata_dir, &current)? {
        write_atomic(&root_path, &tip_bytes)?;
        sync_dir(&metadata_dir);
        if staged.exists() && staged_keys_listed(&staged, &tip.signed)? {
            install_staged_keys(keys_dir, &tip.signed)?;
        }
        return Ok(tip.signed.version.get());
    }
    if staged.exists() && staged_keys_listed(&staged, &current.signed)? {
        install_staged_keys(keys_dir, &current.signed)?;
        return Ok(current.signed.version.get());
    }

    let version = next_version(current.signed.version, &root_path)?;
    let root_role = current
        .signed
        .roles
        .get(&RoleType::Root)
        .ok_or_else(|| RegistryError::InvalidMetadata {
            path: root_path.clone(),
            reason: "it lists no root role".to_owned(),
        })?
        .clone();
    let signers = current_root_signers(keys_dir, &current.signed, &root_path)?;
    let mut next = current.signed.clone();
    next.version = version;
    next.expires = expires_at(jiff::Timestamp::now(), expiries.root, RoleType::Root)?;
    let mut root_sources: Vec<Box<dyn KeySource>> = signers
        .into_iter()
        .map(|k| Box::new(k) as Box<dyn KeySource>)
        .collect();
    let rt = runtime()?;

    // New keys staged by a rotation that stopped before its root was written are used, so
    // that what it signed in step 2 still matches.
    let change_keys = new_keys || staged.exists();
    if change_keys {
        // Step 1.
        if !staged.exists() {
            stage_new_keys(keys_dir, root_role.keyids.len())?;
        }
        let new_root_keys = root_key_paths(&staged)
            .iter()
            .map(|p| Ed25519PemKey::load(p))
            .collect::<Result<Vec<_>, _>>()?;
        let new_role_keys = RoleKeySet::load(&staged)?;
        let (keys, roles, distinct) =
            key_layout(&new_root_keys, &new_role_keys, root_role.threshold)?;
        if (distinct as u64) < root_role.threshold.get() {
            return Err(RegistryError::RootThreshold {
                threshold: root_role.threshold.get(),
                available: distinct,
                keys_dir: staged.clone(),
            });
        }

        // Step 2: signed under a root that lists the old and the new keys of each role (it
        // only selects the signing keys and is never published).
        let union = with_role_keys(&current.signed, &new_role_keys)?;
        let temp_dir = std::env::temp_dir();
        let mut union_file =
            tempfile::NamedTempFile::new_in(&temp_dir).map_err(io_err(&temp_dir))?;
        let union_json = serde_json::to_vec(&Signed {
            signed: union,
            signatures: Vec::new(),
        })
        .map_err(|e| RegistryError::Signing {
            what: "metadata/targets.json, snapshot.json and timestamp.json".to_owned(),
            reason: e.to_string(),
        })?;
        union_file
            .write_all(&union_json)
            .map_err(io_err(union_file.path()))?;
        let mut role_sources = old_role_sources(keys_dir, &current.signed, &root_path);
        role_sources.extend(new_role_keys.into_sources());
        rt.block_on(sign_targets(
            registry_dir,
            union_file.path(),
            role_sources,
            next_versions(&metadata_dir)?,
            expiries,
        ))?;

        next.keys = keys;
        next.roles = roles;
        root_sources.extend(
            new_root_keys
                .into_iter()
                .map(|k| Box::new(k) as Box<dyn KeySource>),
        );
    }

    // Step 3. The signing keys are selected by a root listing the current root keys as well
    // as the new root's: the new root must carry a threshold of each.
    let mut signer_root = next.clone();
    for (id, key) in &current.signed.keys {
        signer_root
            .keys
            .entry(id.clone())
            .or_insert_with(|| key.clone());
    }
    if let Some(role) = signer_root.roles.get_mut(&RoleType::Root) {
        for id in &root_role.keyids {
            if !role.keyids.contains(id) {
                role.keyids.push(id.clone());
            }
        }
    }
    let file_name = format!("{version}.root.json");
    let what = format!("metadata/{file_name}");
    let signed = rt
        .block_on(SignedRole::new(
            next,
            &KeyHolder::Root(signer_root),
            &root_sources,
            &SystemRandom::new(),
        ))
        .map_err(|e| signing_error(&what, &e))?;
    // What a client checks before following it.
    current
        .signed
        .verify_role(signed.signed())
        .map_err(|e| RegistryError::Signing {
            what: what.clone(),
            reason: format!("not signed by a threshold of the current root's keys ({e})"),
        })?;
    signed
        .signed()
        .signed
        .verify_role(signed.signed())
        .map_err(|e| RegistryError::Signing {
            what: what.clone(),
            reason: format!("not signed by a threshold of its own keys ({e})"),
        })?;
    // The versioned file first: from here clients follow the new root; root.json (what
    // `plugin registry add --root` and the signing functions read) follows.
    write_atomic(&metadata_dir.join(&file_name), signed.buffer())?;
    sync_dir(&metadata_dir);
    write_atomic(&root_path, signed.buffer())?;
    sync_dir(&metadata_dir);

    // Step 4.
    if change_keys {
        install_staged_keys(keys_dir, &signed.signed().signed)?;
    }
    Ok(version.get())
}

/// What a registry's current root says, for people and scripts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootSummary {
    pub version: u64,
    /// RFC 3339.
    pub expires: String,
    /// The IDs (hex) of every key the root lists, for any role, sorted.
    pub key_ids: Vec<String>,
}

/// Reads `metadata/root.json` of the registry at `registry_dir`.
pub fn root_summary(registry_dir: &Path) -> Result<RootSummary, RegistryError> {
    let (root, _) = read_root(registry_dir)?;
    let mut key_ids: Vec<String> = root
        .signed
        .keys
        .keys()
        .map(|id| hex::encode(id.as_ref()))
        .collect();
    key_ids.sort();
    Ok(RootSummary {
        version: root.signed.version.get(),
        expires: root.signed.expires.to_string(),
        key_ids,
    })
}

/// Refuses to sign while a rotation is unfinished: `metadata/<N+1>.root.json` exists beside
/// root.json version N, or new keys wait in `keys_dir/rotating/`. Signing then would use keys
/// the newest root may not list, and clients following it would refuse the registry.
fn check_no_rotation_in_progress(
    registry_dir: &Path,
    keys_dir: &Path,
    root: &Root,
) -> Result<(), RegistryError> {
    let next = root.version.get().saturating_add(1);
    let next_root = registry_dir
        .join(METADATA_DIR)
        .join(format!("{next}.root.json"));
    let staged = keys_dir.join(ROTATING_KEYS_DIR);
    let reason = if next_root.exists() {
        format!(
            "{} exists but root.json is version {}",
            next_root.display(),
            root.version
        )
    } else if staged.exists() {
        format!("{} holds new keys not yet in place", staged.display())
    } else {
        return Ok(());
    };
    Err(RegistryError::RotationInterrupted {
        registry: registry_dir.to_owned(),
        reason,
    })
}

/// The root metadata after `current` in `metadata/` (`<N+1>.root.json`, `<N+2>.root.json`, …),
/// each checked to be signed by a threshold of the one before and of its own: the newest, if
/// there is one.
fn newer_root_file(
    metadata_dir: &Path,
    current: &Signed<Root>,
) -> Result<Option<RootFile>, RegistryError> {
    let mut newest: Option<RootFile> = None;
    loop {
        let trusted = newest.as_ref().map_or(current, |(root, _)| root);
        let Some(version) = trusted.signed.version.get().checked_add(1) else {
            return Ok(newest);
        };
        let path = metadata_dir.join(format!("{version}.root.json"));
        if !path.exists() {
            return Ok(newest);
        }
        let (root, bytes) = read_metadata::<Root>(&path)?;
        if root.signed.version.get() != version {
            return Err(RegistryError::InvalidMetadata {
                path,
                reason: format!("it says version {}", root.signed.version),
            });
        }
        if let Err(e) = trusted
            .signed
            .verify_role(&root)
            .and_then(|()| root.signed.verify_role(&root))
        {
            return Err(RegistryError::InvalidMetadata {
                path,
                reason: format!(
                    "it is not signed by a threshold of the keys of root version {} and of its own ({e})",
                    trusted.signed.version
                ),
            });
        }
        newest = Some((root, bytes));
    }
}

/// The root keys in `keys_dir` that `root` lists, at least its root threshold of them.
fn current_root_signers(
    keys_dir: &Path,
    root: &Root,
    root_path: &Path,
) -> Result<Vec<Ed25519PemKey>, RegistryError> {
    let role = root
        .roles
        .get(&RoleType::Root)
        .ok_or_else(|| RegistryError::InvalidMetadata {
            path: root_path.to_owned(),
            reason: "it lists no root role".to_owned(),
        })?;
    let mut signers = Vec::new();
    let mut ids = Vec::new();
    for path in root_key_paths(keys_dir) {
        let key = Ed25519PemKey::load(&path)?;
        let id = key.key_id()?;
        if role.keyids.contains(&id) && !ids.contains(&id) {
            ids.push(id);
            signers.push(key);
        }
    }
    if (signers.len() as u64) >= role.threshold.get() {
        return Ok(signers);
    }
    let first = key_path(keys_dir, RoleType::Root);
    if signers.is_empty() && !first.exists() {
        return Err(RegistryError::KeyMissing { path: first });
    }
    if signers.is_empty() {
        return Err(RegistryError::KeyNotInRoot {
            key: first,
            role: RoleType::Root.to_string(),
            root: root_path.to_owned(),
        });
    }
    Err(RegistryError::RootSignersMissing {
        threshold: role.threshold.get(),
        available: signers.len(),
        keys_dir: keys_dir.to_owned(),
        root: root_path.to_owned(),
    })
}

/// The current targets, snapshot and timestamp keys in `keys_dir` that `root` lists. One that
/// is missing (lost: perhaps why the keys are rotated) is left out with a warning: the new
/// key's signature still verifies for clients that follow the new root, which every client
/// does from its next read on; only a read in flight during the rotation may fail once.
fn old_role_sources(keys_dir: &Path, root: &Root, root_path: &Path) -> Vec<Box<dyn KeySource>> {
    let mut sources: Vec<Box<dyn KeySource>> = Vec::new();
    for role in [RoleType::Targets, RoleType::Snapshot, RoleType::Timestamp] {
        let loaded = Ed25519PemKey::load(&key_path(keys_dir, role))
            .and_then(|key| check_role_key(root, root_path, role, &key).map(|()| key));
        match loaded {
            Ok(key) => sources.push(Box::new(key)),
            Err(e) => tracing::warn!(
                "the current {role} key cannot sign during the rotation ({e}); metadata is signed by the new key only"
            ),
        }
    }
    sources
}

/// `root` with the new targets, snapshot and timestamp keys listed beside the current ones.
fn with_role_keys(root: &Root, new: &RoleKeySet) -> Result<Root, RegistryError> {
    let mut union = root.clone();
    for (role, key) in [
        (RoleType::Targets, &new.targets),
        (RoleType::Snapshot, &new.snapshot),
        (RoleType::Timestamp, &new.timestamp),
    ] {
        let id = key.key_id()?;
        union.keys.insert(id.clone(), key.public_key()?);
        let keys = union
            .roles
            .get_mut(&role)
            .ok_or_else(|| RegistryError::InvalidMetadata {
                path: PathBuf::from(METADATA_DIR).join("root.json"),
                reason: format!("it lists no {role} role"),
            })?;
        if !keys.keyids.contains(&id) {
            keys.keyids.push(id);
        }
    }
    Ok(union)
}

/// Generates a complete set of keys (`root_keys` root keys) into `keys_dir/rotating/`.
fn stage_new_keys(keys_dir: &Path, root_keys: usize) -> Result<(), RegistryError> {
    let staged = keys_dir.join(ROTATING_KEYS_DIR);
    // A private temporary directory (mode 0700) renamed whole: `rotating/` is never partial.
    let tmp = tempfile::Builder::new()
        .prefix(".rotating-")
        .tempdir_in(keys_dir)
        .map_err(io_err(keys_dir))?;
    generate_keys(tmp.path(), root_keys.max(1))?;
    let path = tmp.keep();
    fs::rename(&path, &staged).map_err(io_err(&staged))?;
    sync_dir(keys_dir);
    Ok(())
}

/// The key files (`*.pem`) directly in `dir`, sorted.
fn pem_files(dir: &Path) -> Result<Vec<PathBuf>, RegistryError> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "pem") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Whether the staged keys are the ones `root` lists (or all were moved into place already).
fn staged_keys_listed(staged: &Path, root: &Root) -> Result<bool, RegistryError> {
    let files = pem_files(staged)?;
    if files.is_empty() {
        return Ok(true);
    }
    for file in files {
        if root
            .keys
            .contains_key(&Ed25519PemKey::load(&file)?.key_id()?)
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Step 4 of a rotation with new keys: each staged key replaces the live key file of the same
/// name, which goes to `retired/<N>/` (N: the root version before `root`). Each move is a
/// rename and is skipped when already done, so an interrupted run can simply run again.
fn install_staged_keys(keys_dir: &Path, root: &Root) -> Result<(), RegistryError> {
    let staged = keys_dir.join(ROTATING_KEYS_DIR);
    let retired = keys_dir
        .join(RETIRED_KEYS_DIR)
        .join(root.version.get().saturating_sub(1).to_string());
    create_private_dir(&retired)?;
    let retire = |live: &Path| -> Result<(), RegistryError> {
        let Some(name) = live.file_name() else {
            return Ok(());
        };
        let to = retired.join(name);
        if fs::symlink_metadata(&to).is_ok() {
            return Err(RegistryError::KeyExists { path: to });
        }
        fs::rename(live, &to).map_err(io_err(&to))
    };
    for from in pem_files(&staged)? {
        let Some(name) = from.file_name() else {
            continue;
        };
        let live = keys_dir.join(name);
        if fs::symlink_metadata(&live).is_ok() {
            retire(&live)?;
        }
        fs::rename(&from, &live).map_err(io_err(&live))?;
    }
    // Old root keys the new set has no file for (the old root had more root keys).
    for path in root_key_paths(keys_dir) {
        let listed = Ed25519PemKey::load(&path)
            .and_then(|k| k.key_id())
            .map(|id| root.keys.contains_key(&id));
        if matches!(listed, Ok(false)) {
            retire(&path)?;
        }
    }
    fs::remove_dir(&staged).map_err(io_err(&staged))?;
    sync_dir(&retired);
    sync_dir(keys_dir);
    Ok(())
}

/// Signs the `targets/` tree into targets.json, snapshot.json and timestamp.json at `versions`
/// (targets, snapshot, timestamp) under the root at `root_path`, and moves them into
/// `metadata/`, timestamp last. Each role is signed by every key in `keys` that the root at
/// `root_path` lists for it (during a key rotation, the old key and the new one).
async fn sign_targets(
    registry_dir: &Path,
    root_path: &Path,
    keys: Vec<Box<dyn KeySource>>,
    versions: [NonZeroU64; 3],
    expiries: &Expiries,
) -> Result<(), RegistryError> {
    let metadata_dir = registry_dir.join(METADATA_DIR);
    let now = jiff::Timestamp::now();
    let mut editor =
        RepositoryEditor::new(root_path)
            .await
            .map_err(|e| RegistryError::InvalidMetadata {
                path: root_path.to_owned(),
                reason: e.to_string(),
            })?;
    let targets_expires = expires_at(now, expiries.targets, RoleType::Targets)?;
    let snapshot_expires = expires_at(now, expiries.snapshot, RoleType::Snapshot)?;
    let timestamp_expires = expires_at(now, expiries.timestamp, RoleType::Timestamp)?;
    editor
        .targets_version(versions[0])
        .map_err(|e| signing_error("metadata/targets.json", &e))?;
    editor
        .targets_expires(targets_expires)
        .map_err(|e| signing_error("metadata/targets.json", &e))?;
    editor
        .snapshot_version(versions[1])
        .snapshot_expires(snapshot_expires)
        .timestamp_version(versions[2])
        .timestamp_expires(timestamp_expires);

    let mut on_disk = std::collections::HashSet::new();
    for (name, path) in target_files(&registry_dir.join(TARGETS_DIR))? {
        let target = Target::from_path(&path)
            .await
            .map_err(|e| RegistryError::InvalidTarget {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        editor
            .add_target(name.as_str(), target)
            .map_err(|e| RegistryError::InvalidTarget {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        on_disk.insert(name);
    }
    for (name, external) in external_targets(registry_dir)? {
        if on_disk.contains(&name) {
            continue;
        }
        let path = external_target_path(registry_dir, &name);
        let sha256 = hex::decode(&external.sha256).map_err(|e| RegistryError::InvalidTarget {
            path: path.clone(),
            reason: format!("sha256 is not hex: {e}"),
        })?;
        let target = Target {
            length: external.length,
            hashes: Hashes {
                sha256: Decoded::from(sha256),
                _extra: HashMap::new(),
            },
            custom: HashMap::new(),
            _extra: HashMap::new(),
        };
        editor
            .add_target(name.as_str(), target)
            .map_err(|e| RegistryError::InvalidTarget {
                path,
                reason: e.to_string(),
            })?;
    }

    let signed = editor.sign(&keys).await.map_err(|e| {
        signing_error(
            "metadata/targets.json, snapshot.json and timestamp.json",
            &e,
        )
    })?;

    // Written to a staging directory beside the metadata, then renamed into place one by one.
    let staging = tempfile::Builder::new()
        .prefix(".signing-")
        .tempdir_in(&metadata_dir)
        .map_err(io_err(&metadata_dir))?;
    signed
        .write(staging.path())
        .await
        .map_err(|e| RegistryError::Signing {
            what: format!("writing metadata to {}", staging.path().display()),
            reason: e.to_string(),
        })?;
    for name in ["targets.json", "snapshot.json", "timestamp.json"] {
        let from = staging.path().join(name);
        let to = metadata_dir.join(name);
        fs::File::open(&from)
            .and_then(|f| f.sync_all())
            .map_err(io_err(&from))?;
        fs::rename(&from, &to).map_err(io_err(&to))?;
    }
    sync_dir(&metadata_dir);
    Ok(())
}

/// Where the descriptions of targets kept outside the registry directory are: archives in
/// object storage. Each is `<registry>/external-targets/<target name>.json`, `{"sha256",
/// "length"}`; the signed `targets.json` lists them like any other target, so a client checks
/// the bytes wherever they are served from. Not under `targets/`: they are not published.
pub const EXTERNAL_TARGETS_DIR: &str = "external-targets";

/// The hash and length of a target whose bytes are kept elsewhere.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExternalTarget {
    pub sha256: String,
    pub length: u64,
}

fn external_target_path(registry_dir: &Path, name: &str) -> PathBuf {
    let mut path = name
        .split('/')
        .fold(registry_dir.join(EXTERNAL_TARGETS_DIR), |p, part| {
            p.join(part)
        });
    path.as_mut_os_string().push(".json");
    path
}

/// Records that target `name` is kept elsewhere with this hash and length; the next signing
/// lists it.
pub fn write_external_target(
    registry_dir: &Path,
    name: &str,
    target: &ExternalTarget,
) -> Result<(), RegistryError> {
    let bytes = serde_json::to_vec(target).unwrap_or_default();
    write_atomic(&external_target_path(registry_dir, name), &bytes)
}

/// The description of target `name` if it is kept elsewhere.
pub fn read_external_target(
    registry_dir: &Path,
    name: &str,
) -> Result<Option<ExternalTarget>, RegistryError> {
    let path = external_target_path(registry_dir, name);
    match fs::read(&path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| RegistryError::InvalidTarget {
                    path,
                    reason: e.to_string(),
                })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(&path)(e)),
    }
}

/// Every target kept elsewhere, as (target name, description), sorted by name.
pub fn external_targets(
    registry_dir: &Path,
) -> Result<Vec<(String, ExternalTarget)>, RegistryError> {
    let dir = registry_dir.join(EXTERNAL_TARGETS_DIR);
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut found = Vec::new();
    for (name, _) in target_files(&dir)? {
        if let Some(target_name) = name.strip_suffix(".json")
            && let Some(target) = read_external_target(registry_dir, target_name)?
        {
            found.push((target_name.to_owned(), target));
        }
    }
    Ok(found)
}

/// Every file under `targets_dir` as (target name, path), sorted by name. Names starting with
/// `.` are skipped (with what is under them); symbolic links are refused.
fn target_files(targets_dir: &Path) -> Result<Vec<(String, PathBuf)>, RegistryError> {
    let mut files = Vec::new();
    let walker = walkdir::WalkDir::new(targets_dir)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'));
    for entry in walker {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(targets_dir).to_owned();
            RegistryError::Io {
                path,
                source: e.into(),
            }
        })?;
        let path = entry.path();
        let kind = entry.file_type();
        if kind.is_dir() {
            continue;
        }
        if !kind.is_file() {
            return Err(RegistryError::InvalidTarget {
                path: path.to_owned(),
                reason: "not a regular file (a symbolic link or a special file); a target must be a plain file a static host serves as is".to_owned(),
            });
        }
        let relative = path.strip_prefix(targets_dir).unwrap_or(path);
        let mut parts = Vec::new();
        for part in relative.components() {
            let part = part
                .as_os_str()
                .to_str()
                .ok_or_else(|| RegistryError::InvalidTarget {
                    path: path.to_owned(),
                    reason: "its path is not valid UTF-8".to_owned(),
                })?;
            if part.contains('\\') {
                return Err(RegistryError::InvalidTarget {
                    path: path.to_owned(),
                    reason: "its name contains a backslash".to_owned(),
                });
            }
            parts.push(part);
        }
        files.push((parts.join("/"), path.to_owned()));
    }
    Ok(files)
}

/// `metadata/root.json`, or `NotARegistry` when it is missing.
fn read_root(registry_dir: &Path) -> Result<(Signed<Root>, Vec<u8>), RegistryError> {
    let path = registry_dir.join(METADATA_DIR).join("root.json");
    if !path.exists() {
        return Err(RegistryError::NotARegistry {
            path: registry_dir.to_owned(),
        });
    }
    read_metadata(&path)
}

fn read_metadata<T: DeserializeOwned>(path: &Path) -> Result<(Signed<T>, Vec<u8>), RegistryError> {
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
fn warn_if_root_expires_soon(root: &Root, registry_dir: &Path) {
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
fn next_versions(metadata_dir: &Path) -> Result<[NonZeroU64; 3], RegistryError> {
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

fn next_version(current: NonZeroU64, path: &Path) -> Result<NonZeroU64, RegistryError> {
    current
        .checked_add(1)
        .ok_or_else(|| RegistryError::InvalidMetadata {
            path: path.to_owned(),
            reason: format!("version {current} cannot go up"),
        })
}

/// `now + period`, to the second; the period must be at least a second.
fn expires_at(
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
fn open_readable(path: &Path) -> Result<atomic_write_file::AtomicWriteFile, RegistryError> {
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
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

fn signing_error(what: &str, e: &tough::error::Error) -> RegistryError {
    RegistryError::Signing {
        what: what.to_owned(),
        reason: e.to_string(),
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RegistryError + '_ {
    move |source| RegistryError::Io {
        path: path.to_owned(),
        source,
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, RegistryError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(RegistryError::Runtime)
}

// =================================================================================================
// Reading a registry
// =================================================================================================

/// A registry whose metadata has been verified: every target it lists can be read with its
/// length and sha256 checked.
#[derive(Debug)]
pub struct VerifiedRegistry {
    rt: tokio::runtime::Runtime,
    repo: Repository,
    ctx: Context,
}

/// What error messages need to name.
#[derive(Debug, Clone)]
struct Context {
    registry: String,
    datastore: PathBuf,
}

impl VerifiedRegistry {
    /// Loads and verifies a registry's metadata from `metadata_url` (its `metadata/`), reading
    /// targets from `targets_url` (its `targets/`). Both may be `file://`, `http://` or
    /// `https://` URLs.
    ///
    /// `trusted_root` is the `root.json` pinned when the registry was added; newer roots are
    /// followed from it (`2.root.json`, …). `datastore` (created if missing) is a directory kept
    /// per registry: what was last verified is kept there, so that older metadata is refused
    /// later (a rollback attack), and its newest verified root is used instead of the pinned
    /// one, as long as the pinned root is the one it descends from.
    pub fn load(
        trusted_root: &[u8],
        metadata_url: &Url,
        targets_url: &Url,
        datastore: &Path,
    ) -> Result<Self, RegistryError> {
        let ctx = Context {
            registry: registry_label(metadata_url),
            datastore: datastore.to_owned(),
        };
        for url in [metadata_url, targets_url] {
            if !matches!(url.scheme(), "file" | "http" | "https") {
                return Err(RegistryError::Fetch {
                    url: url.to_string(),
                    reason: format!("the `{}` scheme is not supported", url.scheme()),
                });
            }
        }
        fs::create_dir_all(datastore).map_err(io_err(datastore))?;
        let pinned: Signed<Root> =
            serde_json::from_slice(trusted_root).map_err(|e| RegistryError::UntrustedRoot {
                registry: ctx.registry.clone(),
                reason: format!("it is not TUF root metadata ({e})"),
            })?;
        let pinned_hash = hex::encode(Sha256::digest(trusted_root));
        let root = newest_trusted_root(&pinned, &pinned_hash, datastore)
            .unwrap_or_else(|| trusted_root.to_vec());

        let rt = runtime()?;
        let transport = transport();
        let load = |rt: &tokio::runtime::Runtime| {
            rt.block_on(
                RepositoryLoader::new(&root, metadata_url.clone(), targets_url.clone())
                    .transport(transport.clone())
                    .datastore(datastore)
                    .expiration_enforcement(ExpirationEnforcement::Safe)
                    .load(),
            )
            .map_err(Box::new)
        };
        let mut result = load(&rt);
        if let Err(e) = &result
            && match map_tough_error(e, &ctx, None) {
                RegistryError::MetadataMismatch { .. } => true,
                // Signed by keys a root rotation just introduced, after this read had found
                // no newer root: the next read finds it.
                RegistryError::BadSignature { file, .. } => file != "root.json",
                _ => false,
            }
        {
            // Perhaps fetched while the registry was being re-signed: one more try.
            std::thread::sleep(MIX_RETRY_DELAY);
            result = load(&rt);
        }
        let repo = match result {
            Ok(repo) => repo,
            Err(e) => {
                if let tough::error::Error::VerifyMetadata {
                    role: RoleType::Root,
                    source,
                    ..
                } = e.as_ref()
                {
                    return Err(forged_root_error(&ctx, &root, datastore, source));
                }
                let mut err = map_tough_error(&e, &ctx, None);
                if let RegistryError::Expired {
                    file, expired_at, ..
                } = &mut err
                {
                    *expired_at =
                        rt.block_on(claimed_expiry(&transport, metadata_url, file.as_str()));
                }
                return Err(err);
            }
        };
        let marker = datastore.join(PINNED_ROOT_MARKER);
        if fs::read_to_string(&marker).ok().as_deref() != Some(pinned_hash.as_str()) {
            write_atomic(&marker, pinned_hash.as_bytes())?;
        }
        Ok(VerifiedRegistry { rt, repo, ctx })
    }

    /// Every target name listed in `targets.json`, sorted.
    pub fn target_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .repo
            .all_targets()
            .map(|(name, _)| name.raw().to_owned())
            .collect();
        names.sort();
        names
    }

    fn target(&self, name: &str) -> Option<(TargetName, &Target)> {
        let name = TargetName::new(name).ok()?;
        let target = self.repo.targets().signed.targets.get(&name)?;
        Some((name, target))
    }

    /// The sha256 (hex) `targets.json` lists for `name`, if it lists it.
    pub fn target_sha256(&self, name: &str) -> Option<String> {
        self.target(name)
            .map(|(_, t)| hex::encode(t.hashes.sha256.as_ref()))
    }

    /// The length in bytes `targets.json` lists for `name`, if it lists it.
    pub fn target_length(&self, name: &str) -> Option<u64> {
        self.target(name).map(|(_, t)| t.length)
    }

    /// Reads target `name`, checking its length and sha256 against `targets.json`. `None` when
    /// `targets.json` does not list it.
    pub fn read_target(&self, name: &str) -> Result<Option<Vec<u8>>, RegistryError> {
        let Some((target_name, target)) = self.target(name) else {
            return Ok(None);
        };
        let capacity = usize::try_from(target.length).unwrap_or(0).min(64 << 20);
        self.rt.block_on(async {
            let mut stream = self
                .repo
                .read_target(&target_name)
                .await
                .map_err(|e| self.error(&e, name))?
                .ok_or_else(|| self.not_listed(name))?;
            let mut bytes = Vec::with_capacity(capacity);
            while let Some(chunk) = stream.next().await {
                bytes.extend_from_slice(&chunk.map_err(|e| self.error(&e, name))?);
            }
            Ok(Some(bytes))
        })
    }

    /// Streams target `name` into the file `dest` (its directory is created if missing),
    /// checking its length and sha256 against `targets.json`: for archives too big to hold in
    /// memory. The bytes go to a temporary file beside `dest`, renamed to `dest` only once
    /// verified, so `dest` never holds unverified bytes. Returns `false` (writing nothing) when
    /// `targets.json` does not list `name`.
    pub fn read_target_to(&self, name: &str, dest: &Path) -> Result<bool, RegistryError> {
        let Some((target_name, _)) = self.target(name) else {
            return Ok(false);
        };
        let dir = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut tmp = open_readable(dest)?;
        self.rt.block_on(async {
            let mut stream = self
                .repo
                .read_target(&target_name)
                .await
                .map_err(|e| self.error(&e, name))?
                .ok_or_else(|| self.not_listed(name))?;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| self.error(&e, name))?;
                tmp.write_all(&chunk).map_err(io_err(dest))?;
            }
            Ok::<(), RegistryError>(())
        })?;
        tmp.commit().map_err(io_err(dest))?;
        Ok(true)
    }

    /// The versions of the root, targets, snapshot and timestamp metadata verified.
    pub fn versions(&self) -> SignedVersions {
        SignedVersions {
            root: self.repo.root().signed.version.get(),
            targets: self.repo.targets().signed.version.get(),
            snapshot: self.repo.snapshot().signed.version.get(),
            timestamp: self.repo.timestamp().signed.version.get(),
        }
    }

    /// The verified root metadata, e.g. to show its key IDs.
    pub fn root(&self) -> &Signed<Root> {
        self.repo.root()
    }

    /// The verified root metadata as JSON, to pin in place of an older root: after a rotation
    /// it is what should be trusted from now on.
    pub fn root_json(&self) -> Result<Vec<u8>, RegistryError> {
        let mut bytes =
            serde_json::to_vec_pretty(self.repo.root()).map_err(|e| RegistryError::Tuf {
                registry: self.ctx.registry.clone(),
                reason: format!("cannot serialize the verified root: {e}"),
                hint: "this is a bug in trellis; please report it".to_owned(),
            })?;
        bytes.push(b'\n');
        Ok(bytes)
    }

    fn error(&self, e: &tough::error::Error, target: &str) -> RegistryError {
        let mut err = map_tough_error(e, &self.ctx, Some(target));
        if let RegistryError::Expired {
            file, expired_at, ..
        } = &mut err
        {
            let expires = match file.as_str() {
                "root.json" => Some(self.repo.root().signed.expires),
                "targets.json" => Some(self.repo.targets().signed.expires),
                "snapshot.json" => Some(self.repo.snapshot().signed.expires),
                "timestamp.json" => Some(self.repo.timestamp().signed.expires),
                _ => None,
            };
            *expired_at = expires.map(|t| t.to_string());
        }
        err
    }

    fn not_listed(&self, name: &str) -> RegistryError {
        RegistryError::Tuf {
            registry: self.ctx.registry.clone(),
            reason: format!("target {name} vanished from the verified targets.json"),
            hint: "this is a bug in trellis; please report it".to_owned(),
        }
    }
}

/// The transport for `file://`, `http://` and `https://` (tough's, with its retries).
fn transport() -> DefaultTransport {
    DefaultTransport::new_with_http_settings(HttpTransportBuilder::new().timeout(HTTP_TIMEOUT))
}

/// Fetches a registry's first root metadata (`1.root.json`) to pin when the registry is added
/// without a root given out of band: trust on first use. Whatever it claims is checked for
/// being TUF root metadata signed to its own threshold; later roots must chain from it.
pub fn fetch_initial_root(metadata_url: &Url) -> Result<Vec<u8>, RegistryError> {
    let url = metadata_url
        .join("1.root.json")
        .map_err(|e| RegistryError::Fetch {
            url: metadata_url.to_string(),
            reason: e.to_string(),
        })?;
    if !matches!(url.scheme(), "file" | "http" | "https") {
        return Err(RegistryError::Fetch {
            url: url.to_string(),
            reason: format!("the `{}` scheme is not supported", url.scheme()),
        });
    }
    let rt = runtime()?;
    let transport = transport();
    let bytes = rt.block_on(async {
        let mut stream = transport
            .fetch(url.clone())
            .await
            .map_err(|e| RegistryError::Fetch {
                url: url.to_string(),
                reason: e.to_string(),
            })?;
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| RegistryError::Fetch {
                url: url.to_string(),
                reason: e.to_string(),
            })?;
            bytes.extend_from_slice(&chunk);
            if bytes.len() > MAX_ROOT_SIZE {
                return Err(RegistryError::UntrustedRoot {
                    registry: registry_label(metadata_url),
                    reason: format!("1.root.json is larger than {MAX_ROOT_SIZE} bytes"),
                });
            }
        }
        Ok(bytes)
    })?;
    let root: Signed<Root> =
        serde_json::from_slice(&bytes).map_err(|e| RegistryError::UntrustedRoot {
            registry: registry_label(metadata_url),
            reason: format!("1.root.json is not TUF root metadata ({e})"),
        })?;
    root.signed
        .verify_role(&root)
        .map_err(|e| RegistryError::UntrustedRoot {
            registry: registry_label(metadata_url),
            reason: format!("1.root.json is not signed to its own threshold ({e})"),
        })?;
    Ok(bytes)
}

/// Root metadata is small; anything larger is not a root.
const MAX_ROOT_SIZE: usize = 1 << 20;

/// How a registry is named in messages: its metadata URL without a trailing `/metadata/`.
fn registry_label(metadata_url: &Url) -> String {
    let s = metadata_url.as_str().trim_end_matches('/');
    s.strip_suffix("/metadata").unwrap_or(s).to_owned()
}

/// A newer root (`<N+1>.root.json`) that is not signed by a threshold of the keys of the root
/// trusted so far (version N) and of its own: a forged root, or one signed with the wrong keys.
/// `start` is the root the load started from; tough keeps each root it accepted on the way in
/// the datastore, so the newer of the two is N.
fn forged_root_error(
    ctx: &Context,
    start: &[u8],
    datastore: &Path,
    source: &tough::schema::Error,
) -> RegistryError {
    let version = |bytes: &[u8]| {
        serde_json::from_slice::<Signed<Root>>(bytes)
            .ok()
            .map(|r| r.signed.version.get())
    };
    let trusted = version(start)
        .into_iter()
        .chain(
            fs::read(datastore.join("root.json"))
                .ok()
                .and_then(|b| version(&b)),
        )
        .max()
        .unwrap_or(1);
    RegistryError::BadSignature {
        registry: ctx.registry.clone(),
        file: format!("{}.root.json (a new root)", trusted.saturating_add(1)),
        reason: format!(
            "a new root must be signed by a threshold of the keys of root version {trusted}, which this machine trusts, and of its own: {source}"
        ),
    }
}

/// The datastore's root, when it is newer than the pinned one and descends from it (the
/// datastore's marker names the pinned root it was verified from).
fn newest_trusted_root(
    pinned: &Signed<Root>,
    pinned_hash: &str,
    datastore: &Path,
) -> Option<Vec<u8>> {
    let marker = fs::read_to_string(datastore.join(PINNED_ROOT_MARKER)).ok()?;
    if marker.trim() != pinned_hash {
        return None;
    }
    let bytes = fs::read(datastore.join("root.json")).ok()?;
    let stored: Signed<Root> = serde_json::from_slice(&bytes).ok()?;
    (stored.signed.version > pinned.signed.version).then_some(bytes)
}

/// The expiry `file` claims (unverified, for the error message only).
async fn claimed_expiry(
    transport: &DefaultTransport,
    metadata_url: &Url,
    file: &str,
) -> Option<String> {
    let base = if metadata_url.as_str().ends_with('/') {
        metadata_url.clone()
    } else {
        Url::parse(&format!("{metadata_url}/")).ok()?
    };
    let url = base.join(file).ok()?;
    let mut stream = transport.fetch(url).await.ok()?;
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        bytes.extend_from_slice(&chunk.ok()?);
        if bytes.len() > 1 << 20 {
            return None;
        }
    }
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    value["signed"]["expires"].as_str().map(str::to_owned)
}

fn role_file(role: RoleType) -> &'static str {
    match role {
        RoleType::Root => "root.json",
        RoleType::Targets => "targets.json",
        RoleType::Snapshot => "snapshot.json",
        RoleType::Timestamp => "timestamp.json",
        RoleType::DelegatedTargets => "delegated targets metadata",
    }
}

/// The file that lists `file`'s version and hash.
fn referrer(file: &str) -> &'static str {
    match file {
        "snapshot.json" => "timestamp.json",
        "targets.json" => "snapshot.json",
        _ => "the metadata that lists it",
    }
}

/// The last segment of a URL's path.
fn url_file(url: &Url) -> String {
    url.path_segments()
        .and_then(|mut s| s.next_back())
        .unwrap_or_default()
        .to_owned()
}

/// The tough error a transport error wraps (a hash or length mismatch found while streaming).
fn inner_tough_error(e: &tough::TransportError) -> Option<&tough::error::Error> {
    std::error::Error::source(e)?.downcast_ref::<tough::error::Error>()
}

/// Turns a tough error into one that says which file, what is wrong and what to do. `target` is
/// the target being read, if any.
fn map_tough_error(e: &tough::error::Error, ctx: &Context, target: Option<&str>) -> RegistryError {
    use tough::error::Error as E;
    let registry = ctx.registry.clone();
    match e {
        E::ExpiredMetadata { role, .. } => RegistryError::Expired {
            registry,
            file: role_file(*role).to_owned(),
            expired_at: None,
        },
        E::OlderMetadata {
            role,
            current_version,
            new_version,
            ..
        } => RegistryError::Rollback {
            registry,
            file: role_file(*role).to_owned(),
            found: *new_version,
            seen: *current_version,
        },
        E::OlderSnapshotInTimestamp {
            snapshot_new,
            snapshot_old,
            ..
        } => RegistryError::Rollback {
            registry,
            file: "snapshot.json (as timestamp.json lists it)".to_owned(),
            found: *snapshot_new,
            seen: *snapshot_old,
        },
        E::SnapshotRoleRollback {
            role,
            old_role_version,
            new_role_version,
            ..
        } => RegistryError::Rollback {
            registry,
            file: format!("{role} (as snapshot.json lists it)"),
            found: *new_role_version,
            seen: *old_role_version,
        },
        E::VersionMismatch {
            role,
            fetched,
            expected,
            ..
        } => {
            let file = role_file(*role);
            RegistryError::MetadataMismatch {
                registry,
                file: file.to_owned(),
                reason: format!(
                    "it is version {fetched} but {} lists version {expected}",
                    referrer(file)
                ),
            }
        }
        E::VerifyMetadata { role, source, .. } => RegistryError::BadSignature {
            registry,
            file: role_file(*role).to_owned(),
            reason: source.to_string(),
        },
        E::VerifyTrustedMetadata { source, .. } => RegistryError::UntrustedRoot {
            registry,
            reason: format!("it is not signed by its own threshold of root keys ({source})"),
        },
        E::ParseTrustedMetadata { source, .. } => RegistryError::UntrustedRoot {
            registry,
            reason: format!("it is not TUF root metadata ({source})"),
        },
        E::ParseMetadata { role, source, .. } => RegistryError::Tuf {
            registry,
            reason: format!("{} is not valid TUF metadata ({source})", role_file(*role)),
            hint: "the file is damaged, or the URL is not a trellis registry's metadata; check the URL or ask the registry's operator".to_owned(),
        },
        E::SystemTimeSteppedBackward {
            sys_time,
            latest_known_time,
            ..
        } => RegistryError::Tuf {
            registry,
            reason: format!(
                "the system clock says {sys_time}, earlier than {latest_known_time} recorded in {} on a previous check",
                ctx.datastore.display()
            ),
            hint: "expiry checks need a correct clock; fix the system clock".to_owned(),
        },
        E::Transport { url, source, .. } => map_transport_error(url, source, ctx, target),
        E::DatastoreCreate { path, source, .. }
        | E::DatastoreOpen { path, source, .. }
        | E::DatastoreRemove { path, source, .. } => RegistryError::Tuf {
            registry,
            reason: format!("cannot use {}: {source}", path.display()),
            hint: format!(
                "the registry's cache {} must be a writable directory",
                ctx.datastore.display()
            ),
        },
        other => RegistryError::Tuf {
            registry,
            reason: other.to_string(),
            hint: "the registry could not be verified; if it persists, ask the registry's operator".to_owned(),
        },
    }
}

fn map_transport_error(
    url: &Url,
    source: &tough::TransportError,
    ctx: &Context,
    target: Option<&str>,
) -> RegistryError {
    use tough::error::Error as E;
    let registry = ctx.registry.clone();
    // While loading, only metadata is fetched; while reading a target, only that target.
    let is_metadata = target.is_none();
    let file = url_file(url);
    match inner_tough_error(source) {
        Some(E::HashMismatch {
            calculated,
            expected,
            ..
        }) => {
            if is_metadata {
                RegistryError::MetadataMismatch {
                    registry,
                    reason: format!(
                        "its sha256 is {calculated} but {} lists {expected}",
                        referrer(&file)
                    ),
                    file,
                }
            } else {
                RegistryError::TargetMismatch {
                    registry,
                    target: target.unwrap_or(&file).to_owned(),
                    url: url.to_string(),
                    reason: format!("its sha256 is {calculated} but targets.json lists {expected}"),
                }
            }
        }
        Some(E::MaxSizeExceeded {
            max_size,
            specifier,
            ..
        }) => {
            if !is_metadata {
                RegistryError::TargetMismatch {
                    registry,
                    target: target.unwrap_or(&file).to_owned(),
                    url: url.to_string(),
                    reason: format!("it is longer than the {max_size} bytes targets.json lists"),
                }
            } else if specifier.ends_with(".json") {
                RegistryError::MetadataMismatch {
                    registry,
                    file,
                    reason: format!("it is longer than the {max_size} bytes {specifier} lists"),
                }
            } else {
                RegistryError::Tuf {
                    registry,
                    reason: format!("{url} is larger than the {max_size} bytes allowed"),
                    hint: "the server may be trying to exhaust memory or disk (an endless-data attack); ask the registry's operator".to_owned(),
                }
            }
        }
        _ => RegistryError::Fetch {
            url: url.to_string(),
            reason: match source.kind() {
                TransportErrorKind::FileNotFound => "not found".to_owned(),
                TransportErrorKind::UnsupportedUrlScheme => {
                    format!("the `{}` scheme is not supported", url.scheme())
                }
                _ => error_chain(source),
            },
        },
    }
}

/// An error and its causes, outermost first, without repeats ("error sending request: connection
/// refused").
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = std::error::Error::source(e);
    while let Some(cause) = next {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = cause.source();
    }
    if parts.is_empty() {
        parts.push(e.to_string());
    }
    parts.join(": ")
}
