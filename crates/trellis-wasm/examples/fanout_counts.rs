//! The driver of `scripts/count-wasm-fanout.sh`: one hook call fanned out to `copies` different
//! copies of a guest, `iterations` times, for cachegrind to count instructions and cache misses.
//! Wall-clock benchmarks on a shared machine move by 15–25% between runs; these counts are the
//! same on every run, so they can tell a 2% change in guest or host code apart.
//!
//! ```text
//! fanout_counts <guest.wasm> <work dir> <cache dir> <iterations> <copies>
//! ```
//!
//! The guest must implement hook `bench_echo` (`examples/plugins/bench-echo`). Copies are made
//! distinct by a custom section, as in `benches/wasm_dispatch.rs`, and kept in `<work dir>` so
//! that a second run finds them unchanged and their compiled components in `<cache dir>`.

#[path = "../benches/support/copies.rs"]
mod copies;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use copies::{HOOK, distinct_copy, spec};
use serde_json::json;
use trellis_core::{EventBus, HookSpec, PluginManager};
use trellis_wasm::{AuditSink, MemoryAudit, RuntimeOptions, WasmRuntime};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fanout_counts: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, guest, work, cache, iterations, copies] = args.as_slice() else {
        return Err(
            "usage: fanout_counts <guest.wasm> <work dir> <cache dir> <iterations> <copies>".into(),
        );
    };
    let wasm = std::fs::read(guest).map_err(|e| format!("{guest}: {e}"))?;
    let work = PathBuf::from(work);
    let iterations: usize = iterations.parse()?;
    let copies: usize = copies.parse()?;
    let project = work.join("project");
    std::fs::create_dir_all(&project)?;
    let runtime = WasmRuntime::new(RuntimeOptions {
        project_root: project.clone(),
        cache_dir: Some(PathBuf::from(cache)),
        events: Arc::new(EventBus::new()),
        audit: Arc::new(MemoryAudit::new()) as Arc<dyn AuditSink>,
        state_dir: project.join(".trellis/state"),
        digests: None,
    })?;
    let pm = PluginManager::new();
    pm.add_hookspecs([HookSpec::new(HOOK)])?;
    let mut plugins = Vec::new();
    for copy in 0..copies {
        let dir = work.join("plugins").join(copy.to_string());
        std::fs::create_dir_all(&dir)?;
        let bytes = distinct_copy(&wasm, copy);
        let file = dir.join("plugin.wasm");
        // Rewriting an unchanged copy would make the runtime hash it again.
        if std::fs::read(&file).ok().as_deref() != Some(bytes.as_slice()) {
            std::fs::write(&file, &bytes)?;
        }
        let plugin = runtime.load(spec(copy, &dir))?;
        pm.register(plugin.registration())?;
        plugins.push(plugin);
    }
    let hook = pm.hook(HOOK)?;
    let args = json!({"x": 1});
    // Instantiates every copy: counted in the run without iterations too, so it cancels out.
    hook.call(&args)?;
    for _ in 0..iterations {
        std::hint::black_box(hook.call(std::hint::black_box(&args))?);
    }
    Ok(())
}
