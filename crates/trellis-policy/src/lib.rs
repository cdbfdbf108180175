//! The plugin policies an admin and a project set, and the verdicts they give.
//!
//! Two files may restrict which plugins run: the admin's (`TRELLIS_POLICY`, else
//! [`DEFAULT_ADMIN_POLICY`]) and the project's (`.trellis/policy.yaml`). Each holds a
//! `plugin_policy` mapping with optional `trust`, `capabilities`, `registries`, `plugins` and
//! `limits` sections. Files are read strictly: an unknown key, trust level or capability, a bad
//! size or duration, or a certifier line that is not an OpenSSH public key is an error naming the
//! file, line, field and a fix, because a typo in a policy would otherwise silently allow what
//! it meant to refuse.
//!
//! Where both files exist the stricter wins: a plugin must satisfy every file, so each file is
//! judged on its own and a refusal ([`Violation`]) names the rule and the file it came from.
//! Within one file, a match in an `allowed` list wins over a match in `blocked`, so
//! `allowed: [x]` with `blocked: ["*"]` means "only x".
//!
//! What this crate must not know about: how trust levels are established (signatures are
//! `trellis-trust`'s), projects' lifecycle, registries' protocols, runtimes, or the CLI. Callers
//! hand it the facts about a plugin and act on the verdicts.

mod error;
mod rules;
mod yaml;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use trellis_trust::TrustLevel;

pub use error::PolicyError;
pub use rules::{
    AllowBlockRules, CapabilityRules, LimitRules, PolicyFile, PolicyRules, ROOT_KEY, TrustRules,
};

/// The admin policy read when `TRELLIS_POLICY` is not set, if it exists.
pub const DEFAULT_ADMIN_POLICY: &str = "/etc/trellis/policy.yaml";
/// The environment variable naming the admin policy file.
pub const ADMIN_POLICY_ENV: &str = "TRELLIS_POLICY";
/// The project policy's file name inside `.trellis/`.
pub const PROJECT_POLICY_FILE: &str = "policy.yaml";

/// Who wrote a policy file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyScope {
    Admin,
    Project,
}

impl fmt::Display for PolicyScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PolicyScope::Admin => "admin",
            PolicyScope::Project => "project",
        })
    }
}

/// The policy files in force: the admin's first, then the project's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Policy {
    files: Vec<PolicyFile>,
}

/// What a policy judges a plugin by. The caller establishes these facts (trust from the
/// signature check, capabilities from the manifest).
#[derive(Debug, Clone, Copy)]
pub struct PluginFacts<'a> {
    pub name: &'a str,
    pub trust: TrustLevel,
    /// The principal the signature was verified for. `None` when the plugin is unsigned or
    /// self-signed: a signer nobody vouched for is only a claim, and a claim must never satisfy
    /// `trust.allowed_signers`.
    pub signer: Option<&'a str>,
    /// The capability names the manifest requests.
    pub capabilities: &'a [String],
    /// The registry the plugin comes from, when it comes from one.
    pub registry: Option<&'a str>,
}

/// One rule of one file that refuses something.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// The rule, e.g. `trust.minimum_level` (under `plugin_policy` in the file).
    pub rule: String,
    pub file: PathBuf,
    pub scope: PolicyScope,
    /// What is refused and why.
    pub message: String,
    /// What to do about it.
    pub hint: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "refused by {} in {} ({} policy): {}\n    hint: {}",
            self.rule,
            self.file.display(),
            self.scope,
            self.message,
            self.hint
        )
    }
}

/// Caps on what a plugin's manifest may ask for: the smallest over all files, with the file
/// that sets it; `None` where no file sets one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LimitCaps {
    /// Bytes.
    pub memory: Option<(u64, PathBuf)>,
    pub timeout: Option<(Duration, PathBuf)>,
}

