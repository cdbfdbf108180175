//! The plugin manager: registration state, published call snapshots, and hook callers.
//!
//! Registration is rare and calls are frequent, so they are kept apart. Registration takes one
//! mutex, validates everything, then publishes per hook an immutable [`Snapshot`] (ordered
//! implementations plus the compiled spec). A call only clones the current snapshot's `Arc`
//! under a read lock and iterates it: no sorting, no lookups, and no allocation beyond the
//! result list. No lock is ever held while plugin code runs, so implementations may register
//! plugins or call hooks themselves.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{
    Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak,
};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tracing::Instrument;

use super::dispatch::{Rules, multicall, multicall_async, multicall_native, validate_args};
use super::error::{HookError, PendingImpl, RegistrationError, ValidationProblem};
use super::impls::{HookImpl, HookResults, Outcome, PluginRegistration, RegisteredImpl};
use super::order::{call_order, extra_insert, pluggy_insert};
use super::spec::{CompiledSpec, HookSpec};
use super::typed::TypedHook;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}
fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}

/// Called before every hook call with the hook name, the implementations about to run (call
/// order) and the arguments.
pub type BeforeMonitor = dyn Fn(&str, &[Arc<RegisteredImpl>], &Value) + Send + Sync;
/// Called after every hook call with its outcome, then the same data as [`BeforeMonitor`].
pub type AfterMonitor = dyn Fn(&Outcome, &str, &[Arc<RegisteredImpl>], &Value) + Send + Sync;
/// Receives each result of a historic call, including replays to late registrants.
pub type HistoricCallback = dyn Fn(&Value) + Send + Sync;

/// What one call needs, published atomically per hook.
pub(crate) struct Snapshot {
    spec: Option<Arc<CompiledSpec>>,
    /// Call order: wrappers first, then the rest.
    order: Arc<[Arc<RegisteredImpl>]>,
    wrappers: usize,
    has_async: bool,
    /// pluggy's lists, kept for `call_extra`.
    nonwrappers: Arc<[Arc<RegisteredImpl>]>,
    wrapper_list: Arc<[Arc<RegisteredImpl>]>,
}

impl Snapshot {
    fn empty() -> Self {
        Snapshot {
            spec: None,
            order: Arc::from(Vec::new()),
            wrappers: 0,
            has_async: false,
            nonwrappers: Arc::from(Vec::new()),
            wrapper_list: Arc::from(Vec::new()),
        }
    }

    fn is_historic(&self) -> bool {
        self.spec.as_ref().is_some_and(|s| s.spec.historic)
    }
}

struct HistoryEntry {
    args: Arc<Value>,
    callback: Option<Arc<HistoricCallback>>,
}

pub(crate) struct HookSlot {
    name: Arc<str>,
    snapshot: RwLock<Arc<Snapshot>>,
    /// Bumped after every publish, so a [`HookCaller`] can tell with one atomic load whether
    /// the snapshot it cached is still current.
    generation: AtomicU64,
    history: Mutex<VecDeque<HistoryEntry>>,
}

impl HookSlot {
    #[inline]
    fn load(&self) -> Arc<Snapshot> {
        Arc::clone(&read(&self.snapshot))
    }

    fn load_with_generation(&self) -> (Arc<Snapshot>, u64) {
        let guard = read(&self.snapshot);
        (Arc::clone(&guard), self.generation.load(Ordering::Acquire))
    }

    fn publish(&self, snap: Arc<Snapshot>) {
        let mut guard = write(&self.snapshot);
        *guard = snap;
        self.generation.fetch_add(1, Ordering::Release);
    }
}

struct HookState {
    spec: Option<Arc<CompiledSpec>>,
    nonwrappers: Vec<Arc<RegisteredImpl>>,
    wrappers: Vec<Arc<RegisteredImpl>>,
    slot: Arc<HookSlot>,
}

/// A hook a registration changes: its pluggy lists with the new implementations inserted.
struct Touched {
    nonwrappers: Vec<Arc<RegisteredImpl>>,
    wrappers: Vec<Arc<RegisteredImpl>>,
    new_impls: Vec<Arc<RegisteredImpl>>,
}

/// History to replay to a registration's new implementations, once the lock is released.
struct Replay {
    slot: Arc<HookSlot>,
    snap: Arc<Snapshot>,
    new_impls: Vec<Arc<RegisteredImpl>>,
    entries: Vec<HistoryEntry>,
}

struct PluginRecord {
    name: String,
    hooks: Vec<String>,
}

#[derive(Default)]
struct RegState {
    plugins: Vec<PluginRecord>,
    blocked: BTreeSet<String>,
    hooks: HashMap<String, HookState>,
}

enum Monitor {
    Closures {
        id: u64,
        before: Box<BeforeMonitor>,
        after: Box<AfterMonitor>,
    },
    Tracing {
        id: u64,
    },
}

impl Monitor {
    fn id(&self) -> u64 {
        match self {
            Monitor::Closures { id, .. } | Monitor::Tracing { id } => *id,
        }
    }
}

struct Shared {
    reg: Mutex<RegState>,
    slots: RwLock<HashMap<String, Arc<HookSlot>>>,
    monitors: RwLock<Arc<[Arc<Monitor>]>>,
    monitoring: AtomicBool,
    next_monitor: AtomicU64,
}

