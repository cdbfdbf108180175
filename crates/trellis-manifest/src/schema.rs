//! The manifest's JSON Schema and the translation of schema errors into plain language.

use std::sync::OnceLock;

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::{JsonType, ValidationError, Validator};
use serde_json::Value;

use crate::Format;
use crate::issue::{At, Issue, Origin, child, did_you_mean};
use crate::name::{NAME_GRAMMAR, NAME_PATTERN, name_problem};
use crate::source::Located;

const SCHEMA_TEXT: &str = include_str!("../schema/plugin.schema.json");

/// The JSON Schema (draft 2020-12) of a plugin manifest, as published in `docs/plugin.schema.json`.
///
/// It checks structure: fields, types and closed sets of values. Rules it cannot express
/// (SemVer syntax, ranges, cross-field rules, name grammar explanations) are checked in code.
pub fn manifest_json_schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        serde_json::from_str(SCHEMA_TEXT).expect("the embedded manifest schema is valid JSON")
    })
}

fn manifest_validator() -> &'static Validator {
    static VALIDATOR: OnceLock<Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        jsonschema::draft202012::new(manifest_json_schema())
            .expect("the embedded manifest schema compiles")
    })
}

/// Validates a whole document against the manifest schema.
pub(crate) fn check_manifest(located: &Located) -> Vec<Issue> {
    let humanizer = Humanizer {
        schema: manifest_json_schema(),
        located: Some(located),
        prefix: "",
        manifest: true,
    };
    let mut issues = Vec::new();
    for error in manifest_validator().iter_errors(&located.value) {
        humanizer.translate(&error, &mut issues);
    }
    issues
}

/// Turns `jsonschema` errors into issues a plugin author can act on.
pub(crate) struct Humanizer<'a> {
    /// The schema the errors came from, to look up what fields an object allows.
    pub schema: &'a Value,
    /// The source document, for quoting hints; `None` when validating plain JSON.
    pub located: Option<&'a Located>,
    /// Pointer of the validated value inside the located document.
    pub prefix: &'a str,
    /// Whether `schema` is the manifest schema (enables manifest-specific explanations).
    pub manifest: bool,
}

