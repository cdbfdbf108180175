//! Plugins as child processes, in any language: a JSON-RPC 2.0 channel on a private
//! descriptor, each process inside the operating system's sandbox, supervised.
//!
//! - [`protocol`]: the wire format (docs/process.md is its reference for plugin authors).
//! - [`connection`]: one channel; host calls with deadlines, plugin calls served in turn.
//! - [`service`]: the plugin's calls into the host, translated into the host API (which makes
//!   every capability decision, denial and audit record; nothing is decided here).
//! - [`ProcessRuntime`] / [`ProcessPlugin`]: starting a plugin (sandbox launch, handshake,
//!   `init`), calling it, restarting it after a crash with backoff, and quarantining it after
//!   repeated failures.
//!
//! - [`python_env`] / [`python_wheel`]: a Python plugin's own virtual environment from its
//!   hash-pinned requirements, and plugins shipped as wheels; the caller (the installer)
//!   decides where the environment lives.
//!
//! The sandbox itself is `trellis-sandbox`'s: this crate turns grants into its [`LaunchSpec`]
//! (file rules from [`trellis_host_api::OsFileRules`], the granted variables) and starts the
//! launcher.
//!
//! This crate must not know about the CLI, project layouts or the lifecycle on disk (a quarantine
//! is reported to the caller's callback), other runtimes, or the workflow.
//!
//! [`LaunchSpec`]: trellis_sandbox::LaunchSpec

pub mod connection;
mod error;
mod handshake;
pub mod interpreter;
mod launch;
mod plugin;
pub mod protocol;
pub mod python_env;
mod python_sdk;
pub mod python_wheel;
mod read_side;
pub mod service;

pub use error::ProcessError;
pub use handshake::Implements;
pub use launch::{
    CommandSandbox, DISABLE_VAR, Launcher, ProcessOptions, ProcessRuntime, describe_support,
    sandbox_support,
};
pub use plugin::{OwnPythonEnv, PluginSpec, ProcessLimits, ProcessPlugin, QuarantineCallback};
pub use trellis_sandbox::{Layer, Support};
