//! `${VAR}` references in plugin configuration, expanded only from the variables the plugin's
//! `environment` grant names.
//!
//! Configuration (manifest defaults and the user's settings alike) may hold `${NAME}` to be
//! filled from the environment when the plugin runs; `$${` writes a literal `${`. A reference
//! to a variable the plugin was not granted is never expanded: it stays as written and is
//! reported, so that `greeting: "${AWS_SECRET_ACCESS_KEY}"` in a plugin's own defaults cannot
//! read a secret the user never agreed to share.

use serde_json::Value;

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

/// The names of `${VAR}` references in every string of `value`.
pub fn env_references(value: &Value) -> Vec<String> {
    let mut out = Vec::new();
    collect_refs(value, &mut out);
    out.sort();
    out.dedup();
    out
}

fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.extend(scan_refs(s).into_iter().map(|(_, _, name)| name)),
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        Value::Object(map) => map.values().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// `(start, end, name)` of each `${NAME}` in `s`; `$${` escapes a literal `${`.
fn scan_refs(s: &str) -> Vec<(usize, usize, String)> {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i + 1 < bytes.len() {
        if bytes[i] == b'$' && bytes[i + 1] == b'$' {
            i += 2;
            continue;
        }
        if bytes[i] == b'$'
            && bytes[i + 1] == b'{'
            && let Some(close) = s[i + 2..].find('}')
        {
            let name = &s[i + 2..i + 2 + close];
            if !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                out.push((i, i + 3 + close, name.to_owned()));
                i += 3 + close;
                continue;
            }
        }
        i += 1;
    }
    out
}

/// Expands `${VAR}` references with `lookup`; returns the names that had no value (those are
/// left as written).
fn expand_env(value: &Value, lookup: &dyn Fn(&str) -> Option<String>) -> (Value, Vec<String>) {
    let mut missing = Vec::new();
    let expanded = expand_inner(value, lookup, &mut missing);
    missing.sort();
    missing.dedup();
    (expanded, missing)
}

fn expand_inner(
    value: &Value,
    lookup: &dyn Fn(&str) -> Option<String>,
    missing: &mut Vec<String>,
) -> Value {
    match value {
        Value::String(s) => {
            let refs = scan_refs(s);
            if refs.is_empty() {
                return Value::String(s.replace("$${", "${"));
            }
            let mut out = String::with_capacity(s.len());
            let mut last = 0;
            for (start, end, name) in refs {
                out.push_str(&s[last..start].replace("$${", "${"));
                match lookup(&name) {
                    Some(v) => out.push_str(&v),
                    None => {
                        out.push_str(&s[start..end]);
                        missing.push(name);
                    }
                }
                last = end;
            }
            out.push_str(&s[last..].replace("$${", "${"));
            Value::String(out)
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| expand_inner(v, lookup, missing))
                .collect(),
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), expand_inner(v, lookup, missing)))
                .collect(),
        ),
        other => other.clone(),
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