impl Shared {
    /// pluggy's `_hookexec`: every call, replay and subset call goes through here, so monitors
    /// see them all.
    fn exec(
        &self,
        hook: &str,
        impls: &[Arc<RegisteredImpl>],
        wrappers: usize,
        args: &Value,
        rules: Rules<'_>,
    ) -> Outcome {
        if !self.monitoring.load(Ordering::Acquire) {
            return multicall(hook, impls, wrappers, args, rules);
        }
        let monitors = Arc::clone(&read(&self.monitors));
        let span = run_before(&monitors, hook, impls, args);
        let outcome = match &span {
            Some(s) => s.in_scope(|| multicall(hook, impls, wrappers, args, rules)),
            None => multicall(hook, impls, wrappers, args, rules),
        };
        run_after(&monitors, &outcome, hook, impls, args);
        outcome
    }

    async fn exec_async(
        &self,
        hook: &str,
        impls: &[Arc<RegisteredImpl>],
        wrappers: usize,
        args: &Value,
        rules: Rules<'_>,
    ) -> Outcome {
        if !self.monitoring.load(Ordering::Acquire) {
            return multicall_async(hook, impls, wrappers, args, rules).await;
        }
        let monitors = Arc::clone(&read(&self.monitors));
        let span = run_before(&monitors, hook, impls, args);
        let fut = multicall_async(hook, impls, wrappers, args, rules);
        let outcome = match span {
            Some(s) => fut.instrument(s).await,
            None => fut.await,
        };
        run_after(&monitors, &outcome, hook, impls, args);
        outcome
    }
}

/// Later monitors wrap earlier ones, as with pluggy's chained `add_hookcall_monitoring`.
fn run_before(
    monitors: &[Arc<Monitor>],
    hook: &str,
    impls: &[Arc<RegisteredImpl>],
    args: &Value,
) -> Option<tracing::Span> {
    let mut span = None;
    for m in monitors.iter().rev() {
        match &**m {
            Monitor::Closures { before, .. } => before(hook, impls, args),
            Monitor::Tracing { .. } => {
                let s = tracing::debug_span!("hook_call", hook = hook, impls = impls.len());
                tracing::debug!(parent: &s, hook = hook, args = %args, "hook call");
                span = Some(s);
            }
        }
    }
    span
}

fn run_after(
    monitors: &[Arc<Monitor>],
    outcome: &Outcome,
    hook: &str,
    impls: &[Arc<RegisteredImpl>],
    args: &Value,
) {
    for m in monitors {
        match &**m {
            Monitor::Closures { after, .. } => after(outcome, hook, impls, args),
            Monitor::Tracing { .. } => match outcome {
                Ok(r) => tracing::debug!(
                    hook = hook,
                    results = r.values.len(),
                    errors = r.errors.len(),
                    "hook call finished"
                ),
                Err(e) => tracing::warn!(hook = hook, error = %e, "hook call failed"),
            },
        }
    }
}

/// Undoes one `add_hookcall_monitoring`/`enable_tracing`. Dropping it keeps the monitor.
#[derive(Debug)]
#[must_use = "keep the handle to be able to remove the monitor"]
pub struct MonitorHandle {
    id: u64,
    shared: Weak<Shared>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Shared { .. }")
    }
}

impl MonitorHandle {
    /// Remove this monitor (and only it, unlike pluggy's undo, which also drops monitors added
    /// after it).
    pub fn undo(self) {
        if let Some(shared) = self.shared.upgrade() {
            let mut guard = write(&shared.monitors);
            let list: Vec<Arc<Monitor>> = guard
                .iter()
                .filter(|m| m.id() != self.id)
                .cloned()
                .collect();
            shared.monitoring.store(!list.is_empty(), Ordering::Release);
            *guard = Arc::from(list);
        }
    }
}

/// Facts about a registered plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginInfo {
    /// The plugin name.
    pub name: String,
    /// Hooks it implements, in registration order.
    pub hooks: Vec<String>,
}

/// What a successful registration reports.
#[derive(Debug, Clone, PartialEq)]
pub struct RegistrationReport {
    /// The registered name.
    pub plugin: String,
    /// Errors raised while replaying historic calls to the new implementations. The plugin
    /// stays registered: these are its errors, not the registration's.
    pub replay_errors: Vec<HookError>,
}

/// The hook registry: a pluggy `PluginManager` for JSON payloads.
///
/// The host declares extension points with [`add_hookspecs`](Self::add_hookspecs), plugins
/// [`register`](Self::register) implementations (all or nothing), and the host calls hooks
/// through a [`HookCaller`] from [`hook`](Self::hook). It is `Send + Sync`; every method takes
/// `&self`, so share it behind an `Arc`.
///
/// ```
/// use serde_json::json;
/// use trellis_core::hooks::{HookImpl, HookSpec, PluginManager, PluginRegistration};
///
/// let pm = PluginManager::new();
/// pm.add_hookspecs([HookSpec::new("add_one").arg_schema(json!({
///     "type": "object",
///     "properties": {"x": {"type": "integer"}},
///     "required": ["x"]
/// }))])?;
///
/// let add = |n: i64| move |call: &trellis_core::hooks::HookCall<'_>| {
///     let x = call.arg("x").and_then(|v| v.as_i64()).unwrap_or(0);
///     Ok(Some(json!(x + n)))
/// };
/// pm.register(PluginRegistration::new("one").with(HookImpl::new("add_one", add(1))))?;
/// pm.register(PluginRegistration::new("ten").with(HookImpl::new("add_one", add(10)).tryfirst()))?;
///
/// let results = pm.hook("add_one")?.call(&json!({"x": 1}))?;
/// assert_eq!(results.values, vec![json!(11), json!(2)]);
///
/// // Bad arguments are refused before any plugin runs.
/// assert!(pm.hook("add_one")?.call(&json!({"x": "one"})).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct PluginManager {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for PluginManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginManager")
            .field("plugins", &self.list_plugins())
            .finish_non_exhaustive()
    }
}

