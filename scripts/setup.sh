#!/usr/bin/env bash
# Installs what the build and tests need beyond the Rust toolchain. Idempotent and quiet when
# everything is already there, so every script can call it.
set -euo pipefail

# pluggy: the benchmark compares native hook dispatch with it.
if ! python3 -c 'import pluggy' 2>/dev/null; then
  echo "setup: installing pluggy (Python) for the hook benchmark" >&2
  python3 -m pip install --quiet --disable-pip-version-check 'pluggy>=1.5' >&2
fi

# The wasm32-wasip2 target: the example and test plugins are WebAssembly components.
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
  echo "setup: adding the wasm32-wasip2 Rust target" >&2
  rustup target add wasm32-wasip2 >&2
fi
