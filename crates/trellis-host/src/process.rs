//! Plugins as sandboxed processes (`runtime.type: process`), on one process runtime per host.
//! The sandbox launcher is this program itself (the `trellis` binary and any embedding program
//! that calls `trellis_sandbox::run_launcher_if_requested` first in `main`), unless the host
//! is given another.

use std::sync::{Arc, OnceLock};

use serde_json::{Map, Value};
use trellis_manifest::Command;
use trellis_process::{
    CommandSandbox, Launcher, OwnPythonEnv, PluginSpec, ProcessLimits, ProcessOptions,
    ProcessPlugin, ProcessRuntime,
};
use trellis_project::{LoadedPlugin, Project};
use trellis_wasm::PluginMetrics;

use crate::HostError;
use crate::runtime::{PluginCode, Runtime};

/// The one process runtime of a host: process plugins run on it, and every plugin's
/// `subprocess` commands run in its sandbox.
pub(crate) struct Sandboxes {
    launcher: Launcher,
    runtime: OnceLock<Arc<ProcessRuntime>>,
}

impl Sandboxes {
    pub(crate) fn new(launcher: Launcher) -> Arc<Sandboxes> {
        Arc::new(Sandboxes {
            launcher,
            runtime: OnceLock::new(),
        })
    }

    pub(crate) fn runtime(&self, project: &Project) -> &Arc<ProcessRuntime> {
        self.runtime.get_or_init(|| {
            Arc::new(ProcessRuntime::new(process_options(
                project,
                self.launcher.clone(),
            )))
        })
    }

    /// Where `plugin`'s `subprocess` commands run.
    pub(crate) fn commands(
        &self,
        project: &Project,
        plugin: &LoadedPlugin,
    ) -> Arc<dyn trellis_host_api::exec::CommandSandbox> {
        Arc::new(CommandSandbox::new(
            Arc::clone(self.runtime(project)),
            &plugin.name,
            &plugin.dir,
            &plugin.grants,
            process_limits(plugin),
        ))
    }
}

pub(crate) struct Process(pub(crate) Arc<Sandboxes>);

/// The process runtime's options for `project`.
pub fn process_options(project: &Project, launcher: Launcher) -> ProcessOptions {
    let root = project.root();
    ProcessOptions {
        project_root: std::fs::canonicalize(root).unwrap_or_else(|_| root.to_owned()),
        cache_dir: project
            .cache_dir()
            .unwrap_or_else(|| std::env::temp_dir().join("trellis-cache")),
        events: Arc::clone(project.events()),
        audit: project.audit(),
        state_dir: project.trellis_dir().join("state"),
        launcher,
    }
}

/// Refuses to start `plugin` when the policy says `sandbox: required` and a layer is missing
/// here.
pub(crate) fn check_sandbox_policy(
    project: &Project,
    runtime: &ProcessRuntime,
    plugin: &str,
) -> Result<(), String> {
    let support = runtime.support();
    if support.complete() {
        return Ok(());
    }
    let policy = &project.security().map_err(|e| e.to_string())?.policy;
    let Some((scope, file)) = policy.sandbox_required() else {
        return Ok(());
    };
    let reason = format!(
        "the {scope} policy {} says `sandbox: required`, and this machine's sandbox is incomplete: {}",
        file.display(),
        trellis_process::describe_support(support)
    );
    project.audit().record(
        trellis_audit::AuditEvent::new("plugin.sandbox", "refused")
            .plugin(plugin)
            .detail("reason", serde_json::json!(reason)),
    );
    Err(reason)
}

/// What `limits` in the manifest and the policy's caps give a process.
pub(crate) fn process_limits(plugin: &LoadedPlugin) -> ProcessLimits {
    let defaults = ProcessLimits::default();
    let l = &plugin.manifest.limits;
    let caps = &plugin.limit_caps;
    let mut limits = ProcessLimits {
        memory_bytes: l.memory.map_or(defaults.memory_bytes, |b| b.0),
        timeout: l.timeout.map_or(defaults.timeout, |d| d.0),
        max_output_bytes: l.max_output.map_or(defaults.max_output_bytes, |b| b.0),
        ..defaults
    };
    if let Some((bytes, _)) = &caps.memory {
        limits.memory_bytes = limits.memory_bytes.min(*bytes);
    }
    if let Some((t, _)) = &caps.timeout {
        limits.timeout = limits.timeout.min(*t);
    }
    limits
}

impl Runtime for Process {
    fn start(
        &self,
        project: &Project,
        plugin: &LoadedPlugin,
    ) -> Result<Arc<dyn PluginCode>, String> {
        let runtime = self.0.runtime(project);
        check_sandbox_policy(project, runtime, &plugin.name)?;
        let quarantine_project = project.clone();
        let name = plugin.name.clone();
        let spec = PluginSpec {
            name: plugin.name.clone(),
            dir: plugin.dir.clone(),
            manifest: plugin.manifest.clone(),
            config: plugin.config.clone(),
            grants: plugin.grants.clone(),
            limits: process_limits(plugin),
            python_env: plugin
                .python_env
                .as_ref()
                .map(|(dir, record)| OwnPythonEnv {
                    dir: dir.clone(),
                    record: record.clone(),
                }),
            on_quarantine: Some(Box::new(move |reason: &str| {
                if let Err(e) = quarantine_project.mark_failed(&name, reason) {
                    tracing::warn!(plugin = %name, error = %e, "cannot record the quarantine");
                }
            })),
        };
        let started = runtime.start(spec).map_err(|e| e.to_string())?;
        Ok(started as Arc<dyn PluginCode>)
    }
}

impl PluginCode for ProcessPlugin {
    fn run_command(
        &self,
        command: &Command,
        positional: &[String],
        options: &Map<String, Value>,
    ) -> Result<Value, HostError> {
        let input = crate::runtime::command_input(options);
        ProcessPlugin::run_command(self, &command.name, positional, &input).map_err(HostError::from)
    }

    fn on_event(&self, topic: &str, payload: &Value) -> Result<(), String> {
        ProcessPlugin::on_event(self, topic, payload).map_err(|e| e.to_string())
    }

    fn metrics(&self) -> Option<PluginMetrics> {
        Some(ProcessPlugin::metrics(self))
    }
}
