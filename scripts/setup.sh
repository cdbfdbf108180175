#!/usr/bin/env bash
# Installs what the build and tests need beyond the Rust toolchain. Idempotent and quiet when
# everything is already there, so every script can call it.
set -euo pipefail

# pluggy: the benchmark compares native hook dispatch with it.
if ! python3 -c 'import pluggy' 2>/dev/null; then
  echo "setup: installing pluggy (Python) for the hook benchmark" >&2
  python3 -m pip install --quiet --disable-pip-version-check 'pluggy>=1.5' >&2
fi

# moto: an S3-compatible server the registry server's object-storage test runs against
# (scripts/s3.sh).
if ! python3 -c 'import moto.server' 2>/dev/null; then
  echo "setup: installing moto (Python) for the object-storage test" >&2
  python3 -m pip install --quiet --disable-pip-version-check 'moto[server]>=5' >&2
fi

# The wasm32-wasip2 target: the example and test plugins are WebAssembly components.
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
  echo "setup: adding the wasm32-wasip2 Rust target" >&2
  rustup target add wasm32-wasip2 >&2
fi

# PostgreSQL: the registry server's tests run against a real one as well as SQLite
# (scripts/postgres.sh starts a throwaway cluster for them).
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing PostgreSQL from Debian's packages for the registry server tests" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
  else
    echo "setup: PostgreSQL is missing; install Debian's postgresql package (the server tests need it)" >&2
  fi
fi

# Chromium: the registry's web UI is tested in a real headless browser.
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing Chromium from Debian's packages for the web UI test" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >&2
  else
    echo "setup: Chromium is missing; install Debian's chromium package (the web UI test needs it)" >&2
  fi
fi
