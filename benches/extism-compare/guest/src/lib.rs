//! Extism guest for the Extism comparison in `scripts/bench-wasm.sh`: `call_hook` parses its
//! input as JSON `{"x": N}` and returns `N + 1` as JSON text, the same work as the Trellis
//! guest `examples/plugins/bench-echo`.

use extism_pdk::*;

#[plugin_fn]
pub fn call_hook(input: String) -> FnResult<String> {
    let args: json::Value = json::from_str(&input)?;
    let x = args.get("x").and_then(json::Value::as_i64).unwrap_or(0);
    Ok(json::Value::from(x + 1).to_string())
}
