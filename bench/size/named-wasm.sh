#!/usr/bin/env bash
# A .wasm with function names for the per-crate size breakdown (bench/size/size.mjs).
#
# The shipped pkg/authfetch_bg.wasm has no name section (build-pkg.sh strips it), so its code
# cannot be attributed to crates. This script runs scripts/build-pkg.sh's own pipeline (a copy
# of the script, edited on the fly) with its output and staging directories moved under
# target/ and bench/results/, wasm-opt's `--strip-debug` replaced by `-g` and binaryen.js told
# to keep debug info (the name section); everything else — the cargo build, wasm-bindgen flags, the panic/fmt snip, the
# short import names, -Oz — is the shipped build's. size.mjs prints both code-section sizes, so
# any difference the kept names make is visible.
#
# If build-pkg.sh no longer has the lines this edits, it falls back to wasm-bindgen + wasm-opt
# -Oz -g on the cargo output (without build-pkg.sh's extra steps) and says so.
#
#   bash bench/size/named-wasm.sh   # → bench/results/named/authfetch_bg.wasm
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=bench/results/named
rm -rf "$OUT" target/bench-named-stage target/bench-named.stamp
mkdir -p "$OUT"

copy=$(mktemp /tmp/authfetch-build-pkg-named.XXXXXX.sh)
trap 'rm -f "$copy"' EXIT
sed -e "s|^cd \"\$(dirname \"\$0\")/..\"\$|cd \"$ROOT\"|" \
    -e 's|^STAGE=target/pkg-stage$|STAGE=target/bench-named-stage|' \
    -e "s|^OUT=pkg\$|OUT=$OUT/pkg|" \
    -e 's|^STAMP=target/pkg.stamp$|STAMP=target/bench-named.stamp|' \
    -e 's|-Oz --strip-debug|-Oz -g|' \
    -e "s|^import binaryen from 'binaryen';\$|&\\nbinaryen.setDebugInfo(true); // named-wasm.sh: keep the name section|" \
    scripts/build-pkg.sh > "$copy"
edits=$(diff scripts/build-pkg.sh "$copy" | grep -c '^>' || true)
if [ "$edits" -ge 6 ] && ! grep -q -- '--strip-debug' "$copy"; then
  bash "$copy" > "$OUT/build.log" 2>&1 || { cat "$OUT/build.log" >&2; exit 1; }
  cp "$OUT/pkg/authfetch_bg.wasm" "$OUT/authfetch_bg.wasm"
  echo "named-wasm.sh: build-pkg.sh pipeline with names kept → $OUT/authfetch_bg.wasm ($(wc -c < "$OUT/authfetch_bg.wasm") bytes)"
  exit 0
fi

echo "named-wasm.sh: scripts/build-pkg.sh changed shape ($edits of 6 edits applied); falling back to wasm-bindgen + wasm-opt -Oz -g (without its extra steps)" >&2
RAW=target/wasm32-unknown-unknown/wasm-release/authfetch.wasm
WASM_OPT=node_modules/.bin/wasm-opt
WASM_FEATURES=(--enable-bulk-memory --enable-bulk-memory-opt --enable-nontrapping-float-to-int
  --enable-sign-ext --enable-mutable-globals --enable-reference-types --enable-multivalue
  --enable-call-indirect-overlong)
[ -f "$RAW" ] || { echo "named-wasm.sh: $RAW missing (run bash scripts/build-pkg.sh first)" >&2; exit 1; }
wasm-bindgen --target web --no-typescript --keep-debug --out-dir "$OUT" "$RAW"
"$WASM_OPT" -Oz -g --strip-producers "${WASM_FEATURES[@]}" "$OUT/authfetch_bg.wasm" -o "$OUT/authfetch_bg.wasm"
echo "named-wasm.sh: wrote $OUT/authfetch_bg.wasm ($(wc -c < "$OUT/authfetch_bg.wasm") bytes with names; fallback build)"
