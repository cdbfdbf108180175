#!/usr/bin/env bash
# A throwaway S3-compatible object store for tests (moto's server, from PyPI), on loopback only.
#   scripts/s3.sh start DIR BUCKET   starts it, creates BUCKET, prints its endpoint URL
#   scripts/s3.sh stop DIR           stops it (DIR can then be deleted)
# It keeps objects in memory and speaks the S3 REST API with signature checks, so a client
# built for AWS talks to it unchanged (AWS_ENDPOINT, AWS_ALLOW_HTTP=true).
set -euo pipefail
cmd=${1:?start or stop}
dir=${2:?a directory}
case "$cmd" in
  start)
    bucket=${3:?a bucket name}
    python3 -c 'import moto.server' 2>/dev/null || { echo "s3.sh: moto is not installed (scripts/setup.sh installs it)" >&2; exit 1; }
    mkdir -p "$dir"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
    python3 -m moto.server -H 127.0.0.1 -p "$port" >"$dir/server.log" 2>&1 &
    echo $! >"$dir/pid"
    # Waits for the server, then creates the bucket through the S3 API.
    python3 - "$port" "$bucket" <<'PY' || { echo "s3.sh: the server did not start; see $dir/server.log" >&2; exit 1; }
import sys, time, urllib.request
port, bucket = sys.argv[1], sys.argv[2]
for _ in range(200):
    try:
        urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/{bucket}", method="PUT"), timeout=2)
        sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit(1)
PY
    echo "http://127.0.0.1:$port"
    ;;
  stop)
    [ -f "$dir/pid" ] && kill "$(cat "$dir/pid")" 2>/dev/null || true
    ;;
  *) echo "usage: s3.sh start DIR BUCKET | stop DIR" >&2; exit 2 ;;
esac
