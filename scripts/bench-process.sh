#!/usr/bin/env bash
# Process plugin benchmarks: Trellis (crates/trellis-process/benches/process_dispatch.rs, the
# real sandbox) next to pluggy in one process (scripts/bench_process_peers.py) and to the
# floor any process plugin pays, a bare Python JSON-RPC echo child on a pipe driven from Rust,
# in one run. For people, not CI (scripts/test.sh does not run it): about three minutes.
#
#   bash scripts/bench-process.sh
#
# Prints a table: case, Trellis figure, pluggy figure, ratio, floor figure, ratio (ratio =
# trellis / peer: how many times the peer's cost Trellis pays), target, met; then the cold
# start and the warm call with each sandbox layer turned off (TRELLIS_SANDBOX_DISABLE), and
# with host and plugin on one CPU, to show where the time goes. Exits 1 when a target is
# missed.
#
# The plugins: examples/plugins/bench-echo-py (the Python SDK, standard library only) and
# benches/bench-echo-process (Rust, the raw protocol of docs/process.md, built here).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
source scripts/env.sh
python="${PYTHON:-python3}"

if ! "$python" -c 'import pluggy' 2>/dev/null; then
    echo "installing pluggy..." >&2
    "$python" -m pip install --quiet pluggy
fi

echo "== building the Rust plugin (benches/bench-echo-process)" >&2
cargo build --quiet --release --manifest-path benches/bench-echo-process/Cargo.toml
rust_plugin="$CARGO_TARGET_DIR/release/bench-echo-process"

