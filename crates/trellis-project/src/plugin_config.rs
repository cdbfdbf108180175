//! A plugin's configuration: effective values (defaults under the user's), `get`, `set`,
//! `unset` and `validate`, with `${VAR}` expanded only within the plugin's grants.

use serde_json::{Value, json};
use trellis_manifest::config_schema::{ConfigValidator, apply_defaults};
use trellis_manifest::{Manifest, did_you_mean};

use crate::config::{self, ProjectConfig};
use crate::{ConfigReport, Project, ProjectError, ProjectLock, Transition, expand_config};

impl Project {
    pub(crate) fn effective_config(
        &self,
        name: &str,
        manifest: &Manifest,
        config: &ProjectConfig,
    ) -> Value {
        let defaults = manifest
            .config
            .as_ref()
            .and_then(|c| c.defaults.clone())
            .unwrap_or_else(|| json!({}));
        let user = config
            .plugins
            .get(name)
            .cloned()
            .unwrap_or_else(|| json!({}));
        apply_defaults(&defaults, &user)
    }

    pub(crate) fn config_context(
        &self,
        name: &str,
    ) -> Result<(Manifest, ConfigValidator, ProjectConfig), ProjectError> {
        let state = self.state()?;
        self.record(&state, name)?;
        let manifest = self.read_manifest(name)?.manifest;
        let schema = manifest
            .config
            .as_ref()
            .and_then(|c| c.schema.clone())
            .ok_or_else(|| ProjectError::NoConfigSchema {
                plugin: name.to_owned(),
            })?;
        let validator =
            ConfigValidator::new(&schema).map_err(|reason| ProjectError::ConfigKey {
                plugin: name.to_owned(),
                key: "config.schema".to_owned(),
                reason,
            })?;
        Ok((manifest, validator, ProjectConfig::read_or_default(self)?))
    }

    /// The effective configuration (defaults applied, `${VAR}` left as written), or one key.
    pub fn config_get(&self, name: &str, key: Option<&str>) -> Result<Value, ProjectError> {
        let state = self.state()?;
        self.record(&state, name)?;
        let manifest = self.read_manifest(name)?.manifest;
        let effective =
            self.effective_config(name, &manifest, &ProjectConfig::read_or_default(self)?);
        let Some(key) = key else { return Ok(effective) };
        let path = self.key_path(name, key)?;
        config::get_path(&effective, &path)
            .cloned()
            .ok_or_else(|| ProjectError::ConfigKey {
                plugin: name.to_owned(),
                key: key.to_owned(),
                reason: "it is not set and has no default".to_owned(),
            })
    }

