// Benchmark 1: shipped size of authfetch against its JavaScript peers, all bundled the same way
// in the same run (esbuild: bundle + minify, ESM, browser, es2020, production), one typical
// import each. Every figure: minified bytes, gzip -9, brotli (quality 11). authfetch counts its
// JS glue + its .wasm. Also a per-crate breakdown of the .wasm (see wasm-breakdown.mjs).
//
//   node bench/size/size.mjs [--out bench/results/size.json] [--check]
//
// --check: only verifies the target (authfetch JS + .wasm ≤ 30 KB gzip) and exits non-zero if
// it is exceeded; this is the only benchmark-related check the test command may run.
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import * as esbuild from 'esbuild';
import { breakdown } from './wasm-breakdown.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const bench = path.resolve(here, '..');
const root = path.resolve(bench, '..');
const require = createRequire(path.join(bench, 'package.json'));
const args = process.argv.slice(2);
const outPath = args.includes('--out') ? args[args.indexOf('--out') + 1] : null;
const checkOnly = args.includes('--check');
// KB = 1000 bytes, as scripts/build-pkg.sh counts its test budget (40 KB; target 30 KB, goal 22 KB).
export const BUDGET_GZ = 30000;

// One typical import per library: what an app using it for token handling pulls in.
const PEERS = [
  { name: 'authfetch', pkgs: [], code: `export { authFetch, login } from 'authfetch';` },
  { name: 'oidc-client-ts', pkgs: ['oidc-client-ts'], code: `export { UserManager } from 'oidc-client-ts';` },
  { name: '@supabase/auth-js', pkgs: ['@supabase/auth-js'], code: `export { AuthClient } from '@supabase/auth-js';` },
  { name: 'supertokens-website', pkgs: ['supertokens-website'], code: `import SuperTokens from 'supertokens-website';\nexport default SuperTokens;` },
  { name: 'axios + axios-auth-refresh', pkgs: ['axios', 'axios-auth-refresh'], code: `export { default as axios } from 'axios';\nexport { default as createAuthRefreshInterceptor } from 'axios-auth-refresh';` },
  { name: '@auth0/auth0-spa-js', pkgs: ['@auth0/auth0-spa-js'], code: `export { createAuth0Client } from '@auth0/auth0-spa-js';` },
];

export const gz = (b) => zlib.gzipSync(b, { level: 9 }).length;
export const br = (b) => zlib.brotliCompressSync(b, {
  params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 11, [zlib.constants.BROTLI_PARAM_SIZE_HINT]: b.length },
}).length;

function version(p) {
  try { return require(`${p}/package.json`).version; } catch {
    // packages whose "exports" hide package.json
    let dir = path.dirname(require.resolve(p));
    while (dir !== '/' && !fs.existsSync(path.join(dir, 'package.json'))) dir = path.dirname(dir);
    return JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')).version;
  }
}

/** The built authfetch package: pkg/ at the repository root (scripts/build-pkg.sh). */
export function authfetchPkg() {
  // run.sh measures a snapshot of pkg/ (AUTHFETCH_PKG_DIR), so that a rebuild during the run
  // cannot mix two versions.
  const dir = process.env.AUTHFETCH_PKG_DIR ? path.resolve(process.env.AUTHFETCH_PKG_DIR) : path.join(root, 'pkg');
  const pj = path.join(dir, 'package.json');
  if (!fs.existsSync(pj)) return null;
  const meta = JSON.parse(fs.readFileSync(pj, 'utf8'));
  const wasm = fs.readdirSync(dir).filter((f) => f.endsWith('.wasm')).map((f) => path.join(dir, f));
  return { dir, meta, wasm };
}

async function bundle(peer, pkgInfo) {
  const alias = {};
  if (peer.name === 'authfetch') alias.authfetch = pkgInfo.dir;
  const r = await esbuild.build({
    stdin: { contents: peer.code, resolveDir: bench, sourcefile: 'entry.js', loader: 'js' },
    bundle: true, minify: true, format: 'esm', platform: 'browser', target: 'es2020',
    write: false, legalComments: 'none', alias, logLevel: 'silent', metafile: true,
    define: { 'process.env.NODE_ENV': '"production"' },
    // The .wasm is fetched at run time (new URL(..., import.meta.url)): it is measured
    // separately below, never inlined into the JS.
    loader: { '.wasm': 'file' },
    outdir: path.join(bench, 'results', 'bundles'),
  });
  const js = r.outputFiles.find((f) => f.path.endsWith('.js')).contents;
  return Buffer.from(js);
}

