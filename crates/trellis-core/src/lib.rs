//! The Trellis plugin host core: extension points (hook specs and their dispatch, with pluggy's
//! semantics and more) and the event bus.
//!
//! Any Rust program can embed this crate to become a plugin host. It is deliberately small: it
//! knows nothing of the `trellis` CLI, of registries, of how plugins are installed on disk, or
//! of any runtime's internals (wasmtime, processes). Runtimes plug in by registering
//! implementations whose payloads are JSON values, so one dispatch path serves native Rust,
//! WebAssembly and process plugins alike.

pub mod events;
pub mod hooks;

pub use events::{Event, EventBus, EventError, EventLog, SubscriptionId, TopicPattern};
pub use hooks::{
    FailMode, HookCall, HookCaller, HookError, HookImpl, HookResults, HookSpec, Outcome,
    PluginManager, PluginRegistration, RegistrationError, RemoteHookEntry, RemoteHooks, TypedHook,
    remote_registration,
};

/// The examples in `docs/hooks.md`, run as doctests so the guide cannot drift from the code.
#[doc = include_str!("../../../docs/hooks.md")]
#[cfg(doctest)]
pub struct HooksGuide;
