//! Distinct copies of one guest, shared by `benches/wasm_dispatch.rs` and
//! `examples/fanout_counts.rs`.

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
