//! Declarative plugins: commands are templates rendered with the plugin's configuration; no
//! plugin code runs, so there are no hooks to call.

use std::sync::Arc;

use serde_json::{Map, Value, json};
use trellis_core::{HookError, Outcome, RemoteHooks};
use trellis_manifest::Command;
use trellis_project::{LoadedPlugin, Project};
use trellis_wasm::PluginMetrics;

use crate::HostError;
use crate::runtime::{PluginCode, Runtime};

pub(crate) struct Declarative;

impl Runtime for Declarative {
    fn start(
        &self,
        project: &Project,
        plugin: &LoadedPlugin,
    ) -> Result<Arc<dyn PluginCode>, String> {
        Ok(Arc::new(DeclarativePlugin {
            plugin: plugin.clone(),
            project_root: project.root().to_owned(),
        }))
    }
}

struct DeclarativePlugin {
    plugin: LoadedPlugin,
    project_root: std::path::PathBuf,
}

impl RemoteHooks for DeclarativePlugin {
    fn call_hook(&self, _hook: &str, _args_json: &str) -> Result<Option<Value>, HookError> {
        Ok(None)
    }

    fn wrap_before(&self, _hook: &str, _args: &Value) -> Result<Value, HookError> {
        Ok(Value::Null)
    }

    fn wrap_after(&self, _hook: &str, _args: Value, _state: Value, outcome: Outcome) -> Outcome {
        outcome
    }
}

impl PluginCode for DeclarativePlugin {
    fn run_command(
        &self,
        command: &Command,
        positional: &[String],
        options: &Map<String, Value>,
    ) -> Result<Value, HostError> {
        let plugin = &self.plugin;
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
            "input": options,
            "config": plugin.config,
            "plugin": {"name": plugin.name, "version": plugin.manifest.metadata.version.to_string()},
            "project": {"root": self.project_root},
        });
        env.get_template(template)
            .and_then(|t| t.render(minijinja::value::Serde(&context)))
            .map(Value::String)
            .map_err(|e| template_err(e.to_string()))
    }

    fn on_event(&self, _topic: &str, _payload: &Value) -> Result<(), String> {
        Ok(())
    }

    fn metrics(&self) -> Option<PluginMetrics> {
        None
    }
}
