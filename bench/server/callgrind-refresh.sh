#!/usr/bin/env bash
# Instructions per refresh (and per verified request) of a server binary, counted by callgrind.
# Counts, unlike req/s, do not depend on what else the machine is doing, so two binaries can be
# compared on a shared 2-core machine: the server runs twice under callgrind, once with a short
# and once with a long chain of requests from one client, and the difference divided by the
# difference in requests is what one request costs (start-up and the Argon2 login cancel out).
#
#   bench/server/callgrind-refresh.sh <authfetch-bench-server binary> <out dir> [refresh|bearer|refresh-dpop|bearer-dpop]
#
# `-dpop`: the load generator is a DPoP client (`authfetch-loadgen --dpop`): its login carries a
# proof, so the family is bound, and so does every refresh and every `GET /api/me`
# (`Authorization: DPoP`). SERVER_FLAGS adds server flags (e.g. "--dpop required", "--dpop-nonce"),
# TAG names the run in the callgrind file names. Every run gets `--access-ttl 1h`: a chain of
# verified requests under callgrind outlasts the 20 s tokens of --demo.
#
# Prints the instructions per request and leaves both callgrind files in <out dir> for
# `callgrind_annotate --inclusive=yes <file>`. Loopback only (the loadgen refuses anything else).
set -euo pipefail
bin=$(realpath "$1"); out=$(mkdir -p "$2" && realpath "$2"); mode=${3:-refresh}
case "$mode" in
  refresh|bearer) load=("$mode") ;;
  refresh-dpop|bearer-dpop) load=("${mode%-dpop}" --dpop) ;;
  *) echo "unknown scenario $mode" >&2; exit 2 ;;
esac
read -r -a server_flags <<<"${SERVER_FLAGS:-}"
name="$mode${TAG:+.$TAG}"
here=$(cd "$(dirname "$0")/../.." && pwd)
loadgen="$here/bench/loadgen/target/release/authfetch-loadgen"
[ -x "$loadgen" ] || cargo build --release --manifest-path "$here/bench/loadgen/Cargo.toml" >&2
SHORT=${SHORT:-200}; LONG=${LONG:-2200}

run() { # $1 = requests; prints total Ir of the server process
  local n=$1 dir log pid addr
  dir=$(mktemp -d); log="$dir/server.log"
  valgrind --tool=callgrind --callgrind-out-file="$out/$name.$n.cg" \
    "$bin" --listen 127.0.0.1:0 --data-dir "$dir" --demo --access-ttl 1h ${server_flags[@]+"${server_flags[@]}"} >"$log" 2>&1 &
  pid=$!
  for _ in $(seq 600); do
    addr=$(grep -oE 'listening on http://127\.0\.0\.1:[0-9]+' "$log" | head -1 | sed 's#.*http://##') || true
    [ -n "$addr" ] && break; sleep 0.2
  done
  [ -n "$addr" ] || { cat "$log" >&2; kill "$pid"; exit 1; }
  "$loadgen" "${load[@]}" --addr "$addr" --clients 1 --requests "$n" --duration 600 --setup-timeout 600 >"$dir/load.json"
  kill -TERM "$pid"; wait "$pid" || true
  grep -q "\"ok\":$n\b" "$dir/load.json" || { echo "not every request succeeded: $(cat "$dir/load.json")" >&2; exit 1; }
  callgrind_annotate "$out/$name.$n.cg" 2>/dev/null | grep -m1 'PROGRAM TOTALS' | grep -oE '^[0-9,]+' | tr -d ,
  rm -rf "$dir"
}
a=$(run "$SHORT"); b=$(run "$LONG")
echo "$name${SERVER_FLAGS:+ (server flags: $SERVER_FLAGS)}: $(( (b - a) / (LONG - SHORT) )) instructions per request ($a for $SHORT, $b for $LONG requests)"
