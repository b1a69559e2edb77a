#!/usr/bin/env bash
# Builds everything the demo needs (idempotently) and starts it: the authfetch server on its
# embedded SQLite store with `--dpop required`, serving the demo page (www/) on the package's DPoP
# entry (pkg/dpop/: every session bound to a non-extractable WebCrypto key) under a strict CSP,
# and beside it a local OpenID Provider (tests/oidc/provider.mjs: panva's oidc-provider on
# 127.0.0.1:9010, any login name and password) behind the page's "Sign in with Local OIDC" button.
#
#   bash scripts/demo.sh                       # http://localhost:8080
#   AUTHFETCH_LISTEN=127.0.0.1:9000 bash scripts/demo.sh
#   AUTHFETCH_DEMO_OIDC=0 bash scripts/demo.sh # no local provider
#   AUTHFETCH_DEMO_DPOP=0 bash scripts/demo.sh # the default entry (pkg/), bearer tokens, the
#                                              # server's default `--dpop optional`
#   AUTHFETCH_OIDC_CONFIG=oidc.json bash scripts/demo.sh  # your providers instead (e.g. Google:
#                                              # see "Sign in with Google" in README.md)
#
# Open the page at http://localhost:PORT (not 127.0.0.1): the provider's redirect URI is
# registered for localhost, and the app and the provider are then on different sites, as in real
# life. --debug-stats feeds the page's "Server counters" card (refreshes, reuse detected). Extra
# arguments are passed to authfetch-server (see `authfetch-server --help`).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/bootstrap.sh
bash scripts/build-pkg.sh
cargo build --release -p authfetch-server

listen="${AUTHFETCH_LISTEN:-127.0.0.1:8080}"
data_dir="${AUTHFETCH_DATA_DIR:-.data/demo}"
oidc_args=()
if [ -n "${AUTHFETCH_OIDC_CONFIG:-}" ]; then
  oidc_args=(--oidc-config "$AUTHFETCH_OIDC_CONFIG")
elif [ "${AUTHFETCH_DEMO_OIDC:-1}" != 0 ]; then
  app="http://localhost:${listen##*:}"
  provider_port="${AUTHFETCH_DEMO_OIDC_PORT:-9010}"
  mkdir -p "$data_dir/oidc"
  # A client secret for the local provider only, kept in a 0600 file (never a flag).
  secret="$data_dir/oidc/client-secret"
  [ -f "$secret" ] || (umask 077 && head -c 32 /dev/urandom | base64 | tr -d '/+=' > "$secret")
  cat > "$data_dir/oidc/providers.json" <<JSON
{
  "public_url": "$app",
  "providers": [{
    "name": "local", "label": "Local OIDC", "issuer": "http://127.0.0.1:$provider_port",
    "client_id": "authfetch-demo", "client_secret_file": "client-secret", "scopes": ["email", "profile"]
  }]
}
JSON
  node tests/oidc/provider.mjs --port "$provider_port" --client-id authfetch-demo \
    --client-secret-file "$secret" --redirect-uri "$app/auth/oidc/local/callback" \
    2> >(grep -v '^oidc-provider \(WARNING\|NOTICE\)' >&2) &
  provider_pid=$!
  trap 'kill "$provider_pid" 2>/dev/null || true' EXIT
  oidc_args=(--oidc-config "$data_dir/oidc/providers.json" --oidc-allow-insecure-issuer)
  echo "demo: local OpenID Provider on http://127.0.0.1:$provider_port (any name and password); open $app"
fi

dpop_args=(--pkg pkg/dpop --dpop required)
[ "${AUTHFETCH_DEMO_DPOP:-1}" != 0 ] || dpop_args=(--pkg pkg)

# Not exec: the local provider is stopped when the server exits.
target/release/authfetch-server \
  --listen "$listen" \
  --data-dir "$data_dir" \
  --www www "${dpop_args[@]}" --demo --debug-stats "${oidc_args[@]}" "$@"
