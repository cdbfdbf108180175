//! `trellis plugin update`: newer versions from the registries a plugin was installed from,
//! with the changes shown, the user's configuration migrated, a backup kept, and an automatic
//! rollback when the new version cannot be enabled.

use std::fs;
use std::path::PathBuf;

use semver::{Version, VersionReq};
use serde::Serialize;
use serde_json::json;
use trellis_audit::AuditEvent;
use trellis_registry::resolve::{Catalog, Resolved};

use crate::config::ProjectConfig;
use crate::fsutil::{copy_tree, io_err};
use crate::registries::RegistryPlan;
use crate::security::{GrantDecisions, PreparedInstall};
use crate::{LifecycleState, Project, ProjectError};

/// Starts a project's plugins as a host does and returns those that failed, with why.
pub type StartCheck<'a> = &'a dyn Fn(&Project) -> Result<Vec<(String, String)>, ProjectError>;

/// One plugin an update moves to another version.
#[derive(Debug, Clone, Serialize)]
pub struct UpdateItem {
    pub name: String,
    pub registry: String,
    /// `None` for a dependency the update installs for the first time.
    pub from: Option<Version>,
    pub to: Version,
    /// A new major version (or, before 1.0, a new minor one).
    pub major: bool,
    pub capabilities_added: Vec<String>,
    pub capabilities_removed: Vec<String>,
}

/// What `plugin update` found.
#[derive(Debug, Clone)]
pub struct UpdatePlan {
    pub plan: RegistryPlan,
    pub items: Vec<UpdateItem>,
    /// Registry plugins already at their newest allowed version.
    pub up_to_date: Vec<String>,
    /// Newer major versions left out without `--major`: (name, version).
    pub held_back: Vec<(String, Version)>,
}

/// The result of a committed update.
#[derive(Debug, Clone, Serialize)]
pub struct UpdateReport {
    pub updated: Vec<UpdateItem>,
    /// Configuration changes made by migrations, per plugin.
    pub migrated: Vec<(String, Vec<String>)>,
    /// Where the previous packages and configuration were kept.
    pub backup: PathBuf,
}

fn is_major(from: &Version, to: &Version) -> bool {
    if from.major == 0 && to.major == 0 {
        to.minor != from.minor
    } else {
        to.major != from.major
    }
}

/// Versions newer than `current` that `--major` is needed for are excluded by this requirement.
fn within_major(current: &Version) -> VersionReq {
    let text = if current.major == 0 {
        format!(">{current}, <0.{}.0", current.minor + 1)
    } else {
        format!(">{current}, <{}.0.0", current.major + 1)
    };
    VersionReq::parse(&text).unwrap_or(VersionReq::STAR)
}

