//! How the host runs plugins: one [`Runtime`] per `runtime.type`, each starting plugins that
//! then answer through [`PluginCode`]. Adding a runtime adds an implementation of these two
//! traits and a line in [`Runtimes::standard`]; nothing else in the host changes.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value};
use trellis_core::RemoteHooks;
use trellis_manifest::{Command, RuntimeKind};
use trellis_project::{LoadedPlugin, Project};
use trellis_wasm::PluginMetrics;

use crate::HostError;

/// Starts the plugins of one `runtime.type`.
pub trait Runtime: Send + Sync {
    /// Starts `plugin` (already checked by the project: enabled, compatible, trusted, its
    /// configuration valid). The error is the reason the plugin is marked `failed`; it must
    /// not affect the plugins of other runtimes.
    fn start(
        &self,
        project: &Project,
        plugin: &LoadedPlugin,
    ) -> Result<Arc<dyn PluginCode>, String>;
}

/// A started plugin, whatever runs it. Hooks and wrappers come through [`RemoteHooks`].
pub trait PluginCode: RemoteHooks {
    /// Runs one of the plugin's `provides.commands`.
    fn run_command(
        &self,
        command: &Command,
        positional: &[String],
        options: &Map<String, Value>,
    ) -> Result<Value, HostError>;

    /// Delivers an event the plugin subscribed to through an event-pattern hook entry.
    fn on_event(&self, topic: &str, payload: &Value) -> Result<(), String>;

    /// What this process's calls cost, for `trellis plugin stats` (none for plugins that run
    /// no code).
    fn metrics(&self) -> Option<PluginMetrics>;
}

/// A command's options as code plugins receive them: `--dry-run` arrives as `dry_run`, a valid
/// identifier in every guest language.
pub(crate) fn command_input(options: &Map<String, Value>) -> Value {
    Value::Object(
        options
            .iter()
            .map(|(k, v)| (k.replace('-', "_"), v.clone()))
            .collect(),
    )
}

/// The runtimes a host can start plugins on.
pub struct Runtimes {
    by_kind: BTreeMap<&'static str, Arc<dyn Runtime>>,
}

impl Runtimes {
    /// Declarative, wasm and process plugins; processes are sandboxed by this program as its
    /// own launcher (see [`Runtimes::with_launcher`]).
    pub fn standard() -> Runtimes {
        Runtimes::with_launcher(trellis_process::Launcher::CurrentExe)
    }

    /// The standard runtimes, with process plugins sandboxed by `launcher`.
    pub fn with_launcher(launcher: trellis_process::Launcher) -> Runtimes {
        let mut r = Runtimes {
            by_kind: BTreeMap::new(),
        };
        r.add(
            RuntimeKind::Declarative,
            Arc::new(crate::declarative::Declarative),
        );
        let sandboxes = crate::process::Sandboxes::new(launcher);
        r.add(
            RuntimeKind::Wasm,
            Arc::new(crate::wasm::Wasm::new(Arc::clone(&sandboxes))),
        );
        r.add(
            RuntimeKind::Process,
            Arc::new(crate::process::Process(sandboxes)),
        );
        r
    }

    /// Adds (or replaces) the runtime of one kind.
    pub fn add(&mut self, kind: RuntimeKind, runtime: Arc<dyn Runtime>) {
        self.by_kind.insert(kind.as_str(), runtime);
    }

    pub fn get(&self, kind: RuntimeKind) -> Result<Arc<dyn Runtime>, String> {
        self.by_kind.get(kind.as_str()).cloned().ok_or_else(|| {
            format!(
                "the {} runtime is not available in this build of trellis",
                kind.as_str()
            )
        })
    }
}