    pub(crate) fn key_path<'k>(
        &self,
        name: &str,
        key: &'k str,
    ) -> Result<Vec<&'k str>, ProjectError> {
        config::key_segments(key).ok_or_else(|| ProjectError::ConfigKey {
            plugin: name.to_owned(),
            key: key.to_owned(),
            reason: "keys are names separated by `.`, like `severity.threshold`".to_owned(),
        })
    }

    /// Sets one key from a command-line value (parsed as YAML: `5`, `true`, `[a, b]`). The new
    /// configuration is validated against the plugin's schema (with `${VAR}`s expanded where
    /// set) before anything is written. Returns the `${VAR}`s that are not set now.
    pub fn config_set(
        &self,
        name: &str,
        key: &str,
        raw: &str,
    ) -> Result<Vec<String>, ProjectError> {
        let path = self.key_path(name, key)?;
        let _lock = self.lock_if_installed(name)?;
        let (manifest, validator, mut config) = self.config_context(name)?;
        check_known_key(
            name,
            key,
            &path,
            manifest.config.as_ref().and_then(|c| c.schema.as_ref()),
        )?;
        let mut user = config
            .plugins
            .get(name)
            .cloned()
            .unwrap_or_else(|| json!({}));
        config::set_path(&mut user, &path, config::parse_cli_value(raw)).map_err(|reason| {
            ProjectError::ConfigKey {
                plugin: name.to_owned(),
                key: key.to_owned(),
                reason,
            }
        })?;
        let missing = self.validate_user_config(name, &manifest, &validator, &user)?;
        config.plugins.insert(name.to_owned(), user);
        config.write(&self.config_path())?;
        self.emit("plugin.configured", json!({"plugin": name, "key": key}));
        Ok(missing)
    }

    /// Removes one key (its default, if any, applies again).
    pub fn config_unset(&self, name: &str, key: &str) -> Result<Transition, ProjectError> {
        let path = self.key_path(name, key)?;
        let _lock = self.lock_if_installed(name)?;
        let (manifest, validator, mut config) = self.config_context(name)?;
        let Some(mut user) = config.plugins.get(name).cloned() else {
            return Ok(Transition::Unchanged);
        };
        if !config::unset_path(&mut user, &path) {
            return Ok(Transition::Unchanged);
        }
        self.validate_user_config(name, &manifest, &validator, &user)?;
        if user.as_object().is_some_and(serde_json::Map::is_empty) {
            config.plugins.remove(name);
        } else {
            config.plugins.insert(name.to_owned(), user);
        }
        config.write(&self.config_path())?;
        self.emit("plugin.configured", json!({"plugin": name, "key": key}));
        Ok(Transition::Changed)
    }

    /// Validates the stored configuration against the schema; reports violations and unset
    /// `${VAR}`s without failing, so callers can show everything at once.
    pub fn config_validate(&self, name: &str) -> Result<ConfigReport, ProjectError> {
        let (manifest, validator, config) = self.config_context(name)?;
        let effective = self.effective_config(name, &manifest, &config);
        let state = self.state()?;
        let record = self.record(&state, name)?;
        let security = self.security()?;
        let grants = self.effective_grants(record, &manifest, &security.policy);
        let expansion = expand_config(
            &effective,
            &trellis_host_api::Grants::from_requests(&grants),
            &*self.env,
        );
        Ok(ConfigReport {
            violations: validator.validate(&expansion.value),
            missing_env: expansion.unset,
            not_granted: expansion.not_granted,
        })
    }

    /// The configuration with `${VAR}`s expanded for a plugin about to be installed or enabled:
    /// every reference must be to a variable its manifest's `environment` capability names, or
    /// the step is refused (nothing else would ever expand it).
    pub(crate) fn expand_requested(
        &self,
        name: &str,
        manifest: &Manifest,
        effective: &Value,
    ) -> Result<Value, ProjectError> {
        let requested = trellis_host_api::Grants::from_requests(&manifest.requires.capabilities);
        let expansion = expand_config(effective, &requested, &*self.env);
        if !expansion.not_granted.is_empty() {
            return Err(ProjectError::ConfigEnvNotRequested {
                plugin: name.to_owned(),
                variables: expansion.not_granted,
            });
        }
        Ok(expansion.value)
    }

    pub(crate) fn validate_user_config(
        &self,
        name: &str,
        manifest: &Manifest,
        validator: &ConfigValidator,
        user: &Value,
    ) -> Result<Vec<String>, ProjectError> {
        let defaults = manifest
            .config
            .as_ref()
            .and_then(|c| c.defaults.clone())
            .unwrap_or_else(|| json!({}));
        let effective = apply_defaults(&defaults, user);
        let requested = trellis_host_api::Grants::from_requests(&manifest.requires.capabilities);
        let expansion = expand_config(&effective, &requested, &*self.env);
        if !expansion.not_granted.is_empty() {
            return Err(ProjectError::ConfigEnvNotRequested {
                plugin: name.to_owned(),
                variables: expansion.not_granted,
            });
        }
        let missing = expansion.unset;
        let violations = validator.validate(&expansion.value);
        if !violations.is_empty() {
            return Err(ProjectError::ConfigInvalid {
                plugin: name.to_owned(),
                violations,
            });
        }
        Ok(missing)
    }

    pub(crate) fn lock_if_installed(&self, name: &str) -> Result<ProjectLock, ProjectError> {
        let state = self.state()?;
        self.record(&state, name)?;
        self.lock()
    }
}

impl ProjectConfig {
    pub(crate) fn read_or_default(project: &Project) -> Result<ProjectConfig, ProjectError> {
        ProjectConfig::read(&project.config_path())
    }
}

/// Refuses keys the schema does not know, when the schema lists its properties and does not
/// allow others, so that `severty` gets a "did you mean" instead of being stored.
pub(crate) fn check_known_key(
    plugin: &str,
    key: &str,
    path: &[&str],
    schema: Option<&Value>,
) -> Result<(), ProjectError> {
    let mut node = schema;
    for segment in path {
        let Some(current) = node else { return Ok(()) };
        let Some(props) = current.get("properties").and_then(Value::as_object) else {
            return Ok(());
        };
        if let Some(child) = props.get(*segment) {
            node = Some(child);
            continue;
        }
        if current
            .get("additionalProperties")
            .is_some_and(|a| a != &Value::Bool(false))
        {
            return Ok(());
        }
        let known: Vec<&String> = props.keys().collect();
        let suggestion = did_you_mean(segment, known.iter().map(|k| k.as_str()));
        let reason = match suggestion {
            Some(s) => format!("unknown key `{segment}` (did you mean `{s}`?)"),
            None => format!(
                "unknown key `{segment}`; known keys: {}",
                known
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        return Err(ProjectError::ConfigKey {
            plugin: plugin.to_owned(),
            key: key.to_owned(),
            reason,
        });
    }
    Ok(())
}