async function main() {
  const pkgInfo = authfetchPkg();
  const rows = [];
  for (const peer of PEERS) {
    if (checkOnly && peer.name !== 'authfetch') continue;
    if (peer.name === 'authfetch' && !pkgInfo) {
      console.error('size: pkg/ is missing — run `bash scripts/build-pkg.sh` first');
      if (checkOnly) process.exit(1);
      rows.push({ name: 'authfetch', missing: true });
      continue;
    }
    const js = await bundle(peer, pkgInfo);
    const row = {
      name: peer.name,
      version: peer.name === 'authfetch' ? pkgInfo.meta.version : peer.pkgs.map((p) => `${p}@${version(p)}`).join(' + '),
      js: { min: js.length, gz: gz(js), br: br(js) },
    };
    if (peer.name === 'authfetch') {
      const w = Buffer.concat(pkgInfo.wasm.map((f) => fs.readFileSync(f)));
      row.wasm = { min: w.length, gz: gz(w), br: br(w), files: pkgInfo.wasm.map((f) => path.relative(root, f)) };
      try { row.wasmBreakdown = breakdown(fs.readFileSync(pkgInfo.wasm[0])); } catch (e) { row.wasmBreakdownError = String(e); }
      // The same module rebuilt with its name section kept (bench/size/named-wasm.sh): per crate.
      const named = path.join(bench, 'results', 'named', 'authfetch_bg.wasm');
      if (fs.existsSync(named) && fs.statSync(named).mtimeMs >= Math.max(...pkgInfo.wasm.map((f) => fs.statSync(f).mtimeMs)) - 1000) {
        try {
          row.namedBreakdown = breakdown(fs.readFileSync(named));
          row.namedBreakdown.codeShipped = row.wasmBreakdown?.sections?.code ?? null;
        } catch (e) { row.wasmBreakdownError = String(e); }
      }
      // What each shipped file of pkg/ costs on its own (build-pkg.sh's budget sums these).
      row.files = fs.readdirSync(pkgInfo.dir, { recursive: true })
        .filter((f) => /\.(js|wasm)$/.test(f)).sort()
        .map((f) => { const b = fs.readFileSync(path.join(pkgInfo.dir, f)); return { file: f, raw: b.length, gz: gz(b), br: br(b) }; });
    }
    row.total = {
      min: row.js.min + (row.wasm?.min ?? 0),
      gz: row.js.gz + (row.wasm?.gz ?? 0),
      br: row.js.br + (row.wasm?.br ?? 0),
    };
    rows.push(row);
  }
  const af = rows.find((r) => r.name === 'authfetch' && !r.missing);
  const result = { budgetGz: BUDGET_GZ, rows, pass: af ? af.total.gz <= BUDGET_GZ : null };
  if (outPath) { fs.mkdirSync(path.dirname(outPath), { recursive: true }); fs.writeFileSync(outPath, JSON.stringify(result, null, 2)); }
  const kb = (n) => (n / 1000).toFixed(1).padStart(7);
  console.log('library (KB = 1000 B)'.padEnd(30), '   min KB', '    gz KB', '    br KB');
  for (const r of rows) {
    if (r.missing) { console.log(r.name.padEnd(30), '  (pkg/ missing)'); continue; }
    console.log(r.name.padEnd(30), kb(r.total.min), ' ', kb(r.total.gz), ' ', kb(r.total.br),
      r.wasm ? `   (JS ${kb(r.js.gz)} gz + wasm ${kb(r.wasm.gz)} gz)` : '');
  }
  if (af) {
    console.log(`authfetch: ${af.total.gz} B gzip -9 (budget ${BUDGET_GZ} B): ${result.pass ? 'within budget' : 'OVER BUDGET'}`);
    if (checkOnly && !result.pass) process.exit(1);
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await main();
}
