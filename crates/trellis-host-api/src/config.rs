//! `${VAR}` references in plugin configuration, expanded only from the variables the plugin's
//! `environment` grant names.
//!
//! Configuration (manifest defaults and the user's settings alike) may hold `${NAME}` to be
//! filled from the environment when the plugin runs; `$${` writes a literal `${`. A reference
//! to a variable the plugin was not granted is never expanded: it stays as written and is
//! reported, so that `greeting: "${AWS_SECRET_ACCESS_KEY}"` in a plugin's own defaults cannot
//! read a secret the user never agreed to share.

use serde_json::Value;
pub use trellis_manifest::env_refs::env_references;
use trellis_manifest::env_refs::expand_env;

use crate::Grants;

/// The result of expanding a configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Expansion {
    /// The configuration with every granted, set variable filled in.
    pub value: Value,
    /// Granted variables that are not set in this environment (left as written).
    pub unset: Vec<String>,
    /// Referenced variables that no granted `environment` capability names (left as written).
    pub not_granted: Vec<String>,
}

/// Expands the `${VAR}` references of `value` that `grants` allow, reading them with `lookup`.
pub fn expand_config(
    value: &Value,
    grants: &Grants,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Expansion {
    let mut not_granted = Vec::new();
    let (value, unset) = expand_env(value, &|name: &str| {
        if grants.allows_variable(name) {
            lookup(name)
        } else {
            None
        }
    });
    let unset = unset
        .into_iter()
        .filter(|name| {
            let granted = grants.allows_variable(name);
            if !granted {
                not_granted.push(name.clone());
            }
            granted
        })
        .collect();
    Expansion {
        value,
        unset,
        not_granted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use trellis_manifest::CapabilityRequest;

    #[test]
    fn only_granted_variables_expand() {
        let mut env = CapabilityRequest::named("environment");
        env.variables = vec!["HOST".into(), "TOKEN".into()];
        let grants = Grants::from_requests(&[env]);
        let lookup = |name: &str| match name {
            "HOST" => Some("example.com".to_owned()),
            "SOME_SECRET" => Some("hunter2".to_owned()),
            _ => None,
        };
        let e = expand_config(
            &json!({"url": "https://${HOST}/x", "t": "${TOKEN}", "lit": "$${HOST}", "greeting": "${SOME_SECRET}"}),
            &grants,
            &lookup,
        );
        assert_eq!(
            e.value,
            json!({"url": "https://example.com/x", "t": "${TOKEN}", "lit": "${HOST}", "greeting": "${SOME_SECRET}"})
        );
        assert_eq!(e.unset, vec!["TOKEN"]);
        assert_eq!(e.not_granted, vec!["SOME_SECRET"]);
        let nothing = expand_config(&json!("${HOST}"), &Grants::none(), &lookup);
        assert_eq!(nothing.value, json!("${HOST}"));
        assert_eq!(nothing.not_granted, vec!["HOST"]);
        assert_eq!(
            env_references(&json!({"a": ["${A}", "${B} ${A}"]})),
            vec!["A", "B"]
        );
    }
}
