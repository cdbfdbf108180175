//! WebAssembly component plugins, on one wasmtime runtime per host created when the first wasm
//! plugin starts. If the engine cannot be created, every wasm plugin fails with that reason and
//! plugins of other runtimes are not affected.

use std::sync::{Arc, OnceLock};

use serde_json::{Map, Value};
use trellis_manifest::Command;
use trellis_project::{LoadedPlugin, Project};
use trellis_wasm::{EffectiveLimits, PluginMetrics, PluginSpec, WasmPlugin, WasmRuntime};

use crate::HostError;
use crate::runtime::{PluginCode, Runtime};

pub(crate) struct Wasm {
    runtime: OnceLock<Result<WasmRuntime, String>>,
    sandboxes: Arc<crate::process::Sandboxes>,
}

impl Wasm {
    pub(crate) fn new(sandboxes: Arc<crate::process::Sandboxes>) -> Wasm {
        Wasm {
            runtime: OnceLock::new(),
            sandboxes,
        }
    }
}

impl Runtime for Wasm {
    fn start(
        &self,
        project: &Project,
        plugin: &LoadedPlugin,
    ) -> Result<Arc<dyn PluginCode>, String> {
        let runtime = self
            .runtime
            .get_or_init(|| {
                WasmRuntime::new(crate::runtime_options(project))
                    .map_err(|e| format!("the wasm runtime could not start: {e}"))
            })
            .as_ref()
            .map_err(Clone::clone)?;
        let runs_commands = plugin.grants.iter().any(|g| g.name == "subprocess");
        if runs_commands {
            crate::process::check_sandbox_policy(
                project,
                self.sandboxes.runtime(project),
                &plugin.name,
            )?;
        }
        let spec = PluginSpec {
            name: plugin.name.clone(),
            dir: plugin.dir.clone(),
            manifest: plugin.manifest.clone(),
            config: plugin.config.clone(),
            grants: plugin.grants.clone(),
            limits: EffectiveLimits::from_manifest(
                &plugin.manifest.limits,
                Some(&crate::policy_cap(&plugin.limit_caps)),
            ),
            commands: Some(self.sandboxes.commands(project, plugin)),
        };
        let started = runtime.load(spec).map_err(|e| e.to_string())?;
        Ok(started as Arc<dyn PluginCode>)
    }
}

impl PluginCode for WasmPlugin {
    fn run_command(
        &self,
        command: &Command,
        positional: &[String],
        options: &Map<String, Value>,
    ) -> Result<Value, HostError> {
        let input = crate::runtime::command_input(options);
        WasmPlugin::run_command(self, &command.name, positional, &input).map_err(HostError::from)
    }

    fn on_event(&self, topic: &str, payload: &Value) -> Result<(), String> {
        WasmPlugin::on_event(self, topic, payload).map_err(|e| e.to_string())
    }

    fn metrics(&self) -> Option<PluginMetrics> {
        Some(WasmPlugin::metrics(self))
    }
}
