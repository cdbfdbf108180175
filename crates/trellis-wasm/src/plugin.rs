//! One loaded plugin: lazy instantiation, calls under limits, error mapping, metrics.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use serde_json::Value;
use trellis_core::{HookError, PluginRegistration};
use wasmtime::Store;

use crate::cache::{self, CacheStatus};
use crate::error::{GuestErrorKind, Limit, WasmError};
use crate::host::{HostState, Plugin, PluginPre, PluginShared, WitError};
use crate::limiter::MemoryLimiter;
use crate::limits::EffectiveLimits;
use crate::metrics::{CallStats, PluginMetrics};
use crate::runtime::SharedRuntime;
use crate::stdio;

/// Longest error message taken from a plugin, in bytes.
const MAX_GUEST_MESSAGE: usize = 16 << 10;

/// A live instance and the store it lives in. Dropped after a trap: a trapped instance may
/// have broken invariants and is never called again.
struct Live {
    store: Store<HostState>,
    bindings: Plugin,
}

/// A loaded WebAssembly plugin. `Send + Sync`; calls to one plugin are serialized.
pub struct WasmPlugin {
    shared: Arc<PluginShared>,
    runtime: SharedRuntime,
    engine: wasmtime::Engine,
    /// Whether `engine` meters fuel.
    metered: bool,
    pre: PluginPre<HostState>,
    hooks: Vec<trellis_manifest::HookImpl>,
    limits: EffectiveLimits,
    live: Mutex<Option<Live>>,
    stats: Mutex<CallStats>,
    cache_status: CacheStatus,
    file: PathBuf,
}

thread_local! {
    /// Plugins with a call in progress on this thread, to refuse re-entrant calls (a plugin's
    /// event reaching a subscriber that calls the same plugin) instead of deadlocking.
    static ACTIVE: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

struct Reentry(usize);

impl Reentry {
    fn enter(plugin: &WasmPlugin, call: &str) -> Result<Self, WasmError> {
        let id = std::ptr::from_ref(plugin) as usize;
        ACTIVE.with(|a| {
            let mut a = a.borrow_mut();
            if a.contains(&id) {
                return Err(WasmError::Engine(format!(
                    "plugin `{}`: `{call}` was called while the plugin is already running on this thread (re-entrant call refused)",
                    plugin.shared.name
                )));
            }
            a.push(id);
            Ok(Reentry(id))
        })
    }
}

impl Drop for Reentry {
    fn drop(&mut self) {
        ACTIVE.with(|a| {
            let mut a = a.borrow_mut();
            if let Some(pos) = a.iter().rposition(|&x| x == self.0) {
                a.remove(pos);
            }
        });
    }
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str("… (truncated)");
    }
    s
}