impl Policy {
    /// Finds and reads the policy files that apply to the project whose state directory is
    /// `trellis_dir`: the system admin file (`/etc/trellis/policy.yaml`) when it exists, the
    /// file `TRELLIS_POLICY` names as a second admin file, and the project's. Files that do not
    /// exist are simply absent, except that `TRELLIS_POLICY` naming a missing file is an
    /// error: the admin meant a policy to be in force.
    pub fn discover(
        trellis_dir: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Policy, PolicyError> {
        discover_with_default(trellis_dir, env, Path::new(DEFAULT_ADMIN_POLICY))
    }

    pub fn from_files(files: Vec<PolicyFile>) -> Policy {
        Policy { files }
    }

    pub fn files(&self) -> &[PolicyFile] {
        &self.files
    }

    /// Whether no policy file is in force, so nothing is restricted.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Every rule of every file that refuses this plugin; empty when it may be used.
    pub fn check_plugin(&self, facts: &PluginFacts<'_>) -> Vec<Violation> {
        let mut violations = Vec::new();
        for file in &self.files {
            violations.extend(trust_minimum(file, facts));
            violations.extend(allowed_signer(file, facts));
            violations.extend(
                facts
                    .capabilities
                    .iter()
                    .filter_map(|cap| blocked_capability(file, facts.name, cap)),
            );
            violations.extend(allow_block(file, Subject::Plugin, facts.name));
            if let Some(url) = facts.registry {
                violations.extend(allow_block(file, Subject::Registry, url));
            }
        }
        violations
    }

    /// Every rule that refuses using the registry at `url`.
    pub fn check_registry(&self, url: &str) -> Vec<Violation> {
        self.files
            .iter()
            .filter_map(|file| allow_block(file, Subject::Registry, url))
            .collect()
    }

    /// The first file (admin before project) that requires an explicit grant for `capability`.
    pub fn approval_required(&self, capability: &str) -> Option<(PolicyScope, PathBuf)> {
        self.files
            .iter()
            .find(|file| {
                file.rules
                    .capabilities
                    .require_approval
                    .iter()
                    .any(|c| c == capability)
            })
            .map(|file| (file.scope, file.path.clone()))
    }

    /// The first file (admin before project) that blocks `capability` outright, as a violation
    /// for a plugin that is not named (the capability is refused whoever asks).
    pub fn blocked_capability(&self, capability: &str) -> Option<Violation> {
        self.files
            .iter()
            .find_map(|file| blocked_capability(file, "", capability))
    }

    /// The first file (admin before project) that says `sandbox: required`.
    pub fn sandbox_required(&self) -> Option<(PolicyScope, PathBuf)> {
        self.files
            .iter()
            .find(|file| file.rules.sandbox_required)
            .map(|file| (file.scope, file.path.clone()))
    }

    /// The smallest memory and timeout caps over all files.
    pub fn limit_caps(&self) -> LimitCaps {
        let mut caps = LimitCaps::default();
        for file in &self.files {
            let limits = &file.rules.limits;
            if let Some(memory) = limits.memory {
                tighten(&mut caps.memory, memory, file);
            }
            if let Some(timeout) = limits.timeout {
                tighten(&mut caps.timeout, timeout, file);
            }
        }
        caps
    }

    /// The admin policy files in force (the system file and `TRELLIS_POLICY`'s).
    pub fn admin_files(&self) -> Vec<&Path> {
        self.files
            .iter()
            .filter(|f| f.scope == PolicyScope::Admin)
            .map(|f| f.path.as_path())
            .collect()
    }

    /// Every certifier key line with the file that names it.
    ///
    /// Certifiers raise trust, so the stricter side decides who they are: when an admin policy
    /// exists only its certifiers count, otherwise a project could certify its own plugins
    /// past the admin's `minimum_level`.
    pub fn certifiers(&self) -> Vec<(String, PathBuf)> {
        let admin_present = self.files.iter().any(|f| f.scope == PolicyScope::Admin);
        self.files
            .iter()
            .filter(|file| !admin_present || file.scope == PolicyScope::Admin)
            .flat_map(|file| {
                file.rules
                    .trust
                    .certifiers
                    .iter()
                    .map(|line| (line.clone(), file.path.clone()))
            })
            .collect()
    }

    /// The highest minimum trust level over all files; `Unsigned` (anything goes) when none sets
    /// one.
    pub fn minimum_trust(&self) -> TrustLevel {
        self.files
            .iter()
            .filter_map(|file| file.rules.trust.minimum_level)
            .max()
            .unwrap_or(TrustLevel::Unsigned)
    }
}

fn discover_with_default(
    trellis_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    default_admin: &Path,
) -> Result<Policy, PolicyError> {
    let mut admin_paths: Vec<PathBuf> = Vec::new();
    // The system file applies whenever it exists: a variable a user can set must not lift it.
    if exists(default_admin, PolicyScope::Admin)? {
        admin_paths.push(default_admin.to_path_buf());
    }
    // An empty variable is treated as unset, the usual convention for clearing one in a shell.
    if let Some(named) = env(ADMIN_POLICY_ENV).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(named);
        if !exists(&path, PolicyScope::Admin)? {
            return Err(PolicyError::AdminPolicyMissing { path });
        }
        if !admin_paths.iter().any(|p| same_file(p, &path)) {
            admin_paths.push(path);
        }
    }
    let mut files = Vec::new();
    for path in &admin_paths {
        files.push(PolicyFile::load(path, PolicyScope::Admin)?);
    }
    let project_path = trellis_dir.join(PROJECT_POLICY_FILE);
    // Pointing TRELLIS_POLICY at the project's own file must not report each refusal twice.
    if !admin_paths
        .iter()
        .any(|admin| same_file(admin, &project_path))
        && exists(&project_path, PolicyScope::Project)?
    {
        files.push(PolicyFile::load(&project_path, PolicyScope::Project)?);
    }
    Ok(Policy { files })
}

