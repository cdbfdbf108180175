#!/usr/bin/env bash
# WebAssembly plugin benchmarks: Trellis (crates/trellis-wasm/benches/wasm_dispatch.rs) next
# to Extism 1.41 doing the same work (benches/extism-compare), in one run. For people, not CI
# (scripts/test.sh does not run it): it takes several minutes, more on a first build.
#
#   bash scripts/bench-wasm.sh
#
# Prints a table: case, Trellis figure, Extism figure, ratio (Extism / Trellis: above 1x means
# Trellis is faster), target, met. Exits 1 when a target is missed.
#
# Extism pulls wasmtime 49 and Trellis wasmtime 48, so the Extism side is a separate cargo
# workspace with its own target directory. wasmtime 49 needs a newer rustc than this
# project's toolchain; the Extism host is built with `cargo +nightly` when the default
# toolchain is too old (EXTISM_TOOLCHAIN overrides; the guests are built with the default).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
source scripts/env.sh
extism_target="${EXTISM_TARGET_DIR:-$HOME/.cache/trellis/target-extism}"

echo "== building the plugins (examples/plugins, incl. bench-echo)" >&2
bash scripts/build-plugins.sh >&2

echo "== building the Extism guest and host" >&2
rustup target list --installed | grep -qx wasm32-unknown-unknown \
    || rustup target add wasm32-unknown-unknown >&2
CARGO_TARGET_DIR="$extism_target" cargo build --quiet --release \
    --target wasm32-unknown-unknown --manifest-path benches/extism-compare/guest/Cargo.toml
extism_guest="$extism_target/wasm32-unknown-unknown/release/extism_bench_guest.wasm"

toolchain="${EXTISM_TOOLCHAIN:-}"
if [[ -z "$toolchain" ]]; then
    rustc_minor=$(rustc --version | sed -E 's/^rustc 1\.([0-9]+).*/\1/')
    if (( rustc_minor < 96 )); then toolchain=nightly; fi  # wasmtime 49 needs rustc 1.96
fi
if [[ -n "$toolchain" ]] && ! rustup toolchain list | grep -q "^$toolchain"; then
    echo "bench-wasm: installing the $toolchain toolchain for the Extism host" >&2
    rustup toolchain install "$toolchain" --profile minimal >&2
fi
CARGO_TARGET_DIR="$extism_target" cargo ${toolchain:++$toolchain} build --quiet --release \
    --manifest-path benches/extism-compare/Cargo.toml

echo "== trellis: cargo bench -p trellis-wasm --bench wasm_dispatch" >&2
cargo bench --quiet -p trellis-wasm --bench wasm_dispatch -- \
    --warm-up-time 1 --measurement-time 3 >&2

echo "== extism: benches/extism-compare" >&2
extism_out="$("$extism_target/release/extism-compare" "$extism_guest")"
extism_version=$(sed -nE '/^name = "extism"$/{n;s/^version = "(.*)"/\1/p}' \
    benches/extism-compare/Cargo.lock)

python3 - "$CARGO_TARGET_DIR/criterion" "$extism_out" "$extism_version" <<'PY'
import json, os, sys

crit_dir, extism_out, extism_version = sys.argv[1], sys.argv[2], sys.argv[3]
extism = {k: float(v) for k, v in (l.split() for l in extism_out.strip().splitlines())}

def trellis(group, bench):
    """Criterion's median, ns per iteration."""
    path = os.path.join(crit_dir, group, *bench.split("/"), "new", "estimates.json")
    with open(path) as f:
        return json.load(f)["median"]["point_estimate"]

def fmt(ns):
    if ns is None:
        return "-"
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} us"
    return f"{ns:.0f} ns"

# (case, trellis ns, extism ns, target description, met or None)
rows = []
warm = trellis("wasm_start", "warm/100")
rows.append(("start, 100 plugins, cache warm", warm, None, "< 50 ms", warm < 50e6))
rows.append(("start, 100 plugins, cold, shared entry (1 compile)",
             trellis("wasm_start", "cold_shared/100"), None, "-", None))
rows.append(("start, 100 plugins, cold, every plugin compiles",
             trellis("wasm_start", "cold_compile/100"), extism["start_compile/100"], "-", None))
first = trellis("wasm_start", "warm_first_call/100")
rows.append(("start + first call to each, warm", first, extism["start_warm/100"], "-", None))
rows.append(("  extism from an in-memory CompiledPlugin", first,
             extism["start_from_compiled/100"], "-", None))
for n in (1, 10, 100):
    t = trellis("wasm_dispatch", f"fanout/{n}")
    rows.append((f"hook call -> {n} wasm impls, per call", t, extism[f"fanout/{n}"], "-", None))
    rows.append((f"hook call -> {n} wasm impls, per impl", t / n, extism[f"fanout/{n}"] / n,
                 "< 2 us", t / n < 2000))
shared = trellis("wasm_dispatch", "fanout_shared/100")
rows.append(("hook call -> 100 instances of one component, per impl", shared / 100, None,
             "< 2 us", shared / 100 < 2000))
direct = trellis("wasm_dispatch", "direct/1")
rows.append(("direct call_hook, 1 plugin (no manager)", direct, None, "-", None))

print(f"\nWebAssembly plugins: trellis (wasmtime 48) vs extism {extism_version} "
      "(medians; ratio = extism / trellis)")
header = ("case", "trellis", "extism", "ratio", "target", "met")
line = "{:<52}  {:>10}  {:>10}  {:>7}  {:>8}  {:>4}"
print(line.format(*header))
all_met = True
for case, t, e, target, met in rows:
    ratio = f"{e / t:.1f}x" if e is not None else "-"
    if met is not None:
        all_met &= met
    print(line.format(case, fmt(t), fmt(e), ratio, target,
                      "-" if met is None else ("yes" if met else "NO")))
print("The 100 plugins are different components (copies told apart by a custom section), each\n"
      "with its own compiled code, except in 'shared entry' and 'instances of one component',\n"
      "where they are identical copies that the runtime loads once. 'shared entry' starts with an\n"
      "empty cache: 1 compile, 99 shared. 'every plugin compiles' has no cache. Trellis\n"
      "instantiates on first call, Extism at creation: compare 'start + first call' rows.")
print("targets met" if all_met else "target NOT met")
sys.exit(0 if all_met else 1)
PY
