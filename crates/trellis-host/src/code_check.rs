//! Starting a plugin's code once, outside any project, to hold what it says it implements
//! against its manifest (`trellis plugin validate`): the handshake's check of commands, hooks,
//! phases, migration functions and each command's arguments and options. The plugin runs in
//! the sandbox with nothing granted and its default configuration, in a scratch directory,
//! with an event bus and audit log of its own, so that validating leaves no trace in a project.
//!
//! Only process plugins report what they implement; wasm and declarative plugins have nothing
//! to check here.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use trellis_manifest::{Manifest, RuntimeKind};
use trellis_process::{Launcher, PluginSpec, ProcessError, ProcessOptions, ProcessRuntime};
use trellis_project::LoadedPlugin;

/// What checking a plugin's code found, when nothing was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeCheck {
    /// The code implements exactly what the manifest declares.
    Agrees,
    /// It could not be checked here, and why (it is checked when the plugin starts).
    NotChecked(String),
}

/// Starts the plugin in `dir` once and stops it; an error says how its code and its manifest
/// differ (or why it could not start).
pub fn check_code(
    dir: &Path,
    manifest: &Manifest,
    cache_dir: PathBuf,
    launcher: Launcher,
) -> Result<CodeCheck, ProcessError> {
    if manifest.runtime.kind != RuntimeKind::Process {
        return Ok(CodeCheck::NotChecked(format!(
            "a {} plugin does not report what it implements",
            manifest.runtime.kind.as_str()
        )));
    }
    if trellis_process::python_env::needed(manifest, dir) {
        return Ok(CodeCheck::NotChecked(
            "it runs in its own Python environment, made at install; its code is checked when it starts".to_owned(),
        ));
    }
    let spawn_error = |reason: String| ProcessError::Spawn {
        plugin: manifest.metadata.name.clone(),
        reason,
    };
    let scratch =
        tempfile::tempdir().map_err(|e| spawn_error(format!("no scratch directory: {e}")))?;
    let root = std::fs::canonicalize(scratch.path()).map_err(|e| spawn_error(e.to_string()))?;
    let runtime = Arc::new(ProcessRuntime::new(ProcessOptions {
        project_root: root.clone(),
        cache_dir,
        events: Arc::new(trellis_core::EventBus::new()),
        audit: Arc::new(trellis_audit::MemoryAudit::new()),
        state_dir: root.join("state"),
        launcher,
    }));
    // The plugin's working directory is the scratch directory: its own must be absolute.
    let dir =
        std::fs::canonicalize(dir).map_err(|e| spawn_error(format!("{}: {e}", dir.display())))?;
    // Code is run before anyone granted it anything: only in a sandbox with every layer.
    if !runtime.support().complete() {
        return Ok(CodeCheck::NotChecked(format!(
            "this machine's sandbox is incomplete ({}); its code is checked when it starts",
            trellis_process::describe_support(runtime.support())
        )));
    }
    let plugin = LoadedPlugin {
        name: manifest.metadata.name.clone(),
        dir,
        manifest: manifest.clone(),
        config: manifest
            .config
            .as_ref()
            .and_then(|c| c.defaults.clone())
            .unwrap_or_else(|| serde_json::json!({})),
        grants: Vec::new(),
        limit_caps: Default::default(),
        python_env: None,
    };
    let started = match runtime.start(PluginSpec {
        name: plugin.name.clone(),
        dir: plugin.dir.clone(),
        manifest: plugin.manifest.clone(),
        config: plugin.config.clone(),
        grants: Vec::new(),
        limits: crate::process::process_limits(&plugin),
        python_env: None,
        on_quarantine: None,
    }) {
        Ok(started) => started,
        // The handshake passed (and with it the comparison); `init` depends on configuration
        // the user may set only after installing.
        Err(ProcessError::Init { .. }) => return Ok(CodeCheck::Agrees),
        Err(e) => return Err(e),
    };
    drop(started);
    Ok(CodeCheck::Agrees)
}
