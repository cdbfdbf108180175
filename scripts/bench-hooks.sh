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

rows, all_met = [], True
for n in (1, 10, 100):
    path = os.path.join(crit_dir, "hook_dispatch", "plain", str(n), "new", "estimates.json")
    with open(path) as f:
        est = json.load(f)
    # Criterion reports nanoseconds per iteration; median is robust to scheduler noise.
    trellis = est["median"]["point_estimate"]
    p = pluggy[n]
    ratio = p / trellis
    met = ratio >= 20
    all_met &= met
    rows.append((n, trellis, p, trellis / n, p / n, ratio, "yes" if met else "NO"))

print(f"\nhook dispatch, trellis vs pluggy {pluggy_version} (ns; median of both)")
header = ("impls", "trellis ns/call", "pluggy ns/call", "trellis ns/impl", "pluggy ns/impl", "ratio", ">=20x")
print("{:>5}  {:>15}  {:>14}  {:>15}  {:>14}  {:>7}  {:>5}".format(*header))
for n, t, p, ti, pi, r, m in rows:
    print(f"{n:>5}  {t:>15.1f}  {p:>14.1f}  {ti:>15.2f}  {pi:>14.1f}  {r:>6.1f}x  {m:>5}")
floor_path = os.path.join(crit_dir, "floor_closures_100", "new", "estimates.json")
if os.path.exists(floor_path):
    with open(floor_path) as f:
        floor = json.load(f)["median"]["point_estimate"] / 100
    print(f"floor (100 bare closures, no hook system): {floor:.2f} ns/impl -> at most "
          f"{pluggy[100] / 100 / floor:.1f}x pluggy per impl for this workload on this machine")
print("target met" if all_met else "target NOT met")
sys.exit(0 if all_met else 1)
PY