impl Project {
    /// Finds newer versions of `name` (or of every plugin installed from a registry). Without
    /// `major` an update stays within the installed major version. Installed plugins that
    /// depend on an updated one keep their requirements on it.
    pub fn plan_update(
        &self,
        name: Option<&str>,
        major: bool,
        offline: bool,
    ) -> Result<UpdatePlan, ProjectError> {
        let state = self.state()?;
        let targets: Vec<(String, Version, String)> = match name {
            Some(name) => {
                let record = self.record(&state, name)?;
                let Some(registry) = &record.registry else {
                    return Err(ProjectError::NotFromRegistry {
                        plugin: name.to_owned(),
                        source_text: record.source.clone(),
                    });
                };
                vec![(name.to_owned(), record.version.clone(), registry.clone())]
            }
            None => state
                .plugins
                .iter()
                .filter_map(|(n, r)| {
                    r.registry
                        .clone()
                        .map(|reg| (n.clone(), r.version.clone(), reg))
                })
                .collect(),
        };
        let catalog = self.registry_catalog(offline)?;
        let mut roots = Vec::new();
        let mut up_to_date = Vec::new();
        let mut held_back = Vec::new();
        for (name, current, _) in &targets {
            let listing = catalog.listings(name).into_iter().next();
            let newer: Vec<&trellis_registry::index::IndexEntry> = listing
                .as_ref()
                .map(|l| {
                    l.entries
                        .iter()
                        .filter(|e| !e.yanked && &e.version > current)
                        .filter(|e| e.trellis.matches(&self.trellis_version))
                        .collect()
                })
                .unwrap_or_default();
            let allowed = newer
                .iter()
                .filter(|e| major || within_major(current).matches(&e.version))
                .map(|e| e.version.clone())
                .max();
            if !major
                && let Some(top) = newer.iter().map(|e| &e.version).max()
                && Some(top) != allowed.as_ref()
            {
                held_back.push((name.clone(), top.clone()));
            }
            match allowed {
                Some(version) => {
                    let req = VersionReq::parse(&format!("={version}")).unwrap_or(VersionReq::STAR);
                    roots.push((name.clone(), req));
                }
                None => up_to_date.push(name.clone()),
            }
        }
        if roots.is_empty() {
            return Ok(UpdatePlan {
                plan: RegistryPlan {
                    catalog,
                    resolved: Vec::new(),
                    unchanged: Vec::new(),
                },
                items: Vec::new(),
                up_to_date,
                held_back,
            });
        }
        // What other installed plugins require of the updated ones still holds.
        for dependent in state.plugins.keys() {
            if let Ok(loaded) = self.read_manifest(dependent) {
                for dep in &loaded.manifest.requires.plugins {
                    if !dep.optional && roots.iter().any(|(n, _)| *n == dep.name) {
                        roots.push((dep.name.clone(), dep.version.clone()));
                    }
                }
            }
        }
        let plan = self.resolve_against(catalog, &roots, false)?;
        let mut items = Vec::new();
        for r in plan.to_install() {
            items.push(self.update_item(r)?);
        }
        Ok(UpdatePlan {
            plan,
            items,
            up_to_date,
            held_back,
        })
    }

    fn update_item(&self, r: &Resolved) -> Result<UpdateItem, ProjectError> {
        let state = self.state()?;
        let from = state.plugins.get(&r.entry.name).map(|p| p.version.clone());
        let old_caps: Vec<String> = match from {
            Some(_) => self
                .read_manifest(&r.entry.name)?
                .manifest
                .capability_names()
                .into_iter()
                .map(str::to_owned)
                .collect(),
            None => Vec::new(),
        };
        let new_caps: Vec<String> = r
            .entry
            .capabilities
            .iter()
            .map(|c| c.name.clone())
            .collect();
        Ok(UpdateItem {
            name: r.entry.name.clone(),
            registry: r.registry.clone(),
            major: from.as_ref().is_some_and(|f| is_major(f, &r.entry.version)),
            from,
            to: r.entry.version.clone(),
            capabilities_added: new_caps
                .iter()
                .filter(|c| !old_caps.contains(c))
                .cloned()
                .collect(),
            capabilities_removed: old_caps
                .iter()
                .filter(|c| !new_caps.contains(c))
                .cloned()
                .collect(),
        })
    }

