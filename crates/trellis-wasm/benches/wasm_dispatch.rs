//! Costs of WebAssembly plugins in a Trellis host, with the `bench-echo` guest
//! (`examples/plugins/bench-echo`, built by `scripts/build-plugins.sh`): hook `bench_echo`
//! takes `{"x": 1}` and returns `2`. `scripts/bench-wasm.sh` runs this bench and compares the
//! fan-out figures with Extism doing the same work (`benches/extism-compare`).
//!
//! Each of the 100 installed plugins is its own directory with its own copy of the component,
//! made distinct by a custom section naming its number: 100 different plugins as far as the
//! runtime can tell, each compiled (or deserialized) on its own and with its own code in
//! memory. A second set of 100 directories holds identical copies: 100 installs of one
//! component, which the runtime loads once and shares.
//!
//! - `wasm_start/*/100`: host start with 100 installed plugins: create a [`WasmRuntime`]
//!   (engine, linker, epoch thread) and load 100 [`PluginSpec`]s (each load reads and hashes
//!   its file). Instantiation is lazy, so this is the whole start; dropping the runtime is not
//!   timed.
//!   - `warm`: 100 different components, all in the compiled-component cache: 100
//!     deserializations.
//!   - `cold_shared`: 100 identical copies and a fresh, empty cache directory per iteration:
//!     the first load compiles and stores the component and the other 99 share it. What a
//!     first start with 100 installs of one component costs.
//!   - `cold_compile`: 100 different components and no cache at all, so every load compiles:
//!     what a first start with 100 different components of this size costs.
//!   - `warm_first_call`: `warm`, then one `bench_echo` call on each plugin (instantiates it
//!     and runs its `init`): start plus the first use of every plugin.
//! - `wasm_dispatch/fanout/{1,10,100}`: one `bench_echo` hook call through
//!   [`trellis_core::PluginManager`] reaching 1/10/100 different wasm components (each
//!   plugin's [`WasmPlugin::registration`]), instances already live; the same shape as
//!   `trellis-core`'s `hook_dispatch` bench with native closures. Per iteration: one call.
//! - `wasm_dispatch/fanout_shared/100`: the same with 100 instances of one component.
//! - `wasm_dispatch/direct/1`: [`WasmPlugin::call_hook`] on one plugin, no hook manager.

#[path = "support/copies.rs"]
mod copies;

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use copies::{HOOK, distinct_copy, plugin_name, spec};
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};
use trellis_core::{EventBus, HookSpec, PluginManager};
use trellis_wasm::{AuditSink, CacheStatus, MemoryAudit, RuntimeOptions, WasmPlugin, WasmRuntime};

/// Installed plugins in the start benchmarks.
const INSTALLED: usize = 100;

/// 100 plugin directories with distinct copies of `bench-echo`'s component, 100 with identical
/// copies, and a warm compiled-component cache for both.
struct Fixture {
    tmp: tempfile::TempDir,
    project: PathBuf,
    warm_cache: PathBuf,
    /// Each copy made distinct by a custom section: 100 different plugins.
    dirs: Vec<PathBuf>,
    /// Identical copies: 100 installs of one plugin.
    same: Vec<PathBuf>,
}

