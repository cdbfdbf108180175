#!/usr/bin/env bash
# The main job on embedded defaults: a fresh project, a plugin scaffolded, validated,
# installed, enabled, configured and run, and the event log that recorded it all.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
bash scripts/setup.sh
cargo build --quiet -p trellis-cli
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
trellis events tail
