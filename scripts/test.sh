#!/usr/bin/env bash
# Runs every test layer of authfetch, in one go, stopping at the first red:
#   set-up → fmt → clippy (native + wasm32) → native tests → fuzz smoke (cargo-fuzz, nightly) →
#   browser unit tests (wasm-bindgen-test in headless Chromium) → npm package build + size budget
#   → end-to-end (real server + Playwright).
# A missing tool is installed by scripts/bootstrap.sh; no layer is ever skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1

step "set-up (idempotent)"
bash scripts/bootstrap.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (native, all targets, warnings denied)"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo clippy (client crate for wasm32, warnings denied)"
cargo clippy -p authfetch --target wasm32-unknown-unknown --all-targets -- -D warnings
# The package's DPoP entry (`authfetch/dpop`) is this crate with the `dpop` feature.
cargo clippy -p authfetch --target wasm32-unknown-unknown --all-targets --features dpop -- -D warnings

step "dependency policy: one crypto stack (ring) in the server"
bash scripts/check-deps.sh

step "native tests (whole workspace)"
cargo test --workspace

step "fuzz smoke: every cargo-fuzz target for a short run from the committed seeds"
bash scripts/fuzz.sh --smoke

step "browser unit tests: wasm-bindgen-test in headless Chromium"
CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
CHROMEDRIVER=/usr/bin/chromedriver \
  cargo test -p authfetch --target wasm32-unknown-unknown
CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
CHROMEDRIVER=/usr/bin/chromedriver \
  cargo test -p authfetch --target wasm32-unknown-unknown --features dpop

step "npm package build (both entries) + size budgets"
bash scripts/build-pkg.sh --check-size

step "end-to-end: real server on loopback + Playwright driving /usr/bin/chromium"
cargo build -p authfetch-server
npx playwright test

step "all layers green"
