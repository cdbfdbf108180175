//! Running a plugin command: `trellis <command> [args...]`.

use serde_json::Value;
use trellis_host::Host;
use trellis_project::Project;

use crate::render::{Failure, Output};

pub fn run_command(
    project: Project,
    name: &str,
    args: &[String],
    out: &Output,
) -> Result<(), Failure> {
    let host = Host::start(project)?;
    let result = host.run_command(name, args);
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
