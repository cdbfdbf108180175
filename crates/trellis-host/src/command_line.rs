//! A plugin command's command line, parsed against what its manifest declares
//! (`provides.commands[].arguments` and `.options`), and the usage and help shown for it.
//!
//! clap parses: typed values, defaults, `--flag` booleans, repeated options for lists, `--` to
//! end options, and a did-you-mean for an unknown option or value. What comes out is the JSON
//! the plugin receives: every argument and option by name (`dry-run` as `dry_run`), typed.
//! Paths are held inside the project and handed over project-relative. A command that declares
//! nothing keeps the old reading ([`crate::split_args`]): strings only.

use std::path::{Path, PathBuf};

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, ColorChoice};
use serde_json::{Map, Value};
use trellis_manifest::{Command, CommandParam, ValueKind};

/// A command line as the plugin receives it.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedLine {
    /// The positional words as typed (for plugins that read them in order).
    pub positional: Vec<String>,
    /// Every declared argument and option by name, typed, defaults applied. Options that were
    /// not given and have no default are absent; flags are `false` and lists `[]` then.
    pub input: Map<String, Value>,
}

/// A command line that does not fit the command's declaration. Nothing ran.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct UsageError {
    pub command: String,
    pub message: String,
    /// `trellis scan [OPTIONS] <FEATURE>`.
    pub usage: String,
    /// clap's suggestion (`a similar argument exists: '--severity'`), when it has one.
    pub tip: Option<String>,
}

impl UsageError {
    pub fn hint(&self) -> String {
        let mut hint = format!("usage: {}", self.usage);
        if let Some(tip) = &self.tip {
            hint = format!("{tip}; {hint}");
        }
        format!(
            "{hint}; `trellis help {}` shows every argument and option",
            self.command
        )
    }
}

