//! Registries from the command line: running a registry kept as a directory (`trellis
//! registry ...`), configuring the registries a project uses (`trellis plugin registry ...`),
//! and finding and installing plugins from them (`search`, `browse`, `install NAME`).

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use serde_json::json;
use trellis_project::{GrantChoices, PendingGrant, Project, RegistrySource};
use trellis_registry::index::IndexEntry;
use trellis_registry::local::LocalRegistry;

use crate::render::{Failure, Output};

#[derive(Subcommand)]
pub enum RegistryCommand {
    /// Create a registry in a directory: its config, an empty index and signed TUF metadata.
    /// Serve the directory from any static host, or use it as a `file://` registry.
    Init {
        dir: PathBuf,
        /// The registry's name (default: the directory's name).
        #[arg(long)]
        name: Option<String>,
        /// Where its signing keys are kept, outside the published directory (default:
        /// ~/.config/trellis/registry-keys/<name>).
        #[arg(long, value_name = "DIR")]
        keys: Option<PathBuf>,
    },
    /// Register a publisher's signing key: packages it signs are accepted and attested.
    AddKey {
        dir: PathBuf,
        /// Who the key belongs to, e.g. alice@example.com.
        principal: String,
        /// The public key: a `.pub` file or the `ssh-ed25519 AAAA…` line itself.
        key: String,
        #[arg(long, value_name = "DIR")]
        keys: Option<PathBuf>,
    },
    /// Publish a package (with its `.sig` beside it) after the quality gates.
    Publish {
        dir: PathBuf,
        archive: PathBuf,
        #[arg(long, value_name = "DIR")]
        keys: Option<PathBuf>,
    },
    /// Mark a version yanked: new installs skip it; lockfiles that pin it still work.
    Yank {
        dir: PathBuf,
        name: String,
        version: semver::Version,
        /// Take the yank back.
        #[arg(long)]
        undo: bool,
        #[arg(long, value_name = "DIR")]
        keys: Option<PathBuf>,
    },
    /// Serve a registry over HTTP: the signed static form under /registry/, the API under
    /// /api/v1/, /health and /metrics. SQLite in the data directory by default.
    Serve {
        /// Address to listen on (port 0 picks a free one; the address is printed).
        #[arg(long, default_value = "127.0.0.1:8440")]
        listen: std::net::SocketAddr,
        /// The data directory: the signed registry (static/) and the SQLite database.
        #[arg(long, value_name = "DIR", default_value = "registry-data")]
        data: PathBuf,
        /// `postgres://…` to keep the database in PostgreSQL instead.
        #[arg(long, value_name = "URL", env = "TRELLIS_REGISTRY_DATABASE")]
        database: Option<String>,
        /// The registry's name when the data directory is new.
        #[arg(long, default_value = "registry")]
        name: String,
        #[arg(long, value_name = "DIR")]
        keys: Option<PathBuf>,
        /// Largest archive accepted, in bytes.
        #[arg(long, default_value_t = 50 * 1024 * 1024)]
        max_body: usize,
        /// Requests per second per client address (0: no limit).
        #[arg(long, default_value_t = 100)]
        rate_limit: u32,
        /// Keep archives in object storage: `s3://BUCKET/PREFIX` (any S3-compatible store;
        /// credentials, region and endpoint from AWS_* variables) or `file:///DIR`.
        #[arg(long, value_name = "URL", env = "TRELLIS_REGISTRY_ARCHIVES")]
        archives: Option<String>,
    },
    /// Write a registry's static form (signed metadata and targets) to DIR for any static host
    /// or CDN; the copy is verified before the command succeeds.
    Export {
        /// Where to write it (a new or empty directory).
        dir: PathBuf,
        /// The registry directory, or a server's data directory (its `static/`).
        #[arg(long, value_name = "DIR", default_value = "registry-data")]
        from: PathBuf,
        /// The server's archive store, when it keeps archives in object storage (as `serve
        /// --archives`): they are copied into the export.
        #[arg(long, value_name = "URL", env = "TRELLIS_REGISTRY_ARCHIVES")]
        archives: Option<String>,
    },
    /// Manage the server's publish tokens (stored hashed; the secret is shown once).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Re-sign timestamp.json so that clients see the registry is current (run it daily).
    Refresh {
        dir: PathBuf,
        #[arg(long, value_name = "DIR")]
        keys: Option<PathBuf>,
        /// How long the new timestamp.json is valid (default 1440m, a day): clients refuse a
        /// registry whose timestamp has expired (a frozen mirror).
        #[arg(long, value_name = "DURATION", value_parser = parse_expiry)]
        timestamp_expiry: Option<chrono::Duration>,
    },
    /// Sign a new root.json (version up one, a fresh expiry) that clients follow from the root
    /// they pinned: run it before the root expires (a year by default), or with --new-keys to
    /// replace every signing key (the old ones are moved to KEYS/retired/<old version>/).
    RotateRoot {
        dir: PathBuf,
        #[arg(long, value_name = "DIR")]
        keys: Option<PathBuf>,
        /// Generate new keys for every role (root, targets, snapshot, timestamp).
        #[arg(long)]
        new_keys: bool,
        /// How long the new root.json is valid (default 365d): clients refuse a registry whose
        /// root has expired.
        #[arg(long, value_name = "DURATION", value_parser = parse_long_expiry)]
        root_expiry: Option<chrono::Duration>,
    },
}

