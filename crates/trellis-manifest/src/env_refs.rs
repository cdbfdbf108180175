//! `${VAR}` references in configuration values: the grammar, shared by everything that reads
//! or expands them.
//!
//! `${NAME}` (letters, digits and `_`) stands for an environment variable; `$${` is a literal
//! `${`. Which variables a plugin may have expanded is decided by its `environment` grant
//! (see `trellis-host-api`); this module only finds and substitutes.

use serde_json::Value;

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
pub fn scan_refs(s: &str) -> Vec<(usize, usize, String)> {
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
pub fn expand_env(value: &Value, lookup: &dyn Fn(&str) -> Option<String>) -> (Value, Vec<String>) {
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
