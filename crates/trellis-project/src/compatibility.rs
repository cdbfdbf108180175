//! Whether a plugin can run here: the trellis versions and platforms its manifest names.

use std::path::Path;

use crate::{Project, ProjectError};
use trellis_manifest::Manifest;

impl Project {
    /// Checks the running trellis version and platform against a manifest.
    pub(crate) fn check_compatibility(
        &self,
        manifest: &Manifest,
        file: &Path,
    ) -> Result<(), ProjectError> {
        let plugin = &manifest.metadata.name;
        let running = &self.trellis_version;
        let incompatible =
            |requirement: String, field: &'static str| ProjectError::IncompatibleTrellis {
                plugin: plugin.clone(),
                running: running.clone(),
                requirement,
                field,
                file: file.to_owned(),
            };
        if let Some(req) = &manifest.requires.trellis
            && !req.matches(running)
        {
            return Err(incompatible(format!("`{req}`"), "requires.trellis"));
        }
        if let Some(compat) = &manifest.compatibility.trellis {
            if let Some(min) = &compat.min
                && running < min
            {
                return Err(incompatible(
                    format!("at least {min}"),
                    "compatibility.trellis.min",
                ));
            }
            if let Some(max) = &compat.max
                && running > max
            {
                return Err(incompatible(
                    format!("at most {max}"),
                    "compatibility.trellis.max",
                ));
            }
        }
        let platform = current_platform();
        let platforms = &manifest.compatibility.platforms;
        if !platforms.is_empty() && !platforms.iter().any(|p| p == platform) {
            return Err(ProjectError::UnsupportedPlatform {
                plugin: plugin.clone(),
                platform: platform.to_owned(),
                supported: platforms.clone(),
            });
        }
        Ok(())
    }
}

impl Project {
    /// Checks the interpreter a script plugin names (`runtime.interpreter`) against
    /// `requires.python` / `requires.node`, at install and enable (starting the plugin checks it
    /// again, through a cache).
    pub(crate) fn check_interpreter(
        &self,
        manifest: &Manifest,
        file: &Path,
    ) -> Result<(), ProjectError> {
        trellis_process::interpreter::check(manifest, self.cache_dir().as_deref())
            .map(drop)
            .map_err(|reason| ProjectError::Interpreter {
                plugin: manifest.metadata.name.clone(),
                reason,
                file: file.to_owned(),
            })
    }
}

/// The platform name manifests use.
pub fn current_platform() -> &'static str {
    match std::env::consts::OS {
        "macos" => "macos",
        "windows" => "windows",
        "linux" => "linux",
        other => other,
    }
}
