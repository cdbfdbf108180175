//! Lifecycle transitions: install, enable, disable, remove, and `failed` with its reason;
//! dependencies and name conflicts are checked before anything is written.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use chrono::Utc;
use serde_json::json;
use trellis_audit::AuditEvent;
use trellis_manifest::Manifest;
use trellis_manifest::config_schema::ConfigValidator;

use crate::config::ProjectConfig;
use crate::fsutil::{io_err, remove_tree};
use crate::{
    Conflict, InstallOptions, InstallReport, LifecycleState, Project, ProjectError, ProjectState,
    Transition, deps, journal,
};

impl Project {
    /// Removes leftovers of interrupted transitions: staging and backup directories, and plugin
    /// directories that no state entry claims.
    pub(crate) fn clean_orphans(&self, state: &ProjectState) -> Result<(), ProjectError> {
        for root in [
            self.plugins_dir(),
            self.dir.join("packages"),
            self.dir.join("envs"),
        ] {
            let Ok(entries) = fs::read_dir(&root) else {
                continue;
            };
            for entry in entries.filter_map(Result::ok) {
                let name = entry.file_name().to_string_lossy().into_owned();
                let path = entry.path();
                if name.starts_with('.') {
                    remove_tree(&path)?;
                } else if name.starts_with('@') {
                    let scoped = fs::read_dir(&path).map_err(io_err(&path))?;
                    for inner in scoped.filter_map(Result::ok) {
                        let full = format!("{name}/{}", inner.file_name().to_string_lossy());
                        if !state.plugins.contains_key(&full) {
                            remove_tree(&inner.path())?;
                        }
                    }
                } else if !state.plugins.contains_key(&name) {
                    remove_tree(&path)?;
                }
            }
        }
        Ok(())
    }

    /// Installs a plugin from a package archive (with its `.sig` beside it) or a plugin
    /// directory, deciding grants from `options` alone: what they leave undecided fails the
    /// install. Front ends that can ask the user use [`Project::prepare_install`] and
    /// [`Project::commit_install`] instead. The plugin starts `installed`; with `force` an
    /// installed plugin of the same name is replaced and keeps its state.
    pub fn install(
        &self,
        src: &Path,
        options: &InstallOptions,
    ) -> Result<InstallReport, ProjectError> {
        let prepared = self.prepare_install(src)?;
        if let Some(prev) = &prepared.previous
            && !options.force
        {
            return Err(ProjectError::AlreadyInstalled {
                name: prepared.name().to_owned(),
                installed: prev.version.clone(),
                source_text: prev.source.clone(),
            });
        }
        let decisions = prepared.plan.decide(&options.grants, None)?;
        self.commit_install(prepared, decisions, options.force)
    }

    /// Everything that must hold for `name` (with `manifest`) to be enabled given `state`.
    pub(crate) fn check_enable(
        &self,
        state: &ProjectState,
        name: &str,
        manifest: &Manifest,
        allow_conflicts: bool,
    ) -> Result<(), ProjectError> {
        let file = self.plugin_dir(name).join("plugin.yaml");
        self.check_compatibility(manifest, &file)?;
        self.check_interpreter(manifest, &file)?;

        // Cycles first: with a cycle, "enable the dependency first" could never be satisfied.
        let manifests = self.installed_manifests(state, Some((name, manifest)))?;
        let graph: deps::Graph<'_> = manifests
            .iter()
            .map(|(n, m)| {
                let edges = m
                    .requires
                    .plugins
                    .iter()
                    .filter(|d| manifests.contains_key(d.name.as_str()))
                    .map(|d| d.name.as_str())
                    .collect();
                (n.as_str(), edges)
            })
            .collect();
        if let Some(cycle) = deps::find_cycle_from(&graph, name) {
            return Err(ProjectError::DependencyCycle { cycle });
        }

        for dep in &manifest.requires.plugins {
            let requirement = format!("`{}`", dep.version);
            match state.plugins.get(&dep.name) {
                None if dep.optional => {}
                None => {
                    return Err(ProjectError::MissingDependency {
                        plugin: name.to_owned(),
                        dependency: dep.name.clone(),
                        requirement,
                    });
                }
                Some(record) if !dep.version.matches(&record.version) => {
                    return Err(ProjectError::IncompatibleDependency {
                        plugin: name.to_owned(),
                        dependency: dep.name.clone(),
                        requirement,
                        installed: record.version.clone(),
                    });
                }
                Some(record) if record.state != LifecycleState::Enabled && !dep.optional => {
                    return Err(ProjectError::DependencyNotEnabled {
                        plugin: name.to_owned(),
                        dependency: dep.name.clone(),
                        state: record.state,
                    });
                }
                Some(_) => {}
            }
        }

        if let Some(config) = &manifest.config
            && let Some(schema) = &config.schema
        {
            let effective =
                self.effective_config(name, manifest, &ProjectConfig::read_or_default(self)?);
            let expanded = self.expand_requested(name, manifest, &effective)?;
            let validator =
                ConfigValidator::new(schema).map_err(|reason| ProjectError::ConfigKey {
                    plugin: name.to_owned(),
                    key: "config.schema".to_owned(),
                    reason,
                })?;
            let violations = validator.validate(&expanded);
            if !violations.is_empty() {
                return Err(ProjectError::ConfigInvalid {
                    plugin: name.to_owned(),
                    violations,
                });
            }
        }

        if !allow_conflicts {
            let conflicts = self.conflicts_with_enabled(state, name, manifest)?;
            if !conflicts.is_empty() {
                return Err(ProjectError::Conflicts {
                    plugin: name.to_owned(),
                    conflicts,
                });
            }
        }
        Ok(())
    }

