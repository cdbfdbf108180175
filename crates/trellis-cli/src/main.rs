//! `trellis`: the command-line tool a team uses to manage a project's plugins.
//!
//! This crate only parses arguments, calls the library crates and renders their results and
//! errors for people (or as JSON with `--json`). Behaviour lives in the libraries.

// Failures carry library errors whole so they can be rendered with hints; they are built once,
// on the way out.
#![allow(clippy::result_large_err)]

mod registry;
mod render;
mod run;
mod scaffold;
mod trust;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::json;
use trellis_core::TopicPattern;
use trellis_project::{GrantChoices, Project, Transition};

use render::{Failure, Output};

#[derive(Parser)]
#[command(
    name = "trellis",
    version,
    about = "Plugins for your project: install, enable, configure, run.",
    disable_help_subcommand = true
)]
struct Cli {
    /// The project directory (default: the nearest directory upwards with a `.trellis/`, else
    /// the current directory).
    #[arg(long, global = true, value_name = "DIR", env = "TRELLIS_PROJECT")]
    project: Option<PathBuf>,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create, validate, install and manage plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Read the project's event log.
    #[command(subcommand)]
    Events(EventsCommand),
    /// Check installed plugins against the admin's and the project's policy.
    #[command(subcommand)]
    Policy(trust::PolicyCommand),
    /// Read and verify the tamper-evident audit log (.trellis/audit.jsonl).
    #[command(subcommand)]
    Audit(trust::AuditCommand),
    /// Run a registry: kept as a directory (init, add-key, publish, yank, refresh,
    /// rotate-root) or served over HTTP (serve, token).
    #[command(subcommand)]
    Registry(registry::RegistryCommand),
    /// Opt in to or out of usage telemetry (off until you enable it).
    #[command(subcommand)]
    Telemetry(trust::TelemetryCommand),
    /// Show the help of trellis, of one of its commands, or of an enabled plugin's command
    /// (its usage, arguments, options, defaults, and which plugin provides it).
    Help {
        #[arg(value_name = "COMMAND")]
        words: Vec<String>,
    },
    /// Run a command provided by an enabled plugin: `trellis <command> [args...]`, or
    /// `trellis <plugin>:<command>` when two plugins provide the same name.
    #[command(external_subcommand)]
    External(Vec<String>),
}

#[derive(Clone, Copy, ValueEnum)]
enum RuntimeArg {
    /// YAML and templates, no code.
    Declarative,
    /// A WebAssembly component in Rust (the guest SDK).
    Wasm,
    /// A sandboxed process in Python, with the SDK.
    Python,
    /// A sandboxed process that speaks the protocol itself (any language; a Python script).
    Process,
}

