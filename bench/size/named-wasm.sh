#!/usr/bin/env bash
# A .wasm with function names for the per-crate size breakdown (bench/size/size.mjs).
#
# The shipped pkg/authfetch_bg.wasm has no name section (build-pkg.sh strips it), so its code
# cannot be attributed to crates. This runs the shipped pipeline's own steps on the same cargo
# output — wasm-bindgen with the same flags, wasm-opt -Oz with the same features — with the name
# section kept (`--keep-debug`, `-g`) instead of stripped. size.mjs prints both code-section
# sizes, so any difference the kept names make is visible.
#
#   bash bench/size/named-wasm.sh   # → bench/results/named/authfetch_bg.wasm
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=bench/results/named
rm -rf "$OUT"
mkdir -p "$OUT"
RAW=target/wasm32-unknown-unknown/wasm-release/authfetch.wasm
WASM_OPT=node_modules/.bin/wasm-opt
# The features rustc enables by default for wasm32 (as scripts/build-pkg.sh passes them).
WASM_FEATURES=(--enable-bulk-memory --enable-bulk-memory-opt --enable-nontrapping-float-to-int
  --enable-sign-ext --enable-mutable-globals --enable-reference-types --enable-multivalue
  --enable-call-indirect-overlong)
bash scripts/build-pkg.sh > /dev/null
wasm-bindgen --target web --no-typescript --omit-default-module-path --encode-into always \
  --keep-debug --out-dir "$OUT" "$RAW"
"$WASM_OPT" -Oz -g --strip-producers "${WASM_FEATURES[@]}" "$OUT/authfetch_bg.wasm" -o "$OUT/authfetch_bg.wasm"
echo "named-wasm.sh: wrote $OUT/authfetch_bg.wasm ($(wc -c < "$OUT/authfetch_bg.wasm") bytes with names)"
