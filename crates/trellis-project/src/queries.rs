//! What the project holds: plugin lists, details, and which plugin provides a command.

use std::collections::BTreeMap;

use trellis_manifest::{Manifest, did_you_mean};

use crate::config::ProjectConfig;
use crate::security::SecuritySettings;
use crate::{LifecycleState, PluginInfo, PluginRecord, PluginSummary, Project, ProjectError};

impl Project {
    /// All installed plugins, sorted by name.
    pub fn list(&self) -> Result<Vec<PluginSummary>, ProjectError> {
        self.settle_before_read()?;
        let state = self.state()?;
        let security = self.security()?;
        let order = self.load_order().unwrap_or_default();
        let mut out = Vec::new();
        for (name, record) in &state.plugins {
            let manifest = self.read_manifest(name).ok().map(|l| l.manifest);
            out.push(self.summary(name, record, manifest.as_ref(), &order, &security));
        }
        Ok(out)
    }

    pub(crate) fn summary(
        &self,
        name: &str,
        record: &PluginRecord,
        manifest: Option<&Manifest>,
        order: &[String],
        security: &SecuritySettings,
    ) -> PluginSummary {
        let fresh = self.recheck_signature(name, record, security);
        let (granted, withheld) = match manifest {
            Some(m) => {
                let (effective, withheld) =
                    crate::grants::grant_status(record, m, &security.policy);
                (effective.into_iter().map(|c| c.name).collect(), withheld)
            }
            None => (Vec::new(), Vec::new()),
        };
        let (description, runtime, capabilities, provides) = match manifest {
            Some(m) => (
                m.metadata.description.clone(),
                m.runtime.kind.as_str(),
                m.capability_names()
                    .into_iter()
                    .map(str::to_owned)
                    .collect(),
                m.provided_summary(),
            ),
            None => (None, "unknown", Vec::new(), BTreeMap::new()),
        };
        PluginSummary {
            name: name.to_owned(),
            version: record.version.clone(),
            state: record.state,
            reason: record.reason.clone(),
            description,
            runtime,
            load_order: order.iter().position(|n| n == name),
            capabilities,
            provides,
            source: record.source.clone(),
            checksum: record.checksum.clone(),
            trust: fresh.level,
            signer: fresh.principal,
            granted,
            withheld,
        }
    }

    /// Everything known about one installed plugin.
    pub fn info(&self, name: &str) -> Result<PluginInfo, ProjectError> {
        self.settle_before_read()?;
        let state = self.state()?;
        let record = self.record(&state, name)?;
        let loaded = self.read_manifest(name)?;
        let order = self.load_order().unwrap_or_default();
        let config = self.effective_config(
            name,
            &loaded.manifest,
            &ProjectConfig::read_or_default(self)?,
        );
        let dependents = self
            .installed_manifests(&state, None)?
            .iter()
            .filter(|(_, m)| m.requires.plugins.iter().any(|d| d.name == name))
            .map(|(n, _)| n.clone())
            .collect();
        Ok(PluginInfo {
            summary: self.summary(
                name,
                record,
                Some(&loaded.manifest),
                &order,
                &self.security()?,
            ),
            path: loaded.dir.clone(),
            manifest: loaded.manifest,
            config,
            dependents,
        })
    }

    /// Finds the enabled plugin that provides command `name` (`<plugin>:<command>` picks one
    /// explicitly). Returns the plugin name and the command.
    pub fn resolve_command(
        &self,
        name: &str,
    ) -> Result<(String, trellis_manifest::Command), ProjectError> {
        let state = self.state()?;
        let enabled: Vec<(String, Manifest)> = self
            .installed_manifests(&state, None)?
            .into_iter()
            .filter(|(n, _)| {
                state
                    .plugins
                    .get(n)
                    .is_some_and(|r| r.state == LifecycleState::Enabled)
            })
            .collect();
        let enabled: Vec<(&str, &Manifest)> =
            enabled.iter().map(|(n, m)| (n.as_str(), m)).collect();
        self.resolve_command_among(name, &enabled)
    }

    /// [`Project::resolve_command`] among plugins whose manifests the caller has already read
    /// (a host that loaded them), so that nothing is read again.
    pub fn resolve_command_among(
        &self,
        name: &str,
        enabled: &[(&str, &Manifest)],
    ) -> Result<(String, trellis_manifest::Command), ProjectError> {
        if let Some((plugin, command)) = name.rsplit_once(':')
            && let Some((_, m)) = enabled.iter().find(|(n, _)| *n == plugin)
            && let Some(c) = m.provides.commands.iter().find(|c| c.name == command)
        {
            return Ok((plugin.to_owned(), c.clone()));
        }
        let owners: Vec<(&str, &trellis_manifest::Command)> = enabled
            .iter()
            .flat_map(|(n, m)| {
                m.provides
                    .commands
                    .iter()
                    .filter(|c| c.name == name)
                    .map(move |c| (*n, c))
            })
            .collect();
        match owners.as_slice() {
            [(plugin, command)] => Ok(((*plugin).to_owned(), (*command).clone())),
            [] => {
                // A plugin that provides it but failed to start: say why rather than "unknown".
                let state = self.state()?;
                for (plugin, record) in &state.plugins {
                    if record.state != LifecycleState::Failed {
                        continue;
                    }
                    if let Ok(loaded) = self.read_manifest(plugin)
                        && loaded
                            .manifest
                            .provides
                            .commands
                            .iter()
                            .any(|c| c.name == name)
                    {
                        return Err(ProjectError::ProviderFailed {
                            command: name.to_owned(),
                            plugin: plugin.clone(),
                            reason: record.reason.clone().unwrap_or_default(),
                        });
                    }
                }
                let all: Vec<String> = enabled
                    .iter()
                    .flat_map(|(_, m)| m.provides.commands.iter().map(|c| c.name.clone()))
                    .collect();
                let suggestion =
                    did_you_mean(name, all.iter().map(String::as_str)).map(str::to_owned);
                Err(ProjectError::UnknownCommand {
                    name: name.to_owned(),
                    suggestion,
                })
            }
            many => Err(ProjectError::AmbiguousCommand {
                name: name.to_owned(),
                qualified: many
                    .iter()
                    .map(|(p, c)| format!("{p}:{}", c.name))
                    .collect(),
            }),
        }
    }
}
