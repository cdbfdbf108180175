#!/usr/bin/env bash
# Builds the example WebAssembly plugins (every crate in examples/plugins: security-scanner,
# findings-gate,
# hostile, bench-echo) as
# components for wasm32-wasip2, in release, and copies each to
# examples/plugins/<crate>/plugin.wasm, where its plugin.yaml's `runtime.entry` points.
# Idempotent: cargo rebuilds only what changed and an unchanged plugin.wasm is not rewritten.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

TARGET=wasm32-wasip2
rustup target list --installed | grep -qx "$TARGET" || rustup target add "$TARGET"

cargo build --quiet --release --target "$TARGET" --manifest-path examples/plugins/Cargo.toml

out="$CARGO_TARGET_DIR/$TARGET/release"
for dir in examples/plugins/*/; do
    dir=${dir%/}
    crate=$(basename "$dir")
    [[ -f "$dir/Cargo.toml" ]] || continue
    built="$out/${crate//-/_}.wasm"
    if [[ ! -f "$built" ]]; then
        echo "build-plugins: $built was not built" >&2
        exit 1
    fi
    dest="$dir/plugin.wasm"
    cmp -s "$built" "$dest" || cp "$built" "$dest"
    printf '%-40s %8s bytes\n' "$dest" "$(wc -c < "$dest" | tr -d ' ')"
done
