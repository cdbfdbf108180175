//! Hooks: extension points declared by the host, implemented by plugins.
//!
//! The model is pluggy's (<https://pluggy.readthedocs.io>), kept case by case so that plugin
//! authors coming from Python find the same call order, wrapper semantics, firstresult and
//! historic behaviour. Payloads are `serde_json::Value` because that is what native Rust,
//! WebAssembly and process plugins all understand. [`TypedHook`] and [`HookImpl::typed`] put
//! Rust types on top, and a typed call hands a typed implementation of the same types the
//! caller's value itself, so native plugins of a Rust host pay no JSON (see [`TypedHook`]).
//!
//! Where pluggy users have asked for more, we add it:
//! - atomic registration (a plugin with one bad implementation leaves no trace) and error
//!   lists naming every problem;
//! - `before`/`after` ordering between plugins, with cycles refused at registration;
//! - [`FailMode::Continue`] for hooks where one failing plugin must not silence the rest;
//! - panics contained and attributed to their plugin;
//! - JSON Schema validation of arguments and results;
//! - bounded history for historic hooks;
//! - async implementations, on any executor.
//!
//! Calls are cheap on purpose: each hook publishes an immutable, pre-ordered snapshot on
//! registration, so a call never sorts, looks up or locks anything a registration holds.

mod dispatch;
mod error;
mod impls;
mod manager;
mod order;
mod remote;
mod spec;
mod typed;

pub use error::{HookError, PendingImpl, RegistrationError, ValidationProblem};
pub use impls::{
    HookCall, HookFuture, HookImpl, HookResults, ImplOptions, ImplResult, Outcome,
    PluginRegistration, RegisteredImpl, Teardown,
};
pub use manager::{
    AfterMonitor, BeforeMonitor, HistoricCallback, HookCaller, MonitorHandle, PluginInfo,
    PluginManager, RegistrationReport,
};
pub use remote::{
    RemoteHookEntry, RemoteHooks, apply_wrapper_answer, remote_registration, wrapper_view,
};
pub use spec::{DEFAULT_HISTORY_LIMIT, FailMode, HookSpec};
pub use typed::TypedHook;
