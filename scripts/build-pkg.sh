#!/usr/bin/env bash
# Builds the npm package `authfetch` into pkg/, with the standard tools and nothing else, twice
# from the same sources: the default entry, and the DPoP entry (cargo feature `dpop`):
#   cargo build (wasm32, profile wasm-release) → wasm-bindgen --target web → wasm-opt -Oz
#   → esbuild (js/index.js + the generated glue, one minified ES module)
#   → pkg/{index.js, authfetch_bg.wasm}        `import … from 'authfetch'`
#     pkg/dpop/{index.js, authfetch_bg.wasm}   `import … from 'authfetch/dpop'` (same API; every
#                                              login binds the session to a WebCrypto key)
#   → pkg/{index.d.ts, package.json, README.md, LICENSE-*}
#   → npm pack → target/authfetch-<version>.tgz (what users install; the e2e tests install it)
# then type-checks the public .d.ts against a usage file and prints a size report. Nothing that
# wasm-bindgen or wasm-opt writes is edited: size comes from compiler and tool flags only.
#
#   bash scripts/build-pkg.sh                # build (fast when nothing changed) + size report
#   bash scripts/build-pkg.sh --check-size   # … and fail when an entry exceeds its budget
#
# Size budgets: the files a browser downloads for one entry — its .js and its .wasm — each
# compressed with `gzip -9` on its own, summed. Default entry ≤ 41,000 bytes (40 KB, decimal, +
# 900 B that the DPoP-ready auth call costs, + 100 B for ERR_DPOP_REQUIRED); DPoP entry ≤ 49,700
# bytes. The target is 30 KB
# (+3 KB for DPoP) and the goal 22 KB; BENCHMARKS.md §0 and §0c say what each crate and the DPoP
# code cost and why the card's crates on stable Rust land here. Summing individually gzipped
# files is what a browser fetching them one by one pays. The .d.ts and package.json are not
# shipped to browsers.
set -euo pipefail
cd "$(dirname "$0")/.."

BUDGET=41000      # bytes, default entry: 40 KB decimal (BENCHMARKS.md §0: why not 30 KB) + 900 B (the use_dpop_nonce retry and the auth-call loop; §0c) + 100 B (ERR_DPOP_REQUIRED)
DPOP_BUDGET=49700 # bytes, DPoP entry: the default's + the key, IndexedDB and proofs (§0c: why not +3 KB)
check_size=0
for arg in "$@"; do
  case "$arg" in
    --check-size) check_size=1 ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "build-pkg.sh: unknown argument: $arg" >&2; exit 2 ;;
  esac
done

say() { printf '\033[1mbuild-pkg:\033[0m %s\n' "$*"; }

CRATE=authfetch
TARGET=wasm32-unknown-unknown
PROFILE=wasm-release
RAW="target/$TARGET/$PROFILE/$CRATE.wasm"
STAGE=target/pkg-stage
STAMP=target/pkg.stamp
OUT=pkg
WASM_OPT=node_modules/.bin/wasm-opt
# The features rustc enables by default for wasm32 (and that the .wasm's target_features
# section declares); wasm-opt must accept them, and must not use any others.
WASM_FEATURES=(--enable-bulk-memory --enable-bulk-memory-opt --enable-nontrapping-float-to-int
  --enable-sign-ext --enable-mutable-globals --enable-reference-types --enable-multivalue
  --enable-call-indirect-overlong)

[ -x "$WASM_OPT" ] || { echo "build-pkg.sh: $WASM_OPT missing: run scripts/bootstrap.sh" >&2; exit 1; }
command -v wasm-bindgen >/dev/null || { echo "build-pkg.sh: wasm-bindgen missing: run scripts/bootstrap.sh" >&2; exit 1; }

# 1. The release build. Cargo itself is incremental: nothing to do when nothing changed.
#    Source paths end up in the .wasm (panic locations); shorten the registry's and ours. This
#    variable replaces the rustflags of .cargo/config.toml, so it repeats its one flag.
remap=("--cfg=web_sys_unstable_apis" "--remap-path-prefix=$PWD=authfetch")
for d in "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/; do
  [ -d "$d" ] && remap+=("--remap-path-prefix=${d%/}=")
