#!/usr/bin/env bash
# Fetches, once, the hash-pinned wheels the Python plugin tests install offline: the Opsbox
# example's dependencies (pydantic, pluggy) and flit_core, which builds the SDK and example
# wheels. pip checks every file against its pinned hash; nothing else is downloaded. Run by
# scripts/test.sh; the tests name this script when the wheels are missing.
#
#   bash scripts/python-wheels.sh        # prints the directory
set -euo pipefail
cd "$(dirname "$0")/.."
dest="${TRELLIS_WHEELS_DIR:-$HOME/.cache/trellis/wheels}"
mkdir -p "$dest"
python3 -m pip download --quiet --disable-pip-version-check --no-input \
    --require-hashes --only-binary=:all: --dest "$dest" \
    -r examples/plugins/opsbox-py/opsbox_examples/requirements.txt \
    -r scripts/python-build-requirements.txt >&2
echo "$dest"
