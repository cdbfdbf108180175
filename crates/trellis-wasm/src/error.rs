//! What can go wrong when loading or calling a plugin, in words that say what to do next.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Which resource limit a call ran into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Limit {
    /// Linear memory could not grow past `bytes`.
    Memory { bytes: u64 },
    /// The call ran longer than `limit` (wall time).
    Time { limit: Duration },
    /// The call used up its fuel (`budget` wasm instructions, roughly).
    Fuel { budget: u64 },
    /// The call returned `bytes` of data, more than `max`.
    Output { bytes: u64, max: u64 },
}

impl Limit {
    /// What the user can change, and where.
    pub fn advice(&self) -> &'static str {
        match self {
            Limit::Memory { .. } => {
                "raise limits.memory in plugin.yaml (at most the policy cap), or make the plugin use less memory"
            }
            Limit::Time { .. } => {
                "raise limits.timeout in plugin.yaml (at most the policy cap), or check the plugin for an endless loop"
            }
            Limit::Fuel { .. } => {
                "raise limits.fuel in plugin.yaml (at most the policy cap), or remove it to rely on the timeout alone"
            }
            Limit::Output { .. } => {
                "raise limits.max_output in plugin.yaml (at most the policy cap), or make the plugin return less"
            }
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Memory { bytes } => write!(
                f,
                "memory limit of {} reached",
                trellis_manifest::model::format_byte_size(*bytes)
            ),
            Limit::Time { limit } => {
                write!(f, "time limit of {} exceeded", format_duration(*limit))
            }
            Limit::Fuel { budget } => write!(f, "fuel budget of {budget} used up"),
            Limit::Output { bytes, max } => write!(
                f,
                "output of {bytes} bytes is larger than the limit of {}",
                trellis_manifest::model::format_byte_size(*max)
            ),
        }
    }
}

pub(crate) fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms >= 1000 && ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// How a plugin itself reported a failure (the WIT `error` cases other than `denied`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestErrorKind {
    /// `error.invalid-input`: the plugin did not accept the input.
    InvalidInput,
    /// `error.not-found`: the plugin does not handle that name (command, hook, phase...).
    NotFound,
    /// `error.failed`: anything else the plugin reports.
    Failed,
    /// The plugin answered, but not with valid JSON.
    InvalidResult,
}

impl fmt::Display for GuestErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GuestErrorKind::InvalidInput => "invalid input",
            GuestErrorKind::NotFound => "not found",
            GuestErrorKind::Failed => "failed",
            GuestErrorKind::InvalidResult => "invalid result",
        })
    }
}

/// Everything that can fail in this crate.
///
/// Every variant about a plugin names it; every failure of one call leaves the plugin usable for
/// the next call.
#[derive(Debug, thiserror::Error)]
pub enum WasmError {
    /// The plugin attempted something it holds no capability for.
    #[error("plugin `{plugin}` was denied `{capability}`: it tried to {attempted}")]
    Denied {
        plugin: String,
        capability: String,
        attempted: String,
    },

    /// A resource limit stopped the call.
    #[error("plugin `{plugin}`: `{call}` stopped: {limit}")]
    LimitExceeded {
        plugin: String,
        limit: Limit,
        call: String,
    },

    /// The plugin's code trapped (panicked, overflowed its stack, ...). The plugin is
    /// re-instantiated for its next call.
    #[error("plugin `{plugin}`: `{call}` crashed: {message}")]
    Trap {
        plugin: String,
        call: String,
        message: String,
    },

    /// The plugin returned an error of its own.
    #[error("plugin `{plugin}`: `{call}` {kind}: {message}")]
    Guest {
        plugin: String,
        call: String,
        kind: GuestErrorKind,
        message: String,
    },

