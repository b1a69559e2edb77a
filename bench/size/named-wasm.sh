#!/usr/bin/env bash
# A .wasm with function names for the per-crate size breakdown (bench/size/size.mjs).
#
# The shipped pkg/authfetch_bg.wasm has no name section (build-pkg.sh strips it), so its code
# cannot be attributed to crates. This script repeats build-pkg.sh's last two steps on the same
# cargo output (target/wasm32-unknown-unknown/wasm-release/authfetch.wasm, which still has its
# symbol names): wasm-bindgen --target web, then wasm-opt with the same -Oz and feature flags
# but `-g` (keep the name section). size.mjs reports both code-section sizes, so any difference
# the kept names make to the optimiser is visible.
#
#   bash bench/size/named-wasm.sh   # → bench/results/named/authfetch_bg.wasm
set -euo pipefail
cd "$(dirname "$0")/../.."

RAW=target/wasm32-unknown-unknown/wasm-release/authfetch.wasm
OUT=bench/results/named
WASM_OPT=node_modules/.bin/wasm-opt
# The same feature set as scripts/build-pkg.sh.
WASM_FEATURES=(--enable-bulk-memory --enable-bulk-memory-opt --enable-nontrapping-float-to-int
  --enable-sign-ext --enable-mutable-globals --enable-reference-types --enable-multivalue
  --enable-call-indirect-overlong)

[ -f "$RAW" ] || { echo "named-wasm.sh: $RAW missing (run bash scripts/build-pkg.sh first)" >&2; exit 1; }
rm -rf "$OUT"
mkdir -p "$OUT"
wasm-bindgen --target web --no-typescript --keep-debug --out-dir "$OUT" "$RAW"
"$WASM_OPT" -Oz -g --strip-producers "${WASM_FEATURES[@]}" "$OUT/authfetch_bg.wasm" -o "$OUT/authfetch_bg.wasm"
echo "named-wasm.sh: wrote $OUT/authfetch_bg.wasm ($(wc -c < "$OUT/authfetch_bg.wasm") bytes with names)"
