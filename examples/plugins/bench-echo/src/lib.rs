//! `bench-echo`: the guest of the WebAssembly dispatch benchmarks
//! (`crates/trellis-wasm/benches/wasm_dispatch.rs`, `scripts/bench-wasm.sh`), not a plugin to
//! install. Hook `bench_echo` takes `{"x": N}` and returns `N + 1`: the same work as the
//! typed native implementations of `trellis-core`'s `hook_dispatch` bench and as the Extism
//! guest in `benches/extism-compare/guest`. Like them it decodes into its own type, the way a
//! plugin author writes a hook that is called often (`Plugin::call_hook_json`).

use serde::Deserialize;
use trellis_plugin_sdk::{Error, Plugin, export_plugin, from_json, to_json};

/// The one hook this plugin implements.
const HOOK: &str = "bench_echo";

#[derive(Deserialize)]
struct Args {
    #[serde(default)]
    x: i64,
}

struct BenchEcho;

impl Plugin for BenchEcho {
    fn call_hook_json(hook: &str, args: &str) -> Result<Option<String>, Error> {
        if hook != HOOK {
            return Err(Error::not_found(format!("hook `{hook}`")));
        }
        let args: Args = from_json(args, "the arguments of `bench_echo`")?;
        to_json(&(args.x + 1)).map(Some)
    }
}

export_plugin!(BenchEcho);
