#!/usr/bin/env bash
# Start-up cost of `trellis <command>` with one enabled wasm plugin and with 100 (identical
# components under different names), in one run: the median of 10 runs each, the difference,
# and how many times one run opens manifests and components (strace). For people, not CI
# (scripts/test.sh does not run it): it builds a release binary first.
#
#   bash scripts/bench-start.sh [RUNS]
#
# Target: 100 enabled plugins cost less than 20 ms more than one. Exits 1 when it is missed.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
source scripts/env.sh
runs="${1:-10}"

echo "== building (release) and the example plugins" >&2
cargo build --quiet --release -p trellis-cli
bash scripts/build-plugins.sh >/dev/null
bin="$CARGO_TARGET_DIR/release/trellis"
if ! command -v strace >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "bench-start: installing strace (Debian) to count file opens" >&2
    apt-get install -y -qq strace >/dev/null 2>&1 || true
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/trellis-bench-start.XXXXXX")
[ -n "${BENCH_KEEP:-}" ] && echo "bench-start: keeping $work" >&2 || trap 'rm -rf "$work"' EXIT
export TRELLIS_CONFIG_DIR="$work/user"
export TRELLIS_CACHE_DIR="$work/cache"
mkdir -p "$TRELLIS_CONFIG_DIR"
unset TRELLIS_POLICY

# N plugins: copies of examples/plugins/hostile named p001..pNNN, each providing `ok`.
make_project() {
    local dir=$1 count=$2
    mkdir -p "$dir"
    for i in $(seq -f '%03g' 1 "$count"); do
        local src="$work/src/p$i"
        mkdir -p "$src"
        cp examples/plugins/hostile/plugin.wasm "$src/"
        printf 'apiVersion: trellis.dev/v1\nkind: Plugin\nmetadata:\n  name: p%s\n  version: 0.1.0\n  description: start-up benchmark plugin\n  license: Apache-2.0\nprovides:\n  commands:\n    - name: ok\n      description: answers ok\nruntime:\n  type: wasm\n  entry: plugin.wasm\n' "$i" > "$src/plugin.yaml"
        (cd "$dir" && "$bin" plugin install "$src" --yes >/dev/null && "$bin" plugin enable "p$i" --allow-conflicts >/dev/null)
    done
    # Warm: compiled components cached, hashes remembered (files settle for 2 s first).
    sleep 3
    (cd "$dir" && "$bin" p001:ok >/dev/null && "$bin" p001:ok >/dev/null)
}

# Median wall time of `trellis p001:ok` in milliseconds.
median_ms() {
    local dir=$1
    python3 - "$bin" "$dir" "$runs" <<'PY'
import statistics, subprocess, sys, time
bin, cwd, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
times = []
for _ in range(runs):
    t = time.perf_counter()
    subprocess.run([bin, "p001:ok"], cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    times.append((time.perf_counter() - t) * 1000)
print(f"{statistics.median(times):.1f}")
PY
}

opens() {
    local dir=$1 pattern=$2
    if command -v strace >/dev/null 2>&1; then
        (cd "$dir" && strace -f -qq -e trace=open,openat -o "$work/trace" "$bin" p001:ok >/dev/null)
        grep -c "$pattern" "$work/trace" || true
    else
        echo "n/a"
    fi
}

echo "== projects with 1 and 100 enabled plugins" >&2
make_project "$work/one" 1
make_project "$work/hundred" 100

one=$(median_ms "$work/one")
hundred=$(median_ms "$work/hundred")
extra=$(python3 -c "print(f'{$hundred - $one:.1f}')")
met=$(python3 -c "print('yes' if $hundred - $one < 20 else 'NO')")
printf '\n%-44s %10s\n' "case" "figure"
printf '%-44s %8s ms\n' "trellis <command>, 1 plugin enabled (median)" "$one"
printf '%-44s %8s ms\n' "trellis <command>, 100 enabled (median)" "$hundred"
printf '%-44s %8s ms  (target < 20 ms: %s)\n' "difference" "$extra" "$met"
printf '%-44s %8s\n' "plugin.yaml opens per run, 100 enabled" "$(opens "$work/hundred" 'plugin.yaml"')"
printf '%-44s %8s\n' "plugin.wasm opens per run, 100 enabled" "$(opens "$work/hundred" 'plugin.wasm"')"
printf '%-44s %8s\n' "plugin.yaml opens per run, 1 enabled" "$(opens "$work/one" 'plugin.yaml"')"
[ "$met" = yes ]