impl Humanizer<'_> {
    pub fn translate(&self, error: &ValidationError<'_>, out: &mut Vec<Issue>) {
        let pointer = format!("{}{}", self.prefix, error.instance_path().as_str());
        let instance: &Value = error.instance();
        let schema_path = error.schema_path().as_str();
        let issue = |at: At, message: String| {
            Issue::new(pointer.clone(), at, message).origin(Origin::Schema)
        };
        match error.kind() {
            ValidationErrorKind::AdditionalProperties { unexpected }
            | ValidationErrorKind::UnevaluatedProperties { unexpected } => {
                let allowed = self.allowed_properties(schema_path);
                for key in unexpected {
                    out.push(self.unknown_field(&pointer, key, &allowed));
                }
            }
            ValidationErrorKind::Required { property } => {
                let name = property
                    .as_str()
                    .map_or_else(|| property.to_string(), str::to_owned);
                let field = crate::issue::dotted_path(
                    self.located.map_or(&Value::Null, |l| &l.value),
                    &child(&pointer, &name),
                );
                out.push(
                    issue(At::Key, format!("missing field `{name}`"))
                        .field(field)
                        .maybe_hint(self.missing_hint(&pointer, &name)),
                );
            }
            ValidationErrorKind::Type { kind } => {
                let expected: Vec<JsonType> = match kind {
                    TypeKind::Single(t) => vec![*t],
                    TypeKind::Multiple(set) => set.iter().collect(),
                };
                out.push(self.type_issue(&pointer, &expected, instance));
            }
            ValidationErrorKind::Enum { options } => {
                let options: Vec<String> = options
                    .as_array()
                    .map(|a| a.iter().map(display_json).collect())
                    .unwrap_or_default();
                let listed = options
                    .iter()
                    .map(|o| format!("`{o}`"))
                    .collect::<Vec<_>>()
                    .join(", ");
                let message = match instance {
                    Value::String(s) => format!("`{s}` is not an allowed value"),
                    other => format!("{} is not an allowed value", describe(other)),
                };
                let hint = instance
                    .as_str()
                    .and_then(|s| did_you_mean(s, options.iter().map(String::as_str)))
                    .map(|s| format!("did you mean `{s}`?"));
                out.push(
                    issue(At::Value, message)
                        .expected(format!("one of {listed}"))
                        .maybe_hint(hint),
                );
            }
            ValidationErrorKind::Constant { expected_value } => {
                let expected = display_json(expected_value);
                out.push(
                    issue(
                        At::Value,
                        format!("expected `{expected}`, found `{}`", display_json(instance)),
                    )
                    .expected(format!("`{expected}`")),
                );
            }
            ValidationErrorKind::Pattern { pattern } => {
                let text = instance.as_str().unwrap_or_default();
                if self.manifest && pattern == NAME_PATTERN {
                    out.push(self.name_issue(&pointer, text));
                } else {
                    out.push(
                        issue(
                            At::Value,
                            format!("`{text}` does not have the required form"),
                        )
                        .expected(format!("text matching the regular expression `{pattern}`")),
                    );
                }
            }
            ValidationErrorKind::MaxLength { limit } => {
                let text = instance.as_str().unwrap_or_default();
                if self.manifest && schema_path.starts_with("/$defs/PluginName/") {
                    out.push(self.name_issue(&pointer, text));
                } else {
                    out.push(issue(
                        At::Value,
                        format!("is longer than {limit} characters"),
                    ));
                }
            }
            ValidationErrorKind::MinLength { limit } => {
                let message = if *limit == 1 {
                    "must not be empty".to_owned()
                } else {
                    format!("is shorter than {limit} characters")
                };
                out.push(issue(At::Value, message));
            }
            ValidationErrorKind::Minimum { limit } => {
                out.push(issue(
                    At::Value,
                    format!("must be at least {limit}, found {instance}"),
                ));
            }
            ValidationErrorKind::Maximum { limit } => {
                out.push(issue(
                    At::Value,
                    format!("must be at most {limit}, found {instance}"),
                ));
            }
            ValidationErrorKind::AnyOf { context }
            | ValidationErrorKind::OneOfNotValid { context } => {
                self.choose_branch(error, context, instance, &pointer, out);
            }
            _ => out.push(issue(At::Value, error.to_string())),
        }
    }

    /// For "one of these shapes" rules, explains the failure against the shape the author
    /// evidently meant: the branch whose type matches what was written.
    fn choose_branch(
        &self,
        error: &ValidationError<'_>,
        branches: &[Vec<ValidationError<'static>>],
        instance: &Value,
        pointer: &str,
        out: &mut Vec<Issue>,
    ) {
        let here = error.instance_path().as_str();
        let is_type_mismatch = |e: &ValidationError<'_>| {
            e.instance_path().as_str() == here
                && matches!(e.kind(), ValidationErrorKind::Type { .. })
        };
        // Among branches whose type fits, the one that failed deepest inside the value matched
        // its shape best; then the one with the fewest complaints.
        let depth = |b: &Vec<ValidationError<'static>>| {
            b.iter()
                .map(|e| e.instance_path().as_str().matches('/').count())
                .max()
                .unwrap_or(0)
        };
        let fitting = branches
            .iter()
            .filter(|b| !b.is_empty() && !b.iter().any(is_type_mismatch))
            .min_by_key(|b| (std::cmp::Reverse(depth(b)), b.len()));
        if let Some(branch) = fitting {
            for e in branch {
                self.translate(e, out);
            }
            return;
        }
        let mut expected = Vec::new();
        for e in branches.iter().flatten() {
            if let (true, ValidationErrorKind::Type { kind }) =
                (e.instance_path().as_str() == here, e.kind())
            {
                match kind {
                    TypeKind::Single(t) => expected.push(*t),
                    TypeKind::Multiple(set) => expected.extend(set.iter()),
                }
            }
        }
        expected.dedup();
        if expected.is_empty() {
            out.push(Issue::new(pointer, At::Value, error.to_string()).origin(Origin::Schema));
        } else {
            out.push(self.type_issue(pointer, &expected, instance));
        }
    }

    fn type_issue(&self, pointer: &str, expected: &[JsonType], instance: &Value) -> Issue {
        let wanted = expected
            .iter()
            .map(|t| type_name(*t))
            .collect::<Vec<_>>()
            .join(" or ");
        let fractional = instance
            .as_number()
            .is_some_and(|n| n.as_i64().is_none() && n.as_u64().is_none());
        let found = if fractional
            && expected.contains(&JsonType::Integer)
            && !expected.contains(&JsonType::Number)
        {
            "a number with a fraction"
        } else {
            describe(instance)
        };
        let mut issue = Issue::new(
            pointer,
            At::Value,
            format!("expected {wanted}, found {found}"),
        )
        .origin(Origin::Schema);
        let format = self.located.map(|l| l.format);
        let raw = self.located.and_then(|l| l.raw(pointer));
        if expected.contains(&JsonType::String) {
            match (instance, raw) {
                (Value::Null, _) => {
                    issue.hint = Some("write a value, or remove the field".to_owned());
                }
                (Value::Number(_) | Value::Bool(_), Some(raw)) => {
                    let reader = if format == Some(Format::Toml) {
                        "TOML"
                    } else {
                        "YAML"
                    };
                    issue.hint = Some(format!(
                        "quote it: `\"{raw}\"`; unquoted, {reader} reads it as {found}"
                    ));
                }
                _ => {}
            }
        }
        if expected.contains(&JsonType::Array)
            && !expected.contains(&JsonType::String)
            && let Some(text) = instance.as_str()
        {
            let example = match format {
                Some(Format::Toml) => format!("[{}]", Value::String(text.to_owned())),
                _ => format!("[{text}]"),
            };
            issue.hint = Some(format!("write a list, even for one item: `{example}`"));
        }
        issue
    }

    fn name_issue(&self, pointer: &str, name: &str) -> Issue {
        let problem =
            name_problem(name).unwrap_or_else(|| "it does not follow the name grammar".to_owned());
        Issue::new(
            pointer,
            At::Value,
            format!("invalid plugin name `{name}`: {problem}"),
        )
        .origin(Origin::Schema)
        .expected(NAME_GRAMMAR)
    }

    fn unknown_field(&self, parent: &str, key: &str, allowed: &[String]) -> Issue {
        let pointer = child(parent, key);
        let suggestion =
            renamed(key, allowed).or_else(|| did_you_mean(key, allowed.iter().map(String::as_str)));
        let hint = match suggestion {
            Some(s) => Some(format!("did you mean `{s}`?")),
            None if self.manifest && parent.is_empty() && is_metadata_field(key) => {
                Some(format!("`{key}` belongs under `metadata`"))
            }
            None if !allowed.is_empty() => Some(format!(
                "the fields allowed here are {}",
                allowed
                    .iter()
                    .map(|a| format!("`{a}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            None => None,
        };
        Issue::new(pointer, At::Key, format!("unknown field `{key}`"))
            .origin(Origin::Schema)
            .maybe_hint(hint)
    }

    /// The `properties` of the schema object that owns the keyword at `schema_path`.
    fn allowed_properties(&self, schema_path: &str) -> Vec<String> {
        let owner = schema_path.rsplit_once('/').map_or("", |(owner, _)| owner);
        self.schema
            .pointer(owner)
            .and_then(|s| s.get("properties"))
            .and_then(Value::as_object)
            .map(|props| props.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn missing_hint(&self, pointer: &str, name: &str) -> Option<String> {
        if !self.manifest {
            return None;
        }
        let toml = self.located.is_some_and(|l| l.format == Format::Toml);
        let line = |key: &str, value: &str| {
            if toml {
                format!("{key} = \"{value}\"")
            } else {
                format!("{key}: {value}")
            }
        };
        match (pointer, name) {
            ("", "apiVersion") => Some(format!(
                "add `{}` at the top",
                line("apiVersion", "trellis.dev/v1")
            )),
            ("", "kind") => Some(format!("add `{}` at the top", line("kind", "Plugin"))),
            ("", "metadata") => Some(if toml {
                "add a `[metadata]` table with at least `name` and `version`".to_owned()
            } else {
                "add a `metadata:` section with at least `name` and `version`".to_owned()
            }),
            ("/metadata", "name") => Some(format!("add `{}`", line("name", "my-plugin"))),
            ("/metadata", "version") => Some(format!("add `{}`", line("version", "0.1.0"))),
            _ => None,
        }
    }
}

/// Field names from other tools' manifests (and earlier drafts of this one) that mean a field
/// spelled differently here; edit distance alone would not connect them.
fn renamed<'a>(key: &str, allowed: &'a [String]) -> Option<&'a str> {
    const RENAMES: &[(&str, &str)] = &[
        ("event", "hook"),
        ("desc", "description"),
        ("summary", "description"),
        ("persona", "persona_file"),
        ("file", "path"),
        ("dependencies", "plugins"),
        ("deps", "plugins"),
        ("permissions", "capabilities"),
        ("main", "entry"),
        ("handler", "entrypoint"),
    ];
    let target = RENAMES.iter().find(|(from, _)| *from == key)?.1;
    allowed.iter().map(String::as_str).find(|a| *a == target)
}

fn is_metadata_field(key: &str) -> bool {
    manifest_json_schema()
        .pointer("/$defs/Metadata/properties")
        .and_then(Value::as_object)
        .is_some_and(|p| p.contains_key(key))
}

fn type_name(t: JsonType) -> &'static str {
    match t {
        JsonType::Array => "a list",
        JsonType::Boolean => "a boolean (true or false)",
        JsonType::Integer => "a whole number",
        JsonType::Null => "null",
        JsonType::Number => "a number",
        JsonType::Object => "a map",
        JsonType::String => "a string",
    }
}

/// What kind of value was written, for "found ..." messages.
pub(crate) fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "no value",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

/// A JSON value as a user would write it: strings without quotes.
fn display_json(value: &Value) -> String {
    value
        .as_str()
        .map_or_else(|| value.to_string(), str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_compiles_and_is_draft_2020_12() {
        assert!(jsonschema::meta::is_valid(manifest_json_schema()));
        assert_eq!(
            manifest_json_schema()["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
        let _ = manifest_validator();
    }

    /// The schema's name pattern is for editors; `name` is the authority. They must agree.
    #[test]
    fn name_pattern_agrees_with_the_grammar() {
        assert_eq!(
            manifest_json_schema()["$defs"]["PluginName"]["pattern"],
            Value::String(NAME_PATTERN.to_owned())
        );
        let validator = jsonschema::validator_for(&manifest_json_schema()["$defs"]["PluginName"])
            .expect("compiles");
        for name in [
            "a", "ab", "a-b", "a1", "a-1", "1a", "-a", "a-", "a--b", "A", "aB", "@s/a", "@1/a",
            "@s/1", "@-s/a", "@s-/a", "@s--t/a", "@/a", "@s/", "@s", "s/a", "@s/a/b", "a_b", "a.b",
            "@S/a",
        ] {
            let value = Value::String(name.to_owned());
            assert_eq!(
                validator.is_valid(&value),
                crate::name::validate_plugin_name(name).is_ok(),
                "{name}"
            );
        }
    }

    /// `KNOWN_CAPABILITIES` and `KNOWN_PLATFORMS` in the model are what the schema enumerates.
    #[test]
    fn closed_sets_match_the_model() {
        let schema = manifest_json_schema();
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        assert_eq!(
            strings(&schema["$defs"]["CapabilityName"]["enum"]),
            crate::KNOWN_CAPABILITIES
        );
        assert_eq!(
            strings(&schema["$defs"]["Compatibility"]["properties"]["platforms"]["items"]["enum"]),
            crate::KNOWN_PLATFORMS
        );
        assert_eq!(
            schema["properties"]["apiVersion"]["const"],
            crate::API_VERSION_V1
        );
    }
}
