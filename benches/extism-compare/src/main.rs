//! The Extism side of `scripts/bench-wasm.sh`: the work of the Trellis `wasm_dispatch` bench
//! (`crates/trellis-wasm/benches/wasm_dispatch.rs`) done with Extism 1.41, timed with a plain
//! loop (median of repeats).
//!
//! Usage: `extism-compare <guest.wasm>`, the guest built from `guest/` (`call_hook` takes
//! `{"x": N}` as JSON text and returns `N + 1` as JSON text). Prints one `<case> <ns>` line per
//! case:
//!
//! - `fanout/{1,10,100}`: one "hook call" reaching 1/10/100 plugins: the payload `{"x": 1}` is
//!   encoded to JSON text for each plugin (as Trellis does per implementation), each plugin's
//!   `call_hook` is called, and each result is parsed back into a `serde_json::Value` and
//!   collected, as Trellis's hook manager collects results. Instances are live. ns per call.
//! - `start_warm/100`: 100 plugins built with a warm on-disk cache (wasmtime's, which Extism
//!   uses; a directory of this run's own), each called once: compares with Trellis's
//!   `warm_first_call`. Extism instantiates at creation and makes one engine per plugin.
//! - `start_from_compiled/100`: the same from one `CompiledPlugin` compiled in memory
//!   beforehand (not timed): Extism's best case, no disk and one shared engine.
//! - `start_compile/100`: 100 plugins built with the cache disabled (each compiles and
//!   instantiates, no call; one run): compares with Trellis's `cold_compile` (which compiles but
//!   instantiates lazily).
//!
//! All plugins are created with WASI enabled and no host functions; dropping the plugins of a
//! start case is not timed.

use std::hint::black_box;
use std::time::Instant;

use extism::{CompiledPlugin, Manifest, Plugin, PluginBuilder, Wasm};
use serde_json::{Value, json};

/// Timed repeats per case; the median is reported.
const REPEATS: usize = 15;
/// Plugin calls per timed repeat (spread over the plugins of a fan-out case).
const CALLS_PER_REPEAT: usize = 20_000;

fn main() {
    let path = std::env::args()
        .nth(1)
        .expect("usage: extism-compare <guest.wasm>");
    let wasm = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let manifest = Manifest::new([Wasm::data(wasm)]);
    let compiled = CompiledPlugin::new(
        PluginBuilder::new(manifest.clone())
            .with_wasi(true)
            .with_cache_disabled(),
    )
    .expect("compile");
    let args = json!({"x": 1});

    for n in [1usize, 10, 100] {
        let mut plugins: Vec<Plugin> = (0..n)
            .map(|_| Plugin::new_from_compiled(&compiled).expect("plugin"))
            .collect();
        assert_eq!(hook_call(&mut plugins, &args), vec![Value::from(2); n]);
        let iters = (CALLS_PER_REPEAT / n).max(1);
        let ns = median_ns(REPEATS, iters, || {
            black_box(hook_call(&mut plugins, black_box(&args)));
        });
        println!("fanout/{n} {ns:.1}");
    }

    // Extism's compiled-module cache is wasmtime's; point it at a directory of our own.
    let scratch = std::env::temp_dir().join(format!("extism-compare-{}", std::process::id()));
    std::fs::create_dir_all(scratch.join("cache")).expect("cache dir");
    let cache_config = scratch.join("cache.toml");
    std::fs::write(
        &cache_config,
        format!("[cache]\ndirectory = {:?}\n", scratch.join("cache")),
    )
    .expect("cache config");
    let cached = || {
        PluginBuilder::new(&manifest)
            .with_wasi(true)
            .with_cache_config(&cache_config)
            .build()
            .expect("plugin")
    };
    drop(cached()); // fills the cache

    let ns = median_ns(5, 1, || start_and_call(cached, &args));
    println!("start_warm/100 {ns:.1}");

    let ns = median_ns(5, 1, || {
        start_and_call(
            || Plugin::new_from_compiled(&compiled).expect("plugin"),
            &args,
        )
    });
    println!("start_from_compiled/100 {ns:.1}");

    // About 100 compiles per run: one run, no warm-up (compiling has nothing to warm).
    let ns = median_ns(1, 1, || {
        (0..100)
            .map(|_| {
                PluginBuilder::new(&manifest)
                    .with_wasi(true)
                    .with_cache_disabled()
                    .build()
                    .expect("plugin")
            })
            .collect::<Vec<Plugin>>()
    });
    println!("start_compile/100 {ns:.1}");

    let _ = std::fs::remove_dir_all(&scratch);
}

/// 100 plugins made by `new`, each called once; returned so that dropping them is not timed.
fn start_and_call(new: impl Fn() -> Plugin, args: &Value) -> Vec<Plugin> {
    let mut plugins: Vec<Plugin> = (0..100).map(|_| new()).collect();
    for p in &mut plugins {
        let input = serde_json::to_string(args).expect("encode");
        black_box(
            p.call::<&str, &str>("call_hook", input.as_str())
                .expect("call"),
        );
    }
    plugins
}

/// One hook call fanned out to `plugins`: encode the payload, call, parse each result.
fn hook_call(plugins: &mut [Plugin], args: &Value) -> Vec<Value> {
    let mut results = Vec::with_capacity(plugins.len());
    for p in plugins {
        let input = serde_json::to_string(args).expect("encode");
        let out = p
            .call::<&str, &str>("call_hook", input.as_str())
            .expect("call");
        results.push(serde_json::from_str(out).expect("result is JSON"));
    }
    results
}

/// Median over `repeats` (after one untimed warm-up when `repeats > 1`) of the time of
/// `iters` runs of `f`, in ns per run. What `f` returns is dropped after the timing (like criterion's
/// `iter_with_large_drop`); return `()` to drop inside it.
fn median_ns<T>(repeats: usize, iters: usize, mut f: impl FnMut() -> T) -> f64 {
    if repeats > 1 {
        drop(f());
    }
    let mut samples: Vec<f64> = (0..repeats)
        .map(|_| {
            let mut outputs = Vec::with_capacity(iters);
            let started = Instant::now();
            for _ in 0..iters {
                outputs.push(f());
            }
            let ns = started.elapsed().as_nanos() as f64 / iters as f64;
            drop(outputs);
            ns
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}