done
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="${remap[*]}"
# Both entries from one cargo invocation each; cargo keeps both feature sets' artifacts, so
# switching between them only re-links. Each .wasm is copied out before the next build.
mkdir -p "$STAGE"
for entry in default dpop; do
  features=(); [ "$entry" = dpop ] && features=(--features dpop)
  say "cargo build -p $CRATE --target $TARGET --profile $PROFILE ${features[*]}"
  cargo build -q -p "$CRATE" --target "$TARGET" --profile "$PROFILE" "${features[@]}"
  cp "$RAW" "$STAGE/$entry.wasm"
done

version=$(awk -F'"' '/^\[package\]/{p=1} p && /^version *=/{print $2; exit}' Cargo.toml)

# 2–4 only when an input changed (the .wasm, the hand-written JS/types, this script, the tools).
TGZ="target/$CRATE-$version.tgz"
inputs_hash=$( { sha256sum "$STAGE/default.wasm" "$STAGE/dpop.wasm" js/index.js js/provider.js js/index.d.ts js/types-check.ts js/tsconfig.json \
    README.md LICENSE-MIT LICENSE-APACHE "$0" package-lock.json;
  wasm-bindgen --version; echo "$version"; } | sha256sum | cut -d' ' -f1)
if [ "$(cat "$STAMP" 2>/dev/null || true)" = "$inputs_hash" ] && [ -f "$OUT/package.json" ] \
   && [ -f "$OUT/${CRATE}_bg.wasm" ] && [ -f "$OUT/dpop/${CRATE}_bg.wasm" ] && [ -f "$TGZ" ]; then
  say "pkg/ is up to date"
else
  WORK="$STAGE/work"
  PKG_DIR="$STAGE/pkg"
  rm -rf "$WORK" "$PKG_DIR"
  for entry in default dpop; do
    dir="$WORK/$entry"; dest="$PKG_DIR"; [ "$entry" = dpop ] && dest="$PKG_DIR/dpop"
    mkdir -p "$dir" "$dest"
    cp "$STAGE/$entry.wasm" "$dir/$CRATE.wasm"

    # 2. The JS glue. Our own index.d.ts is the package's type entry (both entries have the
    #    same API). --omit-default-module-path: js/index.js always hands the glue's init the
    #    .wasm it fetched itself (so that a failed load says which URL answered what);
    #    --encode-into always: every supported browser has TextEncoder.encodeInto.
    wasm-bindgen --target web --no-typescript --omit-default-module-path --encode-into always \
      --out-dir "$dir" "$dir/$CRATE.wasm"

    # 3. Optimise for size, with the features rustc enabled for wasm32 (and no others).
    "$WASM_OPT" -Oz --strip-debug --strip-producers "${WASM_FEATURES[@]}" \
      "$dir/${CRATE}_bg.wasm" -o "$dir/${CRATE}_bg.wasm"

    # 4. One ES module: the entry (js/index.js) and the glue, bundled and minified
    #    with esbuild (what an app's bundler would do anyway; a page without a bundler saves two
    #    requests). `new URL('./authfetch_bg.wasm', import.meta.url)` survives untouched, so
    #    browsers, Vite and webpack 5 still find the .wasm next to it (each entry's own).
    cp js/index.js "$dir/entry.js"
    cp js/provider.js "$dir/provider.js"
    node_modules/.bin/esbuild "$dir/entry.js" --bundle --format=esm --minify --target=es2020 \
      --platform=browser --legal-comments=none --log-level=warning \
      --define:AUTHFETCH_DPOP=$([ "$entry" = dpop ] && echo true || echo false) \
      --log-override:duplicate-object-key=silent --outfile="$dir/bundle/index.js"
    grep -q "new URL(\"./${CRATE}_bg.wasm\",import.meta.url)" "$dir/bundle/index.js" \
      || { echo "build-pkg.sh: the bundle lost new URL('./${CRATE}_bg.wasm', import.meta.url)" >&2; exit 1; }
    cp "$dir/bundle/index.js" "$dir/${CRATE}_bg.wasm" "$dest/"
  done
  cp js/index.d.ts "$PKG_DIR/"
  # What a registry page and an installed copy show: the README and both licences.
  cp README.md LICENSE-MIT LICENSE-APACHE "$PKG_DIR/"

  # 5. The manifest.
  node -e '
    const fs = require("fs");
    const [dir, version] = process.argv.slice(1);
    const walk = (d) => fs.readdirSync(d, { withFileTypes: true })
      .flatMap((e) => e.isDirectory() ? walk(`${d}/${e.name}`) : [`${d}/${e.name}`]);
    const files = walk(dir).map((f) => f.slice(dir.length + 1)).sort();
    const pkg = {
      name: "authfetch",
      version,
      description: "In-memory access tokens and a fetch drop-in with single-flight refresh, for single-page apps (Rust -> WebAssembly).",
      license: "MIT OR Apache-2.0",
      type: "module",
      main: "./index.js",
      module: "./index.js",
      types: "./index.d.ts",
      exports: {
        ".": { types: "./index.d.ts", import: "./index.js", default: "./index.js" },
        // The same API, with DPoP (RFC 9449): every session bound to a non-extractable key.
        "./dpop": { types: "./index.d.ts", import: "./dpop/index.js", default: "./dpop/index.js" },
        "./package.json": "./package.json",
      },
      files: files.concat("package.json"),
      // Importing only defines functions; the wasm is loaded on first use. Nothing an app
      // depends on happens at import, so a bundler may drop the module when none of its
      // exports is used.
      sideEffects: false,
      keywords: ["fetch", "auth", "jwt", "refresh-token", "wasm", "spa"],
    };
    fs.writeFileSync(`${dir}/package.json`, JSON.stringify(pkg, null, 2) + "\n");
  ' "$PKG_DIR" "$version"

  # 6. Type-check the public API against a usage file (strict TypeScript).
  node_modules/.bin/tsc -p js/tsconfig.json

  # Swap into place.
  rm -rf "$OUT"
  mv "$PKG_DIR" "$OUT"

  # 7. The tarball, as `npm publish` would upload it and `npm install` unpacks it: users get a
  #    copy in node_modules, not a link to pkg/ (bundlers treat the two differently). npm pack
  #    writes fixed timestamps, so the same pkg/ gives the same bytes.
  rm -f "$TGZ"
  npm pack "./$OUT" --pack-destination target --silent --loglevel=error > /dev/null
  [ -f "$TGZ" ] || { echo "build-pkg.sh: npm pack did not write $TGZ" >&2; exit 1; }
  echo "$inputs_hash" > "$STAMP"
  say "wrote $OUT/ and $TGZ (authfetch $version)"
