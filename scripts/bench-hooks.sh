#!/usr/bin/env bash
# Compare Trellis hook dispatch with pluggy: same hook shape, 1/10/100 implementations.
# Usage: scripts/bench-hooks.sh   (CARGO_TARGET_DIR is honoured; defaults to ~/.cache/trellis/target)
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/trellis/target}"
python="${PYTHON:-python3}"

if ! "$python" -c 'import pluggy' 2>/dev/null; then
    echo "installing pluggy..." >&2
    "$python" -m pip install --quiet pluggy
fi

cd "$root"
cargo bench -p trellis-core --bench hook_dispatch -- --warm-up-time 1 --measurement-time 3 >&2

pluggy_out="$("$python" "$root/scripts/bench_pluggy.py")"
pluggy_version="$("$python" -c 'import pluggy; print(pluggy.__version__)')"

"$python" - "$CARGO_TARGET_DIR/criterion" "$pluggy_out" "$pluggy_version" <<'PY'
import json, os, sys

crit_dir, pluggy_out, pluggy_version = sys.argv[1], sys.argv[2], sys.argv[3]
pluggy = {int(n): float(ns) for n, ns in (l.split() for l in pluggy_out.strip().splitlines())}

def median_ns(*parts):
    with open(os.path.join(crit_dir, *parts, "new", "estimates.json")) as f:
        # Criterion reports nanoseconds per iteration; median is robust to scheduler noise.
        return json.load(f)["median"]["point_estimate"]

# The target row is `native`: Rust plugins of a Rust host take Rust values, as pluggy's plugins
# take Python values. `json` is the path wasm and process plugins share, shown beside it.
all_met = True
print(f"\nhook dispatch, trellis vs pluggy {pluggy_version} (ns; medians of both sides)")
header = ("impls", "pluggy ns/impl", "native ns/impl", "ratio", ">=20x", "json ns/impl", "ratio")
print("{:>5}  {:>14}  {:>14}  {:>7}  {:>5}  {:>12}  {:>7}".format(*header))
for n in (1, 10, 100):
    p = pluggy[n] / n
    native = median_ns("hook_dispatch", "native", str(n)) / n
    js = median_ns("hook_dispatch", "json", str(n)) / n
    met = p / native >= 20
    all_met &= met
    print(f"{n:>5}  {p:>14.1f}  {native:>14.2f}  {p / native:>6.1f}x  {'yes' if met else 'NO':>5}"
          f"  {js:>12.2f}  {p / js:>6.1f}x")
for row in ("native", "json"):
    floor = median_ns(f"floor_{row}_100") / 100
    print(f"floor, {row}: 100 bare closures with no hook system cost {floor:.2f} ns each")
print("target met (native)" if all_met else "target NOT met (native)")
sys.exit(0 if all_met else 1)
PY
