//! The assembled plugin host: a project's enabled plugins, started on their runtimes, behind
//! one hook registry and one event bus.
//!
//! `trellis-core` knows hooks and events, `trellis-project` knows what is installed and
//! enabled, the runtimes (`trellis-wasm`, `trellis-process`, and the declarative one here)
//! know how to run a plugin. This crate is where they meet: the CLI, or any program that wants a project's
//! plugins, starts a [`Host`] with one call and runs commands and hooks without caring which
//! runtime a plugin uses. Runtimes plug in through the [`Runtime`] and [`PluginCode`] traits.
//!
//! Plugins start when first needed: a command starts the plugin that provides it, a hook call
//! the plugins that implement it, an event the plugins subscribed to it. A plugin that fails to
//! start is marked `failed` with the reason and every other plugin still starts; a runtime
//! that cannot start at all fails its own plugins only.
//!
//! It knows nothing of the CLI's argument parsing or rendering.

// Errors carry the project error whole (with its hint) and are built once, on the way out.
#![allow(clippy::result_large_err)]

mod code_check;
pub mod command_line;
mod declarative;
mod migrate;
mod process;
mod runtime;
pub mod stats;
mod wasm;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use serde_json::{Map, Value, json};
use trellis_audit::AuditEvent;
use trellis_core::{HookError, Outcome, PluginManager, RemoteHookEntry, RemoteHooks};
use trellis_project::{LoadedPlugin, Project, ProjectError};
use trellis_wasm::{EffectiveLimits, RuntimeOptions, WasmError};