    /// Commits an update: keeps a backup of each replaced package and of the configuration,
    /// migrates the configuration, installs everything as one change (refused before anything
    /// is written when an enabled plugin could not be enabled with the new versions), then
    /// starts the plugins with `start`. If one that was enabled does not start, the previous
    /// versions, grants, states and configuration are put back and the reason is returned.
    pub fn commit_update(
        &self,
        plan: &UpdatePlan,
        items: Vec<(PreparedInstall, GrantDecisions)>,
        start: StartCheck<'_>,
    ) -> Result<UpdateReport, ProjectError> {
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
        let backup = self.dir.join("backups").join(&stamp);
        let config_before = ProjectConfig::read_or_default(self)?;
        let state_before = self.state()?;

        // Backups: the kept package (archive and signatures) of each replaced plugin, and the
        // whole configuration file.
        for (prepared, _) in &items {
            if let Some(prev) = &prepared.previous {
                let from = self.packages_dir(prepared.name());
                let to = backup.join(prepared.name()).join(prev.version.to_string());
                if from.is_dir() {
                    copy_tree(&from, &to)?;
                }
            }
        }
        fs::create_dir_all(&backup).map_err(io_err(&backup))?;
        config_before.write(&backup.join("config.yaml"))?;

        // Migrations, checked against the new schema before anything is installed.
        let mut config_after = config_before.clone();
        let mut migrated = Vec::new();
        for (prepared, _) in &items {
            let Some(prev) = &prepared.previous else {
                continue;
            };
            let name = prepared.name();
            let Some(section) = prepared.manifest.config.as_ref() else {
                continue;
            };
            let mut steps: Vec<_> = section
                .migrations
                .iter()
                .filter(|m| {
                    m.version > prev.version && m.version <= prepared.manifest.metadata.version
                })
                .collect();
            steps.sort_by(|a, b| a.version.cmp(&b.version));
            let Some(user) = config_after.plugins.get_mut(name) else {
                continue;
            };
            let mut changes = Vec::new();
            for step in steps {
                changes.extend(step.apply(user));
            }
            if !changes.is_empty() {
                migrated.push((name.to_owned(), changes));
            }
            let effective = self.effective_config(name, &prepared.manifest, &config_after);
            let (expanded, _) = crate::expand_env(&effective, &*self.env);
            if let Some(schema) = &section.schema {
                let violations = trellis_manifest::config_schema::ConfigValidator::new(schema)
                    .map_err(|e| ProjectError::InvalidRegistry {
                        field: "config.schema",
                        value: name.to_owned(),
                        reason: e.to_string(),
                    })?
                    .validate(&expanded);
                if !violations.is_empty() {
                    return Err(ProjectError::ConfigInvalid {
                        plugin: name.to_owned(),
                        violations,
                    });
                }
            }
        }

        let rollback_items: Vec<(String, Option<crate::PluginRecord>)> = items
            .iter()
            .map(|(p, _)| (p.name().to_owned(), p.previous.clone()))
            .collect();
        // The migrated configuration goes first: the commit checks enabled plugins against it.
        if !migrated.is_empty() {
            config_after.write(&self.config_path())?;
        }
        let enabled: Vec<String> = rollback_items
            .iter()
            .filter(|(_, p)| p.as_ref().map(|p| p.state) == Some(LifecycleState::Enabled))
            .map(|(n, _)| n.clone())
            .collect();
        // New dependencies of an enabled plugin (and theirs) are enabled with it, or it could
        // not be.
        let mut needed: Vec<String> = enabled.clone();
        let mut enable: Vec<String> = Vec::new();
        loop {
            let before = enable.len();
            for (dep, _) in items.iter().filter(|(p, _)| p.previous.is_none()) {
                let required = items.iter().any(|(p, _)| {
                    needed.iter().any(|n| n == p.name())
                        && p.manifest
                            .requires
                            .plugins
                            .iter()
                            .any(|d| d.name == dep.name() && !d.optional)
                });
                if required && !enable.iter().any(|n| n == dep.name()) {
                    enable.push(dep.name().to_owned());
                    needed.push(dep.name().to_owned());
                }
            }
            if enable.len() == before {
                break;
            }
        }
        if let Err(e) = self.commit_installs_enabling(items, true, &enable) {
            if !migrated.is_empty() {
                config_before.write(&self.config_path())?;
            }
            // The commit checks that enabled plugins still enable, before writing anything.
            return Err(match e {
                ProjectError::DependencyNotEnabled { .. }
                | ProjectError::MissingDependency { .. }
                | ProjectError::IncompatibleDependency { .. }
                | ProjectError::Conflicts { .. }
                | ProjectError::ConfigInvalid { .. }
                | ProjectError::DependencyCycle { .. }
                    if !enabled.is_empty() =>
                {
                    ProjectError::UpdateRolledBack {
                        plugin: enabled.join(", "),
                        reason: e.to_string(),
                        backup,
                    }
                }
                other => other,
            });
        }

        // The new versions must start where the old ones did: `start` starts the project's
        // plugins as a host does (runtimes included) and returns those that failed.
        let failure = match start(self) {
            Ok(failed) => failed.into_iter().find(|(n, _)| enabled.contains(n)),
            Err(e) => enabled.first().map(|n| (n.clone(), e.to_string())),
        };
        let items_done: Vec<UpdateItem> = plan.items.clone();
        if let Some((plugin, reason)) = failure {
            self.roll_back_update(&backup, &rollback_items, &config_before, &state_before)?;
            self.audit.record(
                AuditEvent::new("plugin.update.rolled_back", "failed")
                    .plugin(&plugin)
                    .detail("reason", json!(reason))
                    .detail("backup", json!(backup.display().to_string())),
            );
            return Err(ProjectError::UpdateRolledBack {
                plugin,
                reason,
                backup,
            });
        }
        Ok(UpdateReport {
            updated: items_done,
            migrated,
            backup,
        })
    }

