// Benchmarks 2 and 3, in headless Chromium (Debian's /usr/bin/chromium, driven by Playwright):
//
// 2. Per-call overhead of authFetch against raw fetch and against axios + axios-auth-refresh.
// 3. Refresh coalescing: N concurrent calls with an expired token → refreshes and added latency.
//
// How the network is stubbed (so that only library overhead is measured): an init script,
// which runs before any script of the page and so before authfetch's module initialises and
// captures `fetch`, replaces `globalThis.fetch` with an in-page stub that answers /api/* and
// /auth/* synchronously with a fresh `Response` (everything else — the page, the module, the
// .wasm — goes to the real fetch). raw fetch, authFetch and axios (with its `fetch` adapter, so
// it reaches the same stub; axios's default XHR adapter cannot be stubbed the same way) all
// end in that one stub, so `library − raw` is the library's own cost per call: argument
// handling, header merge, token attach, the WASM boundary, response checks, interceptors.
// Each call reads its JSON body (axios always does), so the raw baseline does too.
//
// --profile (run.sh passes it): afterwards, each library's per-call loop is run once more under
// the DevTools CPU profiler (CDP Profiler, 50 µs sampling) and the self time is summed per
// function and per source (the .wasm, the wasm-bindgen glue, the entry, the bridge, the stub,
// V8's own (program)/(garbage collector)), so a missed target comes with where the time goes.
//
//   node bench/browser/browser.mjs [--out bench/results/browser.json] [--quick] [--profile]
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { createRequire } from 'node:module';
import * as esbuild from 'esbuild';

const here = path.dirname(fileURLToPath(import.meta.url));
const bench = path.resolve(here, '..');
const root = path.resolve(bench, '..');
const args = process.argv.slice(2);
const outPath = args.includes('--out') ? args[args.indexOf('--out') + 1] : null;
const quick = args.includes('--quick');
const profileCalls = args.includes('--profile') ? (quick ? 5000 : 20000) : 0;
const rootRequire = createRequire(path.join(root, 'package.json'));
const { chromium } = rootRequire('@playwright/test');

const ROUNDS = quick ? 2 : 5;
const CALLS = quick ? 2000 : 10000;
const WARMUP = quick ? 500 : 3000;
const NS = [1, 10, 100, 1000];
const COALESCE_REPS = quick ? 2 : 5;
const COALESCE_REPS_REAL = quick ? 1 : 3;

// --- assets: the authfetch package as built (pkg/), axios + axios-auth-refresh bundled by esbuild.
const assets = path.join(bench, 'results', 'browser-assets');
fs.mkdirSync(assets, { recursive: true });
await esbuild.build({
  stdin: {
    contents: `export { default as axios } from 'axios';\nexport { default as createAuthRefreshInterceptor } from 'axios-auth-refresh';`,
    resolveDir: bench, sourcefile: 'axios-entry.js',
  },
  bundle: true, minify: true, format: 'esm', platform: 'browser', target: 'es2020',
  outfile: path.join(assets, 'axios.js'), logLevel: 'silent',
  define: { 'process.env.NODE_ENV': '"production"' },
});
const pkgDir = process.env.AUTHFETCH_PKG_DIR ? path.resolve(process.env.AUTHFETCH_PKG_DIR) : path.join(root, 'pkg');
const pkgJson = JSON.parse(fs.readFileSync(path.join(pkgDir, 'package.json'), 'utf8'));
const pkgEntry = (typeof pkgJson.exports === 'object' && (pkgJson.exports['.']?.import ?? pkgJson.exports['.']?.default ?? pkgJson.exports.import))
  || pkgJson.module || pkgJson.main || 'authfetch.js';

const PAGE = `<!doctype html><meta charset="utf-8"><title>authfetch bench</title>
<script type="module">
  import * as authfetch from '/pkg/${pkgEntry.replace(/^\.\//, '')}';
  import { axios, createAuthRefreshInterceptor } from '/assets/axios.js';
  window.__libs = { authfetch, axios, createAuthRefreshInterceptor };
  window.__ready = true;
</script>`;

