//! Running a plugin command: `trellis <command> [args...]`.

use serde_json::{Value, json};
use trellis_host::Host;
use trellis_project::Project;

use crate::render::{Failure, Output};

pub fn run_command(
    project: Project,
    name: &str,
    args: &[String],
    out: &Output,
) -> Result<(), Failure> {
    let mut host = Host::start(project)?;
    // Telemetry is recorded only after the user consented; a failure there never fails the
    // command.
    if let Ok(telemetry) = crate::trust::telemetry_handle()
        && telemetry.status().is_ok_and(|s| s.enabled)
    {
        let telemetry = std::sync::Arc::new(telemetry);
        let recorder = telemetry.clone();
        host.on_command(move |r| {
            recorder.record(&trellis_telemetry::UsageEvent {
                plugin: r.plugin.clone(),
                version: r.version.clone(),
                command: r.command.clone(),
                success: r.success,
                duration_ms: r.duration_ms,
            });
        });
        let result = host.run_command(name, args);
        telemetry.maybe_flush();
        return finish(&host, result, out);
    }
    let result = host.run_command(name, args);
    finish(&host, result, out)
}

fn finish(
    host: &Host,
    result: Result<trellis_host::CommandOutput, trellis_host::HostError>,
    out: &Output,
) -> Result<(), Failure> {
    if let Err(e) = host.persist_stats() {
        eprintln!("warning: could not update plugin statistics: {e}");
    }
    let output = result?;
    out.value(
        &serde_json::to_value(&output).unwrap_or(Value::Null),
        || match &output.output {
            Value::String(text) => text.trim_end().to_owned(),
            other => serde_json::to_string_pretty(other).unwrap_or_default(),
        },
    );
    Ok(())
}

/// Whether the words after a plugin command ask for its help (`--help` or `-h` before `--`).
pub fn wants_help(words: &[String]) -> bool {
    words
        .iter()
        .take_while(|w| *w != "--")
        .any(|w| w == "--help" || w == "-h")
}

/// `trellis help <command>` and `trellis <command> --help`: the command's usage, arguments,
/// options and defaults, and the plugin that provides it.
pub fn command_help(project: &Project, name: &str, out: &Output) -> Result<(), Failure> {
    let (plugin, command) = project.resolve_command(name)?;
    let version = project.info(&plugin)?.manifest.metadata.version.to_string();
    let text = trellis_host::command_line::help(&command, &plugin, &version);
    out.value(
        &json!({
            "plugin": plugin,
            "version": version,
            "command": command.name,
            "description": command.description,
            "usage": trellis_host::command_line::usage(&command),
            "declared": command.declares_inputs(),
            "arguments": command.arguments,
            "options": command.options,
            "help": text,
        }),
        || text.clone(),
    );
    Ok(())
}
