#!/usr/bin/env bash
# Fuzzes the parsers that read untrusted input (docs/fuzzing.md): the libFuzzer targets in
# fuzz/, whose bodies are crates/trellis-fuzz. For people and long runs, not CI (the test
# suite only replays fuzz/corpus/, see crates/trellis-fuzz/tests/replay.rs).
#
#   bash scripts/fuzz.sh                      every target for 60 s each
#   bash scripts/fuzz.sh TARGET --time 3600   one target for an hour
#   bash scripts/fuzz.sh --time 3600          every target for an hour each, one after another
#   bash scripts/fuzz.sh --list               the targets
#   bash scripts/fuzz.sh --seed               rewrite the seeds and the libFuzzer wrappers
#
# The working corpus grows in ~/.cache/trellis/fuzz/corpus/<target> (outside the repository),
# started from fuzz/corpus/<target>. A crash is saved in fuzz/artifacts/<target>/ and ends the
# run with a non-zero exit: fix it, then keep the input as a regression,
#   cp fuzz/artifacts/TARGET/crash-... fuzz/corpus/TARGET/regression-WHAT
# so that `cargo test -p trellis-fuzz` replays it from then on. Each run appends a line to
# fuzz/runs.tsv (date, target, seconds, runs, crashes): the record of hours fuzzed.
#
# Runs without a sanitizer (`-s none`): AddressSanitizer needs a nightly compiler, and the
# code fuzzed is safe Rust, whose bounds and overflow checks (debug assertions are on) catch
# what a sanitizer would.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
source scripts/env.sh

seconds=60
targets=()
mode=run
while [[ $# -gt 0 ]]; do
    case "$1" in
        --time) seconds="$2"; shift 2 ;;
        --list) mode=list; shift ;;
        --seed) mode=seed; shift ;;
        -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
        -*) echo "fuzz.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
        *) targets+=("$1"); shift ;;
    esac
done

if [[ "$mode" == seed ]]; then
    cargo run --quiet -p trellis-fuzz --bin trellis-fuzz-seed -- fuzz
    exit 0
fi

all=$(sed -n 's/^name = "\([a-z_]*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^trellis-fuzz-targets$' || true)
if [[ "$mode" == list ]]; then
    echo "$all"
    exit 0
fi
if [[ ${#targets[@]} -eq 0 ]]; then
    mapfile -t targets <<<"$all"
fi
for t in "${targets[@]}"; do
    grep -qx "$t" <<<"$all" || { echo "fuzz.sh: no target $t (bash scripts/fuzz.sh --list)" >&2; exit 2; }
done

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz (crates.io)" >&2
    cargo install --locked cargo-fuzz --version 0.13.2
fi

echo "== building the targets (cargo fuzz build -s none)" >&2
if [[ ${#targets[@]} -eq 1 ]]; then
    cargo fuzz build -s none --fuzz-dir fuzz "${targets[0]}"
else
    cargo fuzz build -s none --fuzz-dir fuzz
fi

work="$HOME/.cache/trellis/fuzz/corpus"
status=0
for t in "${targets[@]}"; do
    mkdir -p "$work/$t" "fuzz/artifacts/$t"
    cp -n fuzz/corpus/"$t"/* "$work/$t"/ 2>/dev/null || true
    echo "== $t for ${seconds}s (corpus $work/$t)" >&2
    log=$(mktemp)
    started=$(date +%s)
    set +e
    cargo fuzz run -s none --fuzz-dir fuzz "$t" "$work/$t" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="fuzz/artifacts/$t/" >"$log" 2>&1
    rc=$?
    set -e
    elapsed=$(( $(date +%s) - started ))
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    crashes=0
    if [[ $rc -ne 0 ]]; then
        crashes=1
        status=1
        grep -E 'panicked|ERROR|SUMMARY|Test unit written' "$log" | head -20 >&2 || tail -30 "$log" >&2
    fi
    printf '%s\t%s\t%s\t%s\t%s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$t" "$elapsed" "${runs:-0}" "$crashes" >>fuzz/runs.tsv
    echo "   $t: ${elapsed}s, ${runs:-0} runs, $([[ $crashes -eq 0 ]] && echo 'no crash' || echo 'CRASH (see above)')" >&2
    rm -f "$log"
done
exit "$status"
