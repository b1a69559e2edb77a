#!/usr/bin/env bash
# Builds everything the demo needs (idempotently) and starts it: the authfetch server on its
# embedded SQLite store, serving the demo page (www/) and the npm package (pkg/) under a strict CSP.
#
#   bash scripts/demo.sh                       # http://127.0.0.1:8080
#   AUTHFETCH_LISTEN=127.0.0.1:9000 bash scripts/demo.sh
#
# --debug-stats feeds the page's "Server counters" card (refreshes, reuse detected). Extra arguments are passed to authfetch-server (see `authfetch-server --help`).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/bootstrap.sh
bash scripts/build-pkg.sh
cargo build --release -p authfetch-server
exec target/release/authfetch-server \
  --listen "${AUTHFETCH_LISTEN:-127.0.0.1:8080}" \
  --data-dir "${AUTHFETCH_DATA_DIR:-.data/demo}" \
  --www www --pkg pkg --demo --debug-stats "$@"