impl Default for PluginManager {
    fn default() -> Self {
        Self::new()
    }
}

fn verify_impl(spec: &HookSpec, imp: &RegisteredImpl, problems: &mut Vec<ValidationProblem>) {
    if spec.historic && imp.is_wrapper() {
        problems.push(ValidationProblem::HistoricWrapper {
            plugin: imp.plugin.to_string(),
            hook: spec.name.clone(),
        });
    }
    if spec.historic && imp.is_async() {
        problems.push(ValidationProblem::HistoricAsync {
            plugin: imp.plugin.to_string(),
            hook: spec.name.clone(),
        });
    }
    let unknown: Vec<String> = imp
        .opts
        .argnames
        .iter()
        .filter(|a| !spec.argnames.contains(a))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        problems.push(ValidationProblem::UnknownArgnames {
            plugin: imp.plugin.to_string(),
            hook: spec.name.clone(),
            unknown,
            spec_argnames: spec.argnames.clone(),
        });
    }
}

fn make_snapshot(
    spec: Option<Arc<CompiledSpec>>,
    nonwrappers: &[Arc<RegisteredImpl>],
    wrappers: &[Arc<RegisteredImpl>],
    order: Vec<Arc<RegisteredImpl>>,
    wrapper_count: usize,
) -> Snapshot {
    Snapshot {
        spec,
        has_async: order.iter().any(|i| i.is_async()),
        order: Arc::from(order),
        wrappers: wrapper_count,
        nonwrappers: Arc::from(nonwrappers.to_vec()),
        wrapper_list: Arc::from(wrappers.to_vec()),
    }
}

/// The order ignoring constraints: only used where a cycle is impossible but must not panic.
fn fallback_order(
    nonwrappers: &[Arc<RegisteredImpl>],
    wrappers: &[Arc<RegisteredImpl>],
) -> (Vec<Arc<RegisteredImpl>>, usize) {
    let order = wrappers
        .iter()
        .rev()
        .chain(nonwrappers.iter().rev())
        .cloned()
        .collect();
    (order, wrappers.len())
}

impl PluginManager {
    /// An empty manager.
    #[must_use]
    pub fn new() -> Self {
        PluginManager {
            shared: Arc::new(Shared {
                reg: Mutex::new(RegState::default()),
                slots: RwLock::new(HashMap::new()),
                monitors: RwLock::new(Arc::from(Vec::new())),
                monitoring: AtomicBool::new(false),
                next_monitor: AtomicU64::new(1),
            }),
        }
    }

    fn new_slot(&self, name: &str) -> Arc<HookSlot> {
        let slot = Arc::new(HookSlot {
            name: Arc::from(name),
            snapshot: RwLock::new(Arc::new(Snapshot::empty())),
            generation: AtomicU64::new(0),
            history: Mutex::new(VecDeque::new()),
        });
        write(&self.shared.slots).insert(name.to_owned(), Arc::clone(&slot));
        slot
    }

    /// Declare hooks. All or nothing: if any spec is invalid, duplicates an existing one, or
    /// conflicts with implementations registered before it (pluggy validates those at this
    /// point too), no spec of the batch is added.
    ///
    /// # Errors
    /// [`RegistrationError::InvalidSpecs`] listing every problem.
    pub fn add_hookspecs(
        &self,
        specs: impl IntoIterator<Item = HookSpec>,
    ) -> Result<(), RegistrationError> {
        let mut reg = lock(&self.shared.reg);
        let mut problems = Vec::new();
        let mut compiled: Vec<CompiledSpec> = Vec::new();
        for spec in specs {
            let duplicate = reg.hooks.get(&spec.name).is_some_and(|h| h.spec.is_some())
                || compiled.iter().any(|c| c.spec.name == spec.name);
            if duplicate {
                problems.push(ValidationProblem::DuplicateSpec {
                    hook: spec.name.clone(),
                });
                continue;
            }
            match CompiledSpec::compile(spec) {
                Ok(c) => {
                    if let Some(state) = reg.hooks.get(&c.spec.name) {
                        for imp in state.wrappers.iter().chain(&state.nonwrappers) {
                            verify_impl(&c.spec, imp, &mut problems);
                        }
                    }
                    compiled.push(c);
                }
                Err(p) => problems.extend(p),
            }
        }
        if !problems.is_empty() {
            return Err(RegistrationError::InvalidSpecs { problems });
        }
        for c in compiled {
            let name = c.spec.name.clone();
            let spec = Arc::new(c);
            if let Some(state) = reg.hooks.get_mut(&name) {
                state.spec = Some(Arc::clone(&spec));
                let old = state.slot.load();
                let snap = Snapshot {
                    spec: Some(spec),
                    order: Arc::clone(&old.order),
                    wrappers: old.wrappers,
                    has_async: old.has_async,
                    nonwrappers: Arc::clone(&old.nonwrappers),
                    wrapper_list: Arc::clone(&old.wrapper_list),
                };
                state.slot.publish(Arc::new(snap));
            } else {
                let slot = self.new_slot(&name);
                let mut snap = Snapshot::empty();
                snap.spec = Some(Arc::clone(&spec));
                slot.publish(Arc::new(snap));
                reg.hooks.insert(
                    name,
                    HookState {
                        spec: Some(spec),
                        nonwrappers: Vec::new(),
                        wrappers: Vec::new(),
                        slot,
                    },
                );
            }
        }
        Ok(())
    }