pub use code_check::{CodeCheck, check_code};
pub use migrate::{MigrationError, run_config_migration};
pub use process::process_options;
pub use runtime::{PluginCode, Runtime, Runtimes};
pub use trellis_process::{Launcher, ProcessError};

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error(transparent)]
    Project(#[from] ProjectError),
    #[error(transparent)]
    Wasm(#[from] WasmError),
    #[error(transparent)]
    Process(#[from] trellis_process::ProcessError),
    #[error("plugin `{plugin}` could not be started: {reason}")]
    NotLoaded { plugin: String, reason: String },
    #[error("command `{command}` of `{plugin}` has no `template` to render")]
    NoTemplate { plugin: String, command: String },
    #[error("{path}: {reason}")]
    Template { path: String, reason: String },
    #[error(transparent)]
    Event(#[from] trellis_core::EventError),
    /// The command line does not fit what the command declares; the plugin did not run.
    #[error(transparent)]
    Usage(#[from] command_line::UsageError),
}

impl HostError {
    /// The stable name of this kind of failure, for scripts (`--json` output).
    pub fn kind(&self) -> &'static str {
        match self {
            HostError::Project(e) => e.kind(),
            HostError::Wasm(e) => e.kind(),
            HostError::Process(e) => e.kind(),
            HostError::NotLoaded { .. } => "not_loaded",
            HostError::NoTemplate { .. } => "no_template",
            HostError::Template { .. } => "template",
            HostError::Event(_) => "event",
            HostError::Usage(_) => "usage",
        }
    }

    /// What the user can do about it, when there is something to say.
    pub fn hint(&self) -> Option<String> {
        match self {
            HostError::Project(e) => e.hint(),
            HostError::Wasm(e) => e.hint(),
            HostError::Process(e) => e.hint(),
            HostError::NotLoaded { plugin, .. } => Some(format!(
                "fix the cause, then `trellis plugin enable {plugin}`; `trellis plugin list` shows every plugin's state"
            )),
            HostError::NoTemplate { .. } => Some(
                "give the command a `template` (a file in the plugin) in plugin.yaml".to_owned(),
            ),
            HostError::Template { .. } | HostError::Event(_) => None,
            HostError::Usage(e) => Some(e.hint()),
        }
    }
}

/// What a command returned, and which plugin ran it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CommandOutput {
    pub plugin: String,
    pub version: String,
    pub command: String,
    /// Declarative commands render text; code plugins return JSON.
    pub output: Value,
    pub duration_ms: f64,
}

/// One finished command, as observers registered with [`Host::on_command`] see it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CommandRecord {
    pub plugin: String,
    pub version: String,
    pub command: String,
    pub success: bool,
    pub duration_ms: u64,
}

type CommandObserver = Box<dyn Fn(&CommandRecord) + Send + Sync>;

/// One enabled plugin, started the first time something needs it.
struct Slot {
    plugin: LoadedPlugin,
    runtime: Result<Arc<dyn Runtime>, String>,
    started: OnceLock<Result<Arc<dyn PluginCode>, String>>,
    project: Project,
    failed: Arc<Mutex<Vec<(String, String)>>>,
}

impl Slot {
    /// The started plugin; on the first call, starts it (a failure marks it `failed` on disk and
    /// is remembered for this host's lifetime).
    fn code(&self) -> Result<Arc<dyn PluginCode>, String> {
        self.started
            .get_or_init(|| {
                let started = self
                    .runtime
                    .clone()
                    .and_then(|r| r.start(&self.project, &self.plugin));
                if let Err(reason) = &started {
                    tracing::warn!(plugin = %self.plugin.name, reason = %reason, "plugin failed to start");
                    if let Err(e) = self.project.mark_failed(&self.plugin.name, reason) {
                        tracing::warn!(plugin = %self.plugin.name, error = %e, "cannot record the failure");
                    }
                    self.failed
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((self.plugin.name.clone(), reason.clone()));
                }
                started
            })
            .clone()
    }

    fn started(&self) -> Option<&Arc<dyn PluginCode>> {
        self.started.get().and_then(|r| r.as_ref().ok())
    }
}

/// The hooks of a plugin not started yet: the first call starts it. A plugin that cannot start
/// takes part in no call (its implementations answer pluggy's `None`), as if it had not been
/// registered, and the failure is recorded.
struct LazyHooks(Arc<Slot>);

impl RemoteHooks for LazyHooks {
    fn call_hook(&self, hook: &str, args_json: &str) -> Result<Option<Value>, HookError> {
        match self.0.code() {
            Ok(code) => code.call_hook(hook, args_json),
            Err(_) => Ok(None),
        }
    }

    fn wrap_before(&self, hook: &str, args: &Value) -> Result<Value, HookError> {
        match self.0.code() {
            Ok(code) => code.wrap_before(hook, args),
            Err(_) => Ok(Value::Null),
        }
    }

    fn wrap_after(&self, hook: &str, args: Value, state: Value, outcome: Outcome) -> Outcome {
        match self.0.code() {
            Ok(code) => code.wrap_after(hook, args, state, outcome),
            Err(_) => outcome,
        }
    }

    /// A process plugin's call shares nothing with other plugins' calls.
    fn may_run_concurrently(&self) -> bool {
        self.0.plugin.manifest.runtime.kind == trellis_manifest::RuntimeKind::Process
    }
}

/// `provides.hooks` entries as the hook registry takes them. Entries that name an event topic
/// or pattern (`workflow.implement.completed`, `backlog.task.*`) are also subscribed to the bus.
fn hook_entries(plugin: &LoadedPlugin) -> Vec<RemoteHookEntry> {
    plugin
        .manifest
        .provides
        .hooks
        .iter()
        .map(|h| RemoteHookEntry {
            hook: h.hook.clone(),
            wrapper: h.wrapper,
            tryfirst: h.tryfirst,
            trylast: h.trylast,
            optional: h.optional,
            before: h.before.clone(),
            after: h.after.clone(),
        })
        .collect()
}

fn is_event_pattern(hook: &str) -> bool {
    hook.contains('.') || hook.contains('*')
}

pub struct Host {
    project: Project,
    plugins: BTreeMap<String, Arc<Slot>>,
    hooks: PluginManager,
    failed: Arc<Mutex<Vec<(String, String)>>>,
    observers: Vec<CommandObserver>,
}

impl Host {
    /// Prepares every enabled plugin of `project` in load order, on the standard runtimes. A
    /// plugin starts when one of its commands, hooks or events is first needed, so a command
    /// costs what its own plugin costs, however many others are enabled.
    pub fn start(project: Project) -> Result<Host, HostError> {
        Host::with_runtimes(project, Runtimes::standard())
    }

    /// [`Host::start`], then starts every plugin now: for callers that want to know which
    /// plugins cannot start (an update rolls back a version that does not), or to pay the
    /// start-up cost up front.
    pub fn start_all(project: Project) -> Result<Host, HostError> {
        let host = Host::start(project)?;
        for slot in host.plugins.values() {
            let _ = slot.code();
        }
        Ok(host)
    }

    /// [`Host::start`] with a chosen set of runtimes.
    pub fn with_runtimes(project: Project, runtimes: Runtimes) -> Result<Host, HostError> {
        let report = project.load()?;
        let failed = Arc::new(Mutex::new(report.failed));
        let hooks = PluginManager::new();
        let mut plugins = BTreeMap::new();
        for plugin in report.loaded {
            let name = plugin.name.clone();
            let entries = hook_entries(&plugin);
            let slot = Arc::new(Slot {
                runtime: runtimes.get(plugin.manifest.runtime.kind),
                plugin,
                started: OnceLock::new(),
                project: project.clone(),
                failed: Arc::clone(&failed),
            });
            let registered = hooks
                .register(trellis_core::remote_registration(
                    &name,
                    &entries,
                    Arc::new(LazyHooks(Arc::clone(&slot))),
                ))
                .map(drop)
                .map_err(|e| e.to_string())
                .and_then(|()| subscribe_events(&project, &slot, &entries));
            if let Err(reason) = registered {
                project.mark_failed(&name, &reason)?;
                failed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((name, reason));
                continue;
            }
            plugins.insert(name, slot);
        }
        Ok(Host {
            project,
            plugins,
            hooks,
            failed,
            observers: Vec::new(),
        })
    }

    /// Calls `observer` after every command, successful or not (usage telemetry, metrics).
    pub fn on_command(&mut self, observer: impl Fn(&CommandRecord) + Send + Sync + 'static) {
        self.observers.push(Box::new(observer));
    }

    pub fn project(&self) -> &Project {
        &self.project
    }

    /// The hook registry holding every enabled plugin's hook implementations; a host adds its
    /// specs and calls hooks here.
    pub fn hooks(&self) -> &PluginManager {
        &self.hooks
    }

    /// Plugins that could not start so far, with the reason (they are marked `failed` on disk
    /// too). With [`Host::start`], a plugin that was never needed has not been tried yet.
    pub fn failed(&self) -> Vec<(String, String)> {
        self.failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Names of the plugins started so far.
    pub fn started(&self) -> Vec<String> {
        self.plugins
            .iter()
            .filter(|(_, s)| s.started().is_some())
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Adds the metrics of this process's calls to `.trellis/stats.json`.
    pub fn persist_stats(&self) -> std::io::Result<()> {
        let metrics: Vec<_> = self
            .plugins
            .iter()
            .filter_map(|(name, slot)| Some((name.clone(), slot.started()?.metrics()?)))
            .collect();
        stats::merge_into(&stats_path(&self.project), &metrics)
    }

    /// Runs a command by name (`<plugin>:<command>` to pick one of several providers).
    pub fn run_command(&self, name: &str, args: &[String]) -> Result<CommandOutput, HostError> {
        let enabled: Vec<(&str, &trellis_manifest::Manifest)> = self
            .plugins
            .iter()
            .map(|(n, slot)| (n.as_str(), &slot.plugin.manifest))
            .collect();
        let (plugin_name, command) = match self.project.resolve_command_among(name, &enabled) {
            Ok(found) => found,
            // An enabled plugin that did not load (a policy refusal at start, a changed file)
            // may provide it: read the manifests again, only on this error path, to say why.
            Err(ProjectError::UnknownCommand { .. }) => self.project.resolve_command(name)?,
            Err(e) => return Err(e.into()),
        };
        let not_loaded = |reason: String| HostError::NotLoaded {
            plugin: plugin_name.clone(),
            reason,
        };
        let slot = self.plugins.get(&plugin_name).ok_or_else(|| {
            not_loaded(
                self.failed()
                    .iter()
                    .find(|(n, _)| *n == plugin_name)
                    .map(|(_, r)| r.clone())
                    .unwrap_or_else(|| "it is not enabled".to_owned()),
            )
        })?;
        let code = slot.code().map_err(not_loaded)?;
        let (positional, options) = if command.declares_inputs() {
            let env = |name: &str| self.project.env_var(name);
            let line = command_line::parse(&command, args, self.project.root(), &env)?;
            (line.positional, line.input)
        } else {
            split_args(args)
        };
        let bus = self.project.events();
        bus.emit(
            "plugin.command.invoked",
            json!({"plugin": plugin_name, "command": command.name, "args": args}),
        )?;
        let started = Instant::now();
        let result = code.run_command(&command, &positional, &options);
        let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        let version = slot.plugin.manifest.metadata.version.to_string();
        let mut audited = AuditEvent::new(
            "command.invoked",
            if result.is_ok() { "ok" } else { "failed" },
        )
        .plugin(&plugin_name)
        .detail("command", json!(command.name))
        .detail("version", json!(version))
        .detail("duration_ms", json!(duration_ms.round() as u64));
        if let Err(e) = &result {
            audited = audited.detail("error", json!(e.to_string()));
        }
        self.project.audit().record(audited);
        let record = CommandRecord {
            plugin: plugin_name.clone(),
            version: version.clone(),
            command: command.name.clone(),
            success: result.is_ok(),
            duration_ms: duration_ms.round() as u64,
        };
        for observer in &self.observers {
            observer(&record);
        }
        bus.emit(
            "plugin.command.completed",
            json!({"plugin": plugin_name, "command": command.name, "success": result.is_ok(), "duration_ms": duration_ms}),
        )?;
        match result {
            Ok(output) => Ok(CommandOutput {
                plugin: plugin_name,
                version,
                command: command.name,
                output,
                duration_ms,
            }),
            Err(e) => {
                bus.emit(
                    "plugin.error",
                    json!({"plugin": plugin_name, "error": e.to_string(), "context": "command"}),
                )?;
                Err(e)
            }
        }
    }
}

/// Subscribes the event-pattern entries of a plugin to the project's bus; delivery starts the
/// plugin. The bus holds the slot weakly, so dropping the host ends delivery.
fn subscribe_events(
    project: &Project,
    slot: &Arc<Slot>,
    entries: &[RemoteHookEntry],
) -> Result<(), String> {
    for e in entries.iter().filter(|e| is_event_pattern(&e.hook)) {
        let weak = Arc::downgrade(slot);
        project
            .events()
            .subscribe(&e.hook, move |event| {
                let Some(slot) = weak.upgrade() else { return };
                let Ok(code) = slot.code() else { return };
                if let Err(err) = code.on_event(&event.topic, &event.payload) {
                    tracing::warn!(plugin = %slot.plugin.name, topic = %event.topic, error = %err, "event handler failed");
                }
            })
            .map_err(|err| format!("cannot subscribe to `{}`: {err}", e.hook))?;
    }
    Ok(())
}

pub fn stats_path(project: &Project) -> std::path::PathBuf {
    project.trellis_dir().join("stats.json")
}

pub(crate) fn runtime_options(project: &Project) -> RuntimeOptions {
    let dir = project.trellis_dir();
    RuntimeOptions {
        project_root: project.root().to_owned(),
        cache_dir: project.cache_dir(),
        events: Arc::clone(project.events()),
        audit: project.audit(),
        state_dir: dir.join("state"),
        digests: Some(project.file_digests()),
    }
}

/// The policy's caps as limits; what the policy leaves open stays unbounded here (the
/// manifest's values and the runtime's own maximums still apply).
pub(crate) fn policy_cap(caps: &trellis_project::LimitCaps) -> EffectiveLimits {
    EffectiveLimits {
        memory_bytes: caps.memory.as_ref().map_or(u64::MAX, |(bytes, _)| *bytes),
        timeout: caps
            .timeout
            .as_ref()
            .map_or(std::time::Duration::MAX, |(t, _)| *t),
        fuel: None,
        max_output_bytes: u64::MAX,
    }
}

/// `--key=value` and `--key value` become options (a bare `--flag` is `true`); the rest are
/// positional arguments; everything after `--` is positional.
pub fn split_args(args: &[String]) -> (Vec<String>, Map<String, Value>) {
    let mut positional = Vec::new();
    let mut options = Map::new();
    let mut iter = args.iter().peekable();
    while let Some(arg) = iter.next() {
        let Some(opt) = arg.strip_prefix("--") else {
            positional.push(arg.clone());
            continue;
        };
        if opt.is_empty() {
            positional.extend(iter.by_ref().cloned());
            break;
        }
        match opt.split_once('=') {
            Some((k, v)) => {
                options.insert(k.to_owned(), Value::String(v.to_owned()));
            }
            None => {
                let value = match iter.peek() {
                    Some(next) if !next.starts_with("--") => {
                        Value::String(iter.next().cloned().unwrap_or_default())
                    }
                    _ => Value::Bool(true),
                };
                options.insert(opt.to_owned(), value);
            }
        }
    }
    (positional, options)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_split_into_positional_and_options() {
        let args: Vec<String> = ["a", "--x=1", "--flag", "--y", "2", "b", "--", "--z"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (pos, opts) = split_args(&args);
        assert_eq!(pos, vec!["a", "b", "--z"]);
        assert_eq!(opts.get("x"), Some(&json!("1")));
        assert_eq!(opts.get("flag"), Some(&json!(true)));
        assert_eq!(opts.get("y"), Some(&json!("2")));
    }
}