impl WasmPlugin {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        shared: Arc<PluginShared>,
        runtime: SharedRuntime,
        engine: wasmtime::Engine,
        metered: bool,
        pre: PluginPre<HostState>,
        hooks: Vec<trellis_manifest::HookImpl>,
        limits: EffectiveLimits,
        cache_status: CacheStatus,
        file: PathBuf,
    ) -> Self {
        WasmPlugin {
            shared,
            runtime,
            engine,
            metered,
            pre,
            hooks,
            limits,
            live: Mutex::new(None),
            stats: Mutex::new(CallStats::default()),
            cache_status,
            file,
        }
    }

    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The component file this plugin was loaded from.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Whether the compiled component came from the cache.
    pub fn cache_status(&self) -> CacheStatus {
        self.cache_status
    }

    pub fn limits(&self) -> &EffectiveLimits {
        &self.limits
    }

    /// Runs command `name` (a `provides.commands` entry) and returns its JSON result.
    pub fn run_command(
        &self,
        name: &str,
        args: &[String],
        input: &Value,
    ) -> Result<Value, WasmError> {
        let call = format!("command {name}");
        let input = to_json(input)?;
        let text = self.invoke(&call, |store, b| {
            b.trellis_plugin_guest()
                .call_run_command(store, name, args, &input)
        })?;
        self.parse_output(&call, &text)
    }

    /// Calls the plugin's implementation of hook `hook`; `None` is pluggy's `None`.
    pub fn call_hook(&self, hook: &str, args: &Value) -> Result<Option<Value>, WasmError> {
        let call = format!("hook {hook}");
        let args = to_json(args)?;
        let text = self.invoke(&call, |store, b| {
            b.trellis_plugin_guest().call_call_hook(store, hook, &args)
        })?;
        text.map(|t| self.parse_output(&call, &t)).transpose()
    }

    /// Delivers an event the plugin subscribed to.
    pub fn on_event(&self, topic: &str, payload: &Value) -> Result<(), WasmError> {
        let payload = to_json(payload)?;
        self.invoke(&format!("event {topic}"), |store, b| {
            b.trellis_plugin_guest()
                .call_on_event(store, topic, &payload)
        })
    }

    /// Runs the plugin's contribution to workflow phase `phase` at `stage`.
    pub fn run_phase(&self, phase: &str, stage: &str, context: &Value) -> Result<Value, WasmError> {
        let call = format!("phase {phase} ({stage})");
        let context = to_json(context)?;
        let text = self.invoke(&call, |store, b| {
            b.trellis_plugin_guest()
                .call_run_phase(store, phase, stage, &context)
        })?;
        self.parse_output(&call, &text)
    }

    /// One hook implementation per `provides.hooks` entry, in manifest order, each calling
    /// [`WasmPlugin::call_hook`]. Wrappers are skipped (with a warning) for now: the plugin
    /// API has no way yet to run code before and after the inner implementations.
    pub fn registration(self: &Arc<Self>) -> PluginRegistration {
        let mut registration = PluginRegistration::new(self.name());
        for h in &self.hooks {
            if h.wrapper {
                tracing::warn!(plugin = %self.name(), hook = %h.hook, "wrapper hooks are not supported for wasm plugins yet; skipping");
                continue;
            }
            let plugin = Arc::clone(self);
            let hook = h.hook.clone();
            let mut imp = trellis_core::HookImpl::new(h.hook.clone(), move |call| {
                plugin.call_hook(&hook, call.args()).map_err(HookError::msg)
            });
            if h.tryfirst {
                imp = imp.tryfirst();
            }
            if h.trylast {
                imp = imp.trylast();
            }
            if h.optional {
                imp = imp.optional();
            }
            if !h.before.is_empty() {
                imp = imp.before(h.before.iter().cloned());
            }
            if !h.after.is_empty() {
                imp = imp.after(h.after.iter().cloned());
            }
            registration.push(imp);
        }
        registration
    }

    /// Subscribes [`WasmPlugin::on_event`] to `bus` for every `provides.hooks` entry that is
    /// an event pattern (contains `.` or `*`, e.g. `workflow.*.completed`). Separate from
    /// [`WasmPlugin::registration`], which the caller may also use for such entries; call
    /// one or the other per entry kind. The bus holds the plugin weakly: dropping the plugin
    /// ends delivery. A failing delivery is logged, never propagated to the emitter.
    pub fn subscribe_events(
        self: &Arc<Self>,
        bus: &trellis_core::EventBus,
    ) -> Result<Vec<trellis_core::SubscriptionId>, WasmError> {
        let mut ids = Vec::new();
        for h in &self.hooks {
            if !(h.hook.contains('.') || h.hook.contains('*')) {
                continue;
            }
            let weak = Arc::downgrade(self);
            let id = bus
                .subscribe(&h.hook, move |event| {
                    let Some(plugin) = weak.upgrade() else { return };
                    if let Err(e) = plugin.on_event(&event.topic, &event.payload) {
                        tracing::warn!(plugin = %plugin.name(), topic = %event.topic, error = %e, "event handler failed");
                    }
                })
                .map_err(|e| WasmError::Engine(format!("plugin `{}`: {e}", self.name())))?;
            ids.push(id);
        }
        Ok(ids)
    }

    pub fn metrics(&self) -> PluginMetrics {
        self.lock_stats().snapshot(
            self.shared.denials.load(Ordering::Relaxed),
            self.shared.peak_memory.load(Ordering::Relaxed),
        )
    }

    /// Drops the live instance (if any); the next call instantiates afresh.
    pub fn reset(&self) {
        *self.lock_live() = None;
    }

    fn lock_stats(&self) -> MutexGuard<'_, CallStats> {
        self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_live(&self) -> MutexGuard<'_, Option<Live>> {
        self.live.lock().unwrap_or_else(|p| {
            // A host panic in the middle of a call: do not trust that instance.
            let mut guard = p.into_inner();
            *guard = None;
            guard
        })
    }

    fn parse_output(&self, call: &str, text: &str) -> Result<Value, WasmError> {
        serde_json::from_str(text).map_err(|e| {
            self.fail_after_call(WasmError::Guest {
                plugin: self.shared.name.clone(),
                call: call.to_owned(),
                kind: GuestErrorKind::InvalidResult,
                message: format!("the result is not JSON: {e}"),
            })
        })
    }

    /// Counts an error found after the call itself succeeded (bad result).
    fn fail_after_call(&self, e: WasmError) -> WasmError {
        let mut stats = self.lock_stats();
        stats.reclassify_last_as_error();
        e
    }

    /// Runs one guest call: instantiate if needed, set the deadline, fuel and counters, call,
    /// map the outcome, record metrics.
    fn invoke<R: OutputSize>(
        &self,
        call: &str,
        f: impl FnOnce(&mut Store<HostState>, &Plugin) -> wasmtime::Result<Result<R, WitError>>,
    ) -> Result<R, WasmError> {
        let _reentry = Reentry::enter(self, call)?;
        let started = Instant::now();
        let result = self.invoke_locked(call, f);
        let took = started.elapsed();
        self.lock_stats().record(took, result.is_err());
        if let Err(e) = &result {
            tracing::debug!(plugin = %self.shared.name, call, ms = took.as_millis() as u64, error = %e, "plugin call failed");
        }
        result
    }

    fn invoke_locked<R: OutputSize>(
        &self,
        call: &str,
        f: impl FnOnce(&mut Store<HostState>, &Plugin) -> wasmtime::Result<Result<R, WitError>>,
    ) -> Result<R, WasmError> {
        let mut live = self.lock_live();
        if live.is_none() {
            *live = Some(self.instantiate()?);
        }
        let Some(l) = live.as_mut() else {
            return Err(WasmError::Engine("no live instance".into()));
        };
        self.begin_call(&mut l.store)?;
        let outcome = f(&mut l.store, &l.bindings);
        self.end_call(&mut l.store, call);
        match outcome {
            Ok(Ok(r)) => {
                let bytes = r.output_bytes();
                if bytes > self.limits.max_output_bytes {
                    return Err(self.limit(
                        call,
                        Limit::Output {
                            bytes,
                            max: self.limits.max_output_bytes,
                        },
                    ));
                }
                Ok(r)
            }
            Ok(Err(e)) => Err(self.guest_error(call, e)),
            Err(trap) => {
                let e = self.trap_error(call, &trap, &l.store);
                *live = None;
                Err(e)
            }
        }
    }

    fn instantiate(&self) -> Result<Live, WasmError> {
        let state = HostState::new(
            Arc::clone(&self.shared),
            MemoryLimiter::new(self.limits.memory_bytes),
        )
        .map_err(|e| WasmError::io(&self.shared.project_root, e))?;
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_trap();

        self.begin_call(&mut store)?;
        let instantiated = self.pre.instantiate(&mut store);
        self.end_call(&mut store, "instantiate");
        let bindings = instantiated.map_err(|e| self.trap_error("instantiate", &e, &store))?;

        self.begin_call(&mut store)?;
        let init = bindings
            .trellis_plugin_guest()
            .call_init(&mut store, &self.shared.config_json);
        self.end_call(&mut store, "init");
        match init {
            Ok(Ok(())) => Ok(Live { store, bindings }),
            Ok(Err(e)) => Err(self.guest_error("init", e)),
            Err(trap) => Err(self.trap_error("init", &trap, &store)),
        }
    }

    fn begin_call(&self, store: &mut Store<HostState>) -> Result<(), WasmError> {
        store.data_mut().begin_call(self.limits.timeout);
        store.set_epoch_deadline(self.runtime.ticks_for(self.limits.timeout));
        if self.metered {
            store
                .set_fuel(self.limits.fuel.unwrap_or(u64::MAX))
                .map_err(|e| WasmError::Engine(cache::error_text(&e)))?;
        }
        Ok(())
    }

    /// Forwards what the guest printed to the log and records the peak memory.
    fn end_call(&self, store: &mut Store<HostState>, call: &str) {
        let data = store.data();
        let plugin = &self.shared.name;
        let out = data.stdout.text();
        if !out.is_empty() {
            tracing::info!(plugin = %plugin, call, "stdout: {}", out.trim_end());
        }
        let err = data.stderr.text();
        if !err.is_empty() {
            tracing::warn!(plugin = %plugin, call, "stderr: {}", err.trim_end());
        }
        let peak = data.limiter.peak() as u64;
        self.shared.peak_memory.fetch_max(peak, Ordering::Relaxed);
    }

    fn limit(&self, call: &str, limit: Limit) -> WasmError {
        WasmError::LimitExceeded {
            plugin: self.shared.name.clone(),
            limit,
            call: call.to_owned(),
        }
    }

    fn guest_error(&self, call: &str, e: WitError) -> WasmError {
        let plugin = self.shared.name.clone();
        let call = call.to_owned();
        let guest = |kind, message: String| WasmError::Guest {
            plugin: plugin.clone(),
            call: call.clone(),
            kind,
            message: truncate(message, MAX_GUEST_MESSAGE),
        };
        match e {
            WitError::Denied(d) => WasmError::Denied {
                plugin: plugin.clone(),
                capability: truncate(d.capability, 256),
                attempted: truncate(d.attempted, 1024),
            },
            WitError::InvalidInput(m) => guest(GuestErrorKind::InvalidInput, m),
            WitError::NotFound(m) => guest(GuestErrorKind::NotFound, m),
            WitError::Failed(m) => guest(GuestErrorKind::Failed, m),
        }
    }

    /// Turns a trap (or a host error that aborted the call) into what the user should know.
    fn trap_error(&self, call: &str, e: &wasmtime::Error, store: &Store<HostState>) -> WasmError {
        let data = store.data();
        let trap = e.downcast_ref::<wasmtime::Trap>().copied();
        match trap {
            Some(wasmtime::Trap::Interrupt) => {
                return self.limit(
                    call,
                    Limit::Time {
                        limit: self.limits.timeout,
                    },
                );
            }
            Some(wasmtime::Trap::OutOfFuel) => {
                return self.limit(
                    call,
                    Limit::Fuel {
                        budget: self.limits.fuel.unwrap_or(u64::MAX),
                    },
                );
            }
            _ => {}
        }
        if data.limiter.refused() {
            return self.limit(
                call,
                Limit::Memory {
                    bytes: self.limits.memory_bytes,
                },
            );
        }
        let stderr = data.stderr.text();
        let message = if let Some(exit) = e.downcast_ref::<wasmtime_wasi::I32Exit>() {
            format!("the plugin called exit({}) instead of returning", exit.0)
        } else {
            match trap {
                Some(wasmtime::Trap::StackOverflow) => {
                    "stack overflow: the plugin recursed too deeply".to_owned()
                }
                Some(wasmtime::Trap::UnreachableCodeReached) => match stdio::panic_message(&stderr)
                {
                    Some(m) => format!("the plugin panicked: {m}"),
                    None if stderr.trim().is_empty() => "the plugin panicked".to_owned(),
                    None => format!(
                        "the plugin panicked (it aborted; its last output: {})",
                        last_line(&stderr)
                    ),
                },
                Some(wasmtime::Trap::MemoryOutOfBounds) if looks_like_recursion(e) => {
                    // Rust (and C) guests keep a shadow stack in linear memory; running off its
                    // end is an out-of-bounds access deep inside a recursion.
                    "stack overflow: the plugin recursed too deeply (it ran out of its stack in linear memory)".to_owned()
                }
                Some(wasmtime::Trap::MemoryOutOfBounds) => {
                    "out-of-bounds memory access (a bug in the plugin)".to_owned()
                }
                Some(t) => t.to_string(),
                None => cache::error_text(e),
            }
        };
        WasmError::Trap {
            plugin: self.shared.name.clone(),
            call: call.to_owned(),
            message,
        }
    }
}

