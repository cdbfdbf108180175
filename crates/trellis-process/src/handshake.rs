//! The handshake: the host offers protocol versions, the plugin picks one and states what it
//! implements, and the host holds that against the manifest's `provides`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use trellis_manifest::command_inputs::{DeclaredInputs, differences};
use trellis_manifest::{Manifest, PhaseMode};

use crate::protocol::PROTOCOL_VERSIONS;

/// What a plugin says it implements.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Implements {
    pub commands: Vec<String>,
    /// Hook names and event patterns.
    pub hooks: Vec<String>,
    /// `<phase>:<stage>`, stage `before`, `after` or `replace`.
    pub phases: Vec<String>,
    /// Configuration migration functions.
    pub migrations: Vec<String>,
    /// Each command's arguments and options as the code declares them (the SDKs report them;
    /// a plugin that leaves this out is not checked).
    pub command_inputs: Option<BTreeMap<String, DeclaredInputs>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Answer {
    pub protocol_version: u32,
    #[serde(default)]
    pub implements: Implements,
    /// The SDK or program that answered (for logs), e.g. `{"name": "trellis-plugin-sdk", "version": "0.1.0"}`.
    #[serde(default)]
    pub sdk: Option<Value>,
}

pub(crate) fn offer(manifest: &Manifest) -> Value {
    json!({
        "protocol_versions": PROTOCOL_VERSIONS,
        "host": {"name": "trellis", "version": env!("CARGO_PKG_VERSION")},
        "plugin": {"name": manifest.metadata.name, "version": manifest.metadata.version.to_string()},
    })
}

/// Checks the answer; the error is the reason the handshake failed.
pub(crate) fn accept(answer: Value) -> Result<Answer, String> {
    let answer: Answer = serde_json::from_value(answer)
        .map_err(|e| format!("its answer to `initialize` is not valid: {e}"))?;
    if !PROTOCOL_VERSIONS.contains(&answer.protocol_version) {
        return Err(format!(
            "it chose protocol version {}, and this host speaks {:?}",
            answer.protocol_version, PROTOCOL_VERSIONS
        ));
    }
    Ok(answer)
}

/// What the manifest declares, in the handshake's terms.
pub(crate) fn declared(manifest: &Manifest) -> Implements {
    let p = &manifest.provides;
    let mut phases = Vec::new();
    for w in &p.workflows {
        let stages: &[&str] = match w.mode {
            PhaseMode::Before => &["before"],
            PhaseMode::After => &["after"],
            PhaseMode::Replace => &["replace"],
            PhaseMode::Wrap => &["before", "after"],
        };
        phases.extend(stages.iter().map(|s| format!("{}:{s}", w.phase)));
    }
    Implements {
        commands: p.commands.iter().map(|c| c.name.clone()).collect(),
        hooks: p.hooks.iter().map(|h| h.hook.clone()).collect(),
        phases,
        migrations: manifest
            .config
            .iter()
            .flat_map(|c| &c.migrations)
            .filter_map(|m| m.function.clone())
            .collect(),
        command_inputs: Some(
            p.commands
                .iter()
                .map(|c| (c.name.clone(), DeclaredInputs::from(c)))
                .collect(),
        ),
    }
}

/// The differences between what the manifest declares and what the plugin implements, in
/// words; none when they agree.
pub(crate) fn mismatch(declared: &Implements, implemented: &Implements) -> Option<String> {
    let mut problems = Vec::new();
    let mut compare = |what: &str, d: &[String], i: &[String]| {
        let (d, i): (BTreeSet<&String>, BTreeSet<&String>) =
            (d.iter().collect(), i.iter().collect());
        let missing: Vec<&str> = d.difference(&i).map(|s| s.as_str()).collect();
        let extra: Vec<&str> = i.difference(&d).map(|s| s.as_str()).collect();
        if !missing.is_empty() {
            problems.push(format!(
                "{what} declared but not implemented: {}",
                missing.join(", ")
            ));
        }
        if !extra.is_empty() {
            problems.push(format!(
                "{what} implemented but not declared: {}",
                extra.join(", ")
            ));
        }
    };
    compare("commands", &declared.commands, &implemented.commands);
    compare("hooks", &declared.hooks, &implemented.hooks);
    compare("phases", &declared.phases, &implemented.phases);
    compare(
        "migration functions",
        &declared.migrations,
        &implemented.migrations,
    );
    if let (Some(declared), Some(implemented)) =
        (&declared.command_inputs, &implemented.command_inputs)
    {
        for (command, manifest) in declared {
            if let Some(code) = implemented.get(command) {
                problems.extend(differences(command, manifest, code));
            }
        }
    }
    (!problems.is_empty()).then(|| problems.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn differences_are_named_both_ways() {
        let d = Implements {
            commands: s(&["scan", "fix"]),
            hooks: s(&["build"]),
            ..Default::default()
        };
        let i = Implements {
            commands: s(&["scan", "delete-all"]),
            hooks: s(&["build"]),
            ..Default::default()
        };
        let m = mismatch(&d, &i).unwrap();
        assert!(
            m.contains("commands declared but not implemented: fix"),
            "{m}"
        );
        assert!(
            m.contains("commands implemented but not declared: delete-all"),
            "{m}"
        );
        assert_eq!(mismatch(&d, &d), None);
    }

    #[test]
    fn versions_outside_the_offer_are_refused() {
        let err = accept(json!({"protocol_version": 9})).unwrap_err();
        assert!(err.contains("protocol version 9"), "{err}");
        assert!(accept(json!({"protocol_version": 1, "implements": {"commands": ["a"]}})).is_ok());
        let err = accept(json!({"protocol_version": 1, "implement": {}})).unwrap_err();
        assert!(err.contains("implement"), "{err}");
    }
}
