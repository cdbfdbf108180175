//! Commands about trust: packages, keys, signatures, grants, policy, the audit log and
//! telemetry consent.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use clap::Subcommand;
use serde_json::json;
use trellis_project::{
    GrantChoices, PendingGrant, PreparedInstall, Project, Transition, same_grant, scope_text,
    user_config_dir,
};
use trellis_trust::SigningKey;

use crate::render::{Failure, Output};

/// The environment variable holding the passphrase of an encrypted signing key.
pub const PASSPHRASE_ENV: &str = "TRELLIS_SIGNING_KEY_PASSPHRASE";

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn config_dir() -> Result<PathBuf, Failure> {
    user_config_dir(&env).ok_or_else(|| {
        Failure::Other(anyhow!(
            "cannot tell where your settings go: set HOME, XDG_CONFIG_HOME or TRELLIS_CONFIG_DIR"
        ))
    })
}

fn home_dir() -> PathBuf {
    env("HOME").map(PathBuf::from).unwrap_or_default()
}

pub fn build(dir: &Path, out_dir: Option<&Path>, out: &Output) -> Result<(), Failure> {
    let out_dir = out_dir.map_or_else(|| dir.join("dist"), Path::to_path_buf);
    let built = trellis_package::build(dir, &out_dir)?;
    out.value(
        &json!({"archive": built.archive, "sha256": format!("sha256:{}", built.sha256),
                "plugin": built.name, "version": built.version,
                "files": built.file_list.files.len()}),
        || {
            format!(
                "Built {} {} -> {}\n  sha256:{}\n  {} file(s)\nSign it with `trellis plugin sign {}`.",
                built.name,
                built.version,
                built.archive.display(),
                built.sha256,
                built.file_list.files.len(),
                built.archive.display()
            )
        },
    );
    Ok(())
}

pub fn keygen(path: Option<&Path>, principal: &str, out: &Output) -> Result<(), Failure> {
    let path = match path {
        Some(p) => p.to_path_buf(),
        None => config_dir()?.join("keys").join("trellis_ed25519"),
    };
    let key = SigningKey::generate(principal);
    let passphrase = env(PASSPHRASE_ENV);
    key.write(&path, passphrase.as_deref())?;
    let public = key.public_key_openssh();
    let allowed = format!(
        "{principal} namespaces=\"{}\" {public}",
        trellis_trust::PACKAGE_NAMESPACE
    );
    out.value(
        &json!({"private_key": path, "public_key": format!("{}.pub", path.display()),
                "fingerprint": key.fingerprint(), "principal": principal,
                "allowed_signers_line": allowed}),
        || {
            format!(
                "Generated an Ed25519 signing key for {principal}\n  private: {}{}\n  public:  {}.pub\n  fingerprint: {}\nUsers trust it by adding this line to their allowed_signers file:\n  {allowed}",
                path.display(),
                if passphrase.is_some() { " (encrypted)" } else { "" },
                path.display(),
                key.fingerprint()
            )
        },
    );
    Ok(())
}