/// Whether a policy file exists; an error when that cannot even be told (a directory that may
/// not be searched), since treating an unknowable admin policy as absent would lift it.
fn exists(path: &Path, scope: PolicyScope) -> Result<bool, PolicyError> {
    path.try_exists().map_err(|source| PolicyError::Io {
        path: path.to_path_buf(),
        scope,
        source,
    })
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn tighten<T: Ord + Copy>(cap: &mut Option<(T, PathBuf)>, value: T, file: &PolicyFile) {
    if cap.as_ref().is_none_or(|(current, _)| value < *current) {
        *cap = Some((value, file.path.clone()));
    }
}

fn violation(file: &PolicyFile, rule: &str, message: String, hint: String) -> Violation {
    Violation {
        rule: rule.to_owned(),
        file: file.path.clone(),
        scope: file.scope,
        message,
        hint,
    }
}

/// The second half of a hint: who can make `change` (which names the rule), and in which file.
fn who_can_change(file: &PolicyFile, change: &str) -> String {
    match file.scope {
        PolicyScope::Admin => format!(
            "only your administrator can {change} in {}",
            file.path.display()
        ),
        PolicyScope::Project => format!(
            "or, if the project agrees, {change} in {}",
            file.path.display()
        ),
    }
}

fn quoted_list(items: &[String]) -> String {
    items
        .iter()
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn trust_minimum(file: &PolicyFile, facts: &PluginFacts<'_>) -> Option<Violation> {
    let minimum = file.rules.trust.minimum_level?;
    if facts.trust >= minimum {
        return None;
    }
    let remedy = match minimum {
        // Nothing is below `unsigned`, so only `self-signed` gets here of the two.
        TrustLevel::Unsigned | TrustLevel::SelfSigned => {
            "use a signed package of the plugin".to_owned()
        }
        TrustLevel::Verified => {
            "use a package signed by a key listed in an allowed-signers file you or your \
             administrator trust"
                .to_owned()
        }
        TrustLevel::Certified => format!(
            "use a package countersigned by a certifier listed in {ROOT_KEY}.trust.certifiers"
        ),
    };
    Some(violation(
        file,
        "trust.minimum_level",
        format!(
            "plugin {} is {}, the policy requires {minimum} or higher",
            facts.name, facts.trust
        ),
        format!(
            "{remedy}; {}",
            who_can_change(file, &format!("lower {ROOT_KEY}.trust.minimum_level"))
        ),
    ))
}

fn allowed_signer(file: &PolicyFile, facts: &PluginFacts<'_>) -> Option<Violation> {
    let allowed = &file.rules.trust.allowed_signers;
    if allowed.is_empty() {
        return None;
    }
    let message = match facts.signer {
        Some(signer) if allowed.iter().any(|p| trellis_wildcard::matches(p, signer)) => {
            return None;
        }
        Some(signer) => format!(
            "plugin {} is signed by {signer}, who is not among the allowed signers ({})",
            facts.name,
            quoted_list(allowed)
        ),
        None if facts.trust == TrustLevel::Unsigned => format!(
            "plugin {} is unsigned, the policy only accepts plugins signed by {}",
            facts.name,
            quoted_list(allowed)
        ),
        None => format!(
            "plugin {} has no verified signer (it is {}), the policy only accepts plugins signed by {}",
            facts.name,
            facts.trust,
            quoted_list(allowed)
        ),
    };
    Some(violation(
        file,
        "trust.allowed_signers",
        message,
        format!(
            "use a package signed by one of those signers; {}",
            who_can_change(
                file,
                &format!("add the signer to {ROOT_KEY}.trust.allowed_signers")
            )
        ),
    ))
}

fn blocked_capability(file: &PolicyFile, plugin: &str, capability: &str) -> Option<Violation> {
    if !file
        .rules
        .capabilities
        .blocked
        .iter()
        .any(|c| c == capability)
    {
        return None;
    }
    let message = if plugin.is_empty() {
        format!("the `{capability}` capability is blocked")
    } else {
        format!("plugin {plugin} requests the `{capability}` capability, which is blocked")
    };
    Some(violation(
        file,
        "capabilities.blocked",
        message,
        format!(
            "use a plugin (or a version of it) that does not need `{capability}`; {}",
            who_can_change(
                file,
                &format!("remove `{capability}` from {ROOT_KEY}.capabilities.blocked")
            )
        ),
    ))
}

#[derive(Clone, Copy)]
enum Subject {
    Plugin,
    Registry,
}

fn allow_block(file: &PolicyFile, subject: Subject, value: &str) -> Option<Violation> {
    let (rules, section, noun) = match subject {
        Subject::Plugin => (&file.rules.plugins, "plugins", "plugin"),
        Subject::Registry => (&file.rules.registries, "registries", "registry"),
    };
    let candidates = match subject {
        // `https://host/*` is meant to cover the registry at `https://host` itself too.
        Subject::Registry if !value.ends_with('/') => vec![value.to_owned(), format!("{value}/")],
        _ => vec![value.to_owned()],
    };
    let matches = |pattern: &String| {
        candidates
            .iter()
            .any(|c| trellis_wildcard::matches(pattern, c))
    };
    if rules.allowed.iter().any(matches) {
        return None;
    }
    if !rules.allowed.is_empty() {
        let rule = format!("{section}.allowed");
        return Some(violation(
            file,
            &rule,
            format!(
                "{noun} {value} is not in the allowed list ({})",
                quoted_list(&rules.allowed)
            ),
            format!(
                "only {section} matching that list may be used; {}",
                who_can_change(file, &format!("add `{value}` to {ROOT_KEY}.{rule}"))
            ),
        ));
    }
    let pattern = rules.blocked.iter().find(|p| matches(p))?;
    let rule = format!("{section}.blocked");
    Some(violation(
        file,
        &rule,
        format!("{noun} {value} matches the blocked pattern `{pattern}`"),
        format!(
            "use another {noun}; {}",
            who_can_change(
                file,
                &format!(
                    "add `{value}` to {ROOT_KEY}.{section}.allowed (an allowed match wins over \
                     a blocked one in the same file)"
                )
            )
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_admin_policy_is_read_when_trellis_policy_is_unset() {
        let dir = tempfile::tempdir().unwrap();
        let admin = dir.path().join("admin.yaml");
        std::fs::write(&admin, "plugin_policy:\n  plugins:\n    blocked: [bad]\n").unwrap();
        let trellis_dir = dir.path().join(".trellis");
        std::fs::create_dir(&trellis_dir).unwrap();

        let policy = discover_with_default(&trellis_dir, &|_| None, &admin).unwrap();
        assert_eq!(policy.files().len(), 1);
        assert_eq!(policy.files()[0].scope, PolicyScope::Admin);
        assert_eq!(policy.files()[0].path, admin);

        let absent = dir.path().join("absent.yaml");
        let policy = discover_with_default(&trellis_dir, &|_| None, &absent).unwrap();
        assert!(policy.is_empty());
    }

    #[test]
    fn trellis_policy_adds_to_the_default_admin_policy_and_cannot_lift_it() {
        let dir = tempfile::tempdir().unwrap();
        let default_admin = dir.path().join("default.yaml");
        std::fs::write(&default_admin, "plugin_policy: {}\n").unwrap();
        let named = dir.path().join("named.yaml");
        std::fs::write(&named, "plugin_policy: {}\n").unwrap();
        let env_value = named.to_string_lossy().into_owned();
        let env = move |key: &str| (key == ADMIN_POLICY_ENV).then(|| env_value.clone());

        let policy = discover_with_default(dir.path(), &env, &default_admin).unwrap();
        let paths: Vec<&Path> = policy.files().iter().map(|f| f.path.as_path()).collect();
        assert_eq!(paths, [default_admin.as_path(), named.as_path()]);

        // Naming the system file itself does not read it twice.
        let same = default_admin.to_string_lossy().into_owned();
        let env = move |key: &str| (key == ADMIN_POLICY_ENV).then(|| same.clone());
        let policy = discover_with_default(dir.path(), &env, &default_admin).unwrap();
        assert_eq!(policy.files().len(), 1);
    }
}