echo "== building the bench: cargo bench --no-run -p trellis-process --bench process_dispatch" >&2
bench=$(cargo bench --quiet --no-run -p trellis-process --bench process_dispatch \
    --message-format=json | "$python" -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "process_dispatch" and m.get("executable"):
        print(m["executable"])')
[[ -x "$bench" ]] || { echo "bench-process: the bench binary was not built" >&2; exit 1; }

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
if awk -v l="${load_before%% *}" -v n="$(nproc)" 'BEGIN { exit !(l > n / 2) }'; then
    echo "bench-process: load average $load_before on $(nproc) CPUs: other work is running, the figures will be off" >&2
fi
echo "== trellis: $bench" >&2
trellis_out="$("$bench" --rust-plugin "$rust_plugin")"

echo "== trellis, sandbox layers turned off one at a time (TRELLIS_SANDBOX_DISABLE)" >&2
breakdown="$("$bench" --rust-plugin "$rust_plugin" --cases breakdown)"
pinned=""
if command -v taskset >/dev/null; then
    echo "== trellis, warm calls with everything on CPU 0 (taskset -c 0)" >&2
    pinned="$(taskset -c 0 "$bench" --rust-plugin "$rust_plugin" --cases warm)"
fi

echo "== pluggy: scripts/bench_process_peers.py" >&2
peers_out="$("$python" scripts/bench_process_peers.py)"
pluggy_version="$("$python" -c 'import pluggy; print(pluggy.__version__)')"
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
python_version="$("$python" -c 'import platform; print(platform.python_version())')"

"$python" - "$trellis_out" "$peers_out" "$breakdown" "$pinned" "$pluggy_version" \
    "$python_version" "$load_before" "$load_after" "$(nproc)" <<'PY'
import sys

(trellis_out, peers_out, breakdown_out, pinned_out, pluggy_version, python_version,
 load_before, load_after, cpus) = sys.argv[1:]

def parse(text):
    out = {}
    for line in text.strip().splitlines():
        key, _, value = line.partition(" ")
        try:
            out[key] = float(value)
        except ValueError:
            out[key] = value
    return out

t, p = parse(trellis_out), parse(peers_out)
breakdown_starts = 10
layers = t.pop("sandbox", "?")

def fmt_time(ns):
    if ns is None:
        return "-"
    if ns >= 1e6:
        return f"{ns / 1e6:.1f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.1f} us"
    return f"{ns:.0f} ns"

def fmt_bytes(b):
    if b is None:
        return "-"
    if b >= 1e6:
        return f"{b / 1e6:.1f} MB"
    return f"{b / 1e3:.1f} kB"

US, MS, MB = 1e3, 1e6, 1e6
# (case, trellis, pluggy, floor, format, target text, limit)
rows = [
    ("call round trip, Python plugin (SDK), warm", t["call_py"], p["pluggy_call"], t["call_floor"],
     fmt_time, "< 50 us", 50 * US),
    ("call round trip, Rust plugin (raw protocol), warm", t["call_rs"], p["pluggy_call"],
     t["call_floor"], fmt_time, "-", None),
]
for n in (1, 10, 100):
    plugins = "plugin" if n == 1 else "plugins"
    rows.append((f"hook -> {n} Python {plugins}, per call", t[f"fanout_py_{n}"],
                 p[f"pluggy_fanout_{n}"], t[f"fanout_floor_{n}"], fmt_time, "-", None))
    if n > 1:
        rows.append((f"hook -> {n} Python plugins, per plugin", t[f"fanout_py_{n}"] / n,
                     p[f"pluggy_fanout_{n}"] / n, t[f"fanout_floor_{n}"] / n, fmt_time, "-", None))
rows += [
    ("call with a nested host call (state.get), Python", t["nested_py"], p["pluggy_nested"],
     t["nested_floor"], fmt_time, "-", None),
    ("cold start + first call, Python plugin (stdlib only)", t["cold_py"], p["pluggy_cold"],
     t["cold_floor"], fmt_time, "< 60 ms", 60 * MS),
    ("cold start + first call, Rust plugin", t["cold_rs"], None, None, fmt_time, "-", None),
    ("cold start + first call, Python plugin, no sandbox", t["cold_py_unsandboxed"],
     p["pluggy_cold"], t["cold_floor"], fmt_time, "-", None),
    ("1 MiB round trip, Python plugin", t["payload_py"], p["pluggy_payload"], t["payload_floor"],
     fmt_time, "< 10 ms", 10 * MS),
    ("1 MiB round trip, Rust plugin", t["payload_rs"], p["pluggy_payload"], t["payload_floor"],
     fmt_time, "< 10 ms", 10 * MS),
    ("idle memory per Python plugin: RSS of its tree", t["mem_tree_rss"],
     p["pluggy_mem_per_plugin"], t["mem_floor_rss"], fmt_bytes, "< 25 MB", 25 * MB),
    ("  the same, PSS (shared pages divided)", t["mem_tree_pss"], None, t["mem_floor_pss"],
     fmt_bytes, "-", None),
    ("  RSS of the Python process alone", t["mem_plugin_rss"], None, t["mem_floor_rss"],
     fmt_bytes, "-", None),
    ("  RSS of the launcher and the sandbox's init", t["mem_tree_rss"] - t["mem_plugin_rss"],
     None, None, fmt_bytes, "-", None),
    ("  its memory cgroup's usage", t.get("mem_cgroup"), None, None, fmt_bytes, "-", None),
]

print(f"\nProcess plugins: trellis (sandbox: {layers}) vs pluggy {pluggy_version} in one process"
      f" and a bare Python {python_version} echo on a pipe (the floor)")
print(f"medians; ratio = trellis / peer; load average {load_before} before, {load_after} after"
      f" ({cpus} CPUs: other work running at the same time moves every figure)")
line = "{:<54}  {:>9}  {:>9}  {:>8}  {:>9}  {:>6}  {:>7}  {:>3}"
print(line.format("case", "trellis", "pluggy", "ratio", "floor", "ratio", "target", "met"))
all_met = True
for case, tv, pv, fv, fmt, target, limit in rows:
    ratio = lambda peer: f"{tv / peer:.1f}x" if tv is not None and peer else "-"
    met = None if limit is None or tv is None else tv < limit
    if met is not None:
        all_met &= met
    print(line.format(case, fmt(tv), fmt(pv), ratio(pv), fmt(fv), ratio(fv), target,
                      "-" if met is None else ("yes" if met else "NO")))
print(f"""
pluggy: plugins are objects in the caller's process, so a call passes references and a
plugin costs what its objects do (mem: one more registered plugin class; an interpreter with
pluggy and one plugin is {fmt_bytes(p['pluggy_mem_process'])}); cold start is a new interpreter
importing pluggy and making the first call. Floor: a Python child reading one JSON-RPC line
on stdin and answering on stdout, no sandbox, no SDK; the nested call is a request of its own
answered before it answers. Warm figures: calls timed one by one, the subjects of a group
taking turns in rounds. Cold start: spawn, sandbox, handshake, init and the first call, each
after a 100 ms pause (as a start on demand). A Python plugin's tree is the launcher, the
sandbox's init and the interpreter; idle memory is the mean of the {t['mem_trees']:.0f} plugins of
the fan-out, each called and then idle.""")

# What each layer costs: the same cases on runtimes with layers turned off, taking turns.
b = {}
for key, value in parse(breakdown_out).items():
    case, _, setting = key.partition("@")
    b.setdefault(setting, {})[case] = value
print("\nWhere the time goes: cold start and warm call with sandbox layers turned off "
      "(TRELLIS_SANDBOX_DISABLE),\none runtime per setting, taking turns "
      f"(medians of {breakdown_starts} cold starts each)")
bl = "{:<46}  {:>13}  {:>13}  {:>13}"
print(bl.format("layers turned off", "cold, Python", "cold, Rust", "warm, Python"))
labels = {"none": "none (every layer)", "cgroups": "cgroup-pids, cgroup-memory",
          "all": "all (the launcher and init remain)",
          "unsandboxed": "no sandbox, no launcher (Launcher::Unsandboxed)"}
for setting, fig in b.items():
    print(bl.format(labels.get(setting, setting), fmt_time(fig.get("cold_py")),
                    fmt_time(fig.get("cold_rs")), fmt_time(fig.get("call_py"))))
print(bl.format("floor: bare Python echo, no SDK (main run)", fmt_time(t["cold_floor"]), "-",
                fmt_time(t["call_floor"])))
if pinned_out:
    q = parse(pinned_out)
    print("\nWarm round trips with the host and its plugins on one CPU (taskset -c 0), every layer:")
    print(f"  Python {fmt_time(q['call_py'])}, Rust {fmt_time(q['call_rs'])}, "
          f"floor {fmt_time(q['call_floor'])}; nested: Python {fmt_time(q['nested_py'])}, "
          f"floor {fmt_time(q['nested_floor'])}")

print("\ntargets met" if all_met else "\ntarget NOT met")
sys.exit(0 if all_met else 1)
PY
