#!/usr/bin/env bash
# The registry server under load on loopback: 50 concurrent clients (10 publishing, 40
# searching and downloading) for TRELLIS_LOAD_SECONDS (default 60); prints requests per second
# and p50/p99 latency, and fails if any archive was lost or corrupted.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
cargo test --quiet -p trellis-registry-server --test load -- --nocapture 2>&1 | grep -E "registry load:|panicked|FAILED"