fn parse_expiry(text: &str) -> Result<chrono::Duration, String> {
    let duration = trellis_manifest::parse_duration(text)?;
    chrono::Duration::from_std(duration).map_err(|e| e.to_string())
}

/// [`parse_expiry`], plus hours and days (`720h`, `365d`): a root lives for months.
fn parse_long_expiry(text: &str) -> Result<chrono::Duration, String> {
    let t = text.trim();
    for (unit, make) in [
        (
            "d",
            chrono::Duration::try_days as fn(i64) -> Option<chrono::Duration>,
        ),
        ("h", chrono::Duration::try_hours),
    ] {
        if let Some(number) = t.strip_suffix(unit)
            && !number.is_empty()
            && number.bytes().all(|b| b.is_ascii_digit())
        {
            return number
                .parse::<i64>()
                .ok()
                .and_then(make)
                .ok_or_else(|| format!("`{text}` is too long a duration"));
        }
    }
    parse_expiry(text).map_err(|e| format!("{e}; hours and days work too (`720h`, `365d`)"))
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create a token for OWNER with the given scopes (publish:NAME, publish:*, yank:NAME,
    /// yank:*, admin).
    Create {
        #[arg(long)]
        owner: String,
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// List tokens (never their secrets).
    List {
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Revoke a token by id: requests with it fail from now on.
    Revoke {
        id: String,
        #[command(flatten)]
        db: DatabaseArgs,
    },
}

#[derive(clap::Args)]
pub struct DatabaseArgs {
    /// The server's data directory.
    #[arg(long, value_name = "DIR", default_value = "registry-data")]
    data: PathBuf,
    #[arg(long, value_name = "URL", env = "TRELLIS_REGISTRY_DATABASE")]
    database: Option<String>,
}

impl DatabaseArgs {
    fn url(&self) -> String {
        self.database.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rwc",
                self.data.join("registry.db").display()
            )
        })
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?)
}

#[derive(Subcommand)]
pub enum PluginRegistryCommand {
    /// Add a registry to this project (its root metadata is pinned in .trellis/registries/).
    Add {
        name: String,
        /// `https://…`, `file:///…` or a directory.
        url: String,
        /// Lower is consulted first; a plugin name resolves from the first registry listing it.
        #[arg(long, default_value_t = trellis_project::DEFAULT_PRIORITY)]
        priority: i64,
        /// The environment variable holding a token for publishing to this registry.
        #[arg(long, value_name = "VAR")]
        token_env: Option<String>,
        /// Pin this root.json instead of trusting the registry's own on first use.
        #[arg(long, value_name = "FILE")]
        root: Option<PathBuf>,
    },
    /// Remove a registry from this project.
    Remove { name: String },
    /// List this project's registries in the order they are consulted.
    List,
}

fn keys_dir(explicit: Option<&Path>, name: &str) -> Result<PathBuf, Failure> {
    if let Some(dir) = explicit {
        return Ok(dir.to_owned());
    }
    let env = |k: &str| std::env::var(k).ok();
    let base = trellis_project::user_config_dir(&env).ok_or_else(|| {
        anyhow::anyhow!(
            "no HOME or TRELLIS_CONFIG_DIR to keep the registry keys in: pass --keys DIR"
        )
    })?;
    Ok(base.join("registry-keys").join(name))
}

fn registry_name(dir: &Path) -> String {
    dir.canonicalize()
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "registry".to_owned())
}

fn open_local(dir: &Path, keys: Option<&Path>) -> Result<LocalRegistry, Failure> {
    let name = LocalRegistry::open(dir, Path::new("."))?.config()?.name;
    Ok(LocalRegistry::open(dir, &keys_dir(keys, &name)?)?)
}