    /// Register a plugin. Atomic: every implementation is validated (against its spec, its
    /// options, and the ordering constraints of everything already registered) before any is
    /// added; on error nothing of the plugin is registered. Historic calls are then replayed to
    /// the new implementations.
    ///
    /// # Errors
    /// [`RegistrationError::Blocked`], [`RegistrationError::AlreadyRegistered`], or
    /// [`RegistrationError::InvalidPlugin`] listing every problem.
    pub fn register(
        &self,
        plugin: PluginRegistration,
    ) -> Result<RegistrationReport, RegistrationError> {
        let PluginRegistration { name, impls } = plugin;
        let mut reg = lock(&self.shared.reg);
        if name.is_empty() {
            return Err(RegistrationError::InvalidPlugin {
                plugin: name,
                problems: vec![ValidationProblem::EmptyName {
                    what: "plugin name",
                }],
            });
        }
        if reg.blocked.contains(&name) {
            return Err(RegistrationError::Blocked { plugin: name });
        }
        if reg.plugins.iter().any(|p| p.name == name) {
            return Err(RegistrationError::AlreadyRegistered { plugin: name });
        }
        let plugin_name: Arc<str> = Arc::from(name.as_str());
        let mut problems = Vec::new();
        let mut touched: BTreeMap<String, Touched> = BTreeMap::new();
        let mut hook_order: Vec<String> = Vec::new();
        for imp in impls {
            let HookImpl {
                hook,
                opts,
                func,
                native,
            } = imp;
            if hook.is_empty() {
                problems.push(ValidationProblem::EmptyName { what: "hook name" });
                continue;
            }
            if opts.tryfirst && opts.trylast {
                problems.push(ValidationProblem::TryfirstAndTrylast {
                    plugin: name.clone(),
                    hook: hook.clone(),
                });
            }
            let registered = Arc::new(RegisteredImpl {
                plugin: Arc::clone(&plugin_name),
                hook: Arc::from(hook.as_str()),
                opts,
                func,
                native,
            });
            let existing = reg.hooks.get(&hook);
            if let Some(spec) = existing.and_then(|h| h.spec.as_ref()) {
                verify_impl(&spec.spec, &registered, &mut problems);
            }
            let entry = touched.entry(hook.clone()).or_insert_with(|| {
                hook_order.push(hook.clone());
                let (n, w) = existing.map_or((Vec::new(), Vec::new()), |h| {
                    (h.nonwrappers.clone(), h.wrappers.clone())
                });
                Touched {
                    nonwrappers: n,
                    wrappers: w,
                    new_impls: Vec::new(),
                }
            });
            if registered.is_wrapper() {
                pluggy_insert(&mut entry.wrappers, Arc::clone(&registered));
            } else {
                pluggy_insert(&mut entry.nonwrappers, Arc::clone(&registered));
            }
            entry.new_impls.push(registered);
        }
        let mut orders = HashMap::new();
        for (hook, t) in &touched {
            match call_order(&t.nonwrappers, &t.wrappers) {
                Ok(o) => {
                    orders.insert(hook.clone(), o);
                }
                Err(cycle) => problems.push(ValidationProblem::OrderingCycle {
                    hook: hook.clone(),
                    cycle,
                }),
            }
        }
        if !problems.is_empty() {
            return Err(RegistrationError::InvalidPlugin {
                plugin: name,
                problems,
            });
        }

        // Commit. Nothing below can fail.
        let mut replays: Vec<Replay> = Vec::new();
        for hook in &hook_order {
            let Some(Touched {
                nonwrappers: n,
                wrappers: w,
                new_impls,
            }) = touched.remove(hook)
            else {
                continue;
            };
            let (order, wcount) = orders
                .remove(hook)
                .unwrap_or_else(|| fallback_order(&n, &w));
            let (spec, slot) = match reg.hooks.get(hook) {
                Some(h) => (h.spec.clone(), Arc::clone(&h.slot)),
                None => (None, self.new_slot(hook)),
            };
            if let Some(warning) = spec.as_ref().and_then(|s| s.spec.warn_on_impl.as_ref()) {
                tracing::warn!(hook = %hook, plugin = %name, "{warning}");
            }
            let snap = Arc::new(make_snapshot(spec.clone(), &n, &w, order, wcount));
            if snap.is_historic() {
                // Publishing and copying the history under the history lock makes every
                // historic call reach the new implementations exactly once: either through the
                // live call or through the replay.
                let history = lock(&slot.history);
                slot.publish(Arc::clone(&snap));
                let entries = history
                    .iter()
                    .map(|h| HistoryEntry {
                        args: Arc::clone(&h.args),
                        callback: h.callback.clone(),
                    })
                    .collect::<Vec<_>>();
                drop(history);
                if !entries.is_empty() {
                    replays.push(Replay {
                        slot: Arc::clone(&slot),
                        snap: Arc::clone(&snap),
                        new_impls,
                        entries,
                    });
                }
            } else {
                slot.publish(snap);
            }
            reg.hooks.insert(
                hook.clone(),
                HookState {
                    spec,
                    nonwrappers: n,
                    wrappers: w,
                    slot,
                },
            );
        }
        reg.plugins.push(PluginRecord {
            name: name.clone(),
            hooks: hook_order,
        });
        drop(reg);

        let mut replay_errors = Vec::new();
        for Replay {
            slot,
            snap,
            new_impls,
            entries,
        } in replays
        {
            let rules = Rules::from_spec(snap.spec.as_deref());
            for imp in &new_impls {
                let one = std::slice::from_ref(imp);
                for entry in &entries {
                    match self.shared.exec(&slot.name, one, 0, &entry.args, rules) {
                        Ok(res) => {
                            if let Some(cb) = &entry.callback {
                                for v in &res.values {
                                    cb(v);
                                }
                            }
                            replay_errors.extend(res.errors);
                        }
                        Err(e) => replay_errors.push(e),
                    }
                }
            }
        }
        Ok(RegistrationReport {
            plugin: name,
            replay_errors,
        })
    }

