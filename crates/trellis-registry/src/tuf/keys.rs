//! The registry's signing keys: one Ed25519 key per TUF role in PKCS#8 PEM files (mode 0600),
//! generated, loaded and checked against the root that lists them.

use super::*;

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
pub(crate) fn root_key_path(keys_dir: &Path, n: usize) -> PathBuf {
    if n <= 1 {
        key_path(keys_dir, RoleType::Root)
    } else {
        keys_dir.join(format!("root-{n}.pem"))
    }
}

/// The root keys present in `keys_dir`: `root.pem`, then `root-2.pem`, … up to the first gap.
pub(crate) fn root_key_paths(keys_dir: &Path) -> Vec<PathBuf> {
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

pub(crate) fn create_private_dir(dir: &Path) -> Result<(), RegistryError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(io_err(dir))
}

/// Creates `path` (which must not exist) readable by its owner only, and writes `bytes` to it.
pub(crate) fn write_private_file(path: &Path, bytes: &[u8]) -> Result<(), RegistryError> {
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

    pub(crate) fn key_pair(&self) -> Result<Ed25519KeyPair, RegistryError> {
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
pub(crate) struct RoleKeySet {
    pub(crate) targets: Ed25519PemKey,
    pub(crate) snapshot: Ed25519PemKey,
    pub(crate) timestamp: Ed25519PemKey,
}

impl RoleKeySet {
    pub(crate) fn load(keys_dir: &Path) -> Result<Self, RegistryError> {
        Ok(RoleKeySet {
            targets: Ed25519PemKey::load(&key_path(keys_dir, RoleType::Targets))?,
            snapshot: Ed25519PemKey::load(&key_path(keys_dir, RoleType::Snapshot))?,
            timestamp: Ed25519PemKey::load(&key_path(keys_dir, RoleType::Timestamp))?,
        })
    }

    pub(crate) fn check(&self, root: &Root, root_path: &Path) -> Result<(), RegistryError> {
        check_role_key(root, root_path, RoleType::Targets, &self.targets)?;
        check_role_key(root, root_path, RoleType::Snapshot, &self.snapshot)?;
        check_role_key(root, root_path, RoleType::Timestamp, &self.timestamp)
    }

    pub(crate) fn into_sources(self) -> Vec<Box<dyn KeySource>> {
        vec![
            Box::new(self.targets),
            Box::new(self.snapshot),
            Box::new(self.timestamp),
        ]
    }
}

/// Fails unless `key` is one `root` lists for `role`.
pub(crate) fn check_role_key(
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
