//! Root rotation: a new root signed by the old and the new keys, the keys it replaces retired,
//! and what clients follow (`2.root.json`, …).

use super::*;

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
pub(crate) fn check_no_rotation_in_progress(
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
pub(crate) fn newer_root_file(
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
pub(crate) fn current_root_signers(
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
pub(crate) fn old_role_sources(
    keys_dir: &Path,
    root: &Root,
    root_path: &Path,
) -> Vec<Box<dyn KeySource>> {
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
pub(crate) fn with_role_keys(root: &Root, new: &RoleKeySet) -> Result<Root, RegistryError> {
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
pub(crate) fn stage_new_keys(keys_dir: &Path, root_keys: usize) -> Result<(), RegistryError> {
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
pub(crate) fn pem_files(dir: &Path) -> Result<Vec<PathBuf>, RegistryError> {
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
pub(crate) fn staged_keys_listed(staged: &Path, root: &Root) -> Result<bool, RegistryError> {
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
pub(crate) fn install_staged_keys(keys_dir: &Path, root: &Root) -> Result<(), RegistryError> {
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
pub(crate) async fn sign_targets(
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