const TYPES = { '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm', '.json': 'application/json', '.html': 'text/html' };
function serveFile(res, file) {
  fs.readFile(file, (err, data) => {
    if (err) { res.writeHead(404); res.end(); return; }
    res.writeHead(200, { 'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream', 'cache-control': 'no-store' });
    res.end(data);
  });
}
const server = http.createServer((req, res) => {
  const u = new URL(req.url, 'http://x');
  if (u.pathname === '/') { res.writeHead(200, { 'content-type': 'text/html' }); res.end(PAGE); return; }
  const safe = (base, rel) => { const p = path.resolve(base, '.' + rel); return p.startsWith(base) ? p : null; };
  if (u.pathname.startsWith('/pkg/')) { const f = safe(pkgDir, u.pathname.slice(4)); if (f) return serveFile(res, f); }
  if (u.pathname.startsWith('/assets/')) { const f = safe(assets, u.pathname.slice(7)); if (f) return serveFile(res, f); }
  if (u.pathname === '/favicon.ico') { res.writeHead(204); res.end(); return; }
  // Anything that reaches the real network here (it should not: /api and /auth are stubbed).
  console.error(`browser bench: unstubbed request ${req.method} ${u.pathname}`);
  res.writeHead(599); res.end('not stubbed');
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const origin = `http://127.0.0.1:${server.address().port}`;

// The in-page network stub. Installed by addInitScript: before every other script.
function installStub() {
  const realFetch = globalThis.fetch.bind(globalThis);
  const s = { valid: null, issued: 0, refreshes: 0, logins: 0, apiCalls: 0, check: false, expiresIn: 900, lastAuth: null, record: false };
  globalThis.__stub = s;
  const json = { 'content-type': 'application/json' };
  const unauthorized = { 'content-type': 'application/json', 'www-authenticate': 'Bearer error="invalid_token"' };
  function authOf(input, init) {
    const h = init && init.headers;
    if (h) return h instanceof Headers ? h.get('authorization') : (h.Authorization ?? h.authorization ?? new Headers(h).get('authorization'));
    return input instanceof Request ? input.headers.get('authorization') : null;
  }
  globalThis.fetch = function fetch(input, init) {
    const url = typeof input === 'string' ? input : input instanceof Request ? input.url : String(input);
    const api = url.includes('/api/');
    if (!api && !url.includes('/auth/')) return realFetch(input, init);
    if (api) {
      s.apiCalls++;
      if (s.check || s.record) {
        const a = authOf(input, init);
        if (s.record) s.lastAuth = a;
        if (s.check && a !== 'Bearer ' + s.valid) {
          return Promise.resolve(new Response('{"error":"invalid_token"}', { status: 401, headers: unauthorized }));
        }
      }
      return Promise.resolve(new Response('{"sub":"alice"}', { status: 200, headers: json }));
    }
    if (url.includes('/auth/refresh')) s.refreshes++;
    else if (url.includes('/auth/login')) s.logins++;
    else return Promise.resolve(new Response('{}', { status: 200, headers: json }));
    const t = 'tok' + (++s.issued);
    s.valid = t;
    return Promise.resolve(new Response(JSON.stringify({ access_token: t, token_type: 'Bearer', expires_in: s.expiresIn }),
      { status: 200, headers: json }));
  };
}

// Everything below runs inside the page.
async function pageBench({ ROUNDS, CALLS, WARMUP, NS, COALESCE_REPS }) {
  const { authfetch, axios, createAuthRefreshInterceptor } = window.__libs;
  const s = window.__stub;
  const out = { checks: {}, overhead: {}, coalesce: {} };

  // authfetch: sign in through the stub (token tok1).
  await authfetch.login({ username: 'alice', password: 'alice-password' });
  // axios + axios-auth-refresh, wired the way their READMEs show.
  let axiosToken = null;
  const ax = axios.create({ adapter: 'fetch' });
  ax.interceptors.request.use((config) => {
    if (axiosToken) config.headers.Authorization = 'Bearer ' + axiosToken;
    return config;
  });
  const refreshLogic = (failed) =>
    ax.post('/auth/refresh', null, { headers: { 'x-authfetch': '1' }, skipAuthRefresh: true }).then((r) => {
      axiosToken = r.data.access_token;
      failed.response.config.headers.Authorization = 'Bearer ' + axiosToken;
    });
  createAuthRefreshInterceptor(ax, refreshLogic);
  window.__benchAxios = ax;
  // The same, with deduplicateRefresh off: by default, 401s that come back while a refresh is
  // running are rejected instead of retried (only requests *sent* during it are queued).
  const ax2 = axios.create({ adapter: 'fetch' });
  ax2.interceptors.request.use((config) => {
    if (axiosToken) config.headers.Authorization = 'Bearer ' + axiosToken;
    return config;
  });
  createAuthRefreshInterceptor(ax2, (failed) =>
    ax2.post('/auth/refresh', null, { headers: { 'x-authfetch': '1' }, skipAuthRefresh: true }).then((r) => {
      axiosToken = r.data.access_token;
      failed.response.config.headers.Authorization = 'Bearer ' + axiosToken;
    }), { deduplicateRefresh: false });
  const axLogin = await ax.post('/auth/login', { username: 'alice', password: 'alice-password' }, { headers: { 'x-authfetch': '1' } });
  axiosToken = axLogin.data.access_token;
  // authfetch's token was issued first; re-login so both hold *a* token the stub accepts when
  // checking is on (the stub accepts only the latest token: each library refreshes on its own).
  const rawToken = 'raw';

  const libs = {
    fetch: async () => { const r = await fetch('/api/me', { headers: { Authorization: 'Bearer ' + rawToken } }); await r.json(); },
    authFetch: async () => { const r = await authfetch.authFetch('/api/me'); await r.json(); },
    'axios + axios-auth-refresh': async () => { await ax.get('/api/me'); },
  };
  const bare = {
    fetch: () => fetch('/api/me', { headers: { Authorization: 'Bearer ' + rawToken } }),
    authFetch: () => authfetch.authFetch('/api/me'),
  };
  // The platform steps authFetch's bridge takes per call, each on its own around raw fetch (call
  // + JSON body), to put a number on them outside the profiler: a Request object, its clone with
  // the header set on the clone (the bridge's send()), an abort listener added and removed.
  const hdr = { Authorization: 'Bearer ' + rawToken };
  const parts = {
    fetch: async () => { const r = await fetch('/api/me', { headers: hdr }); await r.json(); },
    'fetch(new Request(url))': async () => { const r = await fetch(new Request('/api/me', { headers: hdr })); await r.json(); },
    'fetch(new Request(url).clone() + Headers.set)': async () => {
      const q = new Request('/api/me'); const c = q.clone(); c.headers.set('authorization', 'Bearer ' + rawToken);
      const r = await fetch(c); await r.json();
    },
    'fetch + abort listener add/remove': async () => {
      const sig = new AbortController().signal; const on = () => {};
      sig.addEventListener('abort', on, { once: true });
      const r = await fetch('/api/me', { headers: hdr }); await r.json();
      sig.removeEventListener('abort', on);
    },
  };

  // Correctness of the set-up: each library really attaches its bearer.
  s.record = true;
  for (const [k, f] of Object.entries(libs)) { s.lastAuth = null; await f(); out.checks[k] = s.lastAuth; }
  s.record = false;

  async function loop(f, n) {
    const t0 = performance.now();
    for (let i = 0; i < n; i++) await f();
    return ((performance.now() - t0) / n) * 1000; // µs per call
  }
  for (const [group, set] of [['withBody', libs], ['callOnly', bare], ['platformSteps', parts]]) {
    const names = Object.keys(set);
    for (const k of names) await loop(set[k], WARMUP);
    const per = Object.fromEntries(names.map((k) => [k, []]));
    for (let r = 0; r < ROUNDS; r++) {
      // rotate the order every round so that no library always runs first/last
      const order = names.map((_, i) => names[(i + r) % names.length]);
      for (const k of order) per[k].push(await loop(set[k], CALLS));
    }
    out.overhead[group] = per;
  }

  // Coalescing: N concurrent calls, all sent with a token the server no longer accepts.
  s.check = true;
  const one = {
    authFetch: () => authfetch.authFetch('/api/me').then((r) => r.status),
    'axios + axios-auth-refresh': () => ax.get('/api/me').then((r) => r.status, (e) => e.response?.status ?? 0),
    'axios + axios-auth-refresh (deduplicateRefresh: false)': () => ax2.get('/api/me').then((r) => r.status, (e) => e.response?.status ?? 0),
  };
  for (const [k, f] of Object.entries(one)) {
    out.coalesce[k] = {};
    for (const N of NS) {
      const reps = [];
      for (let rep = 0; rep < COALESCE_REPS; rep++) {
        s.valid = null; await f(); // makes the library refresh once and hold the valid token
        let t0 = performance.now();
        let st = await Promise.all(Array.from({ length: N }, f));
        const baseMs = performance.now() - t0;
        const okBase = st.every((x) => x === 200);
        s.valid = 'revoked'; // every token held so far is now rejected with 401 invalid_token
        const r0 = s.refreshes, a0 = s.apiCalls;
        t0 = performance.now();
        st = await Promise.all(Array.from({ length: N }, f));
        const expMs = performance.now() - t0;
        reps.push({ baseMs, expMs, addedMs: expMs - baseMs, refreshes: s.refreshes - r0, apiCalls: s.apiCalls - a0,
          ok: st.filter((x) => x === 200).length, okBase });
      }
      out.coalesce[k][N] = reps;
    }
  }
  s.check = false;
  return out;
}

// Benchmark 3 once more, against the real authfetch-server on loopback (bench/browser/real/):
// tokens really expire (--access-ttl), refreshes are counted by the server (/debug/stats).
// The access TTL must outlast a whole batch: on this machine Chromium's six connections per
// host serialise 1000 calls into several seconds (raw fetch too), so N = 1000 gets its own
// server with a longer TTL (and one repetition, since every one waits for the TTL to lapse).
const REAL_RUNS = quick ? [{ ttlS: 3, Ns: [1, 10, 100], reps: 1 }]
  : [{ ttlS: 3, Ns: [1, 10, 100], reps: COALESCE_REPS_REAL }, { ttlS: 30, Ns: [1000], reps: 1 }];
async function coalesceReal(browser) {
  const all = { byN: {}, ttlByN: {} };
  for (const run of REAL_RUNS) {
    const r = await coalesceRealOnce(browser, run.ttlS, run.Ns, run.reps);
    if (r.skipped) return r;
    all.server = r.server;
    for (const [N, reps] of Object.entries(r.byN)) { all.byN[N] = reps; all.ttlByN[N] = run.ttlS; }
  }
  return all;
}
async function coalesceRealOnce(browser, REAL_TTL_S, Ns, reps) {
  const bin = ['release', 'debug'].map((p) => path.join(root, 'target', p, 'authfetch-server')).find((f) => fs.existsSync(f));
  if (!bin) { console.error('browser bench: no authfetch-server binary; the real-server coalescing run is skipped'); return { skipped: 'no authfetch-server binary (cargo build --release -p authfetch-server)' }; }
  const { spawn } = await import('node:child_process');
  const os = await import('node:os');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'authfetch-bench-coalesce-'));
  const child = spawn(bin, ['--listen', '127.0.0.1:0', '--data-dir', dir, '--demo', '--debug-stats',
    '--access-ttl', `${REAL_TTL_S}s`, '--www', path.join(here, 'real'), '--pkg', pkgDir], { stdio: ['ignore', 'pipe', 'pipe'] });
  try {
    const url = await new Promise((resolve, reject) => {
      let out = '';
      const t = setTimeout(() => reject(new Error(`authfetch-server did not start:\n${out}`)), 60000);
      const on = (d) => { out += d; const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out); if (m) { clearTimeout(t); resolve(m[1]); } };
      child.stdout.on('data', on); child.stderr.on('data', on);
      child.on('exit', (c) => { clearTimeout(t); reject(new Error(`authfetch-server exited (${c}):\n${out}`)); });
    });
    const page = await browser.newPage();
    page.on('pageerror', (e) => console.error('[real page error]', e.message));
    await page.goto(url + '/');
    await page.waitForFunction(() => window.__ready === true, null, { timeout: 30000 });
    await page.evaluate(() => window.__bench.login());
    const byN = {};
    for (const N of Ns) {
      byN[N] = [];
      for (let rep = 0; rep < reps; rep++) byN[N].push(await page.evaluate(([n, ttl]) => window.__bench.round(n, ttl), [N, REAL_TTL_S * 1000]));
    }
    await page.close();
    return { server: path.relative(root, bin), byN };
  } finally {
    child.removeAllListeners('exit');
    child.kill('SIGTERM');
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

// DevTools CPU profiles of each library's per-call loop (call + JSON body), self time grouped.
async function cpuProfiles(page, n) {
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Profiler.enable');
  await cdp.send('Profiler.setSamplingInterval', { interval: 50 });
  const out = {};
  for (const lib of ['fetch', 'authFetch', 'axios + axios-auth-refresh']) {
    await page.evaluate(async ({ lib, n }) => {
      // the same loop bodies as pageBench; warm-up first
      const { authfetch } = window.__libs;
      const ax = window.__benchAxios;
      const f = {
        fetch: async () => { const r = await fetch('/api/me', { headers: { Authorization: 'Bearer raw' } }); await r.json(); },
        authFetch: async () => { const r = await authfetch.authFetch('/api/me'); await r.json(); },
        'axios + axios-auth-refresh': async () => { await ax.get('/api/me'); },
      }[lib];
      for (let i = 0; i < 2000; i++) await f();
      window.__profLoop = async () => { const t0 = performance.now(); for (let i = 0; i < n; i++) await f(); return performance.now() - t0; };
    }, { lib, n });
    await cdp.send('Profiler.start');
    const ms = await page.evaluate(() => window.__profLoop());
    const { profile } = await cdp.send('Profiler.stop');
    out[lib] = summarizeProfile(profile, ms, n);
  }
  await cdp.detach();
  return out;
}

function summarizeProfile(profile, loopMs, n) {
  const byId = new Map(profile.nodes.map((x) => [x.id, x]));
  const self = new Map();
  for (let i = 0; i < profile.samples.length; i++) {
    const dt = profile.timeDeltas[i + 1] ?? 0; // time until the next sample belongs to this one
    self.set(profile.samples[i], (self.get(profile.samples[i]) ?? 0) + dt);
  }
  const src = (cf) => {
    const u = cf.url || '';
    if (u.startsWith('wasm://') || /\.wasm/.test(u)) return 'authfetch .wasm';
    if (/\/pkg\/authfetch\.js/.test(u)) return 'wasm-bindgen glue (authfetch.js)';
    if (/\/pkg\/index\.js/.test(u)) return 'authfetch entry (index.js)';
    if (/bridge\.js/.test(u)) return 'authfetch bridge (bridge.js)';
    if (/axios/.test(u)) return 'axios + axios-auth-refresh';
    if (!u && /^\((program|garbage collector|idle|root)\)$/.test(cf.functionName)) return `V8 ${cf.functionName}`;
    if (!u) return 'V8 / Blink built-ins (native)';
    return 'page (stub, loop)';
  };
  const bySrc = {}, byFn = {};
  let total = 0;
  for (const [id, us] of self) {
    const cf = byId.get(id).callFrame;
    if (cf.functionName === '(idle)') continue;
    total += us;
    const k = src(cf);
    bySrc[k] = (bySrc[k] ?? 0) + us;
    const fk = `${cf.functionName || '(anonymous)'} [${k}${cf.url ? `:${cf.lineNumber + 1}` : ''}]`;
    byFn[fk] = (byFn[fk] ?? 0) + us;
  }
  const perCall = (us) => Number((us / n).toFixed(2));
  return {
    calls: n, loopUsPerCall: Number(((loopMs * 1000) / n).toFixed(2)), sampledUsPerCall: perCall(total),
    bySource: Object.entries(bySrc).sort((a, b) => b[1] - a[1]).map(([k, v]) => ({ source: k, usPerCall: perCall(v), pct: Number(((100 * v) / total).toFixed(1)) })),
    topFunctions: Object.entries(byFn).sort((a, b) => b[1] - a[1]).slice(0, 20).map(([k, v]) => ({ fn: k, usPerCall: perCall(v), pct: Number(((100 * v) / total).toFixed(1)) })),
  };
}

// The same browser and flags as the end-to-end tests (playwright.config.mjs).
const { CHROMIUM_ARGS } = await import(pathToFileURL(path.join(root, 'playwright.config.mjs')).href);
const browser = await chromium.launch({
  executablePath: process.env.AUTHFETCH_CHROMIUM || '/usr/bin/chromium',
  args: CHROMIUM_ARGS,
});
let result;
try {
  const page = await browser.newPage();
  page.on('console', (m) => { if (m.type() === 'error') console.error('[page]', m.text()); });
  page.on('pageerror', (e) => console.error('[page error]', e.message));
  await page.addInitScript(installStub);
  await page.goto(origin + '/');
  await page.waitForFunction(() => window.__ready === true, null, { timeout: 30000 });
  result = await page.evaluate(pageBench, { ROUNDS, CALLS, WARMUP, NS, COALESCE_REPS });
  result.chromium = browser.version();
  if (profileCalls) result.profiles = await cpuProfiles(page, profileCalls);
  try {
    result.coalesceReal = await coalesceReal(browser);
  } catch (e) {
    console.error(`browser bench: the real-server coalescing run failed: ${e.message}`);
    result.coalesceReal = { skipped: `failed: ${String(e.message).split('\n')[0]}` };
  }
} finally {
  await browser.close();
  server.close();
}

const med = (xs) => { const a = [...xs].sort((x, y) => x - y); const m = a.length >> 1; return a.length % 2 ? a[m] : (a[m - 1] + a[m]) / 2; };
const summary = { chromium: result.chromium, rounds: ROUNDS, callsPerRound: CALLS, checks: result.checks, overhead: {}, coalesce: {} };
for (const [group, per] of Object.entries(result.overhead)) {
  const base = per.fetch;
  summary.overhead[group] = {};
  for (const [k, xs] of Object.entries(per)) {
    const over = xs.map((x, i) => x - base[i]);
    summary.overhead[group][k] = { medianUs: med(xs), overheadUs: med(over), ratio: med(xs.map((x, i) => x / base[i])), runsUs: xs };
  }
}
for (const [k, byN] of Object.entries(result.coalesce)) {
  summary.coalesce[k] = {};
  for (const [N, reps] of Object.entries(byN)) {
    summary.coalesce[k][N] = {
      refreshes: med(reps.map((r) => r.refreshes)), maxRefreshes: Math.max(...reps.map((r) => r.refreshes)),
      ok: Math.min(...reps.map((r) => r.ok)), apiCalls: med(reps.map((r) => r.apiCalls)),
      baseMs: med(reps.map((r) => r.baseMs)), expiredMs: med(reps.map((r) => r.expMs)), addedMs: med(reps.map((r) => r.addedMs)),
    };
  }
}
if (result.profiles) summary.profiles = result.profiles;
if (result.coalesceReal?.byN) {
  const c = result.coalesceReal;
  summary.coalesceReal = { server: c.server, byN: {} };
  for (const [N, reps] of Object.entries(c.byN)) {
    summary.coalesceReal.byN[N] = {
      accessTtlS: c.ttlByN[N], reps: reps.length,
      refreshes: med(reps.map((r) => r.refreshes)), maxRefreshes: Math.max(...reps.map((r) => r.refreshes)),
      ok: Math.min(...reps.map((r) => r.ok)), okBase: Math.min(...reps.map((r) => r.okBase)),
      refreshesDuringBase: Math.max(...reps.map((r) => r.refreshesDuringBase)),
      baseMs: med(reps.map((r) => r.baseMs)), expiredMs: med(reps.map((r) => r.expMs)), addedMs: med(reps.map((r) => r.addedMs)),
    };
  }
} else if (result.coalesceReal) summary.coalesceReal = result.coalesceReal;
if (outPath) { fs.mkdirSync(path.dirname(outPath), { recursive: true }); fs.writeFileSync(outPath, JSON.stringify({ summary, raw: result }, null, 2)); }
console.log(`Chromium ${summary.chromium}; bearer attached: ${JSON.stringify(summary.checks)}`);
for (const [group, rows] of Object.entries(summary.overhead)) {
  console.log(`per call (${group}, median of ${ROUNDS} × ${CALLS}):`);
  for (const [k, v] of Object.entries(rows)) {
    console.log(`  ${k.padEnd(28)} ${v.medianUs.toFixed(2).padStart(8)} µs   overhead ${v.overheadUs.toFixed(2).padStart(7)} µs   ×${v.ratio.toFixed(2)}`);
  }
}
for (const [k, byN] of Object.entries(summary.coalesce)) {
  console.log(`coalescing, ${k}:`);
  for (const [N, v] of Object.entries(byN)) {
    console.log(`  N=${String(N).padStart(4)}  refreshes ${v.refreshes} (max ${v.maxRefreshes})  ok ${v.ok}/${N}  added ${v.addedMs.toFixed(2)} ms (valid ${v.baseMs.toFixed(2)} ms, expired ${v.expiredMs.toFixed(2)} ms)`);
  }
}
if (summary.coalesceReal?.byN) {
  console.log(`coalescing, authFetch against the real server (${summary.coalesceReal.server}):`);
  for (const [N, v] of Object.entries(summary.coalesceReal.byN)) {
    console.log(`  N=${String(N).padStart(4)}  TTL ${v.accessTtlS} s  refreshes ${v.refreshes} (max ${v.maxRefreshes})  ok ${v.ok}/${N}  added ${v.addedMs.toFixed(2)} ms (valid ${v.baseMs.toFixed(2)} ms, expired ${v.expiredMs.toFixed(2)} ms)`);
  }
}
if (summary.profiles) {
  for (const [k, p] of Object.entries(summary.profiles)) {
    console.log(`CPU profile, ${k} (${p.calls} calls, ${p.loopUsPerCall} µs/call under the profiler; sampled ${p.sampledUsPerCall} µs/call):`);
    for (const b of p.bySource) console.log(`  ${String(b.usPerCall).padStart(7)} µs/call ${String(b.pct).padStart(5)}%  ${b.source}`);
    for (const t of p.topFunctions.slice(0, 10)) console.log(`      ${String(t.usPerCall).padStart(7)} µs  ${t.fn}`);
  }
}
