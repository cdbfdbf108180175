#!/usr/bin/env bash
# The main job on embedded defaults: a fresh project, a plugin scaffolded, validated,
# installed, enabled, configured and run; then a WebAssembly plugin packaged, signed, verified
# and installed with its trust level and grants; a directory registry created, published to,
# searched and installed from with a dependency; and the tamper-evident audit log verified.
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
# The demo's own signer list and keys, so that nothing of yours is read or written.
export TRELLIS_CONFIG_DIR="$work/.user-config"
mkdir -p "$TRELLIS_CONFIG_DIR"
unset TRELLIS_POLICY
trellis plugin init demo
trellis plugin validate demo
trellis plugin install ./demo
trellis plugin enable demo
trellis plugin list
trellis plugin config demo set greeting Howdy
trellis hello team
trellis plugin info demo
trellis plugin list --json

# A WebAssembly plugin (use case UC-1), signed: a reproducible package, an Ed25519 key, an SSH
# signature, the signer trusted through allowed_signers, then install with its grants.
trellis plugin build "$repo/examples/plugins/security-scanner" --out dist
trellis plugin keygen --principal security@trellis.example --out keys/security
trellis plugin sign dist/security-scanner-0.1.0.tar.gz --key keys/security
echo "security@trellis.example $(cat keys/security.pub)" >> "$TRELLIS_CONFIG_DIR/allowed_signers"
trellis plugin verify dist/security-scanner-0.1.0.tar.gz
trellis plugin install dist/security-scanner-0.1.0.tar.gz --yes
trellis plugin enable security-scanner
trellis plugin list
trellis plugin grants security-scanner
# A planted secret becomes a Backlog.md task and an event.
mkdir -p src && printf 'import os\npassword = "hunter22secret"\n' > src/app.py
trellis security-scan
ls backlog/tasks
trellis plugin stats
trellis events tail
trellis plugin audit

# A team registry kept as a directory (no server): TUF-signed, the publisher's key registered,
# two plugins published after the quality gates. The project adds it, searches it, and
# installs release-notes by name, which brings its dependency team-conventions along; both
# are verified through the registry's attestation of the publisher's key.
for p in team-conventions release-notes; do
  trellis plugin build "$repo/examples/plugins/$p" --out dist
  trellis plugin sign "dist/$p-1.0.0.tar.gz" --key keys/security
done
trellis registry init registry --name team --keys registry-keys
trellis registry add-key registry security@trellis.example keys/security.pub --keys registry-keys
trellis registry publish registry dist/team-conventions-1.0.0.tar.gz --keys registry-keys
trellis registry publish registry dist/release-notes-1.0.0.tar.gz --keys registry-keys
trellis plugin registry add team ./registry
trellis plugin search release
trellis plugin info release-notes
trellis plugin install release-notes --yes
trellis plugin enable team-conventions
trellis plugin enable release-notes
trellis release-notes
cat .trellis/trellis.lock
trellis audit log --plugin security-scanner
trellis audit verify
