//! The host API of Trellis plugins: every service a plugin can call, each implemented once,
//! whatever runtime the plugin uses.
//!
//! A runtime (wasm components today, processes next) translates its plugin's calls into
//! [`PluginApi`] methods and their results back; it never decides on its own what a plugin
//! may do. Each service checks the plugin's effective [`Grants`] (requested ∩ granted ∩
//! policy, in typed form), acts, audits, and returns a typed [`ApiError`] on failure. A denial
//! is an [`ApiError::Denied`] naming the capability and what was attempted, a
//! `capability.denied` record in the audit trail, and a count in [`PluginApi::denials`].
//!
//! The scope rules, exactly as enforced:
//!
//! - files: [`paths`] (patterns at file granularity; `.trellis/` never, `.git/` writable only
//!   when named) after [`resolve`] has followed every `..` and symbolic link inside the
//!   project, so that the real target is checked and not a spelling of it;
//! - network: [`hosts`] (names, wildcards, ports; a granted name must resolve to a public
//!   address unless the grant names the address);
//! - subprocess: [`commands`] (the program and each argument matched separately; no shell);
//! - environment: named variables only, in host calls and in `${VAR}` configuration
//!   ([`config`]).
//!
//! What this crate must not know about: any runtime's internals (WIT, wasmtime, process
//! protocols), the CLI, installing or lifecycle, registries. It is handed the grants and the
//! configuration the project resolved and the sinks (event bus, audit trail) to report to.

mod api;
mod capability;
pub mod commands;
pub mod config;
mod error;
pub mod exec;
pub mod hosts;
pub mod http;
pub mod metrics;
pub mod os_rules;
pub mod paths;
pub mod resolve;
pub mod state;

pub use api::{
    ApiSpec, Call, FileAccess, LogLevel, MAX_AUDITED_DENIALS_PER_CALL, MAX_EVENT_PAYLOAD,
    MAX_LOG_MESSAGE, NewTask, PluginApi, RequestTarget, Task, describe_command,
};
pub use capability::{CapabilityKind, Grants, describe_scope};
pub use config::{Expansion, env_references, expand_config};
pub use error::{ApiError, Denial};
pub use exec::RunOutput;
pub use http::{HttpRequest, HttpResponse};
pub use metrics::{CallStats, PluginMetrics, RESERVOIR_SIZE, percentile};
pub use os_rules::OsFileRules;
pub use resolve::{ProjectRoot, Resolved};