pub fn registry(cmd: &RegistryCommand, out: &Output) -> Result<(), Failure> {
    match cmd {
        RegistryCommand::Init { dir, name, keys } => {
            let name = name.clone().unwrap_or_else(|| registry_name(dir));
            let keys = keys_dir(keys.as_deref(), &name)?;
            let registry = LocalRegistry::init(dir, &keys, &name)?;
            out.value(
                &json!({"registry": dir, "name": name, "keys": keys, "root": registry.root_path()}),
                || {
                    format!(
                        "Created registry `{name}` in {}\n  signing keys: {} (keep them out of the published directory)\n  add it to a project: trellis plugin registry add {name} {}",
                        dir.display(),
                        keys.display(),
                        dir.display()
                    )
                },
            );
            Ok(())
        }
        RegistryCommand::AddKey {
            dir,
            principal,
            key,
            keys,
        } => {
            let line = if Path::new(key).is_file() {
                std::fs::read_to_string(key).with_context(|| format!("reading {key}"))?
            } else {
                key.clone()
            };
            open_local(dir, keys.as_deref())?.add_key(principal, &line)?;
            out.value(&json!({"principal": principal, "added": true}), || {
                format!("Registered a signing key for {principal}")
            });
            Ok(())
        }
        RegistryCommand::Publish { dir, archive, keys } => {
            let entry = open_local(dir, keys.as_deref())?.publish(archive, chrono::Utc::now())?;
            out.value(&serde_json::to_value(&entry).context("rendering")?, || {
                format!(
                    "Published {} {} ({}, signed by {})",
                    entry.name,
                    entry.version,
                    entry.trust,
                    entry
                        .signer
                        .as_ref()
                        .and_then(|s| s.principal.clone())
                        .unwrap_or_default()
                )
            });
            Ok(())
        }
        RegistryCommand::Yank {
            dir,
            name,
            version,
            undo,
            keys,
        } => {
            open_local(dir, keys.as_deref())?.set_yanked(name, version, !undo)?;
            out.value(
                &json!({"name": name, "version": version.to_string(), "yanked": !undo}),
                || {
                    format!(
                        "{} {name} {version}",
                        if *undo { "Unyanked" } else { "Yanked" }
                    )
                },
            );
            Ok(())
        }
        RegistryCommand::Serve {
            listen,
            data,
            database,
            name,
            keys,
            max_body,
            rate_limit,
            archives,
        } => {
            std::fs::create_dir_all(data)
                .with_context(|| format!("creating {}", data.display()))?;
            let config = trellis_registry_server::ServerConfig {
                listen: *listen,
                data: data.clone(),
                database: database.clone(),
                keys: keys_dir(keys.as_deref(), name)?,
                name: name.clone(),
                max_body: *max_body,
                rate_limit: *rate_limit,
                archives: archives.clone(),
            };
            let json = out.is_json();
            let registry_name = name.clone();
            runtime()?.block_on(trellis_registry_server::serve(
                config,
                move |addr| {
                    if json {
                        println!("{}", json!({"listening": addr.to_string(), "registry": format!("http://{addr}/registry/")}));
                    } else {
                        println!("Serving registry `{registry_name}` on http://{addr}/");
                        println!("  add it to a project: trellis plugin registry add {registry_name} http://{addr}/registry/");
                    }
                    use std::io::Write as _;
                    let _ = std::io::stdout().flush();
                },
                async {
                    let _ = tokio::signal::ctrl_c().await;
                },
            ))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            Ok(())
        }
        RegistryCommand::Token(cmd) => token(cmd, out),
        RegistryCommand::Export {
            dir,
            from,
            archives,
        } => {
            let source = if from.join("static").join("metadata").is_dir() {
                from.join("static")
            } else {
                from.clone()
            };
            let mut registry = LocalRegistry::open(&source, Path::new("."))?;
            if let Some(url) = archives {
                registry = registry.with_archive_store(std::sync::Arc::new(
                    trellis_registry_server::ObjectArchives::from_url(url)?,
                ));
            }
            let files = registry.export(dir)?;
            out.value(&json!({"exported": dir, "files": files}), || {
                format!(
                    "Exported {files} files to {} (verified); serve the directory as it is",
                    dir.display()
                )
            });
            Ok(())
        }
        RegistryCommand::Refresh {
            dir,
            keys,
            timestamp_expiry,
        } => {
            let mut registry = open_local(dir, keys.as_deref())?;
            if let Some(timestamp) = timestamp_expiry {
                registry = registry.with_expiries(trellis_registry::tuf::Expiries {
                    timestamp: *timestamp,
                    ..trellis_registry::tuf::Expiries::default()
                });
            }
            let version = registry.refresh()?;
            out.value(&json!({"timestamp_version": version}), || {
                format!("Re-signed timestamp.json (version {version})")
            });
            Ok(())
        }
        RegistryCommand::RotateRoot {
            dir,
            keys,
            new_keys,
            root_expiry,
        } => {
            let mut registry = open_local(dir, keys.as_deref())?;
            if let Some(root) = root_expiry {
                registry = registry.with_expiries(trellis_registry::tuf::Expiries {
                    root: *root,
                    ..trellis_registry::tuf::Expiries::default()
                });
            }
            let before = trellis_registry::tuf::root_summary(dir)?;
            let version = registry.rotate_root(*new_keys)?;
            let after = trellis_registry::tuf::root_summary(dir)?;
            // Compared rather than taken from --new-keys: running it again after an
            // interruption finishes what the interrupted run started.
            let keys_changed = before.key_ids != after.key_ids;
            let keys_dir = keys_dir(keys.as_deref(), &registry.config()?.name)?;
            let retired = keys_changed.then(|| {
                keys_dir
                    .join(trellis_registry::tuf::RETIRED_KEYS_DIR)
                    .join(version.saturating_sub(1).to_string())
            });
            out.value(
                &json!({"root_version": version, "expires": after.expires,
                        "keys_changed": keys_changed, "retired_keys": retired}),
                || {
                    let mut text = format!(
                        "Signed root.json version {version} (expires {}); clients follow it from the root they pinned",
                        after.expires
                    );
                    match &retired {
                        Some(retired) => text.push_str(&format!(
                            "\n  new keys for every role in {}; the old ones are in {} (nothing signs with them any more: keep them offline or destroy them)",
                            keys_dir.display(),
                            retired.display()
                        )),
                        None => text.push_str("\n  the signing keys are unchanged"),
                    }
                    text
                },
            );
            Ok(())
        }
    }
}

