//! Signing a registry: its first metadata, re-signing after a change, refreshing the
//! timestamp, and targets kept elsewhere (object storage) but listed and signed here.

use super::*;

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
pub(crate) type KeyLayout = (
    HashMap<Decoded<Hex>, Key>,
    HashMap<RoleType, RoleKeys>,
    usize,
);

/// Root metadata as read from a file, and the file's bytes.
pub(crate) type RootFile = (Signed<Root>, Vec<u8>);

/// The keys and roles a root lists: `root_keys` for the root role with `root_threshold`, and
/// `role_keys`' one key each for targets, snapshot and timestamp with threshold 1. Also returns
/// how many distinct root keys there are (two files may hold one key).
pub(crate) fn key_layout(
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

pub(crate) fn external_target_path(registry_dir: &Path, name: &str) -> PathBuf {
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
pub(crate) fn target_files(targets_dir: &Path) -> Result<Vec<(String, PathBuf)>, RegistryError> {
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
