//! A registry kept as a directory: the embedded registry a team can start with (no server),
//! and the static form `trellis registry export` writes for any static host or CDN.
//!
//! ```text
//! <dir>/metadata/          TUF metadata (root, targets, snapshot, timestamp)
//! <dir>/targets/config.json
//! <dir>/targets/index/<name>.jsonl
//! <dir>/targets/archives/<name>/<name>-<version>.tar.gz (+ .sig, .cert.sig)
//! ```
//!
//! A registry may keep its archives' bytes in object storage instead ([`ArchiveStore`]): the
//! directory then keeps their hash and length under `external-targets/`, and the signed
//! metadata lists them as usual, so clients verify the bytes wherever they come from.
//!
//! The signing keys are kept apart from the directory, which is what gets published. Every
//! change takes a lock on the directory, writes the targets, then re-signs the metadata with
//! `timestamp.json` last, so a reader sees the old registry or the new one.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use semver::Version;

use crate::RegistryError;
use crate::index::{
    CONFIG_TARGET, IndexEntry, PublisherKey, RegistryConfig, index_target, parse_index,
    plugin_of_index_target, render_index,
};
use crate::publish::{Published, check_package};
use crate::tuf::{self, Expiries, write_atomic};

/// Written while a publish is in flight; see [`LocalRegistry::recover`].
const PUBLISHING_MARKER: &str = ".publishing";

/// The environment variable that names a publish step to abort at (tests only).
pub const KILL_AT_ENV: &str = "TRELLIS_TEST_KILL_AT";

fn kill_point(step: &str) {
    if std::env::var(KILL_AT_ENV).is_ok_and(|at| at == step) {
        std::process::abort();
    }
}

/// Where a registry keeps its archives when not in its own directory: an S3 bucket, say.
/// Implementations are called from blocking code (never from inside an async task).
pub trait ArchiveStore: Send + Sync + std::fmt::Debug {
    /// Stores the file `source` as target `location` (`archives/<name>/<name>-<v>.tar.gz`).
    fn put(&self, location: &str, source: &Path) -> Result<(), RegistryError>;
    /// Copies target `location` into the file `dest`; `false` when the store lacks it.
    fn fetch(&self, location: &str, dest: &Path) -> Result<bool, RegistryError>;
    /// The store as people name it (`s3://bucket/prefix`).
    fn describe(&self) -> String;
}

/// A registry directory with the keys that sign it.
#[derive(Debug)]
pub struct LocalRegistry {
    dir: PathBuf,
    keys: PathBuf,
    expiries: Expiries,
    archives: Option<Arc<dyn ArchiveStore>>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RegistryError + '_ {
    move |source| RegistryError::Io {
        path: path.to_owned(),
        source,
    }
}

impl LocalRegistry {
    /// Creates a registry at `dir` (which must not hold one yet), generating its keys in `keys`
    /// unless they exist.
    pub fn init(dir: &Path, keys: &Path, name: &str) -> Result<LocalRegistry, RegistryError> {
        if dir.join("metadata").join("root.json").exists() {
            return Err(RegistryError::AlreadyExists {
                path: dir.to_owned(),
            });
        }
        if !keys.join("root.pem").exists() {
            tuf::generate_keys(keys, 1)?;
        }
        let registry = LocalRegistry {
            dir: dir.to_owned(),
            keys: keys.to_owned(),
            expiries: Expiries::default(),
            archives: None,
        };
        write_atomic(
            &registry.target_path(CONFIG_TARGET),
            &RegistryConfig::new(name).to_json(),
        )?;
        tuf::init_repository(dir, keys, 1, &registry.expiries)?;
        Ok(registry)
    }

    /// Opens an existing registry directory, signing with the keys in `keys`.
    pub fn open(dir: &Path, keys: &Path) -> Result<LocalRegistry, RegistryError> {
        if !dir.join("metadata").join("root.json").exists() {
            return Err(RegistryError::NotARegistry {
                path: dir.to_owned(),
            });
        }
        Ok(LocalRegistry {
            dir: dir.to_owned(),
            keys: keys.to_owned(),
            expiries: Expiries::default(),
            archives: None,
        })
    }

