//! Loading the enabled plugins for a host: load order, the checks made at every start
//! (manifest, compatibility, integrity, policy, dependencies, configuration), effective grants.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;
use trellis_audit::AuditEvent;
use trellis_manifest::Manifest;
use trellis_manifest::config_schema::ConfigValidator;

use crate::config::ProjectConfig;
use crate::{
    LifecycleState, LoadReport, LoadedPlugin, Project, ProjectError, ProjectState, deps,
    expand_config,
};

impl Project {
    /// Enabled plugins in load order: dependencies before dependents, ties by name.
    pub fn load_order(&self) -> Result<Vec<String>, ProjectError> {
        let state = self.state()?;
        let manifests = self.installed_manifests(&state, None)?;
        Self::load_order_of(&state, &manifests)
    }

    /// The load order of the enabled plugins of `state`, given their manifests (a plugin missing
    /// from `manifests` takes its place without edges).
    pub(crate) fn load_order_of(
        state: &ProjectState,
        manifests: &BTreeMap<String, Manifest>,
    ) -> Result<Vec<String>, ProjectError> {
        let enabled: BTreeSet<&str> = state
            .plugins
            .iter()
            .filter(|(_, r)| r.state == LifecycleState::Enabled)
            .map(|(n, _)| n.as_str())
            .collect();
        // A plugin whose manifest cannot be read still takes its place (without edges) so that
        // `load` reports it failed instead of silently skipping it.
        let graph: deps::Graph<'_> = enabled
            .iter()
            .map(|n| {
                let edges = manifests
                    .get(*n)
                    .map(|m| {
                        m.requires
                            .plugins
                            .iter()
                            .map(|d| d.name.as_str())
                            .filter(|d| enabled.contains(d))
                            .collect()
                    })
                    .unwrap_or_default();
                (*n, edges)
            })
            .collect();
        deps::load_order(&graph).map_err(|cycle| ProjectError::DependencyCycle { cycle })
    }

    /// Starts the project's plugins as a host would: every enabled plugin is re-checked in
    /// load order (manifest readable, compatible, dependencies loaded, configuration valid).
    /// A plugin that fails is marked `failed` with the reason and does not stop the others;
    /// its dependents fail after it.
    pub fn load(&self) -> Result<LoadReport, ProjectError> {
        self.settle_before_read()?;
        let state = self.state()?;
        // Each enabled plugin's manifest is read once here, for the order and for the checks.
        let mut read: BTreeMap<String, Result<Manifest, ProjectError>> = state
            .plugins
            .iter()
            .filter(|(_, r)| r.state == LifecycleState::Enabled)
            .map(|(n, _)| (n.clone(), self.read_manifest(n).map(|m| m.manifest)))
            .collect();
        let readable: BTreeMap<String, Manifest> = read
            .iter()
            .filter_map(|(n, m)| Some((n.clone(), m.as_ref().ok()?.clone())))
            .collect();
        let order = Self::load_order_of(&state, &readable)?;
        drop(readable);
        let config = ProjectConfig::read_or_default(self)?;
        let security = self.security()?;
        let policy = &security.policy;
        let limit_caps = policy.limit_caps();
        let mut loaded = Vec::new();
        let mut failed: Vec<(String, String)> = Vec::new();
        let mut to_mark: Vec<String> = Vec::new();
        for name in order {
            let outcome = (|| -> Result<LoadedPlugin, LoadFailure> {
                let record = self.record(&state, &name)?;
                let manifest = read
                    .remove(&name)
                    .unwrap_or_else(|| self.read_manifest(&name).map(|m| m.manifest))?;
                self.check_compatibility(&manifest, &self.plugin_dir(&name))?;
                // Files changed after install are not what the user granted anything to.
                let changed = self.changed_files(&name, record)?;
                if !changed.is_empty() {
                    let error = ProjectError::FilesChanged {
                        plugin: name.clone(),
                        changes: changed.iter().map(ToString::to_string).collect(),
                    };
                    self.audit.record(
                        AuditEvent::new("plugin.integrity", "refused")
                            .plugin(&name)
                            .attempted("start")
                            .detail(
                                "changes",
                                json!(changed.iter().map(ToString::to_string).collect::<Vec<_>>()),
                            ),
                    );
                    return Err(error.into());
                }
                self.check_policy(&security, &name, record, &manifest, "start")?;
                for dep in manifest.requires.plugins.iter().filter(|d| !d.optional) {
                    if let Some((_, why)) = failed.iter().find(|(f, _)| *f == dep.name) {
                        return Err(LoadFailure {
                            reason: format!("dependency `{}` failed to load: {why}", dep.name),
                            persist: to_mark.contains(&dep.name),
                        });
                    }
                }
                let effective = self.effective_config(&name, &manifest, &config);
                let grants = self.effective_grants(record, &manifest, policy);
                let expansion = expand_config(
                    &effective,
                    &trellis_host_api::Grants::from_requests(&grants),
                    &*self.env,
                );
                if !expansion.not_granted.is_empty() {
                    tracing::warn!(plugin = %name, variables = ?expansion.not_granted, "configuration references environment variables the plugin is not granted; they are left as written");
                }
                let expanded = expansion.value;
                if let Some(schema) = manifest.config.as_ref().and_then(|c| c.schema.as_ref()) {
                    let validator = ConfigValidator::new(schema)?;
                    let violations = validator.validate(&expanded);
                    if !violations.is_empty() {
                        return Err(ProjectError::ConfigInvalid {
                            plugin: name.clone(),
                            violations,
                        }
                        .into());
                    }
                }
                Ok(LoadedPlugin {
                    name: name.clone(),
                    dir: self.plugin_dir(&name),
                    grants,
                    limit_caps: limit_caps.clone(),
                    manifest,
                    config: expanded,
                    python_env: record
                        .python_env
                        .clone()
                        .map(|env| (self.python_env_dir(&name), env)),
                })
            })();
            match outcome {
                Ok(plugin) => loaded.push(plugin),
                Err(failure) => {
                    if failure.persist {
                        to_mark.push(name.clone());
                    }
                    failed.push((name, failure.reason));
                }
            }
        }
        if !to_mark.is_empty() {
            let _lock = self.lock()?;
            let mut state = self.state()?;
            for (name, reason) in failed.iter().filter(|(n, _)| to_mark.contains(n)) {
                self.mark_failed_locked(&mut state, name, reason)?;
            }
        }
        Ok(LoadReport { loaded, failed })
    }
}

/// A plugin load failure: the reason, and whether it is the plugin's own fault and so is kept
/// in the state as `failed`. A policy refusal depends on files outside the plugin (the
/// admin's policy, the signer lists) and holds only while they say so: the plugin stays
/// enabled and starts again once they allow it.
struct LoadFailure {
    reason: String,
    persist: bool,
}

impl From<ProjectError> for LoadFailure {
    fn from(e: ProjectError) -> Self {
        let persist = !matches!(
            e,
            ProjectError::PolicyRefused { .. } | ProjectError::Policy(_) | ProjectError::Trust(_)
        );
        LoadFailure {
            reason: e.to_string(),
            persist,
        }
    }
}

impl From<String> for LoadFailure {
    fn from(reason: String) -> Self {
        LoadFailure {
            reason,
            persist: true,
        }
    }
}