fi

# 8. Size report, per entry: its files, raw / gzip -9 / brotli (quality 11), and the gzip sum.
fail=0
report() { # $1 = entry name, $2 = its directory, $3 = its budget
  local total=0 f raw gz br
  printf '\n%-58s %9s %9s %9s\n' "entry '$1': shipped file" "raw" "gzip -9" "brotli"
  for f in "$2/index.js" "$2/${CRATE}_bg.wasm"; do
    raw=$(wc -c < "$f")
    gz=$(gzip -9 -n -c "$f" | wc -c)
    br=$(node -e 'const z=require("zlib"),fs=require("fs");process.stdout.write(String(z.brotliCompressSync(fs.readFileSync(process.argv[1]),{params:{[z.constants.BROTLI_PARAM_QUALITY]:11}}).length))' "$f")
    total=$((total + gz))
    printf '%-58s %9d %9d %9d\n' "${f#"$OUT"/}" "$raw" "$gz" "$br"
  done
  printf '%-58s %9s %9d %9s\n' "total (each file gzipped on its own, summed)" "" "$total" ""
  printf 'budget: %d bytes gzip -9 (decimal: 1 KB = 1000 bytes)\n' "$3"
  if [ "$check_size" = 1 ]; then
    if [ "$total" -gt "$3" ]; then
      echo "build-pkg.sh: size budget of entry '$1' exceeded: $total > $3 bytes (gzip -9, summed per file)" >&2
      fail=1
    else
      say "size budget of entry '$1' ok: $total ≤ $3 bytes"
    fi
  fi
}
report authfetch "$OUT" "$BUDGET"
report authfetch/dpop "$OUT/dpop" "$DPOP_BUDGET"
# Every .js and .wasm the package holds is one of the two entries' (nothing shipped unbudgeted).
extra=$(find "$OUT" -type f \( -name '*.js' -o -name '*.wasm' \) | grep -vxE "$OUT/(dpop/)?(index\.js|${CRATE}_bg\.wasm)" || true)
[ -z "$extra" ] || { echo "build-pkg.sh: shipped files outside both entries' budgets: $extra" >&2; exit 1; }
echo "target: 30 KB (+3 KB for DPoP); goal: 22 KB"
exit "$fail"
