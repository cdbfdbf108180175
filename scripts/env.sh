# Sourced by the scripts: one cargo target directory outside the clone, shared by every clone
# and CI run on this machine, so that repeat builds are incremental.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/trellis/target}"
export CARGO_TERM_PROGRESS_WHEN=never
TRELLIS_BIN="$CARGO_TARGET_DIR/debug/trellis"
