#!/usr/bin/env bash
# Installs what the build and tests need beyond the Rust toolchain. Idempotent and quiet when
# everything is already there, so every script can call it.
set -euo pipefail

# pluggy: the benchmark compares native hook dispatch with it.
if ! python3 -c 'import pluggy' 2>/dev/null; then
  echo "setup: installing pluggy (Python) for the hook benchmark" >&2
  python3 -m pip install --quiet --disable-pip-version-check 'pluggy>=1.5' >&2
fi
