//! One loaded plugin: lazy instantiation, calls under limits, error mapping, metrics.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use serde_json::Value;
use trellis_core::{HookError, PluginRegistration, RemoteHookEntry, RemoteHooks};
use trellis_manifest::{CONFIG_MIGRATE_HOOK, HOOK_WRAP_AFTER, HOOK_WRAP_BEFORE};
use wasmtime::Store;
use wasmtime::component::TypedFunc;

use crate::cache::{self, CacheStatus};
use crate::error::{GuestErrorKind, Limit, WasmError};
use crate::host::{HostState, Plugin, PluginPre, PluginShared, WitError};
use crate::limiter::MemoryLimiter;
use crate::limits::EffectiveLimits;
use crate::runtime::SharedRuntime;
use crate::stdio;
use trellis_host_api::metrics::{CallStats, PluginMetrics};

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
    /// Holds the compiled component the runtime shares between plugins with the same bytes
    /// (the runtime only keeps it weakly).
    _component: Arc<wasmtime::component::Component>,
    file: PathBuf,
}

thread_local! {
    /// Plugins with a call in progress on this thread, to refuse re-entrant calls (a plugin's
    /// event reaching a subscriber that calls the same plugin) instead of deadlocking.
    static ACTIVE: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// Which guest call is running, for messages and logs; formatted only when one is written,
/// so the hot path of a hook call builds no string for it.
#[derive(Clone, Copy)]
enum CallName<'a> {
    Instantiate,
    Init,
    Command(&'a str),
    Hook(&'a str),
    Event(&'a str),
    Phase(&'a str, &'a str),
    Migration(&'a str),
}

impl std::fmt::Display for CallName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallName::Instantiate => f.write_str("instantiate"),
            CallName::Init => f.write_str("init"),
            CallName::Command(name) => write!(f, "command {name}"),
            CallName::Hook(hook) => write!(f, "hook {hook}"),
            CallName::Event(topic) => write!(f, "event {topic}"),
            CallName::Phase(phase, stage) => write!(f, "phase {phase} ({stage})"),
            CallName::Migration(function) => write!(f, "config migration {function}"),
        }
    }
}

struct Reentry(usize);

impl Reentry {
    fn enter(plugin: &WasmPlugin, call: CallName<'_>) -> Result<Self, WasmError> {
        let id = std::ptr::from_ref(plugin) as usize;
        ACTIVE.with(|a| {
            let mut a = a.borrow_mut();
            if a.contains(&id) {
                return Err(WasmError::Engine(format!(
                    "plugin `{}`: `{call}` was called while the plugin is already running on this thread (re-entrant call refused)",
                    plugin.shared.name()
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
        component: Arc<wasmtime::component::Component>,
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
            _component: component,
            file,
        }
    }

    pub fn name(&self) -> &str {
        self.shared.name()
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
        let call = CallName::Command(name);
        let input = to_json(input)?;
        let text = self.invoke(call, |store, b| {
            b.trellis_plugin_guest()
                .call_run_command(store, name, args, &input)
        })?;
        self.parse_output(call, &text)
    }

    /// Calls the plugin's implementation of hook `hook`; `None` is pluggy's `None`.
    pub fn call_hook(&self, hook: &str, args: &Value) -> Result<Option<Value>, WasmError> {
        self.call_hook_text(hook, &to_json(args)?)
    }

    /// [`call_hook`](Self::call_hook) with the arguments already JSON text: a hook fanned out
    /// to many plugins encodes them once ([`trellis_core::HookCall::args_json`]).
    pub(crate) fn call_hook_text(
        &self,
        hook: &str,
        args: &str,
    ) -> Result<Option<Value>, WasmError> {
        let call = CallName::Hook(hook);
        let text = self.invoke(call, |store, b| {
            let bound = b.trellis_plugin_guest().func_call_hook();
            // SAFETY: the bindings typed `call-hook` as (`string`, `json`) -> the result below
            // when the instance was created; `json` is a WIT alias of `string`, which `&str`
            // lowers exactly as the bindings' `&String` does. Taking `&str` spares the one
            // encoding of the arguments shared by a fan-out a copy per plugin.
            let typed = unsafe {
                TypedFunc::<(&str, &str), (Result<Option<String>, WitError>,)>::new_unchecked(
                    *bound.func(),
                )
            };
            typed.call(store, (hook, args)).map(|(result,)| result)
        })?;
        text.map(|t| self.parse_output(call, &t)).transpose()
    }

    /// Delivers an event the plugin subscribed to.
    pub fn on_event(&self, topic: &str, payload: &Value) -> Result<(), WasmError> {
        let payload = to_json(payload)?;
        self.invoke(CallName::Event(topic), |store, b| {
            b.trellis_plugin_guest()
                .call_on_event(store, topic, &payload)
        })
    }

    /// Runs the plugin's contribution to workflow phase `phase` at `stage`.
    pub fn run_phase(&self, phase: &str, stage: &str, context: &Value) -> Result<Value, WasmError> {
        let call = CallName::Phase(phase, stage);
        let context = to_json(context)?;
        let text = self.invoke(call, |store, b| {
            b.trellis_plugin_guest()
                .call_run_phase(store, phase, stage, &context)
        })?;
        self.parse_output(call, &text)
    }

    /// Runs the configuration migration function `function` (a `config.migrations[].function`
    /// of the manifest) on `config`, the user's configuration, and returns the new one.
    ///
    /// The call is `call-hook` with the reserved hook [`CONFIG_MIGRATE_HOOK`] and the arguments
    /// `{"function", "from", "to", "config"}`. A migration is a pure function of the
    /// configuration, so it runs in a fresh instance that is dropped afterwards: `init` is not
    /// called, the instance holds no capability whatever the plugin was loaded with (no
    /// filesystem, environment, state, events, network or processes; `config.get` answers
    /// `config`), and the plugin's limits apply. Anything but a JSON object back is an error:
    /// `none`, another JSON type, or a result that is not JSON.
    pub fn migrate_config(
        &self,
        function: &str,
        from: &str,
        to: &str,
        config: &Value,
    ) -> Result<Value, WasmError> {
        let call = CallName::Migration(function);
        let args = to_json(&serde_json::json!({
            "function": function,
            "from": from,
            "to": to,
            "config": config,
        }))?;
        let text = self.invoke_isolated(call, config, |store, b| {
            b.trellis_plugin_guest()
                .call_call_hook(store, CONFIG_MIGRATE_HOOK, &args)
        })?;
        let invalid = |message: String| {
            self.fail_after_call(WasmError::Guest {
                plugin: self.shared.name().to_owned(),
                call: call.to_string(),
                kind: GuestErrorKind::InvalidResult,
                message,
            })
        };
        let Some(text) = text else {
            return Err(invalid(
                "it returned no configuration (`none`); a migration function returns the new configuration object".to_owned(),
            ));
        };
        match self.parse_output(call, &text)? {
            Value::Object(map) => Ok(Value::Object(map)),
            other => Err(invalid(format!(
                "it returned {}, not a configuration object",
                json_kind(&other)
            ))),
        }
    }

    /// One hook implementation per `provides.hooks` entry, in manifest order (see
    /// [`trellis_core::remote_registration`]). An entry with `wrapper: true` becomes a wrapper
    /// around the other implementations: the guest's `call-hook` is called with
    /// [`HOOK_WRAP_BEFORE`] before them and with [`HOOK_WRAP_AFTER`] after them, with their
    /// outcome (see [`WasmPlugin::wrap_after`]).
    pub fn registration(self: &Arc<Self>) -> PluginRegistration {
        let entries: Vec<RemoteHookEntry> = self
            .hooks
            .iter()
            .map(|h| RemoteHookEntry {
                hook: h.hook.clone(),
                wrapper: h.wrapper,
                tryfirst: h.tryfirst,
                trylast: h.trylast,
                optional: h.optional,
                before: h.before.clone(),
                after: h.after.clone(),
            })
            .collect();
        trellis_core::remote_registration(
            self.name(),
            &entries,
            Arc::clone(self) as Arc<dyn RemoteHooks>,
        )
    }

    /// The second half of a wrapper: the guest's `call-hook` with [`HOOK_WRAP_AFTER`] and
    /// `{"hook", "args", "state", "outcome"}`, where `state` is what the first half returned
    /// and `outcome` is `{"results": [...]}` or `{"error": "..."}`. The guest answers `none` to
    /// keep the outcome, or one of those two shapes to replace it; a failing guest replaces it
    /// with its error, as an exception in a pluggy wrapper's teardown does.
    pub fn wrap_after(
        &self,
        hook: &str,
        args: Value,
        state: Value,
        outcome: trellis_core::hooks::Outcome,
    ) -> trellis_core::hooks::Outcome {
        let seen = trellis_core::hooks::wrapper_view(&outcome);
        let answer = self.call_hook(
            HOOK_WRAP_AFTER,
            &serde_json::json!({"hook": hook, "args": args, "state": state, "outcome": seen}),
        );
        match answer {
            Ok(answer) => trellis_core::hooks::apply_wrapper_answer(outcome, answer)
                .unwrap_or_else(|_| Err(self.bad_wrapper_answer(hook))),
            Err(e) => Err(HookError::msg(e)),
        }
    }

    fn bad_wrapper_answer(&self, hook: &str) -> HookError {
        HookError::msg(format!(
            "plugin `{}`: its wrapper of `{hook}` answered neither none, {{\"results\": [...]}} nor {{\"error\": \"...\"}}",
            self.name()
        ))
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
            self.shared.api.denials(),
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

    fn parse_output(&self, call: CallName<'_>, text: &str) -> Result<Value, WasmError> {
        serde_json::from_str(text).map_err(|e| {
            self.fail_after_call(WasmError::Guest {
                plugin: self.shared.name().to_owned(),
                call: call.to_string(),
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
        call: CallName<'_>,
        f: impl FnOnce(&mut Store<HostState>, &Plugin) -> wasmtime::Result<Result<R, WitError>>,
    ) -> Result<R, WasmError> {
        let _reentry = Reentry::enter(self, call)?;
        let mut live = self.lock_live();
        // Read after the lock: a call that waited for another thread's call to this plugin
        // still gets its whole time limit.
        let started = Instant::now();
        let result = self.invoke_live(&mut live, call, started, f);
        drop(live);
        let took = started.elapsed();
        self.lock_stats().record(took, result.is_err());
        if let Err(e) = &result {
            tracing::debug!(plugin = %self.shared.name(), call = %call, ms = took.as_millis() as u64, error = %e, "plugin call failed");
        }
        result
    }

    fn invoke_live<R: OutputSize>(
        &self,
        live: &mut Option<Live>,
        call: CallName<'_>,
        started: Instant,
        f: impl FnOnce(&mut Store<HostState>, &Plugin) -> wasmtime::Result<Result<R, WitError>>,
    ) -> Result<R, WasmError> {
        let mut now = started;
        if live.is_none() {
            *live = Some(self.instantiate()?);
            now = Instant::now();
        }
        let Some(l) = live.as_mut() else {
            return Err(WasmError::Engine("no live instance".into()));
        };
        let (result, trapped) = self.call_instance(l, call, now, f);
        if trapped {
            *live = None;
        }
        result
    }

    /// Like [`WasmPlugin::invoke`], on an instance of its own that is never initialized and
    /// holds no capability (its `config.get` answers `config_json`), dropped after the call.
    /// The plugin's live instance, if any, is neither used nor disturbed.
    fn invoke_isolated<R: OutputSize>(
        &self,
        call: CallName<'_>,
        config: &serde_json::Value,
        f: impl FnOnce(&mut Store<HostState>, &Plugin) -> wasmtime::Result<Result<R, WitError>>,
    ) -> Result<R, WasmError> {
        let _reentry = Reentry::enter(self, call)?;
        let started = Instant::now();
        let shared = PluginShared::new(trellis_host_api::PluginApi::new(
            trellis_host_api::ApiSpec {
                name: self.shared.name().to_owned(),
                grants: trellis_host_api::Grants::none(),
                config: config.clone(),
                events: Arc::clone(self.shared.api.events()),
                audit: Arc::clone(&self.runtime.opts.audit),
                state_dir: self.runtime.opts.state_dir.clone(),
                project_root: self.runtime.opts.project_root.clone(),
                commands: None,
            },
        ));
        let result = self
            .bare_instance(Arc::clone(&shared))
            .and_then(|mut instance| self.call_instance(&mut instance, call, Instant::now(), f).0);
        // Denials and memory of the isolated instance count for the plugin all the same.
        self.shared.api.count_denials(shared.api.denials());
        self.shared.peak_memory.fetch_max(
            shared.peak_memory.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
        let took = started.elapsed();
        self.lock_stats().record(took, result.is_err());
        if let Err(e) = &result {
            tracing::debug!(plugin = %self.shared.name(), call = %call, ms = took.as_millis() as u64, error = %e, "plugin call failed");
        }
        result
    }

    /// Runs one guest call on `instance` under the limits and maps the outcome; the flag says
    /// whether it trapped (the instance must then be dropped).
    fn call_instance<R: OutputSize>(
        &self,
        instance: &mut Live,
        call: CallName<'_>,
        now: Instant,
        f: impl FnOnce(&mut Store<HostState>, &Plugin) -> wasmtime::Result<Result<R, WitError>>,
    ) -> (Result<R, WasmError>, bool) {
        if let Err(e) = self.begin_call(&mut instance.store, now) {
            return (Err(e), false);
        }
        let outcome = f(&mut instance.store, &instance.bindings);
        self.end_call(&mut instance.store, call);
        match outcome {
            Ok(Ok(r)) => {
                let bytes = r.output_bytes();
                if bytes > self.limits.max_output_bytes {
                    return (
                        Err(self.limit(
                            call,
                            Limit::Output {
                                bytes,
                                max: self.limits.max_output_bytes,
                            },
                        )),
                        false,
                    );
                }
                (Ok(r), false)
            }
            Ok(Err(e)) => (Err(self.guest_error(call, e)), false),
            Err(trap) => (Err(self.trap_error(call, &trap, &instance.store)), true),
        }
    }

    /// A new instance with the plugin's own identity, grants and configuration, initialized.
    fn instantiate(&self) -> Result<Live, WasmError> {
        let Live {
            mut store,
            bindings,
        } = self.bare_instance(Arc::clone(&self.shared))?;
        self.begin_call(&mut store, Instant::now())?;
        let init = bindings
            .trellis_plugin_guest()
            .call_init(&mut store, &self.shared.api.config().to_owned());
        self.end_call(&mut store, CallName::Init);
        match init {
            Ok(Ok(())) => Ok(Live { store, bindings }),
            Ok(Err(e)) => Err(self.guest_error(CallName::Init, e)),
            Err(trap) => Err(self.trap_error(CallName::Init, &trap, &store)),
        }
    }

    /// A new instance whose host calls act for `shared` (identity, grants, configuration),
    /// under the plugin's limits; `init` is not called.
    fn bare_instance(&self, shared: Arc<PluginShared>) -> Result<Live, WasmError> {
        let state = HostState::new(shared, MemoryLimiter::new(self.limits.memory_bytes))
            .map_err(|e| WasmError::io(self.shared.api.project().path(), e))?;
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_trap();

        self.begin_call(&mut store, Instant::now())?;
        let instantiated = self.pre.instantiate(&mut store);
        self.end_call(&mut store, CallName::Instantiate);
        let bindings =
            instantiated.map_err(|e| self.trap_error(CallName::Instantiate, &e, &store))?;
        Ok(Live { store, bindings })
    }

    fn begin_call(&self, store: &mut Store<HostState>, now: Instant) -> Result<(), WasmError> {
        store.data_mut().begin_call(now, self.limits.timeout);
        store.set_epoch_deadline(self.runtime.ticks_for(self.limits.timeout));
        if self.metered {
            store
                .set_fuel(self.limits.fuel.unwrap_or(u64::MAX))
                .map_err(|e| WasmError::Engine(cache::error_text(&e)))?;
        }
        Ok(())
    }

    /// Forwards what the guest printed to the log and records the peak memory.
    fn end_call(&self, store: &mut Store<HostState>, call: CallName<'_>) {
        let data = store.data();
        let plugin = self.shared.name();
        let out = data.stdout.text();
        if !out.is_empty() {
            tracing::info!(plugin = %plugin, call = %call, "stdout: {}", out.trim_end());
        }
        let err = data.stderr.text();
        if !err.is_empty() {
            tracing::warn!(plugin = %plugin, call = %call, "stderr: {}", err.trim_end());
        }
        let peak = data.limiter.peak() as u64;
        data.shared.peak_memory.fetch_max(peak, Ordering::Relaxed);
    }

    fn limit(&self, call: CallName<'_>, limit: Limit) -> WasmError {
        WasmError::LimitExceeded {
            plugin: self.shared.name().to_owned(),
            limit,
            call: call.to_string(),
        }
    }

    fn guest_error(&self, call: CallName<'_>, e: WitError) -> WasmError {
        let plugin = self.shared.name().to_owned();
        let call = call.to_string();
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
    fn trap_error(
        &self,
        call: CallName<'_>,
        e: &wasmtime::Error,
        store: &Store<HostState>,
    ) -> WasmError {
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
            plugin: self.shared.name().to_owned(),
            call: call.to_string(),
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

/// What kind of JSON value `v` is, with an article, for messages.
fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
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

impl RemoteHooks for WasmPlugin {
    fn call_hook(&self, hook: &str, args_json: &str) -> Result<Option<Value>, HookError> {
        self.call_hook_text(hook, args_json).map_err(HookError::msg)
    }

    fn wrap_before(&self, hook: &str, args: &Value) -> Result<Value, HookError> {
        Ok(self
            .call_hook(
                HOOK_WRAP_BEFORE,
                &serde_json::json!({"hook": hook, "args": args}),
            )
            .map_err(HookError::msg)?
            .unwrap_or(Value::Null))
    }

    fn wrap_after(
        &self,
        hook: &str,
        args: Value,
        state: Value,
        outcome: trellis_core::hooks::Outcome,
    ) -> trellis_core::hooks::Outcome {
        WasmPlugin::wrap_after(self, hook, args, state, outcome)
    }
}
