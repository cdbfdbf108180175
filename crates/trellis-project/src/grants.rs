//! Capability grants: what an install asks the user (only what changed since the previous
//! package), the decisions, revoking and granting later, and which grants are in effect now
//! (requested ∩ granted for this package ∩ allowed by the policy).

use std::path::PathBuf;

use chrono::Utc;
use serde::Serialize;
use serde_json::json;
use trellis_audit::AuditEvent;
use trellis_manifest::{CapabilityRequest, Manifest, did_you_mean};
use trellis_policy::Policy;

use crate::state::{GrantSet, PluginRecord};
use crate::{Project, ProjectError};

/// A capability waiting for the user's decision.
#[derive(Debug, Clone, Serialize)]
pub struct PendingGrant {
    pub request: CapabilityRequest,
    /// The policy file that says this capability needs an explicit approval (`--yes` will not
    /// grant it).
    pub approval_required_by: Option<PathBuf>,
    /// The previous package requested this capability too, with another scope.
    pub changed: bool,
}

/// What an install or update asks of the user: only the difference to what was decided for
/// the previous package of the same plugin.
#[derive(Debug, Clone, Serialize)]
pub struct GrantPlan {
    pub plugin: String,
    /// Granted before for an identical request; kept without asking.
    pub carried: Vec<CapabilityRequest>,
    /// Refused before for an identical request; stays refused without asking.
    pub carried_refusals: Vec<CapabilityRequest>,
    /// Of `carried`, those the user approved one by one before.
    pub carried_approved: Vec<String>,
    /// New or changed requests.
    pub pending: Vec<PendingGrant>,
    /// Granted before, no longer requested.
    pub dropped: Vec<String>,
}

/// How a front end answers a [`GrantPlan`] without asking: `--yes`, `--grant`, `--deny`.
#[derive(Debug, Clone, Default)]
pub struct GrantChoices {
    /// Grant every pending capability the policy does not require approval for.
    pub yes: bool,
    pub grant: Vec<String>,
    pub deny: Vec<String>,
}

/// Asks the user about one capability; `Ok(true)` grants it.
pub type GrantPrompt<'a> = &'a mut dyn FnMut(&PendingGrant) -> std::io::Result<bool>;

#[derive(Debug, Clone, Default, Serialize)]
pub struct GrantDecisions {
    pub granted: Vec<CapabilityRequest>,
    pub refused: Vec<String>,
    /// Of `granted`, those decided one by one rather than by `--yes`.
    pub approved: Vec<String>,
}

impl GrantPlan {
    /// Decides every pending capability from `choices`, then by `prompt` when there is a
    /// terminal. Without a prompt, anything still undecided fails the whole step and lists
    /// what to pass: nothing is granted by default.
    pub fn decide(
        &self,
        choices: &GrantChoices,
        mut prompt: Option<GrantPrompt<'_>>,
    ) -> Result<GrantDecisions, ProjectError> {
        let requested: Vec<&str> = self
            .carried
            .iter()
            .map(|c| c.name.as_str())
            .chain(self.carried_refusals.iter().map(|c| c.name.as_str()))
            .chain(self.pending.iter().map(|p| p.request.name.as_str()))
            .collect();
        for name in choices.grant.iter().chain(&choices.deny) {
            if !requested.contains(&name.as_str()) {
                return Err(ProjectError::UnknownGrant {
                    plugin: self.plugin.clone(),
                    capability: name.clone(),
                    requested: requested.iter().map(|s| (*s).to_owned()).collect(),
                    suggestion: did_you_mean(name, requested.iter().copied()).map(str::to_owned),
                });
            }
            if choices.grant.contains(name) && choices.deny.contains(name) {
                return Err(ProjectError::ContradictoryGrant {
                    capability: name.clone(),
                });
            }
        }
        // An explicit flag also overrides a decision carried from the previous package.
        let mut decisions = GrantDecisions::default();
        for request in &self.carried {
            if choices.deny.contains(&request.name) {
                decisions.refused.push(request.name.clone());
            } else {
                decisions.granted.push(request.clone());
                if self.carried_approved.contains(&request.name)
                    || choices.grant.contains(&request.name)
                {
                    decisions.approved.push(request.name.clone());
                }
            }
        }
        for request in &self.carried_refusals {
            if choices.grant.contains(&request.name) {
                decisions.granted.push(request.clone());
                decisions.approved.push(request.name.clone());
            } else {
                decisions.refused.push(request.name.clone());
            }
        }

        let mut undecided = Vec::new();
        for pending in &self.pending {
            let name = &pending.request.name;
            let (grant, one_by_one) = if choices.deny.contains(name) {
                (false, true)
            } else if choices.grant.contains(name) {
                (true, true)
            } else if choices.yes && pending.approval_required_by.is_none() {
                (true, false)
            } else if let Some(ask) = prompt.as_mut() {
                let answer = ask(pending).map_err(|source| ProjectError::Io {
                    path: PathBuf::from("/dev/tty"),
                    source,
                })?;
                (answer, true)
            } else {
                undecided.push(pending.clone());
                continue;
            };
            if grant {
                decisions.granted.push(pending.request.clone());
                if one_by_one {
                    decisions.approved.push(name.clone());
                }
            } else {
                decisions.refused.push(name.clone());
            }
        }
        if !undecided.is_empty() {
            return Err(ProjectError::GrantsUndecided {
                plugin: self.plugin.clone(),
                pending: undecided,
            });
        }
        Ok(decisions)
    }
}