    /// Finishes a publish that was interrupted (the process was killed between writing files
    /// and signing them): the files on disk are signed as they are, so the index and the
    /// metadata agree again. A version whose index line was written is then published whole;
    /// one whose index line was not stays unpublished (its archive is an unlisted file).
    /// Returns whether there was anything to finish.
    pub fn recover(&self) -> Result<bool, RegistryError> {
        let _lock = self.lock()?;
        let marker = self.dir.join(PUBLISHING_MARKER);
        if !marker.exists() {
            return Ok(false);
        }
        tuf::sign_repository(&self.dir, &self.keys, &self.expiries)?;
        fs::remove_file(&marker).map_err(io(&marker))?;
        Ok(true)
    }

    /// Writes the registry's static form (`metadata/` and `targets/`, nothing else) to `dest`,
    /// a new or empty directory, for any static host or CDN, and checks the copy verifies with
    /// its own root before returning. Taken under the registry's lock, so it is one consistent
    /// signing.
    pub fn export(&self, dest: &Path) -> Result<u64, RegistryError> {
        let _lock = self.lock()?;
        if dest.exists() && fs::read_dir(dest).map_err(io(dest))?.next().is_some() {
            return Err(RegistryError::NotEmpty {
                path: dest.to_owned(),
            });
        }
        let mut files = 0;
        for part in ["metadata", "targets"] {
            let from = self.dir.join(part);
            for entry in walkdir::WalkDir::new(&from) {
                let entry = entry.map_err(|e| RegistryError::Io {
                    path: from.clone(),
                    source: e.into(),
                })?;
                let relative = entry.path().strip_prefix(&self.dir).unwrap_or(entry.path());
                // Temporary and lock files are not part of the registry.
                if relative
                    .components()
                    .any(|c| c.as_os_str().to_string_lossy().starts_with('.'))
                {
                    continue;
                }
                let to = dest.join(relative);
                if entry.file_type().is_dir() {
                    fs::create_dir_all(&to).map_err(io(&to))?;
                } else if entry.file_type().is_file() {
                    fs::copy(entry.path(), &to).map_err(io(&to))?;
                    files += 1;
                }
            }
        }
        for (target, _) in tuf::external_targets(&self.dir)? {
            let to = target
                .split('/')
                .fold(dest.join("targets"), |p, part| p.join(part));
            if !self.fetch_archive(&target, &to)? {
                return Err(RegistryError::ArchiveMissing {
                    target,
                    store: self.archive_store_name(),
                });
            }
            files += 1;
        }
        let root = fs::read(dest.join("metadata").join("root.json"))
            .map_err(io(&dest.join("metadata")))?;
        let as_url = |p: PathBuf| {
            url::Url::from_directory_path(&p).map_err(|()| RegistryError::NotARegistry { path: p })
        };
        let check = tempfile::tempdir().map_err(io(dest))?;
        tuf::VerifiedRegistry::load(
            &root,
            &as_url(dest.join("metadata"))?,
            &as_url(dest.join("targets"))?,
            check.path(),
        )?;
        Ok(files)
    }

    /// Every plugin's index entries, by name.
    pub fn all_versions(
        &self,
    ) -> Result<std::collections::BTreeMap<String, Vec<IndexEntry>>, RegistryError> {
        self.names()?
            .into_iter()
            .map(|name| self.versions(&name).map(|v| (name, v)))
            .collect()
    }

    /// Where a target (an archive, an index file) is on disk.
    pub fn target_file(&self, target: &str) -> PathBuf {
        self.target_path(target)
    }

    /// Keeps the archives published from now on in `store` (those published before stay
    /// where they are); they are read back from wherever they are.
    pub fn with_archive_store(mut self, store: Arc<dyn ArchiveStore>) -> LocalRegistry {
        self.archives = Some(store);
        self
    }

    fn archive_store_name(&self) -> String {
        self.archives
            .as_ref()
            .map_or_else(|| "no archive store".to_owned(), |s| s.describe())
    }

