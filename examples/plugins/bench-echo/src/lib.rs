//! `bench-echo`: the guest of the WebAssembly dispatch benchmarks
//! (`crates/trellis-wasm/benches/wasm_dispatch.rs`, `scripts/bench-wasm.sh`), not a plugin to
//! install. Hook `bench_echo` takes `{"x": N}` and returns `N + 1`: the same work as the
//! native implementations of `trellis-core`'s `hook_dispatch` bench and as the Extism guest
//! in `benches/extism-compare/guest`.

use trellis_plugin_sdk::{Error, Plugin, Value, export_plugin};

/// The one hook this plugin implements.
const HOOK: &str = "bench_echo";

struct BenchEcho;

impl Plugin for BenchEcho {
    fn call_hook(hook: &str, args: Value) -> Result<Option<Value>, Error> {
        if hook != HOOK {
            return Err(Error::not_found(format!("hook `{hook}`")));
        }
        let x = args.get("x").and_then(Value::as_i64).unwrap_or(0);
        Ok(Some(Value::from(x + 1)))
    }
}

export_plugin!(BenchEcho);
