//! The verifying reader: a registry read through TUF from a pinned root, following
//! rotations, refusing rollback, freeze, mix-and-match and tampered targets.

use super::*;

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
pub(crate) struct Context {
    pub(crate) registry: String,
    pub(crate) datastore: PathBuf,
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
        Self::load_with(trusted_root, metadata_url, targets_url, datastore, true)
    }

    /// [`VerifiedRegistry::load`] without its second read after a mismatch or a bad signature:
    /// for callers that know the metadata is not being re-signed while they read it (a check
    /// of files at rest, the fuzzer), where that read would only repeat the same refusal.
    pub fn load_at_rest(
        trusted_root: &[u8],
        metadata_url: &Url,
        targets_url: &Url,
        datastore: &Path,
    ) -> Result<Self, RegistryError> {
        Self::load_with(trusted_root, metadata_url, targets_url, datastore, false)
    }

    fn load_with(
        trusted_root: &[u8],
        metadata_url: &Url,
        targets_url: &Url,
        datastore: &Path,
        retry_mixed_read: bool,
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
        if retry_mixed_read
            && let Err(e) = &result
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

    pub(crate) fn target(&self, name: &str) -> Option<(TargetName, &Target)> {
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

    pub(crate) fn error(&self, e: &tough::error::Error, target: &str) -> RegistryError {
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

    pub(crate) fn not_listed(&self, name: &str) -> RegistryError {
        RegistryError::Tuf {
            registry: self.ctx.registry.clone(),
            reason: format!("target {name} vanished from the verified targets.json"),
            hint: "this is a bug in trellis; please report it".to_owned(),
        }
    }
}

/// The transport for `file://`, `http://` and `https://` (tough's, with its retries).
pub(crate) fn transport() -> DefaultTransport {
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
pub(crate) const MAX_ROOT_SIZE: usize = 1 << 20;

/// How a registry is named in messages: its metadata URL without a trailing `/metadata/`.
pub(crate) fn registry_label(metadata_url: &Url) -> String {
    let s = metadata_url.as_str().trim_end_matches('/');
    s.strip_suffix("/metadata").unwrap_or(s).to_owned()
}

/// A newer root (`<N+1>.root.json`) that is not signed by a threshold of the keys of the root
/// trusted so far (version N) and of its own: a forged root, or one signed with the wrong keys.
/// `start` is the root the load started from; tough keeps each root it accepted on the way in
/// the datastore, so the newer of the two is N.
pub(crate) fn forged_root_error(
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
pub(crate) fn newest_trusted_root(
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
pub(crate) async fn claimed_expiry(
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

pub(crate) fn role_file(role: RoleType) -> &'static str {
    match role {
        RoleType::Root => "root.json",
        RoleType::Targets => "targets.json",
        RoleType::Snapshot => "snapshot.json",
        RoleType::Timestamp => "timestamp.json",
        RoleType::DelegatedTargets => "delegated targets metadata",
    }
}

/// The file that lists `file`'s version and hash.
pub(crate) fn referrer(file: &str) -> &'static str {
    match file {
        "snapshot.json" => "timestamp.json",
        "targets.json" => "snapshot.json",
        _ => "the metadata that lists it",
    }
}

/// The last segment of a URL's path.
pub(crate) fn url_file(url: &Url) -> String {
    url.path_segments()
        .and_then(|mut s| s.next_back())
        .unwrap_or_default()
        .to_owned()
}

/// The tough error a transport error wraps (a hash or length mismatch found while streaming).
pub(crate) fn inner_tough_error(e: &tough::TransportError) -> Option<&tough::error::Error> {
    std::error::Error::source(e)?.downcast_ref::<tough::error::Error>()
}

/// Turns a tough error into one that says which file, what is wrong and what to do. `target` is
/// the target being read, if any.
pub(crate) fn map_tough_error(
    e: &tough::error::Error,
    ctx: &Context,
    target: Option<&str>,
) -> RegistryError {
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

pub(crate) fn map_transport_error(
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
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
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
