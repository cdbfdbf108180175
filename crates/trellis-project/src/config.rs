//! Plugin configuration in `.trellis/config.yaml`.
//!
//! The file holds what the user set, never defaults and never secrets: a value such as
//! `${JIRA_TOKEN}` is stored as written and expanded from the environment only in memory, when
//! the effective configuration is built for a plugin.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::ProjectError;
use crate::fsutil::write_atomic;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProjectConfig {
    /// Per-plugin user configuration, keyed by plugin name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub plugins: BTreeMap<String, Value>,
    /// Anything else in the file (owned by other tools or later versions) is kept as is.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

const HEADER: &str = "\
# Trellis project configuration.
# Plugin settings live under `plugins.<name>`; edit them with `trellis plugin config`.
# Values written as ${VAR} are read from the environment when a plugin runs and are never
# stored expanded.
";

impl ProjectConfig {
    pub(crate) fn read(path: &Path) -> Result<Self, ProjectError> {
        let text = match fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(ProjectConfig::default());
            }
            Err(source) => {
                return Err(ProjectError::Io {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        if text.trim().is_empty() {
            return Ok(ProjectConfig::default());
        }
        serde_norway::from_str(&text).map_err(|e| ProjectError::InvalidConfigFile {
            path: path.to_owned(),
            reason: e.to_string(),
        })
    }

    pub(crate) fn write(&self, path: &Path) -> Result<(), ProjectError> {
        let body = serde_norway::to_string(self).map_err(|e| ProjectError::InvalidConfigFile {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        write_atomic(path, format!("{HEADER}{body}").as_bytes())
    }
}

/// Splits `a.b.c` into segments, refusing empty ones.
pub(crate) fn key_segments(key: &str) -> Option<Vec<&str>> {
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        None
    } else {
        Some(parts)
    }
}

pub(crate) fn get_path<'v>(value: &'v Value, path: &[&str]) -> Option<&'v Value> {
    path.iter()
        .try_fold(value, |v, key| v.as_object()?.get(*key))
}

/// Sets `path` inside `value`, creating intermediate objects. Fails if a non-object is in the
/// way, naming the key that blocks.
pub(crate) fn set_path(value: &mut Value, path: &[&str], new: Value) -> Result<(), String> {
    let Some((last, parents)) = path.split_last() else {
        *value = new;
        return Ok(());
    };
    let mut current = value;
    for (i, key) in parents.iter().enumerate() {
        if !current.is_object() {
            return Err(format!("`{}` is not a mapping", path[..i].join(".")));
        }
        let map = current
            .as_object_mut()
            .ok_or_else(|| "not a mapping".to_owned())?;
        current = map
            .entry((*key).to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    match current.as_object_mut() {
        Some(map) => {
            map.insert((*last).to_owned(), new);
            Ok(())
        }
        None => Err(format!("`{}` is not a mapping", parents.join("."))),
    }
}

/// Removes `path`; prunes objects left empty. Returns whether something was removed.
pub(crate) fn unset_path(value: &mut Value, path: &[&str]) -> bool {
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    let Some(map) = value.as_object_mut() else {
        return false;
    };
    if rest.is_empty() {
        return map.remove(*first).is_some();
    }
    let Some(child) = map.get_mut(*first) else {
        return false;
    };
    let removed = unset_path(child, rest);
    if removed && child.as_object().is_some_and(Map::is_empty) {
        map.remove(*first);
    }
    removed
}

/// Parses a value given on the command line as YAML, so `5`, `true`, `[a, b]` and `{k: v}` get
/// their natural types while anything else stays a string.
pub(crate) fn parse_cli_value(raw: &str) -> Value {
    match serde_norway::from_str::<Value>(raw) {
        Ok(Value::Null) if !matches!(raw.trim(), "null" | "~") => Value::String(raw.to_owned()),
        Ok(value) => value,
        Err(_) => Value::String(raw.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_set_get_unset() {
        let mut v = json!({});
        set_path(&mut v, &["a", "b"], json!(1)).unwrap();
        set_path(&mut v, &["c"], json!("x")).unwrap();
        assert_eq!(v, json!({"a": {"b": 1}, "c": "x"}));
        assert_eq!(get_path(&v, &["a", "b"]), Some(&json!(1)));
        assert!(set_path(&mut v, &["c", "d"], json!(2)).is_err());
        assert!(unset_path(&mut v, &["a", "b"]));
        assert_eq!(v, json!({"c": "x"}));
        assert!(!unset_path(&mut v, &["nope"]));
        assert_eq!(key_segments("a..b"), None);
    }

    #[test]
    fn cli_values_get_natural_types() {
        assert_eq!(parse_cli_value("5"), json!(5));
        assert_eq!(parse_cli_value("true"), json!(true));
        assert_eq!(parse_cli_value("[a, b]"), json!(["a", "b"]));
        assert_eq!(parse_cli_value("high"), json!("high"));
        assert_eq!(parse_cli_value("${TOKEN}"), json!("${TOKEN}"));
        assert_eq!(parse_cli_value(""), json!(""));
        assert_eq!(parse_cli_value("null"), Value::Null);
    }
}
