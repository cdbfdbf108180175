//! Distinct copies of the `bench-echo` guest and their plugin specs, shared by
//! `benches/wasm_dispatch.rs` and `examples/fanout_counts.rs`.

use std::path::Path;

use serde_json::json;
use trellis_manifest::Manifest;
use trellis_wasm::{EffectiveLimits, PluginSpec};

/// The hook `bench-echo` implements.
pub const HOOK: &str = "bench_echo";

/// The name of copy `copy`.
pub fn plugin_name(copy: usize) -> String {
    format!("bench-echo-{copy}")
}

/// The spec of copy `copy`, installed in `dir`.
pub fn spec(copy: usize, dir: &Path) -> PluginSpec {
    let name = plugin_name(copy);
    let manifest: Manifest = serde_json::from_value(json!({
        "apiVersion": "trellis.dev/v1",
        "kind": "Plugin",
        "metadata": { "name": name, "version": "0.1.0" },
        "provides": { "hooks": [{ "hook": HOOK }] },
        "runtime": { "type": "wasm", "entry": "plugin.wasm" },
    }))
    .expect("a fixed manifest");
    PluginSpec {
        name,
        dir: dir.to_owned(),
        manifest,
        config: json!({}),
        grants: Vec::new(),
        limits: EffectiveLimits::default(),
        commands: None,
    }
}

/// `wasm` with a custom section appended that holds `copy`: other bytes (so another cache key
/// and another compiled component), the same behaviour.
pub fn distinct_copy(wasm: &[u8], copy: usize) -> Vec<u8> {
    const NAME: &[u8] = b"trellis-bench-copy";
    let payload = u32::try_from(copy).expect("copy number").to_le_bytes();
    let size = 1 + NAME.len() + payload.len();
    let mut out = wasm.to_vec();
    // Section id 0 (custom), its size, then the name's length and the name: all under 128,
    // so each LEB128 number is one byte.
    out.extend([0, u8::try_from(size).expect("small section")]);
    out.push(u8::try_from(NAME.len()).expect("short name"));
    out.extend(NAME);
    out.extend(payload);
    out
}
