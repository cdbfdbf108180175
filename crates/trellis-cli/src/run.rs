//! Running a plugin command: `trellis <command> [args...]`.

use std::time::Instant;

use anyhow::{Context, anyhow};
use serde_json::{Map, Value, json};
use trellis_manifest::RuntimeKind;
use trellis_project::Project;

use crate::render::{Failure, Output};

pub fn run_command(
    project: &Project,
    name: &str,
    args: &[String],
    out: &Output,
) -> Result<(), Failure> {
    let (plugin_name, command) = project.resolve_command(name)?;
    let report = project.load()?;
    let plugin = match report.loaded.iter().find(|p| p.name == plugin_name) {
        Some(p) => p,
        None => {
            let reason = report
                .failed
                .iter()
                .find(|(n, _)| *n == plugin_name)
                .map(|(_, r)| r.clone())
                .unwrap_or_else(|| "it is not enabled".to_owned());
            return Err(anyhow!("plugin `{plugin_name}` could not be loaded: {reason}").into());
        }
    };
    let (positional, options) = split_args(args);
    let bus = project.events();
    let invoked = json!({"plugin": plugin_name, "command": command.name, "args": args});
    bus.emit("plugin.command.invoked", invoked)?;
    let started = Instant::now();

    let result = match plugin.manifest.runtime.kind {
        RuntimeKind::Declarative => {
            let template = command.template.as_deref().with_context(|| {
                format!(
                    "command `{}` of `{plugin_name}` has no `template` to render",
                    command.name
                )
            })?;
            let path = plugin.dir.join(template);
            let source = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let mut env = minijinja::Environment::new();
            env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
            env.add_template(template, &source)
                .map_err(|e| anyhow!("{}: template error: {e}", path.display()))?;
            let context = json!({
                "args": positional,
                "options": options,
                "config": plugin.config,
                "plugin": {"name": plugin.name, "version": plugin.manifest.metadata.version.to_string()},
                "project": {"root": project.root()},
            });
            env.get_template(template)
                .and_then(|t| t.render(minijinja::value::Serde(&context)))
                .map_err(|e| anyhow!("{}: {e}", path.display()))
        }
        other => Err(anyhow!(
            "plugin `{plugin_name}` uses the {} runtime, which this build of trellis cannot run yet",
            other.as_str()
        )),
    };
    let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    let completed = json!({"plugin": plugin_name, "command": command.name,
        "success": result.is_ok(), "duration_ms": duration_ms});
    bus.emit("plugin.command.completed", completed)?;
    match result {
        Ok(text) => {
            out.value(
                &json!({"plugin": plugin_name, "command": command.name, "output": text}),
                || text.trim_end().to_owned(),
            );
            Ok(())
        }
        Err(e) => {
            bus.emit(
                "plugin.error",
                json!({"plugin": plugin_name, "error": e.to_string(), "context": "command"}),
            )?;
            Err(e.into())
        }
    }
}

/// `--key=value` and `--key value` become options (a bare `--flag` is `true`); the rest are
/// positional arguments.
fn split_args(args: &[String]) -> (Vec<String>, Map<String, Value>) {
    let mut positional = Vec::new();
    let mut options = Map::new();
    let mut iter = args.iter().peekable();
    while let Some(arg) = iter.next() {
        if let Some(opt) = arg.strip_prefix("--") {
            if opt.is_empty() {
                positional.extend(iter.by_ref().cloned());
                break;
            }
            match opt.split_once('=') {
                Some((k, v)) => {
                    options.insert(k.to_owned(), Value::String(v.to_owned()));
                }
                None => {
                    let value = match iter.peek() {
                        Some(next) if !next.starts_with("--") => {
                            Value::String(iter.next().cloned().unwrap_or_default())
                        }
                        _ => Value::Bool(true),
                    };
                    options.insert(opt.to_owned(), value);
                }
            }
        } else {
            positional.push(arg.clone());
        }
    }
    (positional, options)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_split_into_positional_and_options() {
        let args: Vec<String> = ["a", "--x=1", "--flag", "--y", "2", "b", "--", "--z"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (pos, opts) = split_args(&args);
        assert_eq!(pos, vec!["a", "b", "--z"]);
        assert_eq!(opts.get("x"), Some(&json!("1")));
        assert_eq!(opts.get("flag"), Some(&json!(true)));
        assert_eq!(opts.get("y"), Some(&json!("2")));
    }
}