    /// Remove a plugin and all its implementations. Returns what was removed, or `None` when
    /// no plugin has that name.
    pub fn unregister(&self, name: &str) -> Option<PluginInfo> {
        let mut reg = lock(&self.shared.reg);
        let pos = reg.plugins.iter().position(|p| p.name == name)?;
        let record = reg.plugins.remove(pos);
        for hook in &record.hooks {
            if let Some(state) = reg.hooks.get_mut(hook) {
                state.nonwrappers.retain(|i| &*i.plugin != name);
                state.wrappers.retain(|i| &*i.plugin != name);
                let (order, wcount) = call_order(&state.nonwrappers, &state.wrappers)
                    .unwrap_or_else(|_| fallback_order(&state.nonwrappers, &state.wrappers));
                let snap = make_snapshot(
                    state.spec.clone(),
                    &state.nonwrappers,
                    &state.wrappers,
                    order,
                    wcount,
                );
                state.slot.publish(Arc::new(snap));
            }
        }
        Some(PluginInfo {
            name: record.name,
            hooks: record.hooks,
        })
    }

    /// Block a name: unregister it if registered, and refuse future registrations under it.
    pub fn set_blocked(&self, name: &str) {
        self.unregister(name);
        lock(&self.shared.reg).blocked.insert(name.to_owned());
    }

    /// Whether the name is blocked.
    #[must_use]
    pub fn is_blocked(&self, name: &str) -> bool {
        lock(&self.shared.reg).blocked.contains(name)
    }

    /// Unblock a name; returns whether it was blocked.
    pub fn unblock(&self, name: &str) -> bool {
        lock(&self.shared.reg).blocked.remove(name)
    }

    /// A registered plugin.
    #[must_use]
    pub fn get_plugin(&self, name: &str) -> Option<PluginInfo> {
        lock(&self.shared.reg)
            .plugins
            .iter()
            .find(|p| p.name == name)
            .map(|p| PluginInfo {
                name: p.name.clone(),
                hooks: p.hooks.clone(),
            })
    }

    /// Whether a plugin with this name is registered.
    #[must_use]
    pub fn has_plugin(&self, name: &str) -> bool {
        lock(&self.shared.reg)
            .plugins
            .iter()
            .any(|p| p.name == name)
    }

    /// Registered plugin names, in registration order.
    #[must_use]
    pub fn list_plugins(&self) -> Vec<String> {
        lock(&self.shared.reg)
            .plugins
            .iter()
            .map(|p| p.name.clone())
            .collect()
    }

    /// Names of all known hooks (declared or implemented), sorted.
    #[must_use]
    pub fn hook_names(&self) -> Vec<String> {
        let mut names: Vec<String> = read(&self.shared.slots).keys().cloned().collect();
        names.sort();
        names
    }

    /// The spec of a hook, if declared.
    #[must_use]
    pub fn get_spec(&self, hook: &str) -> Option<HookSpec> {
        lock(&self.shared.reg)
            .hooks
            .get(hook)
            .and_then(|h| h.spec.as_ref().map(|s| s.spec.clone()))
    }

    /// A caller for a hook. Cheap to clone and keep: it always sees the current
    /// registrations.
    ///
    /// # Errors
    /// [`HookError::UnknownHook`] when neither a spec nor an implementation names the hook.
    pub fn hook(&self, name: &str) -> Result<HookCaller, HookError> {
        let slot =
            read(&self.shared.slots)
                .get(name)
                .cloned()
                .ok_or_else(|| HookError::UnknownHook {
                    hook: name.to_owned(),
                })?;
        Ok(HookCaller::new(Arc::clone(&self.shared), slot, None))
    }

    /// Shorthand for `hook(name)?.call(args)`.
    ///
    /// # Errors
    /// As [`HookCaller::call`], plus [`HookError::UnknownHook`].
    pub fn call(&self, name: &str, args: &Value) -> Outcome {
        self.hook(name)?.call(args)
    }

    /// Shorthand for `hook(name)?.call_async(args).await`.
    ///
    /// # Errors
    /// As [`HookCaller::call_async`], plus [`HookError::UnknownHook`].
    pub async fn call_async(&self, name: &str, args: &Value) -> Outcome {
        self.hook(name)?.call_async(args).await
    }

    /// A typed view of a hook: arguments serialized once, results deserialized into `R`.
    ///
    /// # Errors
    /// [`HookError::UnknownHook`].
    pub fn typed<A: Serialize + 'static, R: DeserializeOwned + 'static>(
        &self,
        name: &str,
    ) -> Result<TypedHook<A, R>, HookError> {
        Ok(TypedHook::new(self.hook(name)?))
    }

