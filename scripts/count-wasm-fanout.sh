#!/usr/bin/env bash
# What one hook call fanned out to many different wasm plugins costs, counted by cachegrind:
# instructions and cache misses per call per plugin. Unlike wall-clock time, which moves by
# 15-25% between runs on a shared machine, the counts are the same on every run, so two
# builds of a guest (or of the host) can be compared to the percent. For people, not CI.
#
#   bash scripts/count-wasm-fanout.sh [guest.wasm ...]
#
# Default guest: examples/plugins/bench-echo/plugin.wasm (built here). Any guest implementing
# hook `bench_echo` works. Needs valgrind (Debian: apt-get install valgrind).
#
# 25 copies of the guest, not the 100 of scripts/bench-wasm.sh: under valgrind each instance's
# 4 GiB memory reservation exhausts the address space after about 29. The simulated L2 is
# 256 KiB, a quarter of this machine's 1 MiB per core, to keep the pressure of 100 plugins.
# Valgrind's CPU has fewer features than the real one, so the engine compiles for it: the
# first count of a guest compiles its copies under valgrind (minutes); the compiled components
# are kept in $TMPDIR/trellis-fanout-counts for later counts.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
source scripts/env.sh
command -v valgrind >/dev/null || {
    echo "count-wasm-fanout: needs valgrind (apt-get install valgrind)" >&2
    exit 2
}

guests=("$@")
if (( ${#guests[@]} == 0 )); then
    bash scripts/build-plugins.sh >&2
    guests=(examples/plugins/bench-echo/plugin.wasm)
fi
cargo build --quiet --release -p trellis-wasm --example fanout_counts
driver="$CARGO_TARGET_DIR/release/examples/fanout_counts"
work="${TMPDIR:-/tmp}/trellis-fanout-counts"
copies=25
iterations=400

# Totals of one run: instructions, I1 misses, D1 misses, L2 code misses, L2 data misses.
count() {
    valgrind --tool=cachegrind --cache-sim=yes --smc-check=all-non-file \
        --I1=32768,8,64 --D1=32768,8,64 --LL=262144,16,64 --cachegrind-out-file=/dev/null \
        "$driver" "$1" "$2" "$work/cache" "$3" "$copies" 2>&1 | python3 -c '
import re, sys
text = sys.stdin.read()
def total(name):
    m = re.search(name + r":\s+([\d,]+)", text)
    if not m:
        sys.exit("count-wasm-fanout: no cachegrind summary:\n" + text[-2000:])
    return m.group(1).replace(",", "")
print(" ".join(total(n) for n in ("I   refs", "I1  misses", "D1  misses", "LLi misses", "LLd misses")))
'
}

printf '%-40s %12s %10s %10s %12s %12s\n' guest instructions "I1 miss" "D1 miss" "L2 code miss" "L2 data miss"
for guest in "${guests[@]}"; do
    dir="$work/$(sha256sum "$guest" | cut -c1-16)"
    # Write the copies and compile them; once they have settled, a second run records their
    # hashes, so that the two counted runs differ by the calls alone.
    count "$guest" "$dir" 0 >/dev/null
    sleep 3
    count "$guest" "$dir" 0 >/dev/null
    read -r -a base <<<"$(count "$guest" "$dir" 0)"
    read -r -a calls <<<"$(count "$guest" "$dir" "$iterations")"
    python3 - "$guest" "$((iterations * copies))" "${base[@]}" "${calls[@]}" <<'PY'
import sys
guest, n = sys.argv[1], int(sys.argv[2])
base, calls = list(map(int, sys.argv[3:8])), list(map(int, sys.argv[8:13]))
per = [(c - b) / n for b, c in zip(base, calls)]
print("%-40s %12.0f %10.1f %10.1f %12.1f %12.1f" % (guest[-40:], *per))
PY
done
echo "per call of one plugin; $copies different copies, $iterations calls each" >&2