    /// Puts back the previous packages, grants, states and configuration after a failed
    /// update; plugins the update added are removed.
    fn roll_back_update(
        &self,
        backup: &std::path::Path,
        items: &[(String, Option<crate::PluginRecord>)],
        config_before: &ProjectConfig,
        state_before: &crate::ProjectState,
    ) -> Result<(), ProjectError> {
        let mut restore = Vec::new();
        for (name, previous) in items {
            match previous {
                Some(prev) => {
                    let kept = backup.join(name).join(prev.version.to_string());
                    let archive = prev
                        .package
                        .as_ref()
                        .map(|p| kept.join(&p.archive))
                        .ok_or_else(|| ProjectError::NotFromRegistry {
                            plugin: name.clone(),
                            source_text: prev.source.clone(),
                        })?;
                    let origin = prev
                        .registry
                        .as_ref()
                        .map(|registry| crate::RegistryOrigin {
                            registry: registry.clone(),
                            url: prev
                                .source
                                .strip_prefix("registry+")
                                .and_then(|s| s.split('#').next())
                                .unwrap_or_default()
                                .to_owned(),
                        });
                    let prepared = self.prepare_install_from(&archive, origin.as_ref())?;
                    let decisions = GrantDecisions {
                        granted: prev.grants.granted.clone(),
                        refused: prev.grants.refused.clone(),
                        approved: prev.grants.approved.clone(),
                    };
                    restore.push((prepared, decisions));
                }
                None => {
                    self.remove(name, true, false)?;
                }
            }
        }
        if !restore.is_empty() {
            self.commit_installs(restore, true)?;
        }
        config_before.write(&self.config_path())?;
        // Lifecycle states as they were (the failed start may have marked some `failed`).
        let _lock = self.lock()?;
        let mut state = self.state()?;
        for (name, previous) in items {
            if let (Some(prev), Some(now)) = (previous, state.plugins.get_mut(name)) {
                now.state = prev.state;
                now.reason = prev.reason.clone();
                now.failed_from = prev.failed_from;
            }
        }
        for (name, record) in &state_before.plugins {
            if let Some(now) = state.plugins.get_mut(name)
                && now.state == LifecycleState::Failed
                && record.state != LifecycleState::Failed
            {
                now.state = record.state;
                now.reason = record.reason.clone();
            }
        }
        self.commit(&state)
    }
}

/// The text of a changelog a package ships (`CHANGELOG.md`), for the update summary.
pub fn shipped_changelog(prepared: &PreparedInstall) -> Option<String> {
    ["CHANGELOG.md", "CHANGELOG", "changelog.md"]
        .iter()
        .find_map(|f| fs::read_to_string(prepared.extracted_dir().join(f)).ok())
}