    /// Implementations of hooks nobody declared, unless marked optional (pluggy's
    /// `check_pending`). Call it once every spec and plugin is in, to catch typos in hook names.
    ///
    /// # Errors
    /// [`RegistrationError::Pending`] listing every offending implementation.
    pub fn check_pending(&self) -> Result<(), RegistrationError> {
        let reg = lock(&self.shared.reg);
        let mut hooks: Vec<(&String, &HookState)> =
            reg.hooks.iter().filter(|(_, h)| h.spec.is_none()).collect();
        hooks.sort_by(|a, b| a.0.cmp(b.0));
        let pending: Vec<PendingImpl> = hooks
            .into_iter()
            .flat_map(|(name, h)| {
                h.nonwrappers
                    .iter()
                    .chain(&h.wrappers)
                    .filter(|i| !i.opts.optional)
                    .map(move |i| PendingImpl {
                        hook: name.clone(),
                        plugin: i.plugin.to_string(),
                    })
            })
            .collect();
        if pending.is_empty() {
            Ok(())
        } else {
            Err(RegistrationError::Pending { pending })
        }
    }

    /// A caller that skips the implementations of `remove_plugins` (pluggy's
    /// `subset_hook_caller`). Like pluggy's it is a live view: plugins registered later are
    /// included.
    ///
    /// # Errors
    /// [`HookError::UnknownHook`].
    pub fn subset_hook_caller<S: AsRef<str>>(
        &self,
        name: &str,
        remove_plugins: &[S],
    ) -> Result<HookCaller, HookError> {
        let mut caller = self.hook(name)?;
        if !remove_plugins.is_empty() {
            caller.exclude = Some(
                remove_plugins
                    .iter()
                    .map(|s| s.as_ref().to_owned())
                    .collect(),
            );
        }
        Ok(caller)
    }

    fn add_monitor(&self, make: impl FnOnce(u64) -> Monitor) -> MonitorHandle {
        let id = self.shared.next_monitor.fetch_add(1, Ordering::Relaxed);
        let mut guard = write(&self.shared.monitors);
        let mut list: Vec<Arc<Monitor>> = guard.iter().cloned().collect();
        list.push(Arc::new(make(id)));
        *guard = Arc::from(list);
        self.shared.monitoring.store(true, Ordering::Release);
        MonitorHandle {
            id,
            shared: Arc::downgrade(&self.shared),
        }
    }

    /// Observe every hook call (pluggy's `add_hookcall_monitoring`): `before(hook, impls,
    /// args)` runs ahead of the call, `after(outcome, hook, impls, args)` after it. Monitors
    /// added later wrap those added earlier. Costs nothing while no monitor is installed.
    pub fn add_hookcall_monitoring<B, A>(&self, before: B, after: A) -> MonitorHandle
    where
        B: Fn(&str, &[Arc<RegisteredImpl>], &Value) + Send + Sync + 'static,
        A: Fn(&Outcome, &str, &[Arc<RegisteredImpl>], &Value) + Send + Sync + 'static,
    {
        self.add_monitor(|id| Monitor::Closures {
            id,
            before: Box::new(before),
            after: Box::new(after),
        })
    }

    /// Trace every hook call with `tracing` (pluggy's `enable_tracing`): a `hook_call` debug
    /// span around each call, a debug event with the arguments, and a debug event with the
    /// result counts (a warning when the call fails).
    pub fn enable_tracing(&self) -> MonitorHandle {
        self.add_monitor(|id| Monitor::Tracing { id })
    }
}

/// Calls one hook. Obtained from [`PluginManager::hook`]; always sees current registrations.
///
/// Keep one around for hot hooks: it caches the hook's snapshot and, while no registration has
/// touched the hook since, a call costs one atomic load instead of a lock and two reference
/// count updates. After a change it falls back to the shared snapshot until
/// [`refresh`](Self::refresh)ed or re-obtained (a cached snapshot also keeps unregistered
/// implementations alive until then).
pub struct HookCaller {
    shared: Arc<Shared>,
    slot: Arc<HookSlot>,
    exclude: Option<Vec<String>>,
    cached: Arc<Snapshot>,
    cached_generation: u64,
}

impl Clone for HookCaller {
    fn clone(&self) -> Self {
        HookCaller::new(
            Arc::clone(&self.shared),
            Arc::clone(&self.slot),
            self.exclude.clone(),
        )
    }
}

/// The snapshot a call uses: the caller's cached one when current, else the shared one.
enum SnapRef<'a> {
    Cached(&'a Snapshot),
    Fresh(Arc<Snapshot>),
}

impl std::ops::Deref for SnapRef<'_> {
    type Target = Snapshot;
    #[inline]
    fn deref(&self) -> &Snapshot {
        match self {
            SnapRef::Cached(s) => s,
            SnapRef::Fresh(s) => s,
        }
    }
}

impl std::fmt::Debug for HookCaller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookCaller")
            .field("name", &self.slot.name)
            .field("exclude", &self.exclude)
            .finish_non_exhaustive()
    }
}

/// The implementations one call runs, after a subset caller's filter.
enum Selected<'a> {
    All(&'a Snapshot),
    Filtered(Vec<Arc<RegisteredImpl>>, usize),
}

