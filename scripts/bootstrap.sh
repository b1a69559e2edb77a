#!/usr/bin/env bash
# Installs everything the build, the demo and the tests need, and nothing that is already there.
#
# Idempotent by design: each step checks first and is skipped when satisfied, so on a machine
# that has the tools this takes about a second, and on a fresh Debian 12 machine about four
# minutes (most of it `cargo install wasm-bindgen-cli`). Only crates.io, npm, Debian's packages
# and rustup's dist server are used: no step downloads a prebuilt browser or binary.
#
#   bash scripts/bootstrap.sh            # everything
#   AUTHFETCH_SKIP_APT=1 bash ...        # skip the Debian packages (for machines you don't administer)
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1mbootstrap:\033[0m %s\n' "$*"; }

# --- Debian packages: Chromium + ChromeDriver (browser tests), Redis (multi-instance store tests).
apt_pkgs=()
command -v chromium >/dev/null 2>&1 || apt_pkgs+=(chromium)
command -v chromedriver >/dev/null 2>&1 || apt_pkgs+=(chromium-driver)
command -v redis-server >/dev/null 2>&1 || apt_pkgs+=(redis-server)
if [ ${#apt_pkgs[@]} -gt 0 ] && [ -z "${AUTHFETCH_SKIP_APT:-}" ]; then
  say "installing Debian packages: ${apt_pkgs[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${apt_pkgs[@]}" >/dev/null
fi
# The Debian package starts a system redis on :6379 through its maintainer scripts; our tests
# start their own instance on a free port, so the system one is left as the package set it up.

# --- Rust: the wasm target.
if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  say "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

# --- wasm-bindgen-cli, exactly the version in Cargo.lock (the CLI and the crate must match).
want=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock 2>/dev/null || true)
if [ -z "$want" ]; then
  cargo generate-lockfile
  want=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock)
fi
have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
if [ "$have" != "$want" ]; then
  say "installing wasm-bindgen-cli $want (have: ${have:-none}); this compiles for ~2.5 minutes once"
  # No --locked: the CLI's own lock file wants a crate version this registry mirror lacks.
  cargo install wasm-bindgen-cli --version "$want"
fi

# --- Fuzzing (scripts/fuzz.sh): a nightly toolchain (cargo-fuzz needs -Z flags) and cargo-fuzz.
if ! rustup toolchain list | grep -q '^nightly'; then
  say "installing the nightly toolchain (minimal profile) for cargo-fuzz"
  rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  say "installing cargo-fuzz; this compiles for about half a minute once"
  cargo install cargo-fuzz --locked
fi

# --- npm packages: binaryen (wasm-opt under node) and the Playwright runner (driving /usr/bin/chromium).
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
stamp=node_modules/.authfetch-lock.sha256
want_lock=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want_lock" ]; then
  say "installing npm dependencies (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want_lock" > "$stamp"
fi

# --- Python: PyJWT with its crypto extra, pinned, for the interop tests (tests/interop/).
pyjwt_want=2.10.1
if ! python3 -c "import sys, jwt, cryptography; sys.exit(jwt.__version__ != '$pyjwt_want')" >/dev/null 2>&1; then
  say "installing PyJWT[crypto] $pyjwt_want for the interop tests (pip --user)"
  python3 -m pip install --user --quiet --disable-pip-version-check "PyJWT[crypto]==$pyjwt_want"
fi

say "ready"
