//! Configuration migration functions (`config.migrations[].function`) of wasm plugins, run
//! for `trellis plugin update`.
//!
//! `trellis-project` decides when a migration function runs and what becomes of its result; it
//! runs no plugin code, so the caller hands it [`run_config_migration`] as its
//! `ConfigMigrate` callback.

use serde_json::Value;
use trellis_manifest::RuntimeKind;
use trellis_project::{MigrationCall, Project, ProjectError};
use trellis_wasm::{EffectiveLimits, GuestErrorKind, PluginSpec, WasmError, WasmRuntime};

/// Why a migration function did not produce a configuration. The text is the cause alone: the
/// update's error around it names the plugin, the migration's version and the function.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error(transparent)]
    Project(#[from] ProjectError),
    #[error("the plugin's runtime is `{0}`, and only wasm plugins can have migration functions")]
    NotWasm(&'static str),
    #[error("{}", wasm_reason(.0))]
    Wasm(#[from] WasmError),
}

/// Runs the migration function `call.function` of the version the update staged in `call.dir`
/// and returns the configuration it made of `call.config`.
///
/// The component is loaded from the staged package (the installed version is not touched). The
/// function runs in an instance of its own: no `init`, no capability whatever the user granted
/// the plugin, and the limits of the new manifest capped by the policy, like any call.
pub fn run_config_migration(
    project: &Project,
    call: MigrationCall<'_>,
) -> Result<Value, MigrationError> {
    if call.manifest.runtime.kind != RuntimeKind::Wasm {
        return Err(MigrationError::NotWasm(call.manifest.runtime.kind.as_str()));
    }
    let caps = project.security()?.policy.limit_caps();
    let limits =
        EffectiveLimits::from_manifest(&call.manifest.limits, Some(&crate::policy_cap(&caps)));
    let runtime = WasmRuntime::new(crate::runtime_options(project))?;
    let plugin = runtime.load(PluginSpec {
        name: call.plugin.to_owned(),
        dir: call.dir.to_owned(),
        manifest: call.manifest.clone(),
        config: call.config.clone(),
        // `migrate_config` grants nothing anyway; nothing here either, so that no future
        // change to the runtime could hand a migration the plugin's grants.
        grants: Vec::new(),
        limits,
        commands: None,
    })?;
    Ok(plugin.migrate_config(
        call.function,
        &call.from.to_string(),
        &call.to.to_string(),
        &call.config,
    )?)
}

fn wasm_reason(e: &WasmError) -> String {
    match e {
        WasmError::Guest {
            kind: GuestErrorKind::InvalidResult,
            message,
            ..
        } => message.clone(),
        WasmError::Guest {
            kind: GuestErrorKind::Failed,
            message,
            ..
        } => format!("it returned an error: {message}"),
        WasmError::Guest { kind, message, .. } => {
            format!("it returned an error ({kind}): {message}")
        }
        WasmError::Trap { message, .. } => format!("it crashed: {message}"),
        WasmError::LimitExceeded { limit, .. } => {
            format!("it was stopped: {limit} (the plugin's `limits`, capped by the policy)")
        }
        WasmError::Denied {
            capability,
            attempted,
            ..
        } => format!(
            "it tried to {attempted}, which needs `{capability}`; migration functions run without any capability"
        ),
        other => other.to_string(),
    }
}
