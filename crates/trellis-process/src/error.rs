use serde_json::Value;

/// Why a process plugin could not start or answer. Each one names the plugin.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProcessError {
    #[error("plugin `{plugin}` could not be started: {reason}")]
    Spawn { plugin: String, reason: String },
    #[error("plugin `{plugin}` failed its handshake: {reason}")]
    Handshake { plugin: String, reason: String },
    /// It started and implements what it declares, and its own `init` refused the
    /// configuration it was given.
    #[error("plugin `{plugin}` failed its handshake: its `init` failed: {reason}")]
    Init { plugin: String, reason: String },
    #[error("plugin `{plugin}` does not implement what its manifest declares: {detail}")]
    Mismatch { plugin: String, detail: String },
    /// The plugin answered with an error (its own, or a host API error it passed on).
    #[error("plugin `{plugin}`: {message}")]
    Plugin {
        plugin: String,
        /// The error's `data.kind` (`denied`, `not_found`, …) or `failed`.
        kind: String,
        message: String,
        data: Option<Value>,
    },
    #[error(
        "plugin `{plugin}` did not answer `{method}` within {seconds:.1} s; the process was stopped"
    )]
    Timeout {
        plugin: String,
        method: String,
        seconds: f64,
    },
    #[error("plugin `{plugin}` exited during `{method}` ({status}){}", stderr_suffix(.stderr))]
    Crashed {
        plugin: String,
        method: String,
        status: String,
        stderr: Vec<String>,
    },
    #[error("plugin `{plugin}` broke the protocol: {reason}")]
    Protocol { plugin: String, reason: String },
    #[error("plugin `{plugin}` is quarantined: {reason}")]
    Quarantined { plugin: String, reason: String },
    #[error(
        "plugin `{plugin}` returned {bytes} bytes, more than its limit of {limit} (`limits.max_output`)"
    )]
    OutputTooLarge {
        plugin: String,
        bytes: usize,
        limit: u64,
    },
}

fn stderr_suffix(lines: &[String]) -> String {
    if lines.is_empty() {
        String::new()
    } else {
        format!("; its last words on stderr: {}", lines.join(" | "))
    }
}

impl ProcessError {
    /// The stable name of this kind of failure, for scripts.
    pub fn kind(&self) -> &'static str {
        match self {
            ProcessError::Spawn { .. } => "process_spawn",
            ProcessError::Handshake { .. } => "process_handshake",
            ProcessError::Init { .. } => "process_init",
            ProcessError::Mismatch { .. } => "process_mismatch",
            ProcessError::Plugin { kind, .. } => match kind.as_str() {
                "denied" => "denied",
                "invalid_input" => "invalid_input",
                "not_found" => "not_found",
                "timeout" => "timeout",
                _ => "plugin_failed",
            },
            ProcessError::Timeout { .. } => "timeout",
            ProcessError::Crashed { .. } => "process_crashed",
            ProcessError::Protocol { .. } => "process_protocol",
            ProcessError::Quarantined { .. } => "quarantined",
            ProcessError::OutputTooLarge { .. } => "output_too_large",
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            ProcessError::Spawn { .. } | ProcessError::Handshake { .. } => Some(
                "docs/process.md describes the handshake; run the plugin's entry by hand to see its errors".to_owned(),
            ),
            ProcessError::Mismatch { .. } => Some(
                "make `provides` in plugin.yaml and the plugin's code name the same commands, hooks and phases".to_owned(),
            ),
            ProcessError::Init { plugin, .. } => Some(format!(
                "check its configuration: `trellis plugin config {plugin} get` shows it, `trellis plugin config {plugin} set KEY VALUE` changes it"
            )),
            ProcessError::Quarantined { plugin, .. } => Some(format!(
                "fix the cause, then `trellis plugin enable {plugin}`"
            )),
            ProcessError::Timeout { .. } => Some(
                "raise `limits.timeout` in plugin.yaml if the work needs longer".to_owned(),
            ),
            _ => None,
        }
    }
}