    /// The component was built against a plugin API this host does not speak.
    #[error(
        "plugin `{plugin}`: {} is built against {}, but this trellis supports {}",
        file.display(),
        found.as_ref().map_or_else(|| "no trellis plugin API (it exports no `trellis:plugin/guest` interface)".to_owned(), |v| format!("trellis:plugin@{v}")),
        supported.iter().map(|v| format!("trellis:plugin@{v}")).collect::<Vec<_>>().join(", ")
    )]
    UnsupportedApiVersion {
        plugin: String,
        found: Option<String>,
        supported: Vec<String>,
        file: PathBuf,
    },

    /// The file is not a valid WebAssembly component (or not one this host can run).
    #[error("plugin `{plugin}`: {} is not a usable WebAssembly component: {reason}", file.display())]
    InvalidComponent {
        plugin: String,
        file: PathBuf,
        reason: String,
    },

    /// The manifest's `runtime.entry` does not lead to a file.
    #[error(
        "plugin `{plugin}`: no component at {}",
        file.display()
    )]
    NoEntry { plugin: String, file: PathBuf },

    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    /// The engine itself failed (configuration, a re-entrant call, ...).
    #[error("wasm engine: {0}")]
    Engine(String),
}

impl WasmError {
    /// The plugin this error is about, if any.
    #[must_use]
    pub fn plugin(&self) -> Option<&str> {
        match self {
            WasmError::Denied { plugin, .. }
            | WasmError::LimitExceeded { plugin, .. }
            | WasmError::Trap { plugin, .. }
            | WasmError::Guest { plugin, .. }
            | WasmError::UnsupportedApiVersion { plugin, .. }
            | WasmError::InvalidComponent { plugin, .. }
            | WasmError::NoEntry { plugin, .. } => Some(plugin),
            WasmError::Io { .. } | WasmError::Engine(_) => None,
        }
    }

    /// The stable name of this kind of failure, for scripts (`--json` output): `denied`,
    /// `memory_limit`, `timeout`, `fuel_exhausted`, `output_limit`, `trap`, `invalid_input`,
    /// `not_found`, `failed`, `invalid_result`, `unsupported_api_version`,
    /// `invalid_component`, `no_entry`, `io`, `engine`.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            WasmError::Denied { .. } => "denied",
            WasmError::LimitExceeded { limit, .. } => match limit {
                Limit::Memory { .. } => "memory_limit",
                Limit::Time { .. } => "timeout",
                Limit::Fuel { .. } => "fuel_exhausted",
                Limit::Output { .. } => "output_limit",
            },
            WasmError::Trap { .. } => "trap",
            WasmError::Guest { kind, .. } => match kind {
                GuestErrorKind::InvalidInput => "invalid_input",
                GuestErrorKind::NotFound => "not_found",
                GuestErrorKind::Failed => "failed",
                GuestErrorKind::InvalidResult => "invalid_result",
            },
            WasmError::UnsupportedApiVersion { .. } => "unsupported_api_version",
            WasmError::InvalidComponent { .. } => "invalid_component",
            WasmError::NoEntry { .. } => "no_entry",
            WasmError::Io { .. } => "io",
            WasmError::Engine(_) => "engine",
        }
    }

    /// What the user can do about it, when there is something to say.
    #[must_use]
    pub fn hint(&self) -> Option<String> {
        match self {
            WasmError::Denied { capability, .. } => Some(format!(
                "if the plugin should be allowed to, request `{capability}` (with the scope it needs) in requires.capabilities of its plugin.yaml and grant it; `trellis plugin grants <plugin>` shows what it holds"
            )),
            WasmError::LimitExceeded { limit, .. } => Some(limit.advice().to_owned()),
            WasmError::Trap { .. } => Some("report this to the plugin's author".to_owned()),
            WasmError::UnsupportedApiVersion { .. } => Some(
                "rebuild the plugin with a supported trellis SDK, or update trellis".to_owned(),
            ),
            WasmError::NoEntry { .. } => Some(
                "set runtime.entry in plugin.yaml to the .wasm file (relative to the plugin directory) and build it".to_owned(),
            ),
            _ => None,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        WasmError::Io {
            path: path.into(),
            source,
        }
    }
}
