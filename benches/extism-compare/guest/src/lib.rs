//! Extism guest for the Extism comparison in `scripts/bench-wasm.sh`: `call_hook` decodes its
//! input, JSON `{"x": N}`, into a struct and returns `N + 1` as JSON text: the same work, with
//! the same serde_json code, as the Trellis guest `examples/plugins/bench-echo`.

use extism_pdk::*;
use serde::Deserialize;

#[derive(Deserialize)]
struct Args {
    #[serde(default)]
    x: i64,
}

#[plugin_fn]
pub fn call_hook(input: String) -> FnResult<String> {
    let args: Args = json::from_str(&input)?;
    Ok(json::to_string(&(args.x + 1))?)
}
