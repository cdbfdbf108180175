//! Validating a plugin's user configuration against the JSON Schema in its manifest's
//! `config.schema`, and layering the user's values over `config.defaults`.
//!
//! The manifest check already guarantees that `config.schema` compiles and that
//! `config.defaults` fits it; this module is for the values users set later.

use serde::Serialize;
use serde_json::Value;

use crate::issue::dotted_path;
use crate::schema::Humanizer;

/// A compiled `config.schema`.
pub struct ConfigValidator {
    schema: Value,
    validator: jsonschema::Validator,
}

impl std::fmt::Debug for ConfigValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigValidator")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

/// One way a configuration value breaks the schema.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConfigViolation {
    /// JSON pointer of the offending value, e.g. `/severity`.
    pub pointer: String,
    /// The same as a dotted path, e.g. `severity.threshold`; empty for the whole configuration.
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for ConfigViolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

impl ConfigValidator {
    /// Compiles `schema`. The error explains why it is not a usable JSON Schema.
    pub fn new(schema: &Value) -> Result<Self, String> {
        let meta = jsonschema::meta::validator_for(schema).map_err(|e| e.to_string())?;
        let problems: Vec<String> = meta
            .iter_errors(schema)
            .map(|e| match e.instance_path().as_str() {
                "" => e.to_string(),
                at => format!("at {at}: {e}"),
            })
            .collect();
        if !problems.is_empty() {
            return Err(format!("not a valid JSON Schema: {}", problems.join("; ")));
        }
        let validator = jsonschema::validator_for(schema)
            .map_err(|e| format!("this JSON Schema cannot be used: {e}"))?;
        Ok(ConfigValidator {
            schema: schema.clone(),
            validator,
        })
    }

    /// Every violation in `value`, in document order. Empty means valid.
    pub fn validate(&self, value: &Value) -> Vec<ConfigViolation> {
        let humanizer = Humanizer {
            schema: &self.schema,
            located: None,
            prefix: "",
            manifest: false,
        };
        let mut issues = Vec::new();
        for error in self.validator.iter_errors(value) {
            humanizer.translate(&error, &mut issues);
        }
        issues
            .into_iter()
            .map(|issue| {
                let field = issue
                    .field
                    .clone()
                    .unwrap_or_else(|| dotted_path(value, &issue.pointer));
                let mut message = issue.message;
                if let Some(expected) = issue.expected {
                    message.push_str(&format!(" (expected {expected})"));
                }
                if let Some(hint) = issue.hint {
                    message.push_str(&format!("; {hint}"));
                }
                ConfigViolation {
                    pointer: issue.pointer,
                    field,
                    message,
                }
            })
            .collect()
    }

    pub fn schema(&self) -> &Value {
        &self.schema
    }
}

/// Layers `user` over `defaults`: objects merge key by key, recursively; anywhere else (scalars,
/// lists, or a type change) the user's value replaces the default whole. Lists are not merged
/// because neither appending nor index-wise merging is what users expect from a setting.
pub fn apply_defaults(defaults: &Value, user: &Value) -> Value {
    match (defaults, user) {
        (Value::Object(d), Value::Object(u)) => {
            let mut merged = d.clone();
            for (key, user_value) in u {
                let value = match d.get(key) {
                    Some(default_value) => apply_defaults(default_value, user_value),
                    None => user_value.clone(),
                };
                merged.insert(key.clone(), value);
            }
            Value::Object(merged)
        }
        // Nothing configured keeps the defaults; an explicit value of any other kind wins.
        (_, Value::Null) => defaults.clone(),
        (_, _) => user.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merges_deeply_and_user_wins() {
        let defaults = json!({"severity": {"threshold": "medium", "fail": true}, "scan": true, "list": [1, 2]});
        let user = json!({"severity": {"threshold": "high"}, "list": [3], "extra": "x"});
        assert_eq!(
            apply_defaults(&defaults, &user),
            json!({"severity": {"threshold": "high", "fail": true}, "scan": true, "list": [3], "extra": "x"})
        );
    }

    #[test]
    fn non_objects_are_replaced() {
        assert_eq!(apply_defaults(&json!({"a": 1}), &json!(5)), json!(5));
        assert_eq!(apply_defaults(&json!(5), &json!({"a": 1})), json!({"a": 1}));
        assert_eq!(
            apply_defaults(&json!({"a": {"b": 1}}), &json!({"a": "flat"})),
            json!({"a": "flat"})
        );
        assert_eq!(
            apply_defaults(&json!({"a": 1}), &Value::Null),
            json!({"a": 1})
        );
        assert_eq!(
            apply_defaults(&json!({"a": 1}), &json!({})),
            json!({"a": 1})
        );
    }

    #[test]
    fn keeps_key_order_of_defaults_then_new_user_keys() {
        let merged = apply_defaults(&json!({"b": 1, "a": 2}), &json!({"c": 3, "a": 4}));
        let keys: Vec<&String> = merged
            .as_object()
            .map(|m| m.keys().collect())
            .unwrap_or_default();
        assert_eq!(keys, ["b", "a", "c"]);
    }

    #[test]
    fn validates_with_pointers_and_fields() {
        let schema = json!({
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "severity": {
                    "type": "object",
                    "properties": {"threshold": {"enum": ["low", "medium", "high"]}}
                },
                "retries": {"type": "integer", "minimum": 0}
            }
        });
        let validator = ConfigValidator::new(&schema).expect("valid schema");
        assert!(
            validator
                .validate(&json!({"severity": {"threshold": "low"}}))
                .is_empty()
        );
        let violations = validator
            .validate(&json!({"severity": {"threshold": "hgh"}, "retries": "3", "retires": 1}));
        assert_eq!(violations.len(), 3, "{violations:#?}");
        let by_field = |f: &str| {
            violations
                .iter()
                .find(|v| v.field == f)
                .unwrap_or_else(|| panic!("{f}: {violations:#?}"))
        };
        let threshold = by_field("severity.threshold");
        assert_eq!(threshold.pointer, "/severity/threshold");
        assert!(
            threshold.message.contains("did you mean `high`?"),
            "{}",
            threshold.message
        );
        assert!(
            by_field("retries")
                .message
                .contains("expected a whole number, found a string")
        );
        assert!(
            by_field("retires")
                .message
                .contains("unknown field `retires`; did you mean `retries`?")
        );
    }

    #[test]
    fn rejects_invalid_schemas() {
        let err = ConfigValidator::new(&json!({"type": "objekt"})).expect_err("invalid");
        assert!(err.contains("not a valid JSON Schema"), "{err}");
        let err = ConfigValidator::new(&json!({"$ref": "https://example.com/s.json"}))
            .expect_err("remote ref");
        assert!(err.contains("cannot be used"), "{err}");
    }
}
