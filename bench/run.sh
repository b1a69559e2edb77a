#!/usr/bin/env bash
# Runs every authfetch benchmark in one go (`npm run bench` at the repository root):
#   1. shipped size: authfetch (JS + .wasm) vs peers, all bundled by esbuild in this run
#   2. per-call overhead in headless Chromium: authFetch vs raw fetch vs axios + axios-auth-refresh
#   3. refresh coalescing: N ∈ {1, 10, 100, 1000} concurrent calls with a rejected token
#   4. authfetch-server on loopback (server on CPU 0, load on CPU 1): refresh, bearer, login
#   5. the Node reference server (node:http + jose + SQLite) under the same load
# Results: bench/results/*.json and bench/results/report.md (not committed); BENCHMARKS.md
# holds the figures of the last full run, written down by hand with their analysis.
#
#   bash bench/run.sh            # everything (~8–10 minutes on the 2-core machine)
#   bash bench/run.sh --quick    # one short round of each, to check the harness (~2 minutes)
#   bash bench/run.sh size|browser|server [--quick]   # one part only
#   AUTHFETCH_SKIP_APT=1 ...     # don't apt-get wrk (the bearer cross-check is then skipped)
#   BENCH_SERVER_FLAGS="..."     # extra authfetch-server flags (default: from its --help)
#   BENCH_SERVER_BIN=path        # the server under test (default: the bench harness, see server.mjs)
#   BENCH_NO_PROFILE=1           # skip the CPU profiles (DevTools for the browser part, perf for
#                                # the server part; both are extra runs, kept out of the medians)
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n\033[1mbench:\033[0m %s\n' "$*"; }
quick=""
parts=()
for a in "$@"; do
  case "$a" in
    --quick) quick="--quick" ;;
    size|browser|server) parts+=("$a") ;;
    *) echo "usage: bash bench/run.sh [size|browser|server]... [--quick]" >&2; exit 2 ;;
  esac
done
[ ${#parts[@]} -gt 0 ] || parts=(size browser server)
want() { local p; for p in "${parts[@]}"; do [ "$p" = "$1" ] && return 0; done; return 1; }
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
mkdir -p bench/results

say "set-up (idempotent): scripts/bootstrap.sh"
bash scripts/bootstrap.sh

# The benchmark's own npm packages (esbuild, the peer libraries, jose, better-sqlite3), pinned
# by bench/package-lock.json; reinstalled only when the lock file changes.
stamp=bench/node_modules/.authfetch-bench-lock.sha256
want_lock=$(sha256sum bench/package-lock.json | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want_lock" ]; then
  say "installing bench npm dependencies (npm ci in bench/)"
  (cd bench && npm ci --no-audit --no-fund --loglevel=error)
  echo "$want_lock" > "$stamp"
fi

# wrk (Debian) for a cross-check of the static-bearer load; optional.
if ! command -v wrk >/dev/null 2>&1 && [ -z "${AUTHFETCH_SKIP_APT:-}" ]; then
  say "installing wrk (Debian)"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  ($sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends wrk >/dev/null) \
    || echo "bench: wrk could not be installed; the wrk cross-check is skipped"
fi

if want size || want browser; then
  say "building the npm package (scripts/build-pkg.sh)"
  rm -f bench/results/pkg-note.txt
  if ! bash scripts/build-pkg.sh; then
    # The client is work in progress in a shared tree: measure the last good pkg/ rather than
    # nothing, and say so in the report.
    [ -f pkg/package.json ] || { echo "bench: scripts/build-pkg.sh failed and there is no pkg/" >&2; exit 1; }
    note="scripts/build-pkg.sh failed at $(date -u +%H:%M) UTC; measured the existing pkg/ (built $(date -u -r pkg/package.json +%H:%M) UTC)"
    echo "bench: $note"
    echo "$note" > bench/results/pkg-note.txt
  fi
  # Measure a snapshot: pkg/ may be rebuilt by someone else while the benchmark runs, and the
  # size and browser parts must see the same files. (The named .wasm is rebuilt right after.)
  rm -rf bench/results/pkg
  cp -r pkg bench/results/pkg
  export AUTHFETCH_PKG_DIR="$PWD/bench/results/pkg"
fi
if want server; then
  say "building authfetch-server (release), its bench harness and the load generator"
  cargo build --release -p authfetch-server
  # The harness (authfetch-server's library with rate limits raised, see its Cargo.toml) shares
  # the root target dir, so the server crate and its dependencies are compiled only once.
  cargo build --release --manifest-path bench/server-harness/Cargo.toml --target-dir target
  cargo build --release --manifest-path bench/loadgen/Cargo.toml
  # Signing/verification cost per crypto library on this CPU (context for the server profile).
  cargo build --release --manifest-path bench/crypto-micro/Cargo.toml --target-dir target
fi

profile="--profile"
[ -n "${BENCH_NO_PROFILE:-}" ] && profile=""
command -v perf >/dev/null 2>&1 || echo "bench: perf not found (apt-get install linux-perf): the server profile is skipped"
node bench/env.mjs --out bench/results/env.json
if want size; then
  say "1. shipped size"
  bash bench/size/named-wasm.sh || echo "bench: the named .wasm build for the per-crate breakdown failed; breakdown from the shipped file only"
  node bench/size/size.mjs --out bench/results/size.json
fi
if want browser; then
  say "2+3. per-call overhead and refresh coalescing (headless Chromium)"
  node bench/browser/browser.mjs --out bench/results/browser.json $quick $profile
fi
if want server; then
  say "4+5. server load: authfetch-server and the Node reference"
  node bench/server/server.mjs --out bench/results/server.json $quick $profile
fi
node bench/report.mjs bench/results > bench/results/report.md
say "done: bench/results/report.md"
cat bench/results/report.md
