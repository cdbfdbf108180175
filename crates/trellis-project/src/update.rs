//! `trellis plugin update`: newer versions from the registries a plugin was installed from,
//! with the changes shown, the user's configuration migrated, a backup kept, and an automatic
//! rollback when the new version cannot be enabled.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use semver::{Version, VersionReq};
use serde::Serialize;
use serde_json::{Value, json};
use trellis_audit::AuditEvent;
use trellis_manifest::Manifest;
use trellis_registry::resolve::{Catalog, Resolved};

use crate::config::ProjectConfig;
use crate::fsutil::{copy_tree, io_err};
use crate::grants::GrantDecisions;
use crate::install::PreparedInstall;
use crate::registries::RegistryPlan;
use crate::{LifecycleState, Project, ProjectError};

/// Starts a project's plugins as a host does and returns those that failed, with why.
pub type StartCheck<'a> = &'a dyn Fn(&Project) -> Result<Vec<(String, String)>, ProjectError>;

/// Runs a configuration migration function and returns the new configuration, or why it
/// failed. This crate runs no plugin code, so the caller supplies it (on the wasm runtime).
pub type ConfigMigrate<'a> = &'a dyn Fn(MigrationCall<'_>) -> Result<Value, String>;

/// One call of a configuration migration function (`config.migrations[].function`).
#[derive(Debug)]
pub struct MigrationCall<'a> {
    pub plugin: &'a str,
    /// The manifest of the version being installed: its `runtime` and `limits` apply.
    pub manifest: &'a Manifest,
    /// Where the update staged (verified and extracted) the package of that version; the
    /// manifest's `runtime.entry` is relative to it.
    pub dir: &'a Path,
    pub function: &'a str,
    /// The installed version the update starts from.
    pub from: &'a Version,
    /// The version of the migration entry (which may be older than the version installed).
    pub to: &'a Version,
    /// The user's settings of the plugin as stored (`${VAR}` not expanded), after the earlier
    /// migrations and this entry's `rename` and `remove`.
    pub config: Value,
}

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

    /// Commits an update: migrates the configuration (declarative steps here, migration
    /// functions through `migrate`) and checks it against the new schemas, keeps a backup of
    /// each replaced package and of the configuration, installs everything as one change
    /// (refused before anything is written when an enabled plugin could not be enabled with
    /// the new versions), then starts the plugins with `start`. A failed migration refuses the
    /// update before anything is written. If a plugin that was enabled does not start, the
    /// previous versions, grants, states and configuration are put back and the reason is
    /// returned.
    pub fn commit_update(
        &self,
        plan: &UpdatePlan,
        items: Vec<(PreparedInstall, GrantDecisions)>,
        migrate: ConfigMigrate<'_>,
        start: StartCheck<'_>,
    ) -> Result<UpdateReport, ProjectError> {
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
        let backup = self.dir.join("backups").join(&stamp);
        let config_before = ProjectConfig::read_or_default(self)?;
        let state_before = self.state()?;

        // Migrations first, checked against the new schema: computed in memory, so a refusal
        // (a bad result, a failing migration function) leaves not even a backup behind.
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
                let Some(function) = &step.function else {
                    continue;
                };
                let before = user.clone();
                let after = migrate(MigrationCall {
                    plugin: name,
                    manifest: &prepared.manifest,
                    dir: prepared.extracted_dir(),
                    function,
                    from: &prev.version,
                    to: &step.version,
                    config: before.clone(),
                })
                .map_err(|reason| ProjectError::ConfigMigrationFailed {
                    plugin: name.to_owned(),
                    to: prepared.manifest.metadata.version.clone(),
                    version: step.version.clone(),
                    function: function.clone(),
                    reason,
                })?;
                changes.extend(function_changes(function, &before, &after));
                *user = after;
            }
            if !changes.is_empty() {
                migrated.push((name.to_owned(), changes));
            }
            let effective = self.effective_config(name, &prepared.manifest, &config_after);
            let expanded = crate::expand_config(
                &effective,
                &trellis_host_api::Grants::from_requests(&prepared.manifest.requires.capabilities),
                &*self.env,
            )
            .value;
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

/// What a migration function changed, by dotted key, for the user to review (values are left
/// out: they may be long, and the file shows them).
fn function_changes(function: &str, before: &Value, after: &Value) -> Vec<String> {
    let (mut old, mut new) = (BTreeMap::new(), BTreeMap::new());
    leaves(String::new(), before, &mut old);
    leaves(String::new(), after, &mut new);
    let mut changed = Vec::new();
    for (key, value) in &old {
        match new.get(key) {
            None => changed.push(format!("{key} removed")),
            Some(v) if v != value => changed.push(format!("{key} changed")),
            Some(_) => {}
        }
    }
    changed.extend(
        new.keys()
            .filter(|k| !old.contains_key(*k))
            .map(|k| format!("{k} added")),
    );
    if changed.is_empty() {
        return Vec::new();
    }
    vec![format!("{function}(): {}", changed.join(", "))]
}

/// Every value that is not a non-empty object, by dotted path; a whole configuration that is
/// not an object is `(root)`.
fn leaves<'v>(path: String, value: &'v Value, out: &mut BTreeMap<String, &'v Value>) {
    match value {
        Value::Object(map) if path.is_empty() || !map.is_empty() => {
            for (key, child) in map {
                let path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                leaves(path, child, out);
            }
        }
        other if path.is_empty() => {
            out.insert("(root)".to_owned(), other);
        }
        other => {
            out.insert(path, other);
        }
    }
}

/// The text of a changelog a package ships (`CHANGELOG.md`), for the update summary.
pub fn shipped_changelog(prepared: &PreparedInstall) -> Option<String> {
    ["CHANGELOG.md", "CHANGELOG", "changelog.md"]
        .iter()
        .find_map(|f| fs::read_to_string(prepared.extracted_dir().join(f)).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_changes_name_the_keys() {
        let before = json!({"threshold": 5, "keep": {"a": 1}, "list": [1], "same": true});
        let after = json!({"severity": {"threshold": 50, "level": {}}, "keep": {"a": 2}, "list": [1], "same": true});
        assert_eq!(
            function_changes("to_v2", &before, &after),
            [
                "to_v2(): keep.a changed, threshold removed, severity.level added, severity.threshold added"
            ]
        );
        assert!(function_changes("noop", &before, &before).is_empty());
        assert_eq!(
            function_changes("fill", &json!({}), &json!({"a": 1})),
            ["fill(): a added"]
        );
        assert_eq!(
            function_changes("wrap", &json!(7), &json!({"value": 7})),
            ["wrap(): (root) removed, value added"]
        );
    }
}