    /// Manifests of all installed plugins, with `override_one` standing in for one of them.
    pub(crate) fn installed_manifests(
        &self,
        state: &ProjectState,
        override_one: Option<(&str, &Manifest)>,
    ) -> Result<BTreeMap<String, Manifest>, ProjectError> {
        let mut out = BTreeMap::new();
        for name in state.plugins.keys() {
            match override_one {
                Some((n, m)) if n == name => {
                    out.insert(name.clone(), m.clone());
                }
                _ => {
                    // A broken installed manifest must not block work on other plugins; it
                    // shows up as `failed` when that plugin loads.
                    if let Ok(loaded) = self.read_manifest(name) {
                        out.insert(name.clone(), loaded.manifest);
                    }
                }
            }
        }
        if let Some((n, m)) = override_one {
            out.entry(n.to_owned()).or_insert_with(|| m.clone());
        }
        Ok(out)
    }

    pub(crate) fn conflicts_with_enabled(
        &self,
        state: &ProjectState,
        name: &str,
        manifest: &Manifest,
    ) -> Result<Vec<Conflict>, ProjectError> {
        let mine = manifest.provided_names();
        let mut conflicts = Vec::new();
        for (other, record) in &state.plugins {
            if other == name || record.state != LifecycleState::Enabled {
                continue;
            }
            let Ok(loaded) = self.read_manifest(other) else {
                continue;
            };
            let theirs = loaded.manifest.provided_names();
            for (kind, names) in &mine {
                let their_names: BTreeSet<&str> =
                    theirs.get(kind).into_iter().flatten().copied().collect();
                for n in names.iter().filter(|n| their_names.contains(*n)) {
                    conflicts.push(Conflict {
                        kind,
                        name: (*n).to_owned(),
                        other_plugin: other.clone(),
                    });
                }
            }
        }
        Ok(conflicts)
    }

    /// Enables an installed (or disabled, or failed) plugin after checking its compatibility,
    /// dependencies, configuration and name conflicts.
    pub fn enable(&self, name: &str, allow_conflicts: bool) -> Result<Transition, ProjectError> {
        let state = self.state()?;
        self.record(&state, name)?;
        let _lock = self.lock()?;
        let mut state = self.state()?;
        let record = self.record(&state, name)?.clone();
        if record.state == LifecycleState::Enabled && (record.allow_conflicts || !allow_conflicts) {
            return Ok(Transition::Unchanged);
        }
        let loaded = match self.read_manifest(name) {
            Ok(loaded) => loaded,
            Err(e) => {
                self.mark_failed_locked(&mut state, name, &e.to_string())?;
                return Err(e);
            }
        };
        self.check_enable(&state, name, &loaded.manifest, allow_conflicts)?;
        let security = self.security()?;
        self.check_policy(&security, name, &record, &loaded.manifest, "enable")?;
        let changed = self.changed_files(name, &record)?;
        if !changed.is_empty() {
            return Err(ProjectError::FilesChanged {
                plugin: name.to_owned(),
                changes: changed.iter().map(ToString::to_string).collect(),
            });
        }
        let entry = state
            .plugins
            .get_mut(name)
            .ok_or_else(|| self.not_installed(name, &ProjectState::default()))?;
        entry.state = LifecycleState::Enabled;
        entry.reason = None;
        entry.failed_from = None;
        entry.allow_conflicts = allow_conflicts || entry.allow_conflicts;
        entry.changed_at = Utc::now();
        let version = entry.version.to_string();
        self.commit(&state)?;
        self.audit.record(
            AuditEvent::new("plugin.enabled", "ok")
                .plugin(name)
                .detail("version", json!(version)),
        );
        self.emit(
            "plugin.enabled",
            json!({"plugin": name, "version": version}),
        );
        Ok(Transition::Changed)
    }

    /// Enabled plugins that require `name` (not optionally).
    pub(crate) fn enabled_dependents(
        &self,
        state: &ProjectState,
        name: &str,
    ) -> Result<Vec<String>, ProjectError> {
        Ok(self
            .installed_manifests(state, None)?
            .iter()
            .filter(|(other, m)| {
                state
                    .plugins
                    .get(*other)
                    .is_some_and(|r| r.state == LifecycleState::Enabled)
                    && m.requires
                        .plugins
                        .iter()
                        .any(|d| d.name == name && !d.optional)
            })
            .map(|(other, _)| other.clone())
            .collect())
    }