impl Fixture {
    fn new() -> Self {
        let component = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/plugins/bench-echo/plugin.wasm");
        let wasm = std::fs::read(&component).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; build it with `bash scripts/build-plugins.sh`",
                component.display()
            )
        });
        let tmp = tempfile::tempdir().expect("tempdir");
        let project = tmp.path().join("project");
        std::fs::create_dir_all(&project).expect("project dir");
        let install = |set: &str, bytes: &dyn Fn(usize) -> Vec<u8>| -> Vec<PathBuf> {
            (0..INSTALLED)
                .map(|i| {
                    let dir = tmp.path().join(set).join(plugin_name(i));
                    std::fs::create_dir_all(&dir).expect("plugin dir");
                    std::fs::write(dir.join("plugin.wasm"), bytes(i)).expect("copy component");
                    dir
                })
                .collect()
        };
        let dirs = install("plugins", &|i| distinct_copy(&wasm, i));
        let same = install("same", &|_| wasm.clone());
        let fixture = Fixture {
            warm_cache: tmp.path().join("cache"),
            tmp,
            project,
            dirs,
            same,
        };
        // Fill the cache.
        let (_, plugins) = fixture.start(INSTALLED, Some(&fixture.warm_cache));
        assert_eq!(plugins.len(), INSTALLED);
        assert!(
            plugins
                .iter()
                .all(|p| p.cache_status() != CacheStatus::Shared),
            "distinct copies must not share a component"
        );
        let (_, plugins) = fixture.start_same(INSTALLED, Some(&fixture.warm_cache));
        assert!(
            plugins[1..]
                .iter()
                .all(|p| p.cache_status() == CacheStatus::Shared),
            "identical copies share one component"
        );
        fixture
    }

    fn runtime(&self, cache_dir: Option<&Path>) -> WasmRuntime {
        WasmRuntime::new(RuntimeOptions {
            project_root: self.project.clone(),
            cache_dir: cache_dir.map(Path::to_owned),
            events: Arc::new(EventBus::new()),
            audit: Arc::new(MemoryAudit::new()) as Arc<dyn AuditSink>,
            state_dir: self.project.join(".trellis/state"),
            digests: None,
        })
        .expect("runtime")
    }

    /// Host start: a runtime and `n` loaded plugins, each a different component.
    fn start(&self, n: usize, cache_dir: Option<&Path>) -> (WasmRuntime, Vec<Arc<WasmPlugin>>) {
        self.start_from(&self.dirs[..n], cache_dir)
    }

    /// Host start: a runtime and `n` loaded plugins with the same component.
    fn start_same(
        &self,
        n: usize,
        cache_dir: Option<&Path>,
    ) -> (WasmRuntime, Vec<Arc<WasmPlugin>>) {
        self.start_from(&self.same[..n], cache_dir)
    }

    fn start_from(
        &self,
        dirs: &[PathBuf],
        cache_dir: Option<&Path>,
    ) -> (WasmRuntime, Vec<Arc<WasmPlugin>>) {
        let runtime = self.runtime(cache_dir);
        let plugins = dirs
            .iter()
            .enumerate()
            .map(|(i, dir)| runtime.load(spec(i, dir)).expect("load"))
            .collect();
        (runtime, plugins)
    }
}

fn start(c: &mut Criterion) {
    let fx = Fixture::new();
    let args = json!({"x": 1});
    let mut group = c.benchmark_group("wasm_start");

    group.bench_function(BenchmarkId::new("warm", INSTALLED), |b| {
        b.iter_with_large_drop(|| fx.start(INSTALLED, Some(&fx.warm_cache)));
    });

    group.bench_function(BenchmarkId::new("warm_first_call", INSTALLED), |b| {
        b.iter_with_large_drop(|| {
            let started = fx.start(INSTALLED, Some(&fx.warm_cache));
            for p in &started.1 {
                black_box(p.call_hook(HOOK, &args).expect("call"));
            }
            started
        });
    });

    let cold_root = fx.tmp.path().join("cold");
    std::fs::create_dir_all(&cold_root).expect("cold cache root");
    group.bench_function(BenchmarkId::new("cold_shared", INSTALLED), |b| {
        b.iter_batched(
            // An empty cache directory, removed (untimed) when the iteration's output drops.
            || tempfile::tempdir_in(&cold_root).expect("cold cache dir"),
            |cache| {
                let started = fx.start_same(INSTALLED, Some(cache.path()));
                assert_eq!(
                    started.1[0].cache_status(),
                    CacheStatus::Compiled,
                    "the first load of a cold start must compile"
                );
                (started, cache)
            },
            BatchSize::PerIteration,
        );
    });

    // About 100 compiles per iteration: few samples.
    group.sample_size(10);
    group.bench_function(BenchmarkId::new("cold_compile", INSTALLED), |b| {
        b.iter_with_large_drop(|| fx.start(INSTALLED, None));
    });
    group.finish();
}

fn dispatch(c: &mut Criterion) {
    let fx = Fixture::new();
    let args = json!({"x": 1});
    let mut group = c.benchmark_group("wasm_dispatch");
    let cases = [(1usize, false), (10, false), (100, false), (100, true)];
    for (n, same) in cases {
        let (_runtime, plugins) = if same {
            fx.start_same(n, Some(&fx.warm_cache))
        } else {
            fx.start(n, Some(&fx.warm_cache))
        };
        let pm = PluginManager::new();
        pm.add_hookspecs([HookSpec::new(HOOK)]).expect("spec");
        for p in &plugins {
            pm.register(p.registration()).expect("register");
        }
        let hook = pm.hook(HOOK).expect("hook");
        // The first call instantiates every plugin; measure live instances only.
        let first = hook.call(&args).expect("call");
        assert_eq!(first.values, vec![Value::from(2); n]);
        group.throughput(Throughput::Elements(n as u64));
        let name = if same { "fanout_shared" } else { "fanout" };
        group.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
            b.iter(|| black_box(hook.call(black_box(&args))));
        });
        if n == 1 && !same {
            let plugin = &plugins[0];
            group.bench_with_input(BenchmarkId::new("direct", n), &n, |b, _| {
                b.iter(|| black_box(plugin.call_hook(HOOK, black_box(&args))));
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1));
    targets = start, dispatch
}
criterion_main!(benches);
