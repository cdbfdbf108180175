//! Whether two declarations of one command's arguments and options say the same thing: the
//! manifest's and the one a plugin's code makes (the Python SDK's `@argument` and `@option`),
//! so that a plugin whose code expects other inputs than its manifest promises is refused with
//! each difference named.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::{Command, CommandParam, ValueKind};

/// A command's declared inputs, as the manifest holds them and as a plugin's code reports them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeclaredInputs {
    pub arguments: Vec<CommandParam>,
    pub options: Vec<CommandParam>,
}

impl From<&Command> for DeclaredInputs {
    fn from(c: &Command) -> Self {
        DeclaredInputs {
            arguments: c.arguments.clone(),
            options: c.options.clone(),
        }
    }
}

/// Every difference between the manifest's declaration of `command` and the code's, in words;
/// empty when they agree. Help texts count only when both give one.
pub fn differences(command: &str, manifest: &DeclaredInputs, code: &DeclaredInputs) -> Vec<String> {
    let mut out = Vec::new();
    let count = manifest.arguments.len().max(code.arguments.len());
    for i in 0..count {
        match (manifest.arguments.get(i), code.arguments.get(i)) {
            (Some(m), Some(c)) if m.name != c.name => out.push(format!(
                "command `{command}`: argument {} is `{}` in the manifest and `{}` in the code",
                i + 1,
                m.name,
                c.name
            )),
            (Some(m), Some(c)) => compare(command, "argument", true, m, c, &mut out),
            (Some(m), None) => out.push(format!(
                "command `{command}`: the manifest declares the argument `{}`, the code does not",
                m.name
            )),
            (None, Some(c)) => out.push(format!(
                "command `{command}`: the code declares the argument `{}`, the manifest does not",
                c.name
            )),
            (None, None) => {}
        }
    }
    for m in &manifest.options {
        match code.options.iter().find(|c| c.name == m.name) {
            Some(c) => compare(command, "option", false, m, c, &mut out),
            None => out.push(format!(
                "command `{command}`: the manifest declares the option `--{}`, the code does not",
                m.name
            )),
        }
    }
    for c in &code.options {
        if !manifest.options.iter().any(|m| m.name == c.name) {
            out.push(format!(
                "command `{command}`: the code declares the option `--{}`, the manifest does not",
                c.name
            ));
        }
    }
    out
}

fn compare(
    command: &str,
    what: &str,
    positional: bool,
    m: &CommandParam,
    c: &CommandParam,
    out: &mut Vec<String>,
) {
    let shown_name = if positional {
        format!("`{}`", m.name)
    } else {
        format!("`--{}`", m.name)
    };
    let mut differ = |field: &str, in_manifest: String, in_code: String| {
        if in_manifest != in_code {
            out.push(format!(
                "command `{command}`: {what} {shown_name}: {field} {in_manifest} in the manifest, {in_code} in the code"
            ));
        }
    };
    differ("type:", kind_of(m), kind_of(c));
    differ("choices:", listed(&m.choices), listed(&c.choices));
    differ(
        "required:",
        m.is_required(positional).to_string(),
        c.is_required(positional).to_string(),
    );
    differ("default:", default_of(m), default_of(c));
    differ(
        "short flag:",
        m.short.map_or("none".to_owned(), |s| format!("`-{s}`")),
        c.short.map_or("none".to_owned(), |s| format!("`-{s}`")),
    );
    differ(
        "environment variable:",
        m.env
            .as_ref()
            .map_or("none".to_owned(), |e| format!("`{e}`")),
        c.env
            .as_ref()
            .map_or("none".to_owned(), |e| format!("`{e}`")),
    );
    if let (Some(mh), Some(ch)) = (&m.help, &c.help) {
        differ("help:", format!("{mh:?}"), format!("{ch:?}"));
    }
}

fn kind_of(p: &CommandParam) -> String {
    match p.kind {
        ValueKind::List => format!("`list` of `{}`", p.item_kind().as_str()),
        other => format!("`{}`", other.as_str()),
    }
}

fn listed(choices: &[String]) -> String {
    if choices.is_empty() {
        "none".to_owned()
    } else {
        format!("[{}]", choices.join(", "))
    }
}

/// The value the plugin gets when nothing is given: a flag is off and a list empty whether or
/// not a default says so.
fn default_of(p: &CommandParam) -> String {
    let implied = match p.kind {
        ValueKind::Boolean => Some(Value::Bool(false)),
        ValueKind::List => Some(Value::Array(Vec::new())),
        _ => None,
    };
    p.default
        .clone()
        .or(implied)
        .map_or("none".to_owned(), |v| format!("`{v}`"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn inputs(v: Value) -> DeclaredInputs {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn each_difference_is_named_and_agreement_is_silent() {
        let manifest = inputs(json!({
            "arguments": [{"name": "feature", "help": "Feature to scan"}],
            "options": [
                {"name": "severity", "type": "enum", "choices": ["low", "high"], "default": "low"},
                {"name": "dry-run", "type": "boolean"}
            ]
        }));
        // The code spells out what the manifest leaves to defaults: still the same.
        let same = inputs(json!({
            "arguments": [{"name": "feature", "type": "string", "required": true}],
            "options": [
                {"name": "severity", "type": "enum", "choices": ["low", "high"], "default": "low", "required": false},
                {"name": "dry-run", "type": "boolean", "required": false}
            ]
        }));
        assert_eq!(differences("scan", &manifest, &same), Vec::<String>::new());
        let other = inputs(json!({
            "arguments": [{"name": "feature", "type": "integer", "help": "Which one"}, {"name": "extra"}],
            "options": [
                {"name": "severity", "type": "enum", "choices": ["low", "mid"], "default": "mid", "short": "s"},
                {"name": "verbose", "type": "boolean"}
            ]
        }));
        let found = differences("scan", &manifest, &other);
        for expected in [
            "command `scan`: argument `feature`: type: `string` in the manifest, `integer` in the code",
            "command `scan`: argument `feature`: help: \"Feature to scan\" in the manifest, \"Which one\" in the code",
            "command `scan`: the code declares the argument `extra`, the manifest does not",
            "command `scan`: option `--severity`: choices: [low, high] in the manifest, [low, mid] in the code",
            "command `scan`: option `--severity`: default: `\"low\"` in the manifest, `\"mid\"` in the code",
            "command `scan`: option `--severity`: short flag: none in the manifest, `-s` in the code",
            "command `scan`: the manifest declares the option `--dry-run`, the code does not",
            "command `scan`: the code declares the option `--verbose`, the manifest does not",
        ] {
            assert!(
                found.iter().any(|f| f == expected),
                "missing `{expected}` in {found:#?}"
            );
        }
    }
}