/// The signing key: `--key`, else `TRELLIS_SIGNING_KEY`, else the trellis key in the config
/// directory, else `~/.ssh/id_ed25519`.
fn load_signing_key(explicit: Option<&Path>) -> Result<(SigningKey, PathBuf), Failure> {
    let path = match explicit
        .map(Path::to_path_buf)
        .or_else(|| env("TRELLIS_SIGNING_KEY").map(PathBuf::from))
    {
        Some(p) => p,
        None => {
            // Without HOME the ~/.ssh candidate would be relative to the current directory,
            // possibly an untrusted checkout: only absolute candidates count.
            let candidates: Vec<PathBuf> =
                trellis_trust::default_key_candidates(&home_dir(), &config_dir()?)
                    .into_iter()
                    .filter(|p| p.is_absolute())
                    .collect();
            candidates
                .iter()
                .find(|p| p.is_file())
                .cloned()
                .ok_or_else(|| {
                    Failure::Other(anyhow!(
                        "no signing key found (looked for {}); create one with `trellis plugin keygen` or pass --key",
                        candidates
                            .iter()
                            .map(|p| p.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })?
        }
    };
    let mut passphrase = env(PASSPHRASE_ENV);
    let key = match SigningKey::load(&path, passphrase.as_deref()) {
        Err(e)
            if e.is_passphrase_needed()
                && passphrase.is_none()
                && std::io::stdin().is_terminal() =>
        {
            passphrase = Some(
                rpassword::prompt_password(format!("Passphrase for {}: ", path.display()))
                    .context("reading the passphrase")?,
            );
            SigningKey::load(&path, passphrase.as_deref())?
        }
        other => other?,
    };
    Ok((key, path))
}

pub fn sign(
    archive: &Path,
    key: Option<&Path>,
    certify: bool,
    out: &Output,
) -> Result<(), Failure> {
    let (key, key_path) = load_signing_key(key)?;
    let bytes = std::fs::read(archive).with_context(|| format!("reading {}", archive.display()))?;
    let (namespace, sig_path) = if certify {
        (
            trellis_trust::CERTIFY_NAMESPACE,
            trellis_trust::certification_path(archive),
        )
    } else {
        (
            trellis_trust::PACKAGE_NAMESPACE,
            trellis_trust::signature_path(archive),
        )
    };
    let armored = key.sign(&bytes, namespace)?;
    write_file_atomic(&sig_path, armored.as_bytes())?;
    out.value(
        &json!({"archive": archive, "signature": sig_path, "key": key_path,
                "fingerprint": key.fingerprint(), "namespace": namespace}),
        || {
            format!(
                "{} {}\n  signature: {}\n  key: {} ({})\nCheck it with `trellis plugin verify {}`{}",
                if certify { "Certified" } else { "Signed" },
                archive.display(),
                sig_path.display(),
                key_path.display(),
                key.fingerprint(),
                archive.display(),
                if certify {
                    String::new()
                } else {
                    format!(
                        " or `ssh-keygen -Y verify -f allowed_signers -I <principal> -n {} -s {} < {}`",
                        namespace,
                        sig_path.display(),
                        archive.display()
                    )
                }
            )
        },
    );
    Ok(())
}

pub fn verify(project: &Project, archive: &Path, out: &Output) -> Result<(), Failure> {
    let security = project.security()?;
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
    let list =
        trellis_package::read_file_list(archive, &trellis_package::ExtractLimits::default())?;
    let v = trellis_trust::verify_package(
        archive,
        signature.as_deref(),
        certification.as_deref(),
        None,
        &security.trust,
    )?;
    // The manifest may claim its signer; check that claim as install does, once the bytes are
    // known to be the signed ones.
    let mut v = match (claimed_signer(archive)?, &v.signer) {
        (Some(claimed), Some(_)) => trellis_trust::verify_package(
            archive,
            signature.as_deref(),
            certification.as_deref(),
            Some(&claimed),
            &security.trust,
        )?,
        _ => v,
    };
    if let Some(ignored) = &security.ignored_user_signers {
        v.notes.push(format!(
            "{} was not consulted: an admin policy is in force, so only the admin's allowed_signers count",
            ignored.display()
        ));
    }
    out.value(&json!({
        "archive": archive, "plugin": list.name, "version": list.version,
        "package_sha256": format!("sha256:{}", v.package_sha256),
        "trust": v.level.as_str(),
        "signer": v.signer.as_ref().map(|s| json!({"principal": s.principal, "fingerprint": s.fingerprint, "listed_in": s.listed_in})),
        "certifier": v.certifier.as_ref().map(|s| json!({"principal": s.principal, "fingerprint": s.fingerprint, "listed_in": s.listed_in})),
        "notes": v.notes,
    }), || {
        let mut text = format!("{} {}\n", list.name, list.version);
        text.push_str(&format!("  package:     sha256:{}\n", v.package_sha256));
        text.push_str(&format!("  trust:       {}\n", v.level));
        match &v.signer {
            Some(s) => {
                text.push_str(&format!(
                    "  signer:      {}\n  fingerprint: {}\n",
                    s.principal.as_deref().unwrap_or(if s.listed_in.is_some() {
                        "(not named: the key is listed for a pattern, see the notes)"
                    } else {
                        "(unknown key: no allowed_signers entry lists it)"
                    }),
                    s.fingerprint
                ));
                if let Some(at) = &s.listed_in {
                    text.push_str(&format!("  listed in:   {at}\n"));
                }
            }
            None => text.push_str("  signer:      none (unsigned)\n"),
        }
        if let Some(c) = &v.certifier {
            text.push_str(&format!("  certified by: {} ({})\n", c.principal.as_deref().unwrap_or("certifier"), c.fingerprint));
        }
        for n in &v.notes {
            text.push_str(&format!("  note: {n}\n"));
        }
        text.trim_end().to_owned()
    });
    Ok(())
}

/// `signatures.signer` from the manifest inside a package, read from a private extraction.
fn claimed_signer(archive: &Path) -> Result<Option<String>, Failure> {
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let root = dir.path().join("package");
    trellis_package::extract(archive, &root, &trellis_package::ExtractLimits::default())?;
    let loaded = trellis_manifest::load_dir(&root)?;
    Ok(loaded.manifest.signatures.and_then(|s| s.signer))
}

pub struct InstallArgs<'a> {
    pub source: &'a Path,
    pub force: bool,
    pub choices: GrantChoices,
}

pub fn install(project: &Project, args: InstallArgs<'_>, out: &Output) -> Result<(), Failure> {
    let prepared = project.prepare_install(args.source)?;
    if let Some(prev) = &prepared.previous
        && !args.force
    {
        return Err(trellis_project::ProjectError::AlreadyInstalled {
            name: prepared.name().to_owned(),
            installed: prev.version.clone(),
            source_text: prev.source.clone(),
        }
        .into());
    }
    let interactive = std::io::stdin().is_terminal() && !out.is_json();
    if interactive {
        eprintln!("{}", describe_prepared(&prepared));
    }
    let mut ask = |pending: &PendingGrant| -> std::io::Result<bool> { ask_grant(pending) };
    let prompt: Option<trellis_project::GrantPrompt<'_>> =
        if interactive { Some(&mut ask) } else { None };
    let decisions = prepared.plan.decide(&args.choices, prompt)?;
    let report = project.commit_install(prepared, decisions, args.force)?;
    out.value(&serde_json::to_value(&report).context("rendering")?, || {
        let verb = match &report.replaced {
            Some(old) => format!("Updated {} {old} -> {}", report.name, report.version),
            None => format!("Installed {} {}", report.name, report.version),
        };
        let mut text = format!(
            "{verb} ({})\n  trust:   {}{}\n  package: {}\n  granted: {}\n",
            report.state,
            report.trust,
            report
                .signer
                .as_ref()
                .map(|s| format!(" (signed by {s})"))
                .unwrap_or_default(),
            report.package_sha256,
            if report.granted.is_empty() {
                "nothing".to_owned()
            } else {
                report.granted.join(", ")
            },
        );
        if !report.refused.is_empty() {
            text.push_str(&format!("  refused: {}\n", report.refused.join(", ")));
        }
        if report.state == trellis_project::LifecycleState::Installed {
            text.push_str(&format!(
                "Run `trellis plugin enable {}` to activate it.",
                report.name
            ));
        }
        text.trim_end().to_owned()
    });
    Ok(())
}

/// What the user sees before deciding: who signed it and what changes.
pub(crate) fn describe_prepared(p: &PreparedInstall) -> String {
    let v = &p.verification;
    let mut text = format!(
        "{} {} — trust: {}",
        p.manifest.metadata.name, p.manifest.metadata.version, v.level
    );
    if let Some(s) = &v.signer {
        text.push_str(&format!(
            " (signed by {}, key {})",
            s.principal.as_deref().unwrap_or("an unknown key"),
            s.fingerprint
        ));
    }
    if let Some(prev) = &p.previous {
        text.push_str(&format!("\nreplaces version {}", prev.version));
    }
    if let Some(support) = crate::render::sandbox_for(&p.manifest) {
        text.push_str(&format!(
            "\nsandbox on this machine: {}",
            trellis_process::describe_support(&support)
        ));
    }
    if !p.plan.carried.is_empty() {
        text.push_str(&format!(
            "\nstill granted: {}",
            p.plan
                .carried
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if !p.plan.dropped.is_empty() {
        text.push_str(&format!(
            "\nno longer requested: {}",
            p.plan.dropped.join(", ")
        ));
    }
    if !p.plan.pending.is_empty() {
        text.push_str("\nIt requests:");
    }
    text
}

pub(crate) fn ask_grant(p: &PendingGrant) -> std::io::Result<bool> {
    let mut stderr = std::io::stderr();
    let r = &p.request;
    write!(
        stderr,
        "  {}{}",
        r.name,
        if p.changed { " (scope changed)" } else { "" }
    )?;
    if let Some(reason) = &r.reason {
        write!(stderr, " — {reason}")?;
    }
    let scope = scope_text(r);
    if !scope.is_empty() {
        write!(stderr, "\n      scope: {scope}")?;
    }
    if let Some(file) = &p.approval_required_by {
        write!(stderr, "\n      approval required by {}", file.display())?;
    }
    write!(stderr, "\n  Grant {}? [y/N] ", r.name)?;
    stderr.flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(
        line.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

pub fn audit_plugins(project: &Project, out: &Output) -> Result<(), Failure> {
    let audits = project.audit_plugins()?;
    let ok = audits.iter().all(|a| a.is_ok());
    out.value(&json!({"ok": ok, "plugins": audits}), || {
        if audits.is_empty() {
            return "No plugins installed.".to_owned();
        }
        let mut text = String::new();
        for a in &audits {
            text.push_str(&format!(
                "{} {} [{}] {}\n  trust:     {}{}\n  signature: {}\n  files:     {}\n  granted:   {}\n",
                a.name,
                a.version,
                a.state,
                if a.is_ok() { "ok" } else { "PROBLEM" },
                a.trust,
                a.signer.as_ref().map(|s| format!(" ({s})")).unwrap_or_default(),
                a.signature,
                if a.changed_files.is_empty() {
                    "unchanged since install".to_owned()
                } else {
                    format!(
                        "CHANGED since install: {}",
                        a.changed_files.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                    )
                },
                if a.granted.is_empty() { "nothing".to_owned() } else { a.granted.join(", ") },
            ));
            for w in &a.withheld {
                text.push_str(&format!("  withheld:  {}: {}\n", w.capability, w.reason));
            }
            for v in &a.violations {
                text.push_str(&format!("  policy:    {v}\n"));
            }
        }
        text.trim_end().to_owned()
    });
    if ok { Ok(()) } else { Err(Failure::Reported) }
}

#[derive(Subcommand)]
pub enum GrantsAction {
    /// Withdraw a granted capability.
    Revoke { capability: String },
    /// Grant a requested capability (the policy may still block it).
    Grant { capability: String },
}

pub fn grants(
    project: &Project,
    name: &str,
    action: Option<&GrantsAction>,
    out: &Output,
) -> Result<(), Failure> {
    match action {
        None => {
            let grants = project.grants(name)?;
            let info = project.info(name)?;
            out.value(&serde_json::to_value(&grants).context("rendering")?, || {
                let mut text = format!(
                    "{name} (package {})\n",
                    if grants.package.is_empty() {
                        "unknown"
                    } else {
                        &grants.package
                    }
                );
                for req in &info.manifest.requires.capabilities {
                    let state = if grants.granted.iter().any(|g| same_grant(g, req)) {
                        "granted"
                    } else if grants.refused.contains(&req.name) {
                        "refused"
                    } else {
                        "not granted"
                    };
                    let scope = scope_text(req);
                    text.push_str(&format!(
                        "  {:<18} {state}{}\n",
                        req.name,
                        if scope.is_empty() {
                            String::new()
                        } else {
                            format!("  ({scope})")
                        }
                    ));
                }
                if info.manifest.requires.capabilities.is_empty() {
                    text.push_str("  requests no capabilities\n");
                }
                text.trim_end().to_owned()
            });
        }
        Some(GrantsAction::Revoke { capability }) => {
            let t = project.revoke_grant(name, capability)?;
            grant_transition(out, name, capability, t, "revoked");
        }
        Some(GrantsAction::Grant { capability }) => {
            let t = project.grant(name, capability)?;
            grant_transition(out, name, capability, t, "granted");
        }
    }
    Ok(())
}

fn grant_transition(out: &Output, name: &str, cap: &str, t: Transition, verb: &str) {
    out.value(
        &json!({"plugin": name, "capability": cap, "state": verb, "changed": t == Transition::Changed}),
        || match t {
            Transition::Changed => format!("{name}: {cap} {verb}"),
            Transition::Unchanged => format!("{name}: {cap} was already {verb}; nothing changed"),
        },
    );
}

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Evaluate the installed plugins against the policy files; non-zero exit on violations.
    Check,
    /// Show which policy and allowed-signers files apply.
    Show,
}

pub fn policy(project: &Project, cmd: &PolicyCommand, out: &Output) -> Result<(), Failure> {
    match cmd {
        PolicyCommand::Check => {
            let security = project.security()?;
            let violations = project.policy_check()?;
            let files: Vec<_> = security
                .policy
                .files()
                .iter()
                .map(|f| f.path.clone())
                .collect();
            out.value(
                &json!({"ok": violations.is_empty(), "files": files,
                        "violations": violations.iter().map(|(p, v)| json!({"plugin": p, "violation": v})).collect::<Vec<_>>()}),
                || {
                    if files.is_empty() {
                        return "No policy files apply (none at .trellis/policy.yaml, TRELLIS_POLICY or /etc/trellis/policy.yaml).".to_owned();
                    }
                    let mut text = format!(
                        "Policy files: {}\n",
                        files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ")
                    );
                    if violations.is_empty() {
                        text.push_str("All installed plugins comply.");
                    }
                    for (p, v) in &violations {
                        text.push_str(&format!("{p}: {v}\n"));
                    }
                    text.trim_end().to_owned()
                },
            );
            if violations.is_empty() {
                Ok(())
            } else {
                Err(Failure::Reported)
            }
        }
        PolicyCommand::Show => {
            let security = project.security()?;
            let files: Vec<_> = security
                .policy
                .files()
                .iter()
                .map(|f| json!({"path": f.path, "scope": format!("{:?}", f.scope).to_lowercase()}))
                .collect();
            let signers: Vec<_> = security
                .allowed_signers_files
                .iter()
                .map(|p| json!({"path": p, "exists": p.is_file()}))
                .collect();
            out.value(
                &json!({"policy_files": files, "allowed_signers_files": signers,
                        "ignored_user_signers": security.ignored_user_signers,
                        "minimum_trust": security.policy.minimum_trust().as_str()}),
                || {
                    let mut text = String::from("Policy files (a plugin must satisfy each):\n");
                    if security.policy.files().is_empty() {
                        text.push_str("  none\n");
                    }
                    for f in security.policy.files() {
                        text.push_str(&format!("  {} ({:?})\n", f.path.display(), f.scope));
                    }
                    text.push_str(&format!(
                        "Minimum trust: {}\nAllowed signers files:\n",
                        security.policy.minimum_trust()
                    ));
                    for p in &security.allowed_signers_files {
                        text.push_str(&format!(
                            "  {}{}\n",
                            p.display(),
                            if p.is_file() { "" } else { " (absent)" }
                        ));
                    }
                    if let Some(ignored) = &security.ignored_user_signers {
                        text.push_str(&format!(
                            "  {} (not consulted: an admin policy is in force, so only the admin's lists count)\n",
                            ignored.display()
                        ));
                    }
                    text.trim_end().to_owned()
                },
            );
            Ok(())
        }
    }
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Show audit records, oldest first.
    Log {
        /// Only records about this plugin.
        #[arg(long)]
        plugin: Option<String>,
        /// Only records at or after this time (RFC 3339, e.g. 2026-11-22T10:00:00Z, or a date).
        #[arg(long)]
        since: Option<String>,
    },
    /// Check the hash chain; names the first record that was edited, deleted, inserted or
    /// reordered, and any record torn by a crash.
    Verify,
}

fn parse_since(text: &str) -> Result<chrono::DateTime<chrono::Utc>, Failure> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        && let Some(t) = d.and_hms_opt(0, 0, 0)
    {
        return Ok(t.and_utc());
    }
    Err(Failure::Other(anyhow!(
        "--since {text}: not a time; write RFC 3339 (2026-11-22T10:00:00Z) or a date (2026-11-22)"
    )))
}

pub fn audit(project: &Project, cmd: &AuditCommand, out: &Output) -> Result<(), Failure> {
    let path = project.audit_path();
    match cmd {
        AuditCommand::Log { plugin, since } => {
            let filter = trellis_audit::Filter {
                plugin: plugin.clone(),
                since: since.as_deref().map(parse_since).transpose()?,
                action_prefix: None,
            };
            let records = trellis_audit::read(&path, &filter)?;
            if out.is_json() {
                out.value(&json!({"records": records}), String::new);
                return Ok(());
            }
            if records.is_empty() {
                println!(
                    "No audit records{}.",
                    if plugin.is_some() || since.is_some() {
                        " match"
                    } else {
                        " yet"
                    }
                );
            }
            for r in &records {
                let e = &r.event;
                let mut line = format!(
                    "{:>5}  {}  {:<22} {:<9} {}",
                    r.seq,
                    r.timestamp.format("%Y-%m-%d %H:%M:%S"),
                    e.action,
                    e.outcome,
                    e.plugin.as_deref().unwrap_or("-")
                );
                if let Some(c) = &e.capability {
                    line.push_str(&format!("  {c}"));
                }
                if let Some(a) = &e.attempted {
                    line.push_str(&format!("  {a}"));
                }
                if !e.details.is_empty() {
                    line.push_str(&format!(
                        "  {}",
                        serde_json::Value::Object(e.details.clone())
                    ));
                }
                println!("{line}");
            }
            Ok(())
        }
        AuditCommand::Verify => {
            let report = trellis_audit::verify(&path)?;
            let ok = report.problem.is_none();
            out.value(&serde_json::to_value(&report).context("rendering")?, || {
                let mut text = match &report.problem {
                    None => format!(
                        "{}: {} record(s), chain intact",
                        path.display(),
                        report.records
                    ),
                    Some(p) => format!("{}: TAMPERED OR DAMAGED: {}", path.display(), p.message),
                };
                for w in &report.warnings {
                    text.push_str(&format!("\nwarning: {w}"));
                }
                text
            });
            if ok { Ok(()) } else { Err(Failure::Reported) }
        }
    }
}

#[derive(Subcommand)]
pub enum TelemetryCommand {
    /// Consent to sending usage records (plugin, version, command, success, duration).
    Enable {
        /// Where batches are sent (default: TRELLIS_TELEMETRY_ENDPOINT).
        #[arg(long)]
        endpoint: Option<String>,
    },
    /// Withdraw consent; unsent records are deleted.
    Disable,
    /// Show whether telemetry is on, where it goes, and how many records wait.
    Status,
    /// Send the waiting records now.
    Flush,
}

pub fn telemetry_handle() -> Result<trellis_telemetry::Telemetry, Failure> {
    let dir = config_dir()?;
    let mut t = trellis_telemetry::Telemetry::open(&dir, &dir.join("telemetry"));
    if let Some(endpoint) = env("TRELLIS_TELEMETRY_ENDPOINT").filter(|e| !e.is_empty()) {
        t = t.with_endpoint_override(endpoint);
    }
    Ok(t)
}

pub fn telemetry(cmd: &TelemetryCommand, out: &Output) -> Result<(), Failure> {
    let t = telemetry_handle()?;
    match cmd {
        TelemetryCommand::Enable { endpoint } => t.enable(endpoint.clone())?,
        TelemetryCommand::Disable => t.disable()?,
        TelemetryCommand::Flush => {
            let report = t.flush()?;
            out.value(
                &json!({"sent": report.sent, "pending": report.pending}),
                || {
                    format!(
                        "Sent {} record(s); {} waiting.",
                        report.sent, report.pending
                    )
                },
            );
            return Ok(());
        }
        TelemetryCommand::Status => {}
    }
    let status = t.status()?;
    out.value(&serde_json::to_value(&status).context("rendering")?, || {
        if status.enabled {
            format!(
                "Telemetry is on: plugin name, version, command, success and duration of each plugin command are recorded{}; {} record(s) waiting.\nNever recorded: file contents, source, credentials, identity. Turn it off with `trellis telemetry disable`.",
                match &status.endpoint {
                    Some(e) => format!(" and sent to {e}"),
                    None => " locally (no endpoint set, nothing is sent)".to_owned(),
                },
                status.pending
            )
        } else {
            "Telemetry is off: nothing is recorded or sent. Turn it on with `trellis telemetry enable --endpoint URL`.".to_owned()
        }
    });
    Ok(())
}

fn write_file_atomic(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let mut file = atomic_write_file::AtomicWriteFile::open(path)?;
        file.write_all(bytes)?;
        file.commit()
    };
    write().with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
