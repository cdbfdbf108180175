//! The assembled plugin host: a project's enabled plugins, started on their runtimes, behind
//! one hook registry and one event bus.
//!
//! `trellis-core` knows hooks and events, `trellis-project` knows what is installed and
//! enabled, `trellis-wasm` knows how to run a component. This crate is where they meet, so
//! that the CLI (or any program that wants a project's plugins) starts a host with one call
//! and runs commands without caring which runtime a plugin uses. A plugin that fails to start
//! is marked `failed` with the reason and every other plugin still starts.
//!
//! It knows nothing of the CLI's argument parsing or rendering.

// Errors carry the project error whole (with its hint) and are built once, on the way out.
#![allow(clippy::result_large_err)]

mod migrate;
pub mod stats;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use serde_json::{Map, Value, json};
use trellis_audit::AuditEvent;
use trellis_core::PluginManager;
use trellis_manifest::{Command, RuntimeKind};
use trellis_project::{LoadedPlugin, Project, ProjectError};
use trellis_wasm::{
    EffectiveLimits, PluginSpec, RuntimeOptions, WasmError, WasmPlugin, WasmRuntime,
};

pub use migrate::{MigrationError, run_config_migration};

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error(transparent)]
    Project(#[from] ProjectError),
    #[error(transparent)]
    Wasm(#[from] WasmError),
    #[error("plugin `{plugin}` could not be started: {reason}")]
    NotLoaded { plugin: String, reason: String },
    #[error("command `{command}` of `{plugin}` has no `template` to render")]
    NoTemplate { plugin: String, command: String },
    #[error("{path}: {reason}")]
    Template { path: String, reason: String },
    #[error(transparent)]
    Event(#[from] trellis_core::EventError),
}

/// A started plugin.
enum Running {
    Declarative(Box<LoadedPlugin>),
    Wasm(Arc<WasmPlugin>),
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

pub struct Host {
    project: Project,
    plugins: BTreeMap<String, Running>,
    versions: BTreeMap<String, String>,
    hooks: PluginManager,
    failed: Vec<(String, String)>,
    observers: Vec<CommandObserver>,
}

impl Host {
    /// Starts every enabled plugin of `project` in load order.
    pub fn start(project: Project) -> Result<Host, HostError> {
        let report = project.load()?;
        let mut failed = report.failed;
        let hooks = PluginManager::new();
        let mut plugins = BTreeMap::new();
        let mut versions = BTreeMap::new();
        let mut runtime: Option<WasmRuntime> = None;
        for plugin in report.loaded {
            let name = plugin.name.clone();
            versions.insert(name.clone(), plugin.manifest.metadata.version.to_string());
            let started = match plugin.manifest.runtime.kind {
                RuntimeKind::Declarative => Ok(Running::Declarative(Box::new(plugin))),
                RuntimeKind::Wasm => {
                    let rt = match &runtime {
                        Some(rt) => rt.clone(),
                        None => {
                            let rt = WasmRuntime::new(runtime_options(&project))?;
                            runtime = Some(rt.clone());
                            rt
                        }
                    };
                    rt.load(plugin_spec(&plugin))
                        .map(Running::Wasm)
                        .map_err(|e| e.to_string())
                }
                RuntimeKind::Process => {
                    Err("the process runtime is not available in this build of trellis".to_owned())
                }
            };
            let running = match started {
                Ok(r) => r,
                Err(reason) => {
                    project.mark_failed(&name, &reason)?;
                    failed.push((name, reason));
                    continue;
                }
            };
            // Entries that name an event topic or pattern (`workflow.implement.completed`,
            // `backlog.task.*`) also receive those events through `on-event`.
            if let Running::Wasm(w) = &running
                && let Err(e) = hooks
                    .register(w.registration())
                    .map(drop)
                    .map_err(|e| e.to_string())
                    .and_then(|()| {
                        w.subscribe_events(project.events())
                            .map(drop)
                            .map_err(|e| e.to_string())
                    })
            {
                project.mark_failed(&name, &e)?;
                failed.push((name, e));
                continue;
            }
            plugins.insert(name, running);
        }
        Ok(Host {
            project,
            plugins,
            versions,
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

    /// The hook registry holding every started plugin's hook implementations; a host adds its
    /// specs and calls hooks here.
    pub fn hooks(&self) -> &PluginManager {
        &self.hooks
    }

    /// Plugins that could not start, with the reason (they are marked `failed` on disk too).
    pub fn failed(&self) -> &[(String, String)] {
        &self.failed
    }

    /// Adds the metrics of this process's calls to `.trellis/stats.json`.
    pub fn persist_stats(&self) -> std::io::Result<()> {
        let metrics: Vec<_> = self
            .wasm_plugins()
            .map(|w| (w.name().to_owned(), w.metrics()))
            .collect();
        stats::merge_into(&stats_path(&self.project), &metrics)
    }

    pub fn wasm_plugins(&self) -> impl Iterator<Item = &Arc<WasmPlugin>> {
        self.plugins.values().filter_map(|r| match r {
            Running::Wasm(w) => Some(w),
            Running::Declarative(_) => None,
        })
    }

    /// Runs a command by name (`<plugin>:<command>` to pick one of several providers).
    pub fn run_command(&self, name: &str, args: &[String]) -> Result<CommandOutput, HostError> {
        let (plugin_name, command) = self.project.resolve_command(name)?;
        let running = self
            .plugins
            .get(&plugin_name)
            .ok_or_else(|| HostError::NotLoaded {
                plugin: plugin_name.clone(),
                reason: self
                    .failed
                    .iter()
                    .find(|(n, _)| *n == plugin_name)
                    .map(|(_, r)| r.clone())
                    .unwrap_or_else(|| "it is not enabled".to_owned()),
            })?;
        let (positional, options) = split_args(args);
        let bus = self.project.events();
        bus.emit(
            "plugin.command.invoked",
            json!({"plugin": plugin_name, "command": command.name, "args": args}),
        )?;
        let started = Instant::now();
        let result = match running {
            Running::Declarative(p) => {
                render_template(&self.project, p, &command, &positional, &options)
            }
            Running::Wasm(w) => {
                // Options become the command's JSON input; `--dry-run` arrives as `dry_run` so
                // that it is a valid identifier in every guest language.
                let input: Map<String, Value> = options
                    .iter()
                    .map(|(k, v)| (k.replace('-', "_"), v.clone()))
                    .collect();
                let input = Value::Object(input);
                w.run_command(&command.name, &positional, &input)
                    .map_err(HostError::from)
            }
        };
        let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        let version = self.versions.get(&plugin_name).cloned().unwrap_or_default();
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

pub fn stats_path(project: &Project) -> std::path::PathBuf {
    project.trellis_dir().join("stats.json")
}

fn runtime_options(project: &Project) -> RuntimeOptions {
    let dir = project.trellis_dir();
    RuntimeOptions {
        project_root: project.root().to_owned(),
        cache_dir: cache_dir(),
        events: Arc::clone(project.events()),
        audit: project.audit(),
        state_dir: dir.join("state"),
    }
}

/// Compiled components are kept in the user's cache directory so that every project shares
/// them; `TRELLIS_CACHE_DIR` overrides it (tests, read-only homes).
fn cache_dir() -> Option<std::path::PathBuf> {
    if let Some(dir) = std::env::var_os("TRELLIS_CACHE_DIR") {
        return Some(dir.into());
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache")))?;
    Some(base.join("trellis").join("components"))
}

fn plugin_spec(plugin: &LoadedPlugin) -> PluginSpec {
    PluginSpec {
        name: plugin.name.clone(),
        dir: plugin.dir.clone(),
        manifest: plugin.manifest.clone(),
        config: plugin.config.clone(),
        grants: plugin.grants.clone(),
        limits: EffectiveLimits::from_manifest(
            &plugin.manifest.limits,
            Some(&policy_cap(&plugin.limit_caps)),
        ),
    }
}

/// The policy's caps as limits; what the policy leaves open stays unbounded here (the
/// manifest's values and the runtime's own maximums still apply).
fn policy_cap(caps: &trellis_project::LimitCaps) -> EffectiveLimits {
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

fn render_template(
    project: &Project,
    plugin: &LoadedPlugin,
    command: &Command,
    positional: &[String],
    options: &Map<String, Value>,
) -> Result<Value, HostError> {
    let template = command
        .template
        .as_deref()
        .ok_or_else(|| HostError::NoTemplate {
            plugin: plugin.name.clone(),
            command: command.name.clone(),
        })?;
    let path = plugin.dir.join(template);
    let template_err = |reason: String| HostError::Template {
        path: path.display().to_string(),
        reason,
    };
    let source = std::fs::read_to_string(&path).map_err(|e| template_err(e.to_string()))?;
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.add_template(template, &source)
        .map_err(|e| template_err(format!("template error: {e}")))?;
    let context = json!({
        "args": positional,
        "options": options,
        "config": plugin.config,
        "plugin": {"name": plugin.name, "version": plugin.manifest.metadata.version.to_string()},
        "project": {"root": project.root()},
    });
    env.get_template(template)
        .and_then(|t| t.render(minijinja::value::Serde(&context)))
        .map(Value::String)
        .map_err(|e| template_err(e.to_string()))
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