fn token(cmd: &TokenCommand, out: &Output) -> Result<(), Failure> {
    let rt = runtime()?;
    let connect = |db: &DatabaseArgs| {
        rt.block_on(trellis_registry_server::Db::connect(&db.url()))
            .map_err(|e| anyhow::anyhow!("{e}"))
    };
    match cmd {
        TokenCommand::Create { owner, scopes, db } => {
            let db = connect(db)?;
            let (token, secret) = rt
                .block_on(db.create_token(owner, scopes))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            out.value(&json!({"token": token, "secret": secret}), || {
                format!(
                    "Token {} for {} ({}):\n{secret}\nIt is shown only now; keep it in the variable named by the registry's --token-env.",
                    token.id,
                    token.owner,
                    token.scopes.join(", ")
                )
            });
        }
        TokenCommand::List { db } => {
            let db = connect(db)?;
            let tokens = rt
                .block_on(db.tokens())
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            out.value(&json!({"tokens": tokens}), || {
                tokens
                    .iter()
                    .map(|t| {
                        format!(
                            "{}  {:<24} {:<30} {}{}",
                            t.id,
                            t.owner,
                            t.scopes.join(","),
                            t.created_at,
                            if t.revoked { "  (revoked)" } else { "" }
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        TokenCommand::Revoke { id, db } => {
            let db = connect(db)?;
            let found = rt
                .block_on(db.revoke_token(id))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            if !found {
                return Err(anyhow::anyhow!(
                    "no token has the id `{id}`; `trellis registry token list` shows them"
                )
                .into());
            }
            out.value(&json!({"revoked": id}), || format!("Revoked token {id}"));
        }
    }
    Ok(())
}

pub fn plugin_registry(
    project: &Project,
    cmd: &PluginRegistryCommand,
    out: &Output,
) -> Result<(), Failure> {
    match cmd {
        PluginRegistryCommand::Add {
            name,
            url,
            priority,
            token_env,
            root,
        } => {
            let view = project.add_registry(
                RegistrySource {
                    name: name.clone(),
                    url: url.clone(),
                    priority: *priority,
                    token_env: token_env.clone(),
                },
                root.as_deref(),
            )?;
            out.value(
                &json!({"name": name, "url": view.source.url, "priority": priority,
                        "plugins": view.indexes.len()}),
                || {
                    format!(
                        "Added registry `{name}` ({}, priority {priority}): {} plugins",
                        view.source.url,
                        view.indexes.len()
                    )
                },
            );
            Ok(())
        }
        PluginRegistryCommand::Remove { name } => {
            project.remove_registry(name)?;
            out.value(&json!({"removed": name}), || {
                format!("Removed registry `{name}`")
            });
            Ok(())
        }
        PluginRegistryCommand::List => {
            let list = project.registries()?;
            out.value(&serde_json::to_value(&list).context("rendering")?, || {
                if list.is_empty() {
                    return "No registries configured. Add one with `trellis plugin registry add NAME URL`.".to_owned();
                }
                list.iter()
                    .map(|r| format!("{:<20} {:>5}  {}", r.name, r.priority, r.url))
                    .collect::<Vec<_>>()
                    .join("\n")
            });
            Ok(())
        }
    }
}

/// The newest version of each plugin that is not yanked.
fn newest(entries: &[IndexEntry]) -> Option<&IndexEntry> {
    entries
        .iter()
        .filter(|e| !e.yanked)
        .max_by(|a, b| a.version.cmp(&b.version))
}

pub struct SearchArgs<'a> {
    pub query: &'a str,
    pub category: Option<&'a str>,
    pub trust: Option<trellis_trust::TrustLevel>,
    pub offline: bool,
}

pub fn search(project: &Project, args: SearchArgs<'_>, out: &Output) -> Result<(), Failure> {
    let catalog = project.registry_catalog(args.offline)?;
    let mut hits = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for view in &catalog.registries {
        for (name, entries) in &view.indexes {
            // A name belongs to the first registry listing it, as install resolves it.
            if !seen.insert(name.clone()) {
                continue;
            }
            let Some(entry) = newest(entries) else {
                continue;
            };
            let category_ok = args
                .category
                .is_none_or(|c| entry.categories.iter().any(|e| e == c));
            let trust_ok = args.trust.is_none_or(|min| {
                trellis_trust::TrustLevel::parse(&entry.trust).is_some_and(|t| t >= min)
            });
            if category_ok && trust_ok && entry.matches(args.query) {
                hits.push((view.source.name.clone(), entry.clone()));
            }
        }
    }
    let offline_note = offline_note(&catalog);
    out.value(
        &json!({"results": hits.iter().map(|(r, e)| json!({"registry": r, "name": e.name,
            "version": e.version.to_string(), "trust": e.trust, "description": e.description,
            "categories": e.categories})).collect::<Vec<_>>(), "offline": args.offline}),
        || {
            let mut text = offline_note.clone();
            if hits.is_empty() {
                text.push_str("No plugins match.");
                return text;
            }
            text.push_str(&format!(
                "{:<28} {:<10} {:<12} {:<14} DESCRIPTION\n",
                "NAME", "VERSION", "TRUST", "REGISTRY"
            ));
            for (registry, e) in &hits {
                text.push_str(&format!(
                    "{:<28} {:<10} {:<12} {:<14} {}\n",
                    e.name,
                    e.version.to_string(),
                    e.trust,
                    registry,
                    e.description
                ));
            }
            text.trim_end().to_owned()
        },
    );
    Ok(())
}

fn offline_note(catalog: &trellis_project::RegistryCatalog) -> String {
    if catalog.registries.iter().any(|r| r.offline) {
        "(offline: read from this machine's cache; whether the registries changed since was not checked)\n".to_owned()
    } else {
        String::new()
    }
}

pub fn browse(project: &Project, offline: bool, out: &Output) -> Result<(), Failure> {
    let catalog = project.registry_catalog(offline)?;
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut seen = std::collections::BTreeSet::new();
    for view in &catalog.registries {
        for (name, entries) in &view.indexes {
            if !seen.insert(name.clone()) {
                continue;
            }
            if let Some(entry) = newest(entries) {
                for c in &entry.categories {
                    *counts.entry(c.clone()).or_default() += 1;
                }
            }
        }
    }
    let note = offline_note(&catalog);
    out.value(&json!({"categories": counts}), || {
        let mut text = note.clone();
        text.push_str("Categories:\n");
        if counts.is_empty() {
            text.push_str("  none yet\n");
        }
        for (c, n) in &counts {
            text.push_str(&format!(
                "  {c} ({n} plugin{})\n",
                if *n == 1 { "" } else { "s" }
            ));
        }
        text.trim_end().to_owned()
    });
    Ok(())
}

/// `plugin info NAME` for a plugin that is not installed: what the registries say.
pub fn registry_info(
    project: &Project,
    name: &str,
    offline: bool,
    out: &Output,
) -> Result<(), Failure> {
    let catalog = project.registry_catalog(offline)?;
    let Some((view, entries)) = catalog
        .registries
        .iter()
        .find_map(|v| v.indexes.get(name).map(|e| (v, e)))
    else {
        return Err(trellis_project::ProjectError::NotInstalled {
            name: name.to_owned(),
            suggestion: None,
            installed: Vec::new(),
        }
        .into());
    };
    let Some(entry) = newest(entries) else {
        return Err(anyhow::anyhow!("every version of {name} is yanked").into());
    };
    let versions: Vec<String> = entries
        .iter()
        .rev()
        .map(|e| format!("{}{}", e.version, if e.yanked { " (yanked)" } else { "" }))
        .collect();
    out.value(
        &json!({"registry": view.source.name, "entry": entry, "versions": versions}),
        || {
            let mut text = format!(
                "{} v{}  (from registry {})\n\n{}\n\n",
                entry.name, entry.version, view.source.name, entry.description
            );
            text.push_str(&format!(
                "License:     {}\nTrust:       {}{}\nPublished:   {}\nVersions:    {}\n",
                entry.license.as_deref().unwrap_or("-"),
                entry.trust,
                entry
                    .signer
                    .as_ref()
                    .and_then(|s| s.principal.as_ref())
                    .map(|p| format!(" (signed by {p})"))
                    .unwrap_or_default(),
                entry.published_at.format("%Y-%m-%d"),
                versions.join(", ")
            ));
            if !entry.provides.is_empty() {
                text.push_str("\nProvides:\n");
                for (kind, names) in &entry.provides {
                    text.push_str(&format!("  {kind}: {}\n", names.join(", ")));
                }
            }
            text.push_str("\nRequires:\n");
            text.push_str(&format!("  trellis {}\n", entry.trellis));
            for d in &entry.dependencies {
                text.push_str(&format!(
                    "  plugin {} {}{}\n",
                    d.name,
                    d.req,
                    if d.optional { " (optional)" } else { "" }
                ));
            }
            for c in &entry.capabilities {
                text.push_str(&format!(
                    "  capability {}{}\n",
                    c.name,
                    c.reason
                        .as_ref()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default()
                ));
            }
            text.push_str(&format!("\nInstall: trellis plugin install {}", entry.name));
            text
        },
    );
    Ok(())
}

/// The `--grant`/`--deny` flags that concern one of several plugins being installed: each
/// names a capability of at least one of them, and applies to those that request it.
fn choices_for(
    prepared: &[trellis_project::PreparedInstall],
    choices: &GrantChoices,
) -> Result<Vec<GrantChoices>, Failure> {
    for cap in choices.grant.iter().chain(&choices.deny) {
        let requested = prepared
            .iter()
            .any(|p| p.manifest.capability_names().contains(&cap.as_str()));
        if !requested && prepared.len() > 1 {
            let all: Vec<String> = prepared
                .iter()
                .flat_map(|p| p.manifest.capability_names())
                .map(str::to_owned)
                .collect();
            return Err(trellis_project::ProjectError::UnknownGrant {
                plugin: prepared
                    .iter()
                    .map(|p| p.name().to_owned())
                    .collect::<Vec<_>>()
                    .join(", "),
                capability: cap.clone(),
                requested: all,
                suggestion: None,
            }
            .into());
        }
    }
    Ok(prepared
        .iter()
        .map(|p| {
            let names = p.manifest.capability_names();
            let keep = |list: &Vec<String>| -> Vec<String> {
                list.iter()
                    .filter(|c| prepared.len() == 1 || names.contains(&c.as_str()))
                    .cloned()
                    .collect()
            };
            GrantChoices {
                yes: choices.yes,
                grant: keep(&choices.grant),
                deny: keep(&choices.deny),
            }
        })
        .collect())
}

pub struct RegistryInstallArgs<'a> {
    pub specs: &'a [String],
    pub force: bool,
    pub locked: bool,
    pub offline: bool,
    pub choices: GrantChoices,
}

pub fn install(
    project: &Project,
    args: RegistryInstallArgs<'_>,
    out: &Output,
) -> Result<(), Failure> {
    let specs = args
        .specs
        .iter()
        .map(|s| trellis_project::parse_spec(s))
        .collect::<Result<Vec<_>, _>>()?;
    let plan = project.plan_registry_install(&specs, args.locked, args.offline)?;
    let interactive = std::io::stderr().is_terminal() && !out.is_json();
    if interactive {
        eprintln!("Resolved:");
        for r in &plan.resolved {
            let note = if plan.unchanged.contains(&r.entry.name) {
                " — already installed".to_owned()
            } else {
                format!(
                    " — trust: {}, capabilities: {}",
                    r.entry.trust,
                    if r.entry.capabilities.is_empty() {
                        "none".to_owned()
                    } else {
                        r.entry
                            .capabilities
                            .iter()
                            .map(|c| c.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                )
            };
            eprintln!("  {r}{note}");
        }
    }
    let total: u64 = plan.to_install().map(|r| r.entry.size).sum();
    let bar = if interactive {
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{msg:30} [{bar:30}] {bytes}/{total_bytes}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let prepared = project.prepare_registry_install(&plan, &mut |label, size| {
        bar.set_message(label.to_owned());
        bar.inc(size);
    })?;
    bar.finish_and_clear();

    let stdin_tty = std::io::stdin().is_terminal() && !out.is_json();
    let per_plugin = choices_for(&prepared, &args.choices)?;
    let mut items = Vec::new();
    for (ready, choices) in prepared.into_iter().zip(per_plugin) {
        if ready.previous.is_some() && !args.force {
            let prev = ready.previous.as_ref().map(|p| p.version.clone());
            return Err(trellis_project::ProjectError::AlreadyInstalled {
                name: ready.name().to_owned(),
                installed: prev.unwrap_or_else(|| semver::Version::new(0, 0, 0)),
                source_text: ready.source.clone(),
            }
            .into());
        }
        if stdin_tty {
            eprintln!("{}", crate::trust::describe_prepared(&ready));
        }
        let mut ask =
            |pending: &PendingGrant| -> std::io::Result<bool> { crate::trust::ask_grant(pending) };
        let prompt: Option<trellis_project::GrantPrompt<'_>> =
            if stdin_tty { Some(&mut ask) } else { None };
        let decisions = ready.plan.decide(&choices, prompt)?;
        items.push((ready, decisions));
    }
    let reports = if items.is_empty() {
        Vec::new()
    } else {
        project.commit_installs(items, args.force)?
    };
    out.value(
        &json!({"installed": reports, "unchanged": plan.unchanged,
                "offline": args.offline}),
        || {
            let mut text = String::new();
            if args.offline {
                text.push_str(
                    "(offline: resolved from this machine's cache; freshness not checked)\n",
                );
            }
            for r in &reports {
                text.push_str(&format!(
                    "Installed {} {} ({}; trust {}{}; granted: {})\n",
                    r.name,
                    r.version,
                    r.state,
                    r.trust,
                    r.signer
                        .as_ref()
                        .map(|s| format!(", signed by {s}"))
                        .unwrap_or_default(),
                    if r.granted.is_empty() {
                        "nothing".to_owned()
                    } else {
                        r.granted.join(", ")
                    }
                ));
            }
            for name in &plan.unchanged {
                text.push_str(&format!(
                    "{name} is already installed at the resolved version\n"
                ));
            }
            text.push_str("Run `trellis plugin enable NAME` to activate what was installed.");
            text
        },
    );
    Ok(())
}

pub struct UpdateArgs<'a> {
    pub name: Option<&'a str>,
    pub major: bool,
    pub offline: bool,
    pub choices: GrantChoices,
}

/// `trellis plugin update [NAME] [--major]`.
pub fn update(project: &Project, args: UpdateArgs<'_>, out: &Output) -> Result<(), Failure> {
    let plan = project.plan_update(args.name, args.major, args.offline)?;
    let held_back: Vec<String> = plan
        .held_back
        .iter()
        .map(|(n, v)| format!("{n} {v} (a new major version: run with --major)"))
        .collect();
    if plan.items.is_empty() {
        out.value(
            &json!({"updated": [], "up_to_date": plan.up_to_date, "held_back": held_back}),
            || {
                let mut text = "Everything is up to date.".to_owned();
                for h in &held_back {
                    text.push_str(&format!("\n  available: {h}"));
                }
                text
            },
        );
        return Ok(());
    }
    let interactive = std::io::stdin().is_terminal() && !out.is_json();
    let mut summary = String::from("Updates:\n");
    for item in &plan.items {
        summary.push_str(&format!(
            "  {}: {} → {}{}\n",
            item.name,
            item.from
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_else(|| "(new dependency)".to_owned()),
            item.to,
            if item.major { " (major)" } else { "" }
        ));
        if !item.capabilities_added.is_empty() {
            summary.push_str(&format!(
                "    capabilities added: {}\n",
                item.capabilities_added.join(", ")
            ));
        }
        if !item.capabilities_removed.is_empty() {
            summary.push_str(&format!(
                "    capabilities removed: {}\n",
                item.capabilities_removed.join(", ")
            ));
        }
    }
    if !out.is_json() {
        eprint!("{summary}");
    }
    let prepared = project.prepare_registry_install(&plan.plan, &mut |_, _| {})?;
    let mut changelogs = Vec::new();
    let per_plugin = choices_for(&prepared, &args.choices)?;
    let mut items = Vec::new();
    for (ready, choices) in prepared.into_iter().zip(per_plugin) {
        if let Some(log) = trellis_project::shipped_changelog(&ready) {
            changelogs.push((ready.name().to_owned(), log));
        }
        if interactive {
            eprintln!("{}", crate::trust::describe_prepared(&ready));
        }
        let mut ask =
            |pending: &PendingGrant| -> std::io::Result<bool> { crate::trust::ask_grant(pending) };
        let prompt: Option<trellis_project::GrantPrompt<'_>> =
            if interactive { Some(&mut ask) } else { None };
        let decisions = ready.plan.decide(&choices, prompt)?;
        items.push((ready, decisions));
    }
    let start =
        |project: &Project| -> Result<Vec<(String, String)>, trellis_project::ProjectError> {
            // Every plugin is started: an update that leaves one unable to start rolls back.
            match trellis_host::Host::start_all(project.clone()) {
                Ok(host) => Ok(host.failed()),
                Err(trellis_host::HostError::Project(e)) => Err(e),
                Err(other) => Err(trellis_project::ProjectError::Io {
                    path: project.root().to_owned(),
                    source: std::io::Error::other(other.to_string()),
                }),
            }
        };
    // Migration functions run from the staged new version, on the wasm runtime.
    let migrate = |call: trellis_project::MigrationCall<'_>| {
        trellis_host::run_config_migration(project, call).map_err(|e| e.to_string())
    };
    let report = project.commit_update(&plan, items, &migrate, &start)?;
    out.value(
        &json!({"updated": report.updated, "migrated": report.migrated,
                "backup": report.backup, "held_back": held_back,
                "changelogs": changelogs.iter().map(|(n, l)| json!({"plugin": n, "changelog": l})).collect::<Vec<_>>()}),
        || {
            let mut text = String::new();
            for item in &report.updated {
                text.push_str(&format!(
                    "Updated {} {} → {}\n",
                    item.name,
                    item.from
                        .as_ref()
                        .map(ToString::to_string)
                        .unwrap_or_else(|| "(new)".to_owned()),
                    item.to
                ));
            }
            for (name, changes) in &report.migrated {
                text.push_str(&format!("Configuration of {name} migrated:\n"));
                for c in changes {
                    text.push_str(&format!("  {c}\n"));
                }
            }
            for (name, log) in &changelogs {
                text.push_str(&format!("\nChangelog of {name}:\n"));
                for line in log.lines().take(30) {
                    text.push_str(&format!("  {line}\n"));
                }
            }
            for h in &held_back {
                text.push_str(&format!("Also available: {h}\n"));
            }
            text.push_str(&format!(
                "Backup of the previous packages and configuration: {}",
                report.backup.display()
            ));
            text
        },
    );
    Ok(())
}

/// A registry's verified index as the publish gates read it.
struct ViewIndex<'a>(&'a trellis_project::RegistryView);

impl trellis_registry::publish::Published for ViewIndex<'_> {
    fn versions(&self, name: &str) -> Result<Vec<IndexEntry>, trellis_registry::RegistryError> {
        Ok(self.0.indexes.get(name).cloned().unwrap_or_default())
    }

    fn names(&self) -> Result<Vec<String>, trellis_registry::RegistryError> {
        Ok(self.0.indexes.keys().cloned().collect())
    }
}

/// `trellis plugin publish ARCHIVE [--registry NAME]`: the quality gates run here first, against
/// the registry's verified index, then the package goes to the registry's API with a token.
pub fn publish(
    project: &Project,
    archive: &Path,
    registry: Option<&str>,
    out: &Output,
) -> Result<(), Failure> {
    let catalog = project.registry_catalog(false)?;
    let view = match registry {
        Some(name) => catalog.registries.iter().find(|v| v.source.name == name),
        None => catalog.registries.first(),
    }
    .ok_or_else(|| trellis_project::ProjectError::UnknownRegistry {
        name: registry.unwrap_or("(any)").to_owned(),
        configured: catalog
            .registries
            .iter()
            .map(|v| v.source.name.clone())
            .collect(),
    })?;
    let read = |p: PathBuf| -> Result<Option<String>, Failure> {
        match std::fs::read_to_string(&p) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(anyhow::Error::new(e)
                .context(format!("reading {}", p.display()))
                .into()),
        }
    };
    let signature = read(trellis_trust::signature_path(archive))?;
    let certification = read(trellis_trust::certification_path(archive))?;
    let accepted = trellis_registry::publish::check_package(
        archive,
        signature.as_deref(),
        certification.as_deref(),
        &view.config,
        &ViewIndex(view),
        chrono::Utc::now(),
    )?;
    let entry = accepted.entry;

    let api = match &view.config.api {
        Some(api) => api.trim_end_matches('/').to_owned(),
        None => view
            .source
            .url
            .trim_end_matches('/')
            .strip_suffix("/registry")
            .filter(|_| view.source.url.starts_with("http"))
            .map(str::to_owned)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "registry `{}` has no API to publish to ({}): publish to a directory registry with `trellis registry publish DIR ARCHIVE`",
                    view.source.name,
                    view.source.url
                )
            })?,
    };
    let token_var = view
        .source
        .token_env
        .clone()
        .unwrap_or_else(|| "TRELLIS_REGISTRY_TOKEN".to_owned());
    let token = std::env::var(&token_var).map_err(|_| {
        anyhow::anyhow!(
            "no token in ${token_var}: ask the registry's admin for one (`trellis registry token create`) and set it there"
        )
    })?;
    let body = std::fs::read(archive).with_context(|| format!("reading {}", archive.display()))?;
    trellis_registry::upload::upload(&trellis_registry::upload::Upload {
        api: &api,
        registry: &view.source.name,
        token: &token,
        name: &entry.name,
        version: &entry.version.to_string(),
        archive: &body,
        signature: signature.as_deref(),
        certification: certification.as_deref(),
    })?;
    out.value(
        &json!({"published": entry, "registry": view.source.name}),
        || {
            format!(
                "Published {} {} to {} ({})",
                entry.name, entry.version, view.source.name, entry.trust
            )
        },
    );
    Ok(())
}