/// Parses `words` (what followed the command's name) against `command`'s declaration.
/// `env` looks up the environment variables options fall back to.
pub fn parse(
    command: &Command,
    words: &[String],
    root: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ParsedLine, UsageError> {
    let cli = clap_command(command, root, None);
    let usage = usage_of(&cli);
    let matches = cli
        .clone()
        .try_get_matches_from(words)
        .map_err(|e| usage_error(command, &usage, &e))?;
    let mut input = Map::new();
    let mut positional = Vec::new();
    for param in &command.arguments {
        if let Some(raw) = matches.get_raw(&param.key())
            && matches.value_source(&param.key()) == Some(ValueSource::CommandLine)
        {
            positional.extend(raw.map(|w| w.to_string_lossy().into_owned()));
        }
        if let Some(value) = value_of(&matches, param) {
            input.insert(param.key(), value);
        }
    }
    for param in &command.options {
        let given = matches.value_source(&param.key()) == Some(ValueSource::CommandLine);
        let from_env = param
            .env
            .as_deref()
            .filter(|_| !given)
            .and_then(|name| env(name).map(|text| (name, text)));
        let value = match from_env {
            Some((name, text)) => {
                Some(env_value(param, &text, root).map_err(|reason| UsageError {
                    command: command.name.clone(),
                    message: format!(
                        "the environment variable {name} (for `--{}`) {reason}",
                        param.name
                    ),
                    usage: usage.clone(),
                    tip: None,
                })?)
            }
            None => value_of(&matches, param),
        };
        if let Some(value) = value {
            input.insert(param.key(), value);
        }
    }
    Ok(ParsedLine { positional, input })
}

/// `trellis scan [OPTIONS] <FEATURE>`.
pub fn usage(command: &Command) -> String {
    usage_of(&clap_command(command, Path::new("."), None))
}

/// The help of `trellis help <command>` and `trellis <command> --help`.
pub fn help(command: &Command, plugin: &str, version: &str) -> String {
    let provider = format!("Provided by the plugin `{plugin}` {version}.");
    let provider = if command.declares_inputs() {
        provider
    } else {
        format!(
            "{provider}\nThe command declares no arguments or options: every `--key value` reaches the plugin as a string, and every other word as a positional string."
        )
    };
    let mut cli = clap_command(command, Path::new("."), Some(provider));
    if !command.declares_inputs() {
        cli = cli.arg(
            Arg::new("args")
                .value_name("ARGS")
                .num_args(0..)
                .allow_hyphen_values(true)
                .help("Passed to the plugin as typed"),
        );
    }
    cli.render_long_help().to_string().trim_end().to_owned()
}

fn usage_of(cli: &clap::Command) -> String {
    let rendered = cli.clone().render_usage().to_string();
    rendered
        .trim()
        .strip_prefix("Usage: ")
        .unwrap_or(rendered.trim())
        .to_owned()
}

fn clap_command(command: &Command, root: &Path, after_help: Option<String>) -> clap::Command {
    let mut cli = clap::Command::new(command.name.clone())
        .bin_name(format!("trellis {}", command.name))
        .no_binary_name(true)
        .disable_version_flag(true)
        .color(ColorChoice::Never)
        .term_width(100);
    if let Some(about) = &command.description {
        cli = cli.about(about.clone());
    }
    if let Some(after) = after_help {
        cli = cli.after_help(after);
    }
    for (i, param) in command.arguments.iter().enumerate() {
        let mut arg = typed(Arg::new(param.key()), param, root)
            .index(i + 1)
            .value_name(param.name.to_uppercase().replace('-', "_"))
            .required(param.is_required(true))
            .help(help_text(param));
        if param.kind == ValueKind::List {
            arg = arg.num_args(if param.is_required(true) { 1.. } else { 0.. });
        }
        cli = cli.arg(arg);
    }
    for param in &command.options {
        let mut arg = typed(Arg::new(param.key()), param, root)
            .long(param.name.clone())
            .required(param.is_required(false))
            .help(help_text(param));
        if let Some(c) = param.short {
            arg = arg.short(c);
        }
        arg = match param.kind {
            ValueKind::Boolean => arg
                .num_args(0..=1)
                .require_equals(true)
                .default_missing_value("true")
                .value_name("BOOL"),
            _ => arg.value_name(param.name.to_uppercase().replace('-', "_")),
        };
        cli = cli.arg(arg);
    }
    cli
}

/// The value parser, action and default of one declared input.
fn typed(arg: Arg, param: &CommandParam, root: &Path) -> Arg {
    let kind = param.item_kind();
    let arg = if kind == ValueKind::Enum {
        arg.value_parser(PossibleValuesParser::new(param.choices.clone()).map(Value::String))
    } else {
        let root = root.to_path_buf();
        arg.value_parser(move |word: &str| convert(kind, word, &root))
    };
    let arg = if param.kind == ValueKind::List {
        arg.action(ArgAction::Append)
    } else {
        arg.action(ArgAction::Set)
    };
    let defaults: Vec<String> = match (&param.default, param.kind) {
        (Some(Value::Array(items)), ValueKind::List) => items.iter().map(word_of).collect(),
        (Some(value), _) => vec![word_of(value)],
        (None, ValueKind::Boolean) => vec!["false".to_owned()],
        (None, _) => Vec::new(),
    };
    if defaults.is_empty() {
        arg
    } else {
        arg.default_values(defaults)
    }
}

fn help_text(param: &CommandParam) -> String {
    let mut text = param.help.clone().unwrap_or_default();
    let kind = match param.kind {
        ValueKind::List => format!("{}, repeatable", param.item_kind().as_str()),
        ValueKind::Integer | ValueKind::Number | ValueKind::Path => param.kind.as_str().to_owned(),
        _ => String::new(),
    };
    if !kind.is_empty() {
        text = format!("{text} ({kind})").trim_start().to_owned();
    }
    if let Some(env) = &param.env {
        text = format!("{text} [env: {env}]").trim_start().to_owned();
    }
    text
}

/// A default as the word that would give it on the command line.
fn word_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn value_of(matches: &ArgMatches, param: &CommandParam) -> Option<Value> {
    let mut values = matches
        .get_many::<Value>(&param.key())
        .map(|v| v.cloned().collect::<Vec<_>>())
        .unwrap_or_default();
    match param.kind {
        ValueKind::List => Some(Value::Array(values)),
        _ => values.pop(),
    }
}

/// An option's value read from its environment variable (a list: comma-separated).
fn env_value(param: &CommandParam, text: &str, root: &Path) -> Result<Value, String> {
    let kind = param.item_kind();
    let one = |word: &str| -> Result<Value, String> {
        if kind == ValueKind::Enum {
            return if param.choices.iter().any(|c| c == word) {
                Ok(Value::String(word.to_owned()))
            } else {
                Err(format!(
                    "is `{word}`, not one of {}",
                    param.choices.join(", ")
                ))
            };
        }
        convert(kind, word, root).map_err(|e| format!("is `{word}`: {e}"))
    };
    match param.kind {
        ValueKind::List => text
            .split(',')
            .map(str::trim)
            .filter(|w| !w.is_empty())
            .map(one)
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        _ => one(text),
    }
}

/// One word as a value of `kind` (enums are clap's).
fn convert(kind: ValueKind, word: &str, root: &Path) -> Result<Value, String> {
    match kind {
        ValueKind::String | ValueKind::Enum | ValueKind::List => Ok(Value::String(word.to_owned())),
        ValueKind::Integer => word
            .parse::<i64>()
            .map(Value::from)
            .map_err(|_| "not an integer".to_owned()),
        ValueKind::Number => word
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite())
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| "not a number".to_owned()),
        ValueKind::Boolean => match word.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Ok(Value::Bool(true)),
            "false" | "no" | "off" | "0" => Ok(Value::Bool(false)),
            _ => Err("not true or false".to_owned()),
        },
        ValueKind::Path => project_path(word, root).map(Value::String),
    }
}

