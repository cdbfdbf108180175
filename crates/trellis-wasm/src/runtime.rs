//! The engine, shared by every plugin of a host process, and loading plugins into it.

use std::collections::HashMap;
use std::path::{Component as PathComponent, Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use sha2::{Digest, Sha256};
use trellis_audit::AuditSink;
use trellis_core::EventBus;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine};

use crate::cache::{self, CacheStatus};
use crate::error::WasmError;
use crate::host::{self, HostState, PluginPre, PluginShared};
use crate::limits::EffectiveLimits;
use crate::plugin::WasmPlugin;
use trellis_digests::FileDigests;

/// The plugin API versions (`trellis:plugin@X.Y.Z`) this host can run.
pub const SUPPORTED_API_VERSIONS: &[&str] = &["0.1.0"];

/// The WIT package every plugin API interface belongs to.
const API_PACKAGE: &str = "trellis:plugin";

/// Where and with what the plugins of one host process run.
pub struct RuntimeOptions {
    /// The project plugins work on: preopened as `/project` (with `filesystem.*`), the
    /// working directory of commands, the home of `backlog/`.
    pub project_root: PathBuf,
    /// Where compiled components are cached; none: compile on every load.
    pub cache_dir: Option<PathBuf>,
    /// Where plugin events go (`events.emit`, `backlog.task.created`).
    pub events: Arc<EventBus>,
    /// Where capability denials and other audited actions go.
    pub audit: Arc<dyn AuditSink>,
    /// Where per-plugin state files live (e.g. `.trellis/state`).
    pub state_dir: PathBuf,
    /// The remembered file hashes to share with the rest of the process (a host that also
    /// checks installed files); none: the runtime keeps its own in `cache_dir`.
    pub digests: Option<Arc<trellis_digests::FileDigests>>,
}

/// When code is compiled with fuel metering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FuelMode {
    /// Only plugins whose limits have a fuel budget run on a second, metering engine (created
    /// on first need); all others run without the metering overhead.
    #[default]
    Auto,
    /// Every plugin runs metered (`u64::MAX` fuel when it has no budget).
    Always,
    /// Nothing is metered: fuel budgets are ignored with a warning, the timeout still applies.
    Never,
}

/// Engine settings. The defaults suit a CLI that loads a few plugins per run.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Pre-allocate instance slots (wasmtime's pooling allocator). Off by default: it pays
    /// when a process instantiates many times per second (a server), while a CLI instantiates
    /// each plugin about once, and the pool reserves address space and memory up front.
    pub pooling: Option<PoolingOptions>,
    /// Which plugins run with fuel metering; see [`FuelMode`] and the crate documentation for
    /// its cost.
    pub fuel: FuelMode,
    /// How often the epoch advances; a runaway call is stopped within one tick after its
    /// timeout.
    pub epoch_tick: Duration,
    /// Native stack available to wasm; deeper recursion traps as a stack overflow.
    pub max_wasm_stack: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            pooling: None,
            fuel: FuelMode::Auto,
            epoch_tick: Duration::from_millis(10),
            max_wasm_stack: 512 << 10,
        }
    }
}

/// Sizes of the pooling allocator.
#[derive(Debug, Clone)]
pub struct PoolingOptions {
    /// Instances alive at once (each plugin keeps at most one).
    pub max_instances: u32,
    /// Largest linear memory any plugin may get (the slot size).
    pub max_memory_bytes: u64,
}

impl Default for PoolingOptions {
    fn default() -> Self {
        PoolingOptions {
            max_instances: 64,
            max_memory_bytes: 1 << 30,
        }
    }
}