    /// Disables a plugin. Refuses while enabled plugins require it, unless `force`, in which
    /// case they are marked failed.
    pub fn disable(&self, name: &str, force: bool) -> Result<Transition, ProjectError> {
        let state = self.state()?;
        self.record(&state, name)?;
        let _lock = self.lock()?;
        let mut state = self.state()?;
        let record = self.record(&state, name)?.clone();
        if record.state == LifecycleState::Disabled {
            return Ok(Transition::Unchanged);
        }
        let dependents = self.enabled_dependents(&state, name)?;
        if !dependents.is_empty() && !force {
            return Err(ProjectError::HasDependents {
                plugin: name.to_owned(),
                action: "disable",
                dependents,
            });
        }
        if let Some(entry) = state.plugins.get_mut(name) {
            entry.state = LifecycleState::Disabled;
            entry.reason = None;
            entry.failed_from = None;
            entry.changed_at = Utc::now();
        }
        let failed = self.fail_dependents(&mut state, &dependents, name, "disabled");
        self.commit(&state)?;
        self.audit.record(
            AuditEvent::new("plugin.disabled", "ok")
                .plugin(name)
                .detail("version", json!(record.version.to_string()))
                .detail("forced", json!(force)),
        );
        self.emit(
            "plugin.disabled",
            json!({"plugin": name, "version": record.version.to_string()}),
        );
        for (dependent, reason) in failed {
            self.emit(
                "plugin.error",
                json!({"plugin": dependent, "error": reason, "context": "dependency"}),
            );
        }
        Ok(Transition::Changed)
    }

    pub(crate) fn fail_dependents(
        &self,
        state: &mut ProjectState,
        dependents: &[String],
        name: &str,
        what: &str,
    ) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for dependent in dependents {
            if let Some(entry) = state.plugins.get_mut(dependent) {
                let reason = format!("requires `{name}`, which was {what}");
                entry.failed_from = Some(entry.state);
                entry.state = LifecycleState::Failed;
                entry.reason = Some(reason.clone());
                entry.changed_at = Utc::now();
                out.push((dependent.clone(), reason));
            }
        }
        out
    }

    /// Removes a plugin's files and entry. Refuses while enabled plugins require it, unless
    /// `force`. With `purge` its configuration in `config.yaml` goes too.
    pub fn remove(&self, name: &str, force: bool, purge: bool) -> Result<Transition, ProjectError> {
        let state = self.state()?;
        self.record(&state, name)?;
        let _lock = self.lock()?;
        let mut state = self.state()?;
        let record = self.record(&state, name)?.clone();
        let dependents = self.enabled_dependents(&state, name)?;
        if !dependents.is_empty() && !force {
            return Err(ProjectError::HasDependents {
                plugin: name.to_owned(),
                action: "remove",
                dependents,
            });
        }
        // The plugin's files and its kept package go aside, the entry (with its grants) goes
        // at the commit: a crash at any step leaves the plugin installed or gone, never half.
        let target = self.plugin_dir(name);
        let mut journal = journal::Journal::new("remove", name);
        journal
            .slot(self, &target, None)
            .slot(self, &self.packages_dir(name), None)
            .slot(self, &self.python_env_dir(name), None);
        state.plugins.remove(name);
        let failed = self.fail_dependents(&mut state, &dependents, name, "removed");
        self.apply_journal(&journal, &mut state)?;
        self.audit.record(
            AuditEvent::new("plugin.removed", "ok")
                .plugin(name)
                .detail("version", json!(record.version.to_string()))
                .detail("purge", json!(purge)),
        );
        if purge {
            let mut config = ProjectConfig::read_or_default(self)?;
            if config.plugins.remove(name).is_some() {
                config.write(&self.config_path())?;
            }
        }
        self.emit(
            "plugin.removed",
            json!({"plugin": name, "version": record.version.to_string()}),
        );
        for (dependent, reason) in failed {
            self.emit(
                "plugin.error",
                json!({"plugin": dependent, "error": reason, "context": "dependency"}),
            );
        }
        Ok(Transition::Changed)
    }

    /// Records that a plugin failed (e.g. its runtime could not start it), keeping the reason
    /// and emitting `plugin.error`. Embedding hosts call this when a plugin misbehaves.
    pub fn mark_failed(&self, name: &str, reason: &str) -> Result<(), ProjectError> {
        let state = self.state()?;
        self.record(&state, name)?;
        let _lock = self.lock()?;
        let mut state = self.state()?;
        self.mark_failed_locked(&mut state, name, reason)
    }

    pub(crate) fn mark_failed_locked(
        &self,
        state: &mut ProjectState,
        name: &str,
        reason: &str,
    ) -> Result<(), ProjectError> {
        let Some(entry) = state.plugins.get_mut(name) else {
            return Ok(());
        };
        if entry.state != LifecycleState::Failed {
            entry.failed_from = Some(entry.state);
        }
        entry.state = LifecycleState::Failed;
        entry.reason = Some(reason.to_owned());
        entry.changed_at = Utc::now();
        self.commit(state)?;
        self.emit(
            "plugin.error",
            json!({"plugin": name, "error": reason, "context": "load"}),
        );
        Ok(())
    }
}