    /// Copies the archive (or any target) `location` into the file `dest`, from the registry
    /// directory or from the archive store. `false` when neither has it. The bytes are not
    /// checked here: clients check them against the signed metadata.
    pub fn fetch_archive(&self, location: &str, dest: &Path) -> Result<bool, RegistryError> {
        let local = self.target_path(location);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(io(parent))?;
        }
        if local.is_file() {
            fs::copy(&local, dest).map_err(io(&local))?;
            return Ok(true);
        }
        if tuf::read_external_target(&self.dir, location)?.is_none() {
            return Ok(false);
        }
        match &self.archives {
            Some(store) => store.fetch(location, dest),
            None => Err(RegistryError::ArchiveMissing {
                target: location.to_owned(),
                store: self.archive_store_name(),
            }),
        }
    }

    /// The hash and length of target `location` when its bytes are in the archive store.
    pub fn external_target(
        &self,
        location: &str,
    ) -> Result<Option<tuf::ExternalTarget>, RegistryError> {
        tuf::read_external_target(&self.dir, location)
    }

    /// Uses other expiry periods for what is signed from now on (tests, short-lived mirrors).
    pub fn with_expiries(mut self, expiries: Expiries) -> LocalRegistry {
        self.expiries = expiries;
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The root metadata a client pins when it adds this registry.
    pub fn root_path(&self) -> PathBuf {
        self.dir.join("metadata").join("root.json")
    }

    fn target_path(&self, target: &str) -> PathBuf {
        target
            .split('/')
            .fold(self.dir.join("targets"), |p, part| p.join(part))
    }

    fn lock(&self) -> Result<File, RegistryError> {
        let path = self.dir.join(".lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        file.lock().map_err(io(&path))?;
        Ok(file)
    }

    pub fn config(&self) -> Result<RegistryConfig, RegistryError> {
        let path = self.target_path(CONFIG_TARGET);
        let bytes = fs::read(&path).map_err(io(&path))?;
        RegistryConfig::parse(&bytes, &path.display().to_string())
    }

    /// Registers a publisher's signing key (an OpenSSH public key line) for `principal`.
    pub fn add_key(&self, principal: &str, key: &str) -> Result<(), RegistryError> {
        let _lock = self.lock()?;
        let mut config = self.config()?;
        let key = key.trim().to_owned();
        // Checked by parsing it as an allowed-signers line would be.
        trellis_trust::AllowedSigners::parse(&format!("{principal} {key}\n"), "the key given")
            .map_err(|e| RegistryError::Trust(Box::new(e)))?;
        if !config
            .keys
            .iter()
            .any(|k| k.principal == principal && k.key == key)
        {
            config.keys.push(PublisherKey {
                principal: principal.to_owned(),
                key,
            });
        }
        write_atomic(&self.target_path(CONFIG_TARGET), &config.to_json())?;
        tuf::sign_repository(&self.dir, &self.keys, &self.expiries)?;
        Ok(())
    }

    /// Runs the publish gates on `archive` (with the `.sig`/`.cert.sig` beside it) and adds it.
    pub fn publish(&self, archive: &Path, now: DateTime<Utc>) -> Result<IndexEntry, RegistryError> {
        let _lock = self.lock()?;
        let config = self.config()?;
        let read = |p: PathBuf| -> Result<Option<String>, RegistryError> {
            match fs::read_to_string(&p) {
                Ok(t) => Ok(Some(t)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(io(&p)(e)),
            }
        };
        let signature = read(trellis_trust::signature_path(archive))?;
        let certification = read(trellis_trust::certification_path(archive))?;
        let accepted = check_package(
            archive,
            signature.as_deref(),
            certification.as_deref(),
            &config,
            self,
            now,
        )?;
        let entry = accepted.entry;
        // Until the metadata is re-signed the new files are not published; the marker tells
        // the next open to finish (or discard) a publish that was interrupted.
        let marker = self.dir.join(PUBLISHING_MARKER);
        write_atomic(&marker, entry.name.as_bytes())?;
        kill_point("publish:marked");
        let location = config.download_location(&entry.name, &entry.version);
        if location.contains("://") {
            return Err(RegistryError::RemoteDownload {
                template: config.download,
            });
        }
        let dest = self.target_path(&location);
        match &self.archives {
            // The bytes go to the store first: a crash before the index names the version
            // leaves an object nobody lists, never an index line without its archive.
            Some(store) => {
                store.put(&location, archive)?;
                let length = fs::metadata(archive).map_err(io(archive))?.len();
                let sha256 = trellis_package::sha256_file(archive).map_err(io(archive))?;
                tuf::write_external_target(
                    &self.dir,
                    &location,
                    &tuf::ExternalTarget { sha256, length },
                )?;
            }
            None => {
                let bytes = fs::read(archive).map_err(io(archive))?;
                write_atomic(&dest, &bytes)?;
            }
        }
        if let Some(sig) = &signature {
            write_atomic(&trellis_trust::signature_path(&dest), sig.as_bytes())?;
        }
        if let Some(cert) = &certification {
            write_atomic(&trellis_trust::certification_path(&dest), cert.as_bytes())?;
        }
        let mut entries = self.versions(&entry.name)?;
        entries.push(entry.clone());
        kill_point("publish:archived");
        write_atomic(
            &self.target_path(&index_target(&entry.name)),
            render_index(&entries).as_bytes(),
        )?;
        kill_point("publish:indexed");
        tuf::sign_repository(&self.dir, &self.keys, &self.expiries)?;
        fs::remove_file(&marker).map_err(io(&marker))?;
        Ok(entry)
    }

    /// Marks a version yanked (or not): resolvers skip it unless a lockfile pins it.
    pub fn set_yanked(
        &self,
        name: &str,
        version: &Version,
        yanked: bool,
    ) -> Result<(), RegistryError> {
        let _lock = self.lock()?;
        let mut entries = self.versions(name)?;
        let Some(entry) = entries.iter_mut().find(|e| &e.version == version) else {
            return Err(RegistryError::UnknownVersion {
                name: name.to_owned(),
                version: version.clone(),
                published: self
                    .versions(name)?
                    .iter()
                    .map(|e| e.version.to_string())
                    .collect(),
            });
        };
        entry.yanked = yanked;
        write_atomic(
            &self.target_path(&index_target(name)),
            render_index(&entries).as_bytes(),
        )?;
        tuf::sign_repository(&self.dir, &self.keys, &self.expiries)?;
        Ok(())
    }

    /// Re-signs `timestamp.json` so clients see the registry is alive (run it more often than
    /// the timestamp expiry, e.g. daily from cron).
    pub fn refresh(&self) -> Result<u64, RegistryError> {
        let _lock = self.lock()?;
        tuf::refresh_timestamp(&self.dir, &self.keys, &self.expiries)
    }

    /// Signs a new root (a fresh root expiry; with `new_keys`, new keys for every role, the old
    /// ones retired under the keys directory's `retired/`) that clients follow from the root
    /// they pinned. Returns the new root version; see [`tuf::rotate_root`].
    pub fn rotate_root(&self, new_keys: bool) -> Result<u64, RegistryError> {
        let _lock = self.lock()?;
        tuf::rotate_root(&self.dir, &self.keys, &self.expiries, new_keys)
    }
}

impl Published for LocalRegistry {
    fn versions(&self, name: &str) -> Result<Vec<IndexEntry>, RegistryError> {
        let target = index_target(name);
        let path = self.target_path(&target);
        match fs::read_to_string(&path) {
            Ok(text) => parse_index(name, &text, &path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(io(&path)(e)),
        }
    }

    fn names(&self) -> Result<Vec<String>, RegistryError> {
        let targets = self.dir.join("targets");
        let mut names = Vec::new();
        if !targets.join("index").is_dir() {
            return Ok(names);
        }
        for entry in walkdir::WalkDir::new(targets.join("index")).min_depth(1) {
            let entry = entry.map_err(|e| RegistryError::Io {
                path: targets.join("index"),
                source: e.into(),
            })?;
            if !entry.file_type().is_file() {
                continue;
            }
            let relative = entry
                .path()
                .strip_prefix(&targets)
                .unwrap_or(entry.path())
                .to_string_lossy()
                .replace('\\', "/");
            if let Some(name) = plugin_of_index_target(&relative) {
                names.push(name.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }
}
