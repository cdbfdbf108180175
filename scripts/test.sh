#!/usr/bin/env bash
# Runs every test: unit, integration, doc examples, the docs' own examples and the embedding
# example. This is what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
bash scripts/setup.sh

echo "== embedding example"
cargo run --quiet -p embed-host

echo "== tests"
cargo test --workspace --no-fail-fast 2>&1
