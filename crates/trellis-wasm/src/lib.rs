//! The Trellis host runtime for WebAssembly component plugins.
//!
//! A plugin is a component built against the `trellis:plugin` WIT world
//! (`wit/v0.1.0/plugin.wit`). This crate compiles it (once: compiled components are cached),
//! checks that it speaks a supported plugin API version, and runs its exports in a sandbox:
//!
//! - **Capabilities.** This crate decides nothing about them: every host import (`log`,
//!   `config`, `events`, `state`, `backlog`, `environment`, `process`), every WASI filesystem
//!   call and every outgoing HTTP request is translated into a call of the plugin's
//!   [`trellis_host_api::PluginApi`], which checks the grant, acts and audits. A denial is the
//!   WIT `error.denied` (for WASI, `error-code.access`) in the guest, a `capability.denied`
//!   record in the audit trail ([`AuditSink`]) and a count in [`PluginMetrics::denials`].
//! - **WASI** (p2, via `wasmtime-wasi`): no environment variables, no arguments, no sockets
//!   or name lookup, empty stdin, stdout/stderr captured (bounded) and sent to `tracing`. With
//!   a filesystem grant the project directory is preopened at `/project`, and each path a
//!   guest names is checked at file granularity against the grant's `paths`, after `..` and
//!   symbolic links are resolved (`fs.rs`): `.trellis/` is never reachable.
//! - **Outgoing HTTP** (`wasi:http` 0.2, via `wasmtime-wasi-http`): the host API checks the
//!   host and port against the `network` grant, then the addresses the name resolves to (a
//!   granted name that leads to a private or loopback address is refused), and the connection
//!   is made to those checked addresses (`net.rs`). A denied request opens no connection and
//!   returns `error-code.HTTP-request-denied`. A request ends at the call's deadline, and a
//!   response body is capped at [`MAX_RESPONSE_BODY_BYTES`].
//! - **Limits** ([`EffectiveLimits`]): linear memory per store, wall time per call (epoch
//!   interruption, a 10 ms tick: a runaway call stops within one tick of its timeout), an
//!   optional fuel budget, and the size of a call's result. Sleeps through
//!   `wasi:clocks/monotonic-clock` end at the call's deadline, and commands run for a plugin
//!   are killed then, so no import lets a call outlive its timeout.
//! - **Configuration migrations** ([`WasmPlugin::migrate_config`]): a migration function runs
//!   through `call-hook` with the reserved hook [`CONFIG_MIGRATE_HOOK`], in an instance of its
//!   own that is never initialized and holds no capability, under the plugin's limits.
//! - **Isolation of failures.** A trap (panic, stack overflow, limit) drops that plugin's
//!   instance; the next call instantiates a fresh one from the pre-linked component. Other
//!   plugins are never affected.
//!
//! # Design choices
//!
//! - *Fuel* metering is compiled only into plugins that have a fuel budget
//!   ([`FuelMode::Auto`], the default): they run on a second engine, created on first need
//!   (its compiled components are cached under a different key). Measured on a tight wasm
//!   loop (`tests/fuel_cost.rs`, the worst case), metering made code about 50% slower, too
//!   much to impose on every plugin for a budget most never set; the epoch timeout already
//!   bounds every call. [`FuelMode::Always`] and [`FuelMode::Never`] are there for hosts that
//!   want one or the other.
//! - *Pooling* ([`EngineOptions::pooling`]) is off by default: a CLI instantiates each plugin
//!   about once per run, and a fresh instance costs tens of microseconds either way (measured
//!   with `instantiation_cost` in `tests/wat_guest.rs`: about 60 µs on demand, 30 µs pooled,
//!   unoptimized build), while the pool reserves address space for every slot up front. A
//!   long-running host that re-instantiates often can turn it on.
//! - *Compiled components are cached* as `<cache_dir>/<sha256 of the .wasm>-<engine
//!   hash>.cwasm` (see [`cache_key`]); a second load, in this process or the next,
//!   deserializes instead of compiling. `<cache_dir>/sources.v2` remembers each `.wasm`
//!   file's hash while its metadata is unchanged, so a warm start reads neither the `.wasm`
//!   nor hashes it. Instantiation is lazy (first call) from an
//!   `InstancePre` linked at load.
//! - *Calls are synchronous* and serialized per plugin. Call plugins from a plain thread (or
//!   `spawn_blocking`), not from inside an async task: wasmtime-wasi blocks on its own runtime
//!   for some I/O. The calling thread needs a native stack of at least 1 MiB (wasm may use
//!   512 KiB of it, [`EngineOptions::max_wasm_stack`]); the main thread and default
//!   `std::thread`s have more.
//!
//! # What this crate does not know
//!
//! Nothing of the `trellis` CLI, of registries or packages, of how plugins are installed,
//! enabled or granted capabilities, or of the project lifecycle. The caller resolves all that
//! into a [`PluginSpec`] (manifest, effective config, effective grants, effective limits) and
//! gets back a [`WasmPlugin`] to call directly or to register with a
//! [`trellis_core::PluginManager`] through [`WasmPlugin::registration`].

mod cache;
mod error;
mod fs;
mod host;
mod limiter;
mod limits;
mod net;
mod plugin;
mod runtime;
mod stdio;

pub use cache::{CacheStatus, cache_key, cache_path, engine_hash};
pub use error::{GuestErrorKind, Limit, WasmError};
pub use host::GUEST_PROJECT_DIR;
pub use limits::{
    DEFAULT_MAX_OUTPUT_BYTES, DEFAULT_MEMORY_BYTES, DEFAULT_TIMEOUT, EffectiveLimits,
};
pub use net::MAX_RESPONSE_BODY_BYTES;
pub use plugin::WasmPlugin;
pub use runtime::{
    EngineOptions, FuelMode, PluginSpec, PoolingOptions, RuntimeOptions, SUPPORTED_API_VERSIONS,
    WasmRuntime, detect_api_version,
};
pub use trellis_audit::{AuditEvent, AuditLog, AuditSink, MemoryAudit};
pub use trellis_host_api::metrics::{PluginMetrics, RESERVOIR_SIZE, percentile};
pub use trellis_manifest::CONFIG_MIGRATE_HOOK;
pub use trellis_manifest::{HOOK_WRAP_AFTER, HOOK_WRAP_BEFORE};