/// A capability the user granted that the plugin may not use now, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WithheldGrant {
    pub capability: String,
    pub reason: String,
}

/// Splits a plugin's grants into those in effect (see [`Project::effective_grants`]) and those
/// withheld, with the reason for each.
pub(crate) fn grant_status(
    record: &PluginRecord,
    manifest: &Manifest,
    policy: &Policy,
) -> (Vec<CapabilityRequest>, Vec<WithheldGrant>) {
    let name = &manifest.metadata.name;
    let package = record.package.as_ref().map(|p| p.sha256.as_str());
    let stale = package != Some(record.grants.package.as_str());
    let mut effective = Vec::new();
    let mut withheld = Vec::new();
    for granted in &record.grants.granted {
        let withhold = |reason: String| WithheldGrant {
            capability: granted.name.clone(),
            reason,
        };
        let request = manifest
            .requires
            .capabilities
            .iter()
            .find(|r| r.name == granted.name);
        let Some(request) = request else {
            withheld.push(withhold("no longer requested by the plugin".to_owned()));
            continue;
        };
        if stale {
            withheld.push(withhold(format!(
                "granted for another package ({}); reinstall or update to decide again",
                record.grants.package
            )));
        } else if !same_grant(granted, request) {
            withheld.push(withhold(format!(
                "granted for another scope ({}); the plugin now asks for {}",
                scope_text(granted),
                scope_text(request)
            )));
        } else if let Some(v) = policy.blocked_capability(&granted.name) {
            withheld.push(withhold(format!(
                "blocked by {} in {}",
                v.rule,
                v.file.display()
            )));
        } else if let Some((_, file)) = policy
            .approval_required(&granted.name)
            .filter(|_| !record.grants.approved.contains(&granted.name))
        {
            withheld.push(withhold(format!(
                "needs approval (capabilities.require_approval in {}): run `trellis plugin grants {name} grant {}`",
                file.display(),
                granted.name
            )));
        } else {
            effective.push(request.clone());
        }
    }
    // In manifest order, as the author listed them.
    effective.sort_by_key(|c| {
        manifest
            .requires
            .capabilities
            .iter()
            .position(|r| r.name == c.name)
    });
    (effective, withheld)
}

/// What to ask, given what was decided for the previous package of the same plugin.
pub(crate) fn grant_plan(
    name: &str,
    manifest: &Manifest,
    previous: Option<&GrantSet>,
    package_sha256: &str,
    policy: &Policy,
) -> GrantPlan {
    let mut plan = GrantPlan {
        plugin: name.to_owned(),
        carried: Vec::new(),
        carried_refusals: Vec::new(),
        carried_approved: Vec::new(),
        pending: Vec::new(),
        dropped: Vec::new(),
    };
    // In manifest order: the author lists what matters most first.
    let requested: Vec<&CapabilityRequest> = manifest.requires.capabilities.iter().collect();
    for request in &requested {
        let before = previous.and_then(|p| p.granted.iter().find(|g| g.name == request.name));
        let refused_before = previous.is_some_and(|p| p.refused.contains(&request.name));
        let same_package = previous.is_some_and(|p| p.package == package_sha256);
        let approved_before = previous.is_some_and(|p| p.approved.contains(&request.name));
        let needs_approval = policy.approval_required(&request.name).is_some();
        match before {
            // A blanket grant from before an approval rule does not carry past that rule.
            Some(g) if same_grant(g, request) && (approved_before || !needs_approval) => {
                plan.carried.push((*request).clone());
                if approved_before {
                    plan.carried_approved.push(request.name.clone());
                }
            }
            // Refusals carry no scope: keep one only for the same package or a bare request.
            None if refused_before
                && (same_package
                    || same_grant(request, &CapabilityRequest::named(&request.name))) =>
            {
                plan.carried_refusals.push((*request).clone());
            }
            other => plan.pending.push(PendingGrant {
                request: (*request).clone(),
                approval_required_by: policy
                    .approval_required(&request.name)
                    .map(|(_, file)| file),
                changed: other.is_some_and(|g| !same_grant(g, request)),
            }),
        }
    }
    if let Some(previous) = previous {
        plan.dropped = previous
            .granted
            .iter()
            .filter(|g| !requested.iter().any(|r| r.name == g.name))
            .map(|g| g.name.clone())
            .collect();
    }
    plan
}