impl From<RuntimeArg> for scaffold::Template {
    fn from(r: RuntimeArg) -> Self {
        match r {
            RuntimeArg::Declarative => scaffold::Template::Declarative,
            RuntimeArg::Wasm => scaffold::Template::Wasm,
            RuntimeArg::Python => scaffold::Template::Python,
            RuntimeArg::Process => scaffold::Template::Process,
        }
    }
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Create a new plugin directory.
    Init {
        name: String,
        #[arg(long, value_enum, default_value = "declarative")]
        runtime: RuntimeArg,
        /// Where to create it (default: ./<name without scope>).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Check a plugin's manifest and report every problem at once.
    Validate {
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Package a plugin directory into a reproducible archive (`<name>-<version>.tar.gz`).
    Build {
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Where to write the archive (default: DIR/dist).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Make an Ed25519 signing key (OpenSSH format; encrypted when
    /// TRELLIS_SIGNING_KEY_PASSPHRASE is set).
    Keygen {
        /// Who signs with it, e.g. an e-mail address; users list it in allowed_signers.
        #[arg(long)]
        principal: String,
        /// Where to write the private key (default: ~/.config/trellis/keys/trellis_ed25519).
        #[arg(long, value_name = "PATH")]
        out: Option<PathBuf>,
    },
    /// Sign a package archive (writes ARCHIVE.sig, an SSH signature).
    Sign {
        archive: PathBuf,
        /// The private key (default: TRELLIS_SIGNING_KEY, the trellis key, ~/.ssh/id_ed25519).
        #[arg(long, value_name = "PATH")]
        key: Option<PathBuf>,
    },
    /// Countersign a package as a certifier (writes ARCHIVE.cert.sig).
    Certify {
        archive: PathBuf,
        #[arg(long, value_name = "PATH")]
        key: Option<PathBuf>,
    },
    /// Check a package's signature and show its signer, package hash and trust level.
    Verify { archive: PathBuf },
    /// Install a plugin from a package archive or a local directory (it starts disabled).
    /// Install a package (`.tar.gz` with its `.sig` beside it), a plugin directory, a Python
    /// plugin wheel (`.whl`), or plugins from the configured registries by name (`NAME`, `NAME@1.2.0`, `NAME@^1.2`),
    /// with their dependencies.
    Install {
        #[arg(required = true, value_name = "SOURCE|NAME[@REQ]")]
        sources: Vec<String>,
        /// Replace an installed plugin of the same name (an update), keeping its state.
        #[arg(long)]
        force: bool,
        /// Grant every requested capability that the policy does not require approval for.
        #[arg(long)]
        yes: bool,
        /// Grant this capability (repeatable).
        #[arg(long, value_name = "CAP")]
        grant: Vec<String>,
        /// Refuse this capability (repeatable).
        #[arg(long, value_name = "CAP")]
        deny: Vec<String>,
        /// Install exactly what .trellis/trellis.lock pins, or fail.
        #[arg(long)]
        locked: bool,
        /// Resolve from this machine's cached copy of the registries, without checking that
        /// they are current.
        #[arg(long)]
        offline: bool,
    },
    /// Update plugins installed from registries: shows the changes, migrates configuration,
    /// keeps a backup, and rolls back if the new version cannot be enabled.
    Update {
        /// One plugin (default: every plugin installed from a registry).
        name: Option<String>,
        /// Allow new major versions.
        #[arg(long)]
        major: bool,
        /// Grant every new capability the policy does not require approval for.
        #[arg(long)]
        yes: bool,
        /// Grant this capability (repeatable).
        #[arg(long, value_name = "CAP")]
        grant: Vec<String>,
        /// Refuse this capability (repeatable).
        #[arg(long, value_name = "CAP")]
        deny: Vec<String>,
        /// Use this machine's cached copy of the registries.
        #[arg(long)]
        offline: bool,
    },
    /// Publish a signed package to a registry server: the quality gates run here first.
    Publish {
        /// The package (`.tar.gz`, its `.sig` beside it).
        archive: PathBuf,
        /// The configured registry to publish to (default: the first).
        #[arg(long)]
        registry: Option<String>,
    },
    /// Configure the registries this project installs from.
    #[command(subcommand)]
    Registry(registry::PluginRegistryCommand),
    /// Search the configured registries (name, description, keywords).
    Search {
        #[arg(default_value = "")]
        query: String,
        #[arg(long)]
        category: Option<String>,
        /// Only plugins at this trust level or above.
        #[arg(long, value_parser = parse_trust)]
        trust: Option<trellis_trust::TrustLevel>,
        #[arg(long)]
        offline: bool,
    },
    /// List the categories of the configured registries with their plugin counts.
    Browse {
        #[arg(long)]
        offline: bool,
    },
    /// Re-check every installed plugin: trust, signature, changed files, grants, policy.
    Audit,
    /// Show or change the capabilities granted to a plugin.
    Grants {
        name: String,
        #[command(subcommand)]
        action: Option<trust::GrantsAction>,
    },
    /// List installed plugins.
    List,
    /// Show everything about one installed plugin.
    Info { name: String },
    /// Enable an installed plugin.
    Enable {
        name: String,
        /// Keep both plugins when they provide the same name; call them as `<plugin>:<name>`.
        #[arg(long)]
        allow_conflicts: bool,
    },
    /// Disable a plugin.
    Disable {
        name: String,
        /// Disable even if enabled plugins require it (they are marked failed).
        #[arg(long)]
        force: bool,
    },
    /// Remove an installed plugin.
    Remove {
        name: String,
        /// Remove even if enabled plugins require it (they are marked failed).
        #[arg(long)]
        force: bool,
        /// Also delete its configuration from .trellis/config.yaml.
        #[arg(long)]
        purge: bool,
    },
    /// Read or change a plugin's configuration.
    Config(ConfigArgs),
    /// Start the enabled plugins as a host would and report any that fail.
    Check,
    /// Calls, errors, denials, durations and peak memory of code plugins, over every run.
    Stats { name: Option<String> },
}

#[derive(Args)]
struct ConfigArgs {
    name: String,
    #[command(subcommand)]
    action: Option<ConfigAction>,
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Show the effective configuration (defaults applied), or one key.
    Get { key: Option<String> },
    /// Set a key; the value is read as YAML (`5`, `true`, `[a, b]`), `${VAR}` stays a reference.
    Set {
        key: String,
        #[arg(allow_hyphen_values = true)]
        value: String,
    },
    /// Remove a key so that its default applies again.
    Unset { key: String },
    /// Check the configuration against the plugin's schema.
    Validate,
}

#[derive(Subcommand)]
enum EventsCommand {
    /// Show the latest events, optionally only those matching a topic pattern.
    Tail {
        /// `*` matches one segment, `**` any number: `workflow.**`, `*.completed`, `plugin.*`.
        #[arg(long)]
        topic: Option<String>,
        /// How many of the latest events to show.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: usize,
        /// Keep waiting for new events.
        #[arg(short, long)]
        follow: bool,
    },
}

fn main() -> ExitCode {
    // This binary is also the sandbox launcher of process plugins: started as one, it runs the
    // sandbox and exits here, before any thread exists.
    trellis_sandbox::run_launcher_if_requested();
    // Warnings from the libraries (an audit record that could not be written, a lockfile that
    // could not be rewritten) reach the user on stderr; TRELLIS_LOG=debug shows more.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TRELLIS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false)
        .init();
    let cli = Cli::parse();
    let out = Output::new(cli.json);
    match dispatch(&cli, &out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            out.failure(&failure);
            ExitCode::FAILURE
        }
    }
}

fn parse_trust(text: &str) -> Result<trellis_trust::TrustLevel, String> {
    trellis_trust::TrustLevel::parse(text)
        .ok_or_else(|| "one of unsigned, self-signed, verified, certified".to_owned())
}

fn project(cli: &Cli) -> Result<Project, Failure> {
    let project = match &cli.project {
        Some(dir) => Project::open(dir),
        None => {
            Project::discover(&std::env::current_dir().context("reading the current directory")?)
        }
    };
    // Installs and updates start a process plugin's code once to compare it with its manifest.
    let cache = project
        .cache_dir()
        .unwrap_or_else(|| std::env::temp_dir().join("trellis-cache"));
    Ok(
        project.with_code_check(std::sync::Arc::new(move |dir, manifest| {
            // Only a difference refuses the install: a plugin that does not start here (no
            // interpreter yet, a timeout) is reported when it starts, as before.
            match trellis_host::check_code(
                dir,
                manifest,
                cache.clone(),
                trellis_process::Launcher::CurrentExe,
            ) {
                Err(e @ trellis_process::ProcessError::Mismatch { .. }) => {
                    Err((e.kind(), e.to_string()))
                }
                _ => Ok(()),
            }
        })),
    )
}

fn dispatch(cli: &Cli, out: &Output) -> Result<(), Failure> {
    match &cli.command {
        Command::Plugin(cmd) => plugin(cli, cmd, out),
        Command::Events(EventsCommand::Tail {
            topic,
            lines,
            follow,
        }) => tail(&project(cli)?, topic.as_deref(), *lines, *follow, out),
        Command::Policy(cmd) => trust::policy(&project(cli)?, cmd, out),
        Command::Registry(cmd) => registry::registry(cmd, out),
        Command::Audit(cmd) => trust::audit(&project(cli)?, cmd, out),
        Command::Telemetry(cmd) => trust::telemetry(cmd, out),
        Command::Help { words } => help(cli, words, out),
        Command::External(args) => {
            let (name, rest) = args.split_first().context("no command given")?;
            if run::wants_help(rest) {
                return run::command_help(&project(cli)?, name, out);
            }
            run::run_command(project(cli)?, name, rest, out)
        }
    }
}

/// `trellis help [COMMAND...]`: trellis's own commands first, then the plugins'.
fn help(cli: &Cli, words: &[String], out: &Output) -> Result<(), Failure> {
    use clap::CommandFactory;
    let mut command = Cli::command();
    let mut own = true;
    for word in words {
        match command.find_subcommand(word) {
            Some(sub) => command = sub.clone(),
            None if words.len() == 1 => {
                own = false;
                break;
            }
            None => {
                return Err(Failure::Other(anyhow::anyhow!(
                    "`{}` is not a trellis command",
                    words.join(" ")
                )));
            }
        }
    }
    if !own {
        return run::command_help(&project(cli)?, &words[0], out);
    }
    let name = std::iter::once("trellis".to_owned())
        .chain(words.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ");
    let text = command
        .bin_name(name.clone())
        .render_long_help()
        .to_string();
    out.value(&json!({"command": name, "help": text}), || {
        text.trim_end().to_owned()
    });
    Ok(())
}

fn plugin(cli: &Cli, cmd: &PluginCommand, out: &Output) -> Result<(), Failure> {
    match cmd {
        PluginCommand::Init { name, runtime, dir } => {
            let short = name.rsplit('/').next().unwrap_or(name);
            let dir = dir.clone().unwrap_or_else(|| PathBuf::from(short));
            let created = scaffold::init(name, (*runtime).into(), &dir)?;
            out.value(
                &json!({"plugin": name, "dir": created.dir, "files": created.files}),
                || {
                    let mut text =
                        format!("Created plugin `{name}` in {}\n", created.dir.display());
                    for f in &created.files {
                        text.push_str(&format!("  {}\n", f.display()));
                    }
                    text.push_str(&format!(
                        "Next: trellis plugin validate {0} && trellis plugin install {0}",
                        shell_path(&created.dir)
                    ));
                    text
                },
            );
            Ok(())
        }
        PluginCommand::Validate { dir } => {
            let loaded = trellis_manifest::load_dir(dir)?;
            let m = &loaded.manifest;
            // A process plugin's code states what it implements: start it once to compare.
            let cache = project(cli)?
                .cache_dir()
                .unwrap_or_else(|| std::env::temp_dir().join("trellis-cache"));
            let code =
                trellis_host::check_code(dir, m, cache, trellis_process::Launcher::CurrentExe)
                    .map_err(trellis_host::HostError::from)?;
            let (checked, note) = match &code {
                trellis_host::CodeCheck::Agrees => {
                    (true, "its code implements what it declares".to_owned())
                }
                trellis_host::CodeCheck::NotChecked(why) => {
                    (false, format!("code not checked: {why}"))
                }
            };
            out.value(
                &json!({"valid": true, "file": loaded.file, "plugin": m.metadata.name, "version": m.metadata.version.to_string(), "code_checked": checked, "code": note}),
                || format!("{}: valid ({} {})\n  {note}", loaded.file.display(), m.metadata.name, m.metadata.version),
            );
            Ok(())
        }
        PluginCommand::Build { dir, out: out_dir } => trust::build(dir, out_dir.as_deref(), out),
        PluginCommand::Keygen {
            principal,
            out: path,
        } => trust::keygen(path.as_deref(), principal, out),
        PluginCommand::Sign { archive, key } => trust::sign(archive, key.as_deref(), false, out),
        PluginCommand::Certify { archive, key } => trust::sign(archive, key.as_deref(), true, out),
        PluginCommand::Verify { archive } => trust::verify(&project(cli)?, archive, out),
        PluginCommand::Install {
            sources,
            force,
            yes,
            grant,
            deny,
            locked,
            offline,
        } => {
            let choices = GrantChoices {
                yes: *yes,
                grant: grant.clone(),
                deny: deny.clone(),
            };
            // What looks like a path is a package or a directory; a bare word names a plugin in
            // the registries, unless none is configured and a directory of that name exists
            // (write `./notes` to mean the directory when registries are configured).
            let project = project(cli)?;
            let has_registries = !project.registries()?.is_empty();
            let is_path = |s: &str| {
                let looks_like_path = (s.contains('/') && !s.starts_with('@'))
                    || s.contains('\\')
                    || s.starts_with('.')
                    || s.ends_with(".tar.gz")
                    || Path::new(s).is_file();
                looks_like_path || (!has_registries && Path::new(s).is_dir())
            };
            match sources.as_slice() {
                [one] if is_path(one) => trust::install(
                    &project,
                    trust::InstallArgs {
                        source: Path::new(one),
                        force: *force,
                        choices,
                    },
                    out,
                ),
                many => {
                    if let Some(path) = many.iter().find(|s| is_path(s)) {
                        return Err(anyhow::anyhow!(
                            "`{path}` is a path: install packages and directories one at a time, and registry plugins by name"
                        )
                        .into());
                    }
                    registry::install(
                        &project,
                        registry::RegistryInstallArgs {
                            specs: many,
                            force: *force,
                            locked: *locked,
                            offline: *offline,
                            choices,
                        },
                        out,
                    )
                }
            }
        }
        PluginCommand::Registry(cmd) => registry::plugin_registry(&project(cli)?, cmd, out),
        PluginCommand::Publish { archive, registry } => {
            registry::publish(&project(cli)?, archive, registry.as_deref(), out)
        }
        PluginCommand::Update {
            name,
            major,
            yes,
            grant,
            deny,
            offline,
        } => registry::update(
            &project(cli)?,
            registry::UpdateArgs {
                name: name.as_deref(),
                major: *major,
                offline: *offline,
                choices: GrantChoices {
                    yes: *yes,
                    grant: grant.clone(),
                    deny: deny.clone(),
                },
            },
            out,
        ),
        PluginCommand::Search {
            query,
            category,
            trust,
            offline,
        } => registry::search(
            &project(cli)?,
            registry::SearchArgs {
                query,
                category: category.as_deref(),
                trust: *trust,
                offline: *offline,
            },
            out,
        ),
        PluginCommand::Browse { offline } => registry::browse(&project(cli)?, *offline, out),
        PluginCommand::Audit => trust::audit_plugins(&project(cli)?, out),
        PluginCommand::Grants { name, action } => {
            trust::grants(&project(cli)?, name, action.as_ref(), out)
        }
        PluginCommand::List => {
            let project = project(cli)?;
            let plugins = project.list()?;
            out.value(&json!({"plugins": plugins}), || {
                render::plugin_table(&plugins)
            });
            Ok(())
        }
        PluginCommand::Info { name } => {
            let project = project(cli)?;
            let info = match project.info(name) {
                Err(trellis_project::ProjectError::NotInstalled { .. })
                    if !project.registries()?.is_empty() =>
                {
                    return registry::registry_info(&project, name, false, out);
                }
                other => other?,
            };
            let sandbox = render::sandbox_for(&info.manifest);
            let mut value = serde_json::to_value(&info).context("rendering")?;
            if let Some(support) = &sandbox {
                value["sandbox"] = serde_json::json!({
                    "layers": support.available,
                    "missing": support.missing.iter().map(|(l, why)| serde_json::json!({"layer": l, "reason": why})).collect::<Vec<_>>(),
                });
            }
            value["commands"] = info
                .manifest
                .provides
                .commands
                .iter()
                .map(|c| {
                    serde_json::json!({
                        "name": c.name,
                        "usage": trellis_host::command_line::usage(c),
                        "description": c.description,
                    })
                })
                .collect();
            out.value(&value, || render::plugin_info(&info, sandbox.as_ref()));
            Ok(())
        }
        PluginCommand::Enable {
            name,
            allow_conflicts,
        } => {
            let t = project(cli)?.enable(name, *allow_conflicts)?;
            transition(out, name, t, "enabled");
            Ok(())
        }
        PluginCommand::Disable { name, force } => {
            let t = project(cli)?.disable(name, *force)?;
            transition(out, name, t, "disabled");
            Ok(())
        }
        PluginCommand::Remove { name, force, purge } => {
            let t = project(cli)?.remove(name, *force, *purge)?;
            transition(out, name, t, "removed");
            Ok(())
        }
        PluginCommand::Config(args) => config(&project(cli)?, args, out),
        PluginCommand::Stats { name } => {
            let project = project(cli)?;
            let all = trellis_host::stats::read(&trellis_host::stats_path(&project));
            if let Some(n) = name
                && !all.contains_key(n)
            {
                project.info(n)?;
            }
            let views: Vec<_> = all
                .iter()
                .filter(|(p, _)| name.as_ref().is_none_or(|n| n == *p))
                .map(|(p, s)| s.view(p))
                .collect();
            out.value(&json!({"plugins": views}), || render::stats_table(&views));
            Ok(())
        }
        PluginCommand::Check => {
            // Every plugin is really started on its runtime (a component that does not compile
            // fails here), not only checked on disk.
            let project = project(cli)?;
            let host = trellis_host::Host::start_all(project.clone())?;
            let started = host.started();
            let loaded: Vec<String> = project
                .load_order()?
                .into_iter()
                .filter(|n| started.contains(n))
                .collect();
            let failures = host.failed();
            let failed: Vec<_> = failures
                .iter()
                .map(|(n, r)| json!({"plugin": n, "reason": r}))
                .collect();
            out.value(&json!({"loaded": loaded, "failed": failed}), || {
                let mut text = format!(
                    "Loaded {} plugin(s) in order: {}",
                    loaded.len(),
                    loaded.join(", ")
                );
                for (n, r) in &failures {
                    text.push_str(&format!("\nfailed: {n}: {r}"));
                }
                text
            });
            if failures.is_empty() {
                Ok(())
            } else {
                Err(Failure::Reported)
            }
        }
    }
}

fn transition(out: &Output, name: &str, t: Transition, verb: &str) {
    out.value(
        &json!({"plugin": name, "state": verb, "changed": t == Transition::Changed}),
        || match t {
            Transition::Changed => format!("{name} {verb}"),
            Transition::Unchanged => format!("{name} was already {verb}; nothing changed"),
        },
    );
}

fn config(project: &Project, args: &ConfigArgs, out: &Output) -> Result<(), Failure> {
    let name = &args.name;
    match args
        .action
        .as_ref()
        .unwrap_or(&ConfigAction::Get { key: None })
    {
        ConfigAction::Get { key } => {
            let value = project.config_get(name, key.as_deref())?;
            out.value(&value, || render::yaml(&value));
        }
        ConfigAction::Set { key, value } => {
            let missing = project.config_set(name, key, value)?;
            out.value(&json!({"plugin": name, "key": key, "unset_env": missing}), || {
                let mut text = format!("{name}: {key} set");
                for var in &missing {
                    text.push_str(&format!("\nwarning: ${{{var}}} is not set in this environment; set it before the plugin runs"));
                }
                text
            });
        }
        ConfigAction::Unset { key } => {
            let t = project.config_unset(name, key)?;
            out.value(
                &json!({"plugin": name, "key": key, "changed": t == Transition::Changed}),
                || match t {
                    Transition::Changed => format!("{name}: {key} unset (its default applies)"),
                    Transition::Unchanged => format!("{name}: {key} was not set; nothing changed"),
                },
            );
        }
        ConfigAction::Validate => {
            let report = project.config_validate(name)?;
            out.value(&serde_json::to_value(&report).context("rendering")?, || {
                if report.is_ok() {
                    return format!("{name}: configuration is valid");
                }
                let mut text = format!("{name}: configuration has problems");
                for v in &report.violations {
                    text.push_str(&format!(
                        "\n  - {}: {}",
                        if v.field.is_empty() {
                            "(root)"
                        } else {
                            &v.field
                        },
                        v.message
                    ));
                }
                for var in &report.missing_env {
                    text.push_str(&format!(
                        "\n  - ${{{var}}} is referenced but not set in this environment"
                    ));
                }
                for var in &report.not_granted {
                    text.push_str(&format!(
                        "\n  - ${{{var}}} is never expanded: the plugin holds no `environment` grant naming {var}; add {var} to the `variables` of its `environment` capability in plugin.yaml and grant it"
                    ));
                }
                text
            });
            if !report.is_ok() {
                return Err(Failure::Reported);
            }
        }
    }
    Ok(())
}

fn tail(
    project: &Project,
    topic: Option<&str>,
    lines: usize,
    follow: bool,
    out: &Output,
) -> Result<(), Failure> {
    let pattern = topic.map(TopicPattern::parse).transpose()?;
    let log = trellis_core::EventLog::new(project.trellis_dir().join("events"));
    let events = log.read(pattern.as_ref())?;
    let start = events.len().saturating_sub(lines);
    for event in &events[start..] {
        out.event(event);
    }
    if !follow {
        return Ok(());
    }
    let mut offsets: std::collections::BTreeMap<PathBuf, u64> = std::collections::BTreeMap::new();
    for file in log.files()? {
        let len = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
        offsets.insert(file, len);
    }
    loop {
        std::thread::sleep(Duration::from_millis(250));
        for file in log.files()? {
            let offset = offsets.get(&file).copied().unwrap_or(0);
            let mut fresh = Vec::new();
            let next = log.read_from(&file, offset, pattern.as_ref(), &mut fresh)?;
            offsets.insert(file, next);
            for event in &fresh {
                out.event(event);
            }
        }
        let _ = std::io::stdout().flush();
    }
}

/// A path as the user would type it for `install`: relative paths get a `./` so they can never
/// be mistaken for a plugin name.
fn shell_path(p: &Path) -> String {
    let mut s = p.display().to_string();
    if p.is_relative() && !s.starts_with('.') {
        s = format!("./{s}");
    }
    if s.contains(' ') { format!("'{s}'") } else { s }
}