/// A path the user typed (relative to the project, or absolute inside it) as the plugin gets
/// it: project-relative, `/`-separated, `.` for the project itself.
fn project_path(word: &str, root: &Path) -> Result<String, String> {
    let outside = || format!("`{word}` is outside the project ({})", root.display());
    let path = PathBuf::from(word);
    let relative = if path.is_absolute() {
        let root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
        let path = path.canonicalize().unwrap_or(path);
        path.strip_prefix(&root)
            .map_err(|_| outside())?
            .to_path_buf()
    } else {
        path
    };
    let text = relative.to_string_lossy().replace('\\', "/");
    let parts = trellis_host_api::paths::split_relative(&text).ok_or_else(outside)?;
    Ok(if parts.is_empty() {
        ".".to_owned()
    } else {
        parts.join("/")
    })
}

fn usage_error(command: &Command, usage: &str, e: &clap::Error) -> UsageError {
    let text = e.render().to_string();
    // clap's rendering: `error: ...` and its indented continuation lines (the missing
    // arguments), a blank line, `tip: ...`, the usage.
    let mut message: Option<String> = None;
    let mut in_message = false;
    let mut tip = None;
    for line in text.lines().map(str::trim) {
        if let Some(m) = line.strip_prefix("error: ") {
            message = Some(m.to_owned());
            in_message = true;
        } else if line.is_empty() {
            in_message = false;
        } else if in_message && let Some(m) = message.as_mut() {
            m.push(' ');
            m.push_str(line);
        } else if let Some(t) = line.strip_prefix("tip: ") {
            tip.get_or_insert_with(|| t.to_owned());
        }
    }
    UsageError {
        command: command.name.clone(),
        message: format!(
            "`trellis {}`: {}",
            command.name,
            message.unwrap_or_else(|| e.kind().to_string())
        ),
        usage: usage.to_owned(),
        tip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scan() -> Command {
        serde_json::from_value(json!({
            "name": "security-scan",
            "description": "Scan a feature for problems",
            "arguments": [
                {"name": "feature", "help": "Feature to scan"},
                {"name": "paths", "type": "list", "items": "path", "required": false}
            ],
            "options": [
                {"name": "severity", "type": "enum", "choices": ["low", "medium", "high"],
                 "default": "medium", "short": "s", "env": "SCAN_SEVERITY", "help": "Lowest severity"},
                {"name": "max-findings", "type": "integer", "default": 50},
                {"name": "ratio", "type": "number"},
                {"name": "dry-run", "type": "boolean"},
                {"name": "exclude", "type": "list"}
            ]
        }))
        .unwrap()
    }

    fn words(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    fn run(line: &str) -> Result<ParsedLine, UsageError> {
        parse(&scan(), &words(line), Path::new("/project"), &|_| None)
    }

    #[test]
    fn values_are_typed_and_defaults_applied() {
        let line = run("auth").unwrap();
        assert_eq!(line.positional, vec!["auth"]);
        assert_eq!(
            Value::Object(line.input),
            json!({"feature": "auth", "paths": [], "severity": "medium", "max_findings": 50,
                   "dry_run": false, "exclude": []})
        );
        let line = run("auth src ./lib/../docs -s high --max-findings 3 --ratio 0.5 --dry-run --exclude a --exclude b").unwrap();
        assert_eq!(line.positional, vec!["auth", "src", "./lib/../docs"]);
        assert_eq!(
            Value::Object(line.input),
            json!({"feature": "auth", "paths": ["src", "docs"], "severity": "high", "max_findings": 3,
                   "ratio": 0.5, "dry_run": true, "exclude": ["a", "b"]})
        );
    }

    #[test]
    fn a_double_dash_ends_the_options() {
        let line = run("-- --dry-run").unwrap();
        assert_eq!(line.input["feature"], "--dry-run");
        assert_eq!(line.input["dry_run"], false);
        assert_eq!(run("x --dry-run=false").unwrap().input["dry_run"], false);
    }

    #[test]
    fn every_mistake_is_refused_with_the_usage_and_a_suggestion() {
        let e = run("auth --sevrity high").unwrap_err();
        assert!(e.message.contains("unexpected argument '--sevrity'"), "{e}");
        assert_eq!(
            e.tip.as_deref(),
            Some("a similar argument exists: '--severity'")
        );
        assert!(
            e.usage
                .starts_with("trellis security-scan [OPTIONS] <FEATURE>"),
            "{}",
            e.usage
        );
        assert!(
            e.hint().contains("`trellis help security-scan`"),
            "{}",
            e.hint()
        );

        let e = run("--dry-run").unwrap_err();
        assert!(e.message.contains("<FEATURE>"), "{e}");

        let e = run("auth --max-findings many").unwrap_err();
        assert!(
            e.message.contains("invalid value 'many'") && e.message.contains("not an integer"),
            "{e}"
        );

        let e = run("auth -s hihg").unwrap_err();
        assert!(e.message.contains("invalid value 'hihg'"), "{e}");
        assert!(
            e.tip.as_deref().is_some_and(|t| t.contains("'high'")),
            "{e:?}"
        );

        let e = run("auth ../../etc").unwrap_err();
        assert!(e.message.contains("outside the project"), "{e}");
        let e = run("auth /etc/passwd").unwrap_err();
        assert!(e.message.contains("outside the project"), "{e}");
    }

    #[test]
    fn options_fall_back_to_their_environment_variable() {
        let env = |name: &str| (name == "SCAN_SEVERITY").then(|| "low".to_owned());
        let line = parse(&scan(), &words("auth"), Path::new("/p"), &env).unwrap();
        assert_eq!(line.input["severity"], "low");
        let line = parse(&scan(), &words("auth -s high"), Path::new("/p"), &env).unwrap();
        assert_eq!(line.input["severity"], "high", "the command line wins");
        let bad = |_: &str| Some("loud".to_owned());
        let e = parse(&scan(), &words("auth"), Path::new("/p"), &bad).unwrap_err();
        assert!(
            e.message.contains("SCAN_SEVERITY") && e.message.contains("`loud`"),
            "{e}"
        );
    }

    #[test]
    fn help_shows_arguments_options_defaults_and_the_provider() {
        let text = help(&scan(), "scanner", "1.2.0");
        for part in [
            "Scan a feature for problems",
            "Usage: trellis security-scan [OPTIONS] <FEATURE> [PATHS]...",
            "<FEATURE>",
            "Feature to scan",
            "-s, --severity <SEVERITY>",
            "[default: medium]",
            "[possible values: low, medium, high]",
            "[env: SCAN_SEVERITY]",
            "--max-findings <MAX_FINDINGS>",
            "(integer)",
            "Provided by the plugin `scanner` 1.2.0.",
        ] {
            assert!(text.contains(part), "`{part}` missing from:\n{text}");
        }
    }
}