/// Advances the epoch of every engine in `engines` each tick, until dropped.
struct EpochTicker {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engines: Arc<Mutex<Vec<Engine>>>, tick: Duration) -> Result<Self, WasmError> {
        let (stop, rx) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("trellis-wasm-epoch".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(tick) {
                    for engine in engines.lock().unwrap_or_else(|p| p.into_inner()).iter() {
                        engine.increment_epoch();
                    }
                }
            })
            .map_err(|e| WasmError::Engine(format!("cannot start the epoch thread: {e}")))?;
        Ok(EpochTicker {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An engine and the linker of the host imports for it.
pub(crate) struct EngineSet {
    pub(crate) engine: Engine,
    linker: Linker<HostState>,
    /// Whether code of this engine meters fuel.
    pub(crate) fuel: bool,
    /// [`cache::engine_hash`], the second half of its components' cache keys.
    engine_hash: String,
}

impl EngineSet {
    fn new(opts: &EngineOptions, fuel: bool) -> Result<Self, WasmError> {
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .consume_fuel(fuel)
            .max_wasm_stack(opts.max_wasm_stack)
            .parallel_compilation(true);
        if let Some(p) = &opts.pooling {
            let mut pool = wasmtime::PoolingAllocationConfig::new();
            let memory = usize::try_from(p.max_memory_bytes).unwrap_or(usize::MAX);
            pool.total_component_instances(p.max_instances)
                .total_core_instances(p.max_instances.saturating_mul(8))
                .total_memories(p.max_instances.saturating_mul(2))
                .total_tables(p.max_instances.saturating_mul(4))
                .total_stacks(p.max_instances)
                .max_memory_size(memory);
            config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
        }
        let engine = Engine::new(&config).map_err(|e| WasmError::Engine(cache::error_text(&e)))?;
        let mut linker = Linker::new(&engine);
        host::add_to_linker(&mut linker).map_err(|e| WasmError::Engine(cache::error_text(&e)))?;
        Ok(EngineSet {
            engine_hash: cache::engine_hash(&engine),
            engine,
            linker,
            fuel,
        })
    }
}

pub(crate) struct RuntimeInner {
    /// The engine most plugins run on (metering fuel only with [`FuelMode::Always`]).
    main: EngineSet,
    /// With [`FuelMode::Auto`]: the metering engine, created for the first plugin with a
    /// fuel budget.
    metered: OnceLock<EngineSet>,
    ticking: Arc<Mutex<Vec<Engine>>>,
    /// Components in use, by cache key (the bytes' hash and the engine): plugins with the
    /// same bytes, in one project or in several hosts of this process, share one compiled
    /// component, so its code is in memory and in the CPU's caches once. With a copy per
    /// plugin, a hook fanned out to 100 instances of one component cost four times as much
    /// per implementation as with ten. Weak, so a component goes when its last plugin does.
    components: Mutex<HashMap<String, Weak<Component>>>,
    /// The hashes of `.wasm` files loaded before, so that a start does not hash them again.
    sources: Arc<FileDigests>,
    pub(crate) opts: RuntimeOptions,
    pub(crate) engine_opts: EngineOptions,
    _ticker: EpochTicker,
}

impl RuntimeInner {
    fn lock_components(&self) -> std::sync::MutexGuard<'_, HashMap<String, Weak<Component>>> {
        self.components.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The component loaded under `key` if a plugin still uses it.
    fn component_in_use(&self, key: &str) -> Option<Arc<Component>> {
        self.lock_components().get(key).and_then(Weak::upgrade)
    }

    fn remember_component(&self, key: String, component: &Arc<Component>) {
        let mut components = self.lock_components();
        components.retain(|_, c| c.strong_count() > 0);
        components.insert(key, Arc::downgrade(component));
    }

    /// The compiled component of `file` for `set`'s engine: the one a plugin of this runtime
    /// already uses when the bytes are the same, else from the cache, else compiled (and
    /// cached).
    fn component(
        &self,
        set: &EngineSet,
        plugin: &str,
        file: &Path,
    ) -> Result<(Arc<Component>, CacheStatus), WasmError> {
        let digest = self
            .sources
            .digest(file)
            .map_err(|e| WasmError::io(file, e))?;
        let key = cache::key_for(&digest.sha256, &set.engine_hash);
        if let Some(found) = self.loaded_component(set, &key) {
            return Ok(found);
        }
        // Compile what the file holds now, under the hash of those bytes, never under a
        // remembered hash.
        let (wasm, key) = match digest.bytes {
            Some(bytes) => (bytes, key),
            None => {
                let bytes = std::fs::read(file).map_err(|e| WasmError::io(file, e))?;
                let actual = cache::key_for(&hex::encode(Sha256::digest(&bytes)), &set.engine_hash);
                if actual != key {
                    self.sources.forget(file);
                    if let Some(found) = self.loaded_component(set, &actual) {
                        return Ok(found);
                    }
                }
                (bytes, actual)
            }
        };
        let (component, status) =
            cache::compile(&set.engine, self.opts.cache_dir.as_deref(), &key, &wasm).map_err(
                |reason| WasmError::InvalidComponent {
                    plugin: plugin.to_owned(),
                    file: file.to_owned(),
                    reason,
                },
            )?;
        let component = Arc::new(component);
        self.remember_component(key, &component);
        Ok((component, status))
    }

    /// The component under `key` that a plugin of this runtime already uses, else the one in
    /// the cache; none when it would have to be compiled.
    fn loaded_component(
        &self,
        set: &EngineSet,
        key: &str,
    ) -> Option<(Arc<Component>, CacheStatus)> {
        if let Some(component) = self.component_in_use(key) {
            return Some((component, CacheStatus::Shared));
        }
        let component = Arc::new(cache::cached(
            &set.engine,
            self.opts.cache_dir.as_deref(),
            key,
        )?);
        self.remember_component(key.to_owned(), &component);
        Some((component, CacheStatus::Hit))
    }

    /// Epoch ticks for a call of `timeout`: the deadline falls within one tick after it.
    pub(crate) fn ticks_for(&self, timeout: Duration) -> u64 {
        let tick = self.engine_opts.epoch_tick.as_nanos().max(1);
        let ticks = timeout.as_nanos().div_ceil(tick);
        u64::try_from(ticks).unwrap_or(u64::MAX).saturating_add(1)
    }

    /// The engine a plugin with (or without) a fuel budget runs on.
    fn engine_for(&self, wants_fuel: bool) -> Result<&EngineSet, WasmError> {
        if !wants_fuel || self.engine_opts.fuel != FuelMode::Auto {
            return Ok(&self.main);
        }
        if let Some(set) = self.metered.get() {
            return Ok(set);
        }
        let set = EngineSet::new(&self.engine_opts, true)?;
        let engine = set.engine.clone();
        if self.metered.set(set).is_ok() {
            self.ticking
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(engine);
        }
        self.metered
            .get()
            .ok_or_else(|| WasmError::Engine("the metering engine is missing".into()))
    }
}

/// The runtime: one engine and linker per host process, shared by every plugin. Cheap to
/// clone; the epoch thread stops when the last clone and the last plugin are dropped.
#[derive(Clone)]
pub struct WasmRuntime {
    inner: Arc<RuntimeInner>,
}

/// One plugin to load.
pub struct PluginSpec {
    pub name: String,
    /// The plugin directory; `manifest.runtime.entry` is relative to it.
    pub dir: PathBuf,
    pub manifest: trellis_manifest::Manifest,
    /// The effective, validated configuration (`config.get`, and `init`'s argument).
    pub config: serde_json::Value,
    /// What the plugin may do. Until users grant capabilities themselves, the manifest's
    /// `requires.capabilities`.
    pub grants: Vec<trellis_manifest::CapabilityRequest>,
    pub limits: EffectiveLimits,
    /// Where the plugin's `subprocess` commands run (the host's process sandbox); none:
    /// directly, with a cleared environment.
    pub commands: Option<Arc<dyn trellis_host_api::exec::CommandSandbox>>,
}

impl WasmRuntime {
    /// A runtime with the default [`EngineOptions`].
    pub fn new(opts: RuntimeOptions) -> Result<Self, WasmError> {
        Self::with_engine_options(opts, EngineOptions::default())
    }

    pub fn with_engine_options(
        opts: RuntimeOptions,
        engine_opts: EngineOptions,
    ) -> Result<Self, WasmError> {
        let main = EngineSet::new(&engine_opts, engine_opts.fuel == FuelMode::Always)?;
        let ticking = Arc::new(Mutex::new(vec![main.engine.clone()]));
        let ticker = EpochTicker::start(Arc::clone(&ticking), engine_opts.epoch_tick)?;
        Ok(WasmRuntime {
            inner: Arc::new(RuntimeInner {
                main,
                metered: OnceLock::new(),
                components: Mutex::new(HashMap::new()),
                sources: opts.digests.clone().unwrap_or_else(|| {
                    Arc::new(FileDigests::new(
                        opts.cache_dir.as_deref(),
                        trellis_digests::SETTLED,
                    ))
                }),
                ticking,
                opts,
                engine_opts,
                _ticker: ticker,
            }),
        })
    }

    /// The plugin API versions this host supports, e.g. `["0.1.0"]`.
    pub fn supported_api_versions() -> &'static [&'static str] {
        SUPPORTED_API_VERSIONS
    }

    /// The engine plugins without a fuel budget run on, for tools that want to inspect
    /// components the same way.
    pub fn engine(&self) -> &Engine {
        &self.inner.main.engine
    }

    /// Compiles (or takes from the cache) and checks a plugin's component, ready to
    /// instantiate on its first call. Nothing of the plugin runs here.
    pub fn load(&self, spec: PluginSpec) -> Result<Arc<WasmPlugin>, WasmError> {
        let inner = &self.inner;
        let file = entry_file(&spec)?;
        let set = inner.engine_for(spec.limits.fuel.is_some())?;
        let (component, cache_status) = inner.component(set, &spec.name, &file)?;
        check_api_version(&set.engine, &component, &spec.name, &file)?;
        let invalid = |e: wasmtime::Error| WasmError::InvalidComponent {
            plugin: spec.name.clone(),
            file: file.clone(),
            reason: cache::error_text(&e),
        };
        let instance_pre = set.linker.instantiate_pre(&component).map_err(invalid)?;
        let pre = PluginPre::new(instance_pre).map_err(invalid)?;

        if spec.limits.fuel.is_some() && !set.fuel {
            tracing::warn!(plugin = %spec.name, "the engine runs without fuel metering; limits.fuel is ignored and only the timeout applies");
        }
        let shared = PluginShared::new(trellis_host_api::PluginApi::new(
            trellis_host_api::ApiSpec {
                grants: trellis_host_api::Grants::from_requests(&spec.grants),
                config: spec.config,
                events: Arc::clone(&inner.opts.events),
                audit: Arc::clone(&inner.opts.audit),
                state_dir: inner.opts.state_dir.clone(),
                project_root: inner.opts.project_root.clone(),
                commands: spec.commands,
                name: spec.name,
            },
        ));
        Ok(Arc::new(WasmPlugin::new(
            shared,
            Arc::clone(inner),
            set.engine.clone(),
            set.fuel,
            pre,
            spec.manifest.provides.hooks,
            spec.limits,
            cache_status,
            component,
            file,
        )))
    }
}

/// `dir/runtime.entry` (default `plugin.wasm`), which must stay inside `dir` and exist.
fn entry_file(spec: &PluginSpec) -> Result<PathBuf, WasmError> {
    let entry = spec
        .manifest
        .runtime
        .entry
        .as_deref()
        .unwrap_or("plugin.wasm");
    let relative = Path::new(entry);
    if relative.is_absolute()
        || relative
            .components()
            .any(|c| !matches!(c, PathComponent::Normal(_) | PathComponent::CurDir))
    {
        return Err(WasmError::InvalidComponent {
            plugin: spec.name.clone(),
            file: relative.to_owned(),
            reason: "runtime.entry must be a relative path inside the plugin directory".into(),
        });
    }
    let file = spec.dir.join(relative);
    if !file.is_file() {
        return Err(WasmError::NoEntry {
            plugin: spec.name.clone(),
            file,
        });
    }
    Ok(file)
}

/// The `X.Y.Z` of `trellis:plugin/<interface>@X.Y.Z`, or `""` when unversioned; `None` for
/// names outside the plugin API.
fn api_version_of(name: &str, interface: Option<&str>) -> Option<String> {
    let rest = name.strip_prefix(API_PACKAGE)?.strip_prefix('/')?;
    let (iface, version) = match rest.split_once('@') {
        Some((i, v)) => (i, v),
        None => (rest, ""),
    };
    if interface.is_some_and(|want| want != iface) {
        return None;
    }
    Some(version.to_owned())
}

/// The plugin API version a component targets, from the `trellis:plugin/guest` interface it
/// exports; an error naming what was found when it is missing or unsupported. Imports of the
/// plugin API are checked too, so a component mixing versions is refused with a clear message
/// instead of a linker error.
pub fn detect_api_version(
    engine: &Engine,
    component: &Component,
) -> Result<String, Option<String>> {
    let ty = component.component_type();
    let exported: Vec<String> = ty
        .exports(engine)
        .filter_map(|(name, _)| api_version_of(name, Some("guest")))
        .collect();
    let Some(version) = exported.first().cloned() else {
        // No guest export; report a plugin-API import version if there is one.
        let imported = ty
            .imports(engine)
            .find_map(|(name, _)| api_version_of(name, None));
        return Err(imported.filter(|v| !v.is_empty()));
    };
    if version.is_empty() || !SUPPORTED_API_VERSIONS.contains(&version.as_str()) {
        return Err(Some(version).filter(|v| !v.is_empty()));
    }
    for (name, _) in ty.imports(engine) {
        if let Some(v) = api_version_of(name, None)
            && !SUPPORTED_API_VERSIONS.contains(&v.as_str())
        {
            return Err(Some(v).filter(|v| !v.is_empty()));
        }
    }
    Ok(version)
}

fn check_api_version(
    engine: &Engine,
    component: &Component,
    plugin: &str,
    file: &Path,
) -> Result<String, WasmError> {
    detect_api_version(engine, component).map_err(|found| WasmError::UnsupportedApiVersion {
        plugin: plugin.to_owned(),
        found,
        supported: SUPPORTED_API_VERSIONS
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
        file: file.to_owned(),
    })
}

/// Keeps runtime internals reachable for the plugin module.
pub(crate) type SharedRuntime = Arc<RuntimeInner>;

/// `WasmRuntime` and `WasmPlugin` must stay shareable across threads.
#[allow(dead_code)]
fn _assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<WasmRuntime>();
    is::<WasmPlugin>();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_version_names() {
        assert_eq!(
            api_version_of("trellis:plugin/guest@0.1.0", Some("guest")).as_deref(),
            Some("0.1.0")
        );
        assert_eq!(
            api_version_of("trellis:plugin/guest", Some("guest")).as_deref(),
            Some("")
        );
        assert_eq!(
            api_version_of("trellis:plugin/log@0.2.0", Some("guest")),
            None
        );
        assert_eq!(
            api_version_of("trellis:plugin/log@0.2.0", None).as_deref(),
            Some("0.2.0")
        );
        assert_eq!(api_version_of("wasi:cli/run@0.2.0", None), None);
        assert_eq!(api_version_of("trellis:pluginx/guest@0.1.0", None), None);
    }
}