/// Whether the trap happened deep in a recursion: the innermost frames of the backtrace (which
/// wasmtime caps at 20) cycle through at most three functions.
fn looks_like_recursion(e: &wasmtime::Error) -> bool {
    let Some(bt) = e.downcast_ref::<wasmtime::WasmBacktrace>() else {
        return false;
    };
    let frames = bt.frames();
    if frames.len() < 16 {
        return false;
    }
    let mut distinct: Vec<u32> = frames.iter().take(16).map(|f| f.func_index()).collect();
    distinct.sort_unstable();
    distinct.dedup();
    distinct.len() <= 3
}

fn last_line(text: &str) -> String {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_owned()
}

fn to_json(v: &Value) -> Result<String, WasmError> {
    serde_json::to_string(v).map_err(|e| WasmError::Engine(format!("cannot encode JSON: {e}")))
}

/// How many bytes a call result holds, for `max_output_bytes`.
trait OutputSize {
    fn output_bytes(&self) -> u64;
}

impl OutputSize for String {
    fn output_bytes(&self) -> u64 {
        self.len() as u64
    }
}

impl OutputSize for Option<String> {
    fn output_bytes(&self) -> u64 {
        self.as_ref().map_or(0, |s| s.len() as u64)
    }
}

impl OutputSize for () {
    fn output_bytes(&self) -> u64 {
        0
    }
}