/// Whether a grant covers a request: same capability, same scope. The author's reason and the
/// order of scope entries do not matter.
pub fn same_grant(a: &CapabilityRequest, b: &CapabilityRequest) -> bool {
    let sorted = |v: &Vec<String>| {
        let mut v = v.clone();
        v.sort();
        v.dedup();
        v
    };
    a.name == b.name
        && sorted(&a.paths) == sorted(&b.paths)
        && sorted(&a.hosts) == sorted(&b.hosts)
        && sorted(&a.commands) == sorted(&b.commands)
        && sorted(&a.variables) == sorted(&b.variables)
}

/// A requested capability's scope in words, exactly as the runtime enforces it (the install
/// prompt, `plugin grants` and the audit trail show this): `paths: README.md only, src/ and
/// everything in it`, `hosts: api.example.com`, `commands: git log *`. Empty for capabilities
/// without a scope.
pub fn scope_text(c: &CapabilityRequest) -> String {
    trellis_host_api::describe_scope(c)
}

impl Project {
    /// The grants of one installed plugin.
    pub fn grants(&self, name: &str) -> Result<GrantSet, ProjectError> {
        let state = self.state()?;
        Ok(self.record(&state, name)?.grants.clone())
    }

    /// Withdraws a granted capability; the plugin is denied it from its next call on.
    pub fn revoke_grant(
        &self,
        name: &str,
        capability: &str,
    ) -> Result<crate::Transition, ProjectError> {
        self.change_grant(name, capability, false)
    }

    /// Grants a capability the plugin requests and the policy does not block.
    pub fn grant(&self, name: &str, capability: &str) -> Result<crate::Transition, ProjectError> {
        self.change_grant(name, capability, true)
    }

    pub(crate) fn change_grant(
        &self,
        name: &str,
        capability: &str,
        grant: bool,
    ) -> Result<crate::Transition, ProjectError> {
        let state = self.state()?;
        self.record(&state, name)?;
        let manifest = self.read_manifest(name)?.manifest;
        let request = manifest
            .requires
            .capabilities
            .iter()
            .find(|c| c.name == capability)
            .cloned();
        let Some(request) = request else {
            let requested = manifest.capability_names();
            return Err(ProjectError::UnknownGrant {
                plugin: name.to_owned(),
                capability: capability.to_owned(),
                requested: requested.iter().map(|s| (*s).to_owned()).collect(),
                suggestion: did_you_mean(capability, requested.iter().copied()).map(str::to_owned),
            });
        };
        if grant {
            let security = self.security()?;
            if let Some(v) = security.policy.blocked_capability(capability) {
                return Err(self.refuse_by_policy(name, "grant", vec![v]));
            }
        }
        let _lock = self.lock()?;
        let mut state = self.state()?;
        let record = self.record(&state, name)?.clone();
        let mut grants = record.grants.clone();
        let was_granted = grants.granted.iter().any(|c| c.name == capability);
        let was_approved = grants.approved.iter().any(|c| c == capability);
        // Granting again what `--yes` granted is how a user approves it one by one.
        if was_granted == grant && (!grant || was_approved) {
            return Ok(crate::Transition::Unchanged);
        }
        if grant {
            grants.granted.retain(|c| c.name != capability);
            grants.granted.push(request.clone());
            grants.refused.retain(|c| c != capability);
            grants.approved.push(capability.to_owned());
        } else {
            grants.granted.retain(|c| c.name != capability);
            grants.approved.retain(|c| c != capability);
            if !grants.refused.iter().any(|c| c == capability) {
                grants.refused.push(capability.to_owned());
            }
        }
        grants.decided_at = Some(Utc::now());
        // The decision is about the package installed now.
        if let Some(package) = &record.package {
            grants.package = package.sha256.clone();
        }
        if let Some(entry) = state.plugins.get_mut(name) {
            entry.grants = grants;
            entry.changed_at = Utc::now();
        }
        self.commit(&state)?;
        let (action, outcome) = if grant {
            ("grant.granted", "ok")
        } else {
            ("grant.revoked", "ok")
        };
        self.audit.record(
            AuditEvent::new(action, outcome)
                .plugin(name)
                .capability(capability)
                .detail("scope", json!(scope_text(&request))),
        );
        Ok(crate::Transition::Changed)
    }

    /// The capabilities a plugin may use now: requested by its manifest, granted by the user
    /// for this very package (same request, same scope), not blocked by the policy, and
    /// approved one by one where the policy requires approval.
    pub(crate) fn effective_grants(
        &self,
        record: &PluginRecord,
        manifest: &Manifest,
        policy: &Policy,
    ) -> Vec<CapabilityRequest> {
        grant_status(record, manifest, policy).0
    }
}
