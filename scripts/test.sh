#!/usr/bin/env bash
# Runs every test: unit, integration, doc examples, the docs' own examples and the embedding
# example. This is what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
bash scripts/setup.sh

echo "== WebAssembly plugins (examples/plugins)"
bash scripts/build-plugins.sh

echo "== pinned Python wheels for the plugin tests (scripts/python-wheels.sh)"
bash scripts/python-wheels.sh >/dev/null

echo "== embedding example"
cargo run --quiet -p embed-host

echo "== tests"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --no-fail-fast 2>&1 | tee "$log" || status=$?
echo "== Python SDK (sdk/python)"
python3 sdk/python/tests/run.py 2>&1 | tee -a "$log" || status=$?
echo "== guest SDK (sdk/rust)"
cargo test --manifest-path sdk/rust/Cargo.toml 2>&1 | tee -a "$log" || status=$?

# One closing line for the whole run: cargo prints one summary per test binary, and the last
# of those is often a crate without doc tests ("0 passed").
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i-1); if ($i ~ /^failed;?$/) f += $(i-1) } }
     END { printf "\n%d passed, %d failed\n", p, f }' "$log"
exit "$status"