impl Selected<'_> {
    fn impls(&self) -> (&[Arc<RegisteredImpl>], usize) {
        match self {
            Selected::All(s) => (&s.order, s.wrappers),
            Selected::Filtered(v, w) => (v, *w),
        }
    }
}

impl HookCaller {
    fn new(shared: Arc<Shared>, slot: Arc<HookSlot>, exclude: Option<Vec<String>>) -> Self {
        let (cached, cached_generation) = slot.load_with_generation();
        HookCaller {
            shared,
            slot,
            exclude,
            cached,
            cached_generation,
        }
    }

    #[inline]
    fn snapshot(&self) -> SnapRef<'_> {
        if self.slot.generation.load(Ordering::Acquire) == self.cached_generation {
            SnapRef::Cached(&self.cached)
        } else {
            SnapRef::Fresh(self.slot.load())
        }
    }

    /// Re-cache the current snapshot (see the type's docs).
    pub fn refresh(&mut self) {
        let (cached, generation) = self.slot.load_with_generation();
        self.cached = cached;
        self.cached_generation = generation;
    }

    /// The hook name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.slot.name
    }

    /// Whether the hook's spec is historic.
    #[must_use]
    pub fn is_historic(&self) -> bool {
        self.slot.load().is_historic()
    }

    /// Whether the hook has a spec.
    #[must_use]
    pub fn has_spec(&self) -> bool {
        self.slot.load().spec.is_some()
    }

    /// The hook's spec, if declared.
    #[must_use]
    pub fn spec(&self) -> Option<HookSpec> {
        self.slot.load().spec.as_ref().map(|s| s.spec.clone())
    }

    /// The implementations a call runs now, in call order (wrappers first).
    #[must_use]
    pub fn get_hookimpls(&self) -> Vec<Arc<RegisteredImpl>> {
        let snap = self.slot.load();
        let selected = self.select(&snap);
        selected.impls().0.to_vec()
    }

    fn select<'s>(&self, snap: &'s Snapshot) -> Selected<'s> {
        match &self.exclude {
            None => Selected::All(snap),
            Some(ex) => {
                let keep = |i: &&Arc<RegisteredImpl>| !ex.iter().any(|p| **p == *i.plugin);
                let w: Vec<_> = snap.order[..snap.wrappers]
                    .iter()
                    .filter(keep)
                    .cloned()
                    .collect();
                let wcount = w.len();
                let mut all = w;
                all.extend(snap.order[snap.wrappers..].iter().filter(keep).cloned());
                Selected::Filtered(all, wcount)
            }
        }
    }

    fn precheck(&self, snap: &Snapshot, args: &Value) -> Result<(), HookError> {
        if snap.is_historic() {
            return Err(HookError::HistoricCall {
                hook: self.slot.name.to_string(),
            });
        }
        self.check_args(snap, args)
    }

    #[inline]
    fn check_args(&self, snap: &Snapshot, args: &Value) -> Result<(), HookError> {
        let Some(spec) = snap.spec.as_deref() else {
            return Ok(());
        };
        if spec.args.is_some() {
            return validate_args(&self.slot.name, Some(spec), args);
        }
        if !spec.spec.argnames.is_empty() {
            warn_missing_args(&self.slot.name, &spec.spec.argnames, args);
        }
        Ok(())
    }

    /// Call the hook synchronously.
    ///
    /// # Errors
    /// [`HookError::HistoricCall`], [`HookError::InvalidArgs`], [`HookError::AsyncInSyncCall`],
    /// or the error that stopped the call (after the wrappers had their say).
    pub fn call(&self, args: &Value) -> Outcome {
        let snap = self.snapshot();
        self.precheck(&snap, args)?;
        let selected = self.select(&snap);
        let (impls, wrappers) = selected.impls();
        if snap.has_async {
            refuse_async(&self.slot.name, impls)?;
        }
        let rules = Rules::from_spec(snap.spec.as_deref());
        self.shared
            .exec(&self.slot.name, impls, wrappers, args, rules)
    }

    /// Call the hook, awaiting async implementations one after the other in call order.
    /// Executor-agnostic.
    ///
    /// # Errors
    /// As [`call`](Self::call), minus the async refusal.
    pub async fn call_async(&self, args: &Value) -> Outcome {
        let snap = self.snapshot();
        self.precheck(&snap, args)?;
        let selected = self.select(&snap);
        let (impls, wrappers) = selected.impls();
        let rules = Rules::from_spec(snap.spec.as_deref());
        self.shared
            .exec_async(&self.slot.name, impls, wrappers, args, rules)
            .await
    }

    /// Call with temporary extra implementations, placed like pluggy's `call_extra`: after
    /// the tryfirst implementations, as the most recently registered (their options are
    /// ignored; they belong to plugin `<temp>`).
    ///
    /// # Errors
    /// As [`call`](Self::call).
    pub fn call_extra(&self, extra: Vec<HookImpl>, args: &Value) -> Outcome {
        let snap = self.snapshot();
        self.precheck(&snap, args)?;
        let (order, wcount) = self.extra_order(&snap, extra);
        let snap2 = Snapshot {
            spec: snap.spec.clone(),
            has_async: order.iter().any(|i| i.is_async()),
            order: Arc::from(order),
            wrappers: wcount,
            nonwrappers: Arc::from(Vec::new()),
            wrapper_list: Arc::from(Vec::new()),
        };
        let selected = self.select(&snap2);
        let (impls, wrappers) = selected.impls();
        if snap2.has_async {
            refuse_async(&self.slot.name, impls)?;
        }
        let rules = Rules::from_spec(snap.spec.as_deref());
        self.shared
            .exec(&self.slot.name, impls, wrappers, args, rules)
    }

    fn extra_order(
        &self,
        snap: &Snapshot,
        extra: Vec<HookImpl>,
    ) -> (Vec<Arc<RegisteredImpl>>, usize) {
        let temp: Arc<str> = Arc::from("<temp>");
        let mut nonwrappers = snap.nonwrappers.to_vec();
        let mut wrappers = snap.wrapper_list.to_vec();
        for imp in extra {
            let registered = Arc::new(RegisteredImpl {
                plugin: Arc::clone(&temp),
                hook: Arc::clone(&self.slot.name),
                opts: super::impls::ImplOptions::default(),
                func: imp.func,
                native: imp.native,
            });
            if registered.is_wrapper() {
                pluggy_insert(&mut wrappers, registered);
            } else {
                extra_insert(&mut nonwrappers, registered);
            }
        }
        call_order(&nonwrappers, &wrappers)
            .unwrap_or_else(|_| fallback_order(&nonwrappers, &wrappers))
    }

    /// Call a historic hook: the call is remembered (up to the spec's `history_limit`, oldest
    /// dropped) and replayed to implementations registered later. `callback` receives every
    /// result, now and on replay.
    ///
    /// # Errors
    /// [`HookError::NotHistoric`], [`HookError::InvalidArgs`], or the error that stopped the
    /// call.
    pub fn call_historic<F>(&self, args: Value, callback: Option<F>) -> Outcome
    where
        F: Fn(&Value) + Send + Sync + 'static,
    {
        let current = self.slot.load();
        let Some(spec) = current.spec.as_deref().filter(|s| s.spec.historic) else {
            return Err(HookError::NotHistoric {
                hook: self.slot.name.to_string(),
            });
        };
        self.check_args(&current, &args)?;
        let limit = spec.spec.history_limit;
        let args = Arc::new(args);
        let callback: Option<Arc<HistoricCallback>> =
            callback.map(|c| Arc::new(c) as Arc<HistoricCallback>);
        let snap = {
            let mut history = lock(&self.slot.history);
            if limit > 0 {
                while history.len() >= limit {
                    history.pop_front();
                }
                history.push_back(HistoryEntry {
                    args: Arc::clone(&args),
                    callback: callback.clone(),
                });
            }
            self.slot.load()
        };
        let selected = self.select(&snap);
        let (impls, wrappers) = selected.impls();
        let rules = Rules::from_spec(snap.spec.as_deref());
        let outcome = self
            .shared
            .exec(&self.slot.name, impls, wrappers, &args, rules);
        if let (Ok(res), Some(cb)) = (&outcome, &callback) {
            for v in &res.values {
                cb(v);
            }
        }
        outcome
    }

    /// Number of remembered historic calls.
    #[must_use]
    pub fn history_len(&self) -> usize {
        lock(&self.slot.history).len()
    }

    /// Typed view of this hook.
    #[must_use]
    pub fn typed<A: Serialize + 'static, R: DeserializeOwned + 'static>(&self) -> TypedHook<A, R> {
        TypedHook::new(self.clone())
    }

    /// A typed call passing Rust values through, or `None` when the call must go the JSON way:
    /// wrappers and monitors observe JSON, schemas and declared argument names check it, and
    /// async implementations and historic hooks have their own rules there.
    pub(crate) fn call_native<A, R>(&self, args: &A) -> Option<Result<HookResults<R>, HookError>>
    where
        A: Serialize + 'static,
        R: DeserializeOwned + 'static,
    {
        let snap = self.snapshot();
        if snap.has_async || snap.is_historic() || self.shared.monitoring.load(Ordering::Acquire) {
            return None;
        }
        if let Some(spec) = snap.spec.as_deref()
            && (spec.args.is_some() || spec.result.is_some() || !spec.spec.argnames.is_empty())
        {
            return None;
        }
        let selected = self.select(&snap);
        let (impls, wrappers) = selected.impls();
        if wrappers > 0 {
            return None;
        }
        let rules = Rules::from_spec(snap.spec.as_deref());
        Some(multicall_native(&self.slot.name, impls, args, rules))
    }
}

#[cold]
fn refuse_async(hook: &str, impls: &[Arc<RegisteredImpl>]) -> Result<(), HookError> {
    let plugins: Vec<String> = impls
        .iter()
        .filter(|i| i.is_async())
        .map(|i| i.plugin.to_string())
        .collect();
    if plugins.is_empty() {
        Ok(())
    } else {
        Err(HookError::AsyncInSyncCall {
            hook: hook.to_owned(),
            plugins,
        })
    }
}

/// pluggy warns (and carries on) when a call omits arguments the spec declares.
fn warn_missing_args(hook: &str, argnames: &[String], args: &Value) {
    if argnames.iter().all(|a| args.get(a.as_str()).is_some()) {
        return;
    }
    let missing: Vec<&str> = argnames
        .iter()
        .filter(|a| args.get(a.as_str()).is_none())
        .map(String::as_str)
        .collect();
    tracing::warn!(
        hook = hook,
        "Argument(s) {:?} which are declared in the hookspec cannot be found in this hook call",
        missing
    );
}

// The registry must be shareable across threads; fail the build, not the host, if it is not.
const _: fn() = || {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<PluginManager>();
    assert_send_sync::<HookCaller>();
};
