#!/usr/bin/env bash
# The main job on embedded defaults: a fresh project, a plugin scaffolded, validated,
# installed, enabled, configured and run, and the event log that recorded it all.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
bash scripts/setup.sh
cargo build --quiet -p trellis-cli
bash scripts/build-plugins.sh >/dev/null
repo=$(pwd)
trellis() { echo "\$ trellis $*" >&2; "$TRELLIS_BIN" "$@"; }

work=$(mktemp -d "${TMPDIR:-/tmp}/trellis-demo.XXXXXX")
echo "Demo project: $work"
cd "$work"
trellis plugin init demo
trellis plugin validate demo
trellis plugin install ./demo
trellis plugin enable demo
trellis plugin list
trellis plugin config demo set greeting Howdy
trellis hello team
trellis plugin info demo
trellis plugin list --json

# A WebAssembly plugin (use case UC-1): a planted secret becomes a Backlog.md task and an event.
mkdir -p src && printf 'import os\npassword = "hunter22secret"\n' > src/app.py
trellis plugin install "$repo/examples/plugins/security-scanner"
trellis plugin enable security-scanner
trellis security-scan
ls backlog/tasks
trellis plugin stats
trellis events tail
