// Benchmarks 4 and 5: authfetch-server and the Node reference peer (bench/node-ref) under the
// same load, in the same run, on loopback. The server is pinned to core 0 (`taskset -c 0`), the
// load generator (bench/loadgen, and wrk for a cross-check of the static-bearer load) to core 1.
//
// Scenarios, each run RUNS times against a fresh peak-RSS counter (VmHWM reset through
// /proc/PID/clear_refs), medians reported:
//   refresh — every virtual client owns a family and adopts each rotated cookie
//   bearer  — GET /api/me with one static ES256 bearer (verification cost)
//   login   — POST /auth/login (Argon2id m=19456 KiB, t=2 on authfetch-server)
//
// The authfetch peer is bench/server-harness (`authfetch-bench-server`): authfetch-server's own
// library and command line with only the per-IP/per-account rate limits raised (the binary has
// no flag for that, and its defaults — 600 refreshes/min/IP — would answer a one-address load
// test with 429s). BENCH_SERVER_BIN overrides the binary (e.g. target/release/authfetch-server
// once it grows such a flag; pass it in BENCH_SERVER_FLAGS).
//
// --profile: during the last run of every scenario, `perf record` (cpu-clock, call graphs) the
// server process and write the top symbols to bench/results/profile-<peer>-<scenario>.txt
// (node-ref is then started with --perf-basic-prof so that JIT frames have names).
//
//   node bench/server/server.mjs [--out bench/results/server.json] [--quick] [--only authfetch|node-ref] [--profile] [--runs N]
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { summarize, format } from './perf-summary.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const bench = path.resolve(here, '..');
const root = path.resolve(bench, '..');
const args = process.argv.slice(2);
const outPath = args.includes('--out') ? args[args.indexOf('--out') + 1] : null;
const quick = args.includes('--quick');
const only = args.includes('--only') ? args[args.indexOf('--only') + 1] : null;
const hasPerf = (() => { try { execFileSync('perf', ['--version'], { stdio: 'ignore' }); return true; } catch { return false; } })();
const profile = args.includes('--profile') && hasPerf;
const onlyScenario = args.includes('--scenario') ? args[args.indexOf('--scenario') + 1] : null;

const RUNS = args.includes('--runs') ? Number(args[args.indexOf('--runs') + 1]) : quick ? 1 : 5;
const DURATION = quick ? 2 : 4; // seconds measured per run (after WARMUP)
const WARMUP = 1;
const CLIENTS = Number(process.env.BENCH_CLIENTS ?? 64);
const LOADGEN = path.join(bench, 'loadgen', 'target', 'release', 'authfetch-loadgen');
const SERVER_BIN = process.env.BENCH_SERVER_BIN
  ? path.resolve(process.env.BENCH_SERVER_BIN)
  : path.join(root, 'target', 'release', 'authfetch-bench-server');
const RESULTS = path.join(bench, 'results');
const USERS = 'alice:alice-password,bob:bob-password';
const cpus = os.cpus().length;
const SERVER_CPU = '0';
const LOAD_CPU = cpus > 1 ? '1' : '0';

// Extra flags for authfetch-server (e.g. raising per-IP rate limits for a load test): taken from
// BENCH_SERVER_FLAGS, or from whatever the binary's --help offers (see serverFlags()).
function serverFlags() {
  if (process.env.BENCH_SERVER_FLAGS) return process.env.BENCH_SERVER_FLAGS.split(/\s+/).filter(Boolean);
  let help = '';
  try { help = execFileSync(SERVER_BIN, ['--help'], { encoding: 'utf8' }); } catch (e) { help = String(e.stdout ?? ''); }
  const flags = [];
  // A benchmark sends tens of thousands of requests a second from one address: per-IP limits
  // (600 refreshes/min by default) would turn nearly all of them into 429s.
  for (const f of ['--no-rate-limit', '--disable-rate-limits', '--rate-limit-off']) if (help.includes(f)) { flags.push(f); break; }
  if (!flags.length && help.includes('--rate-limit-scale')) flags.push('--rate-limit-scale', '1000000');
  if (help.includes('--debug-stats')) flags.push('--debug-stats');
  return flags;
}

const PEERS = {
  authfetch: () => ({
    name: 'authfetch-server',
    cmd: SERVER_BIN,
    args: (dir) => ['--listen', '127.0.0.1:0', '--data-dir', dir, '--demo', ...serverFlags()],
  }),
  // Diagnostic, not a peer: the same authfetch server with glibc's malloc told to keep a fixed
  // mmap threshold (128 KiB). With the default (dynamic) threshold, each Argon2id buffer
  // (19 MiB) is served from — and kept in — the malloc arenas of the blocking-pool threads, and
  // RSS grows with every batch of logins; with a fixed threshold it is mmap'd and returned.
  // Shows how much of the RSS is that allocator behaviour. BENCH_NO_DIAG=1 skips it.
  'authfetch-mmap128k': () => ({
    name: 'authfetch-server, GLIBC_TUNABLES=glibc.malloc.mmap_threshold=131072 (diagnostic)',
    cmd: SERVER_BIN,
    env: { GLIBC_TUNABLES: 'glibc.malloc.mmap_threshold=131072' },
    args: (dir) => ['--listen', '127.0.0.1:0', '--data-dir', dir, '--demo', ...serverFlags()],
  }),
  'node-ref': () => ({
    name: 'node-ref (node:http + jose + better-sqlite3)',
    cmd: process.execPath,
    // --perf-basic-prof makes V8 write /tmp/perf-PID.map (removed after the run) and an
    // isolate-*.log into its working directory: the data dir, so nothing lands in the repo.
    cwdIsDataDir: true,
    args: (dir) => [...(profile ? ['--perf-basic-prof'] : []), path.join(bench, 'node-ref', 'server.mjs'), '--listen', '127.0.0.1:0', '--data-dir', dir],
  }),
};

function startServer(spec) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'authfetch-bench-'));
  const child = spawn('taskset', ['-c', SERVER_CPU, spec.cmd, ...spec.args(dir)], {
    cwd: spec.cwdIsDataDir ? dir : root,
    stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'warn', ...(spec.env ?? {}) },
  });
  let out = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`${spec.name} did not start in 60 s:\n${out}`)); }, 60000);
    const onData = (d) => {
      out += d;
      const m = /listening on http:\/\/(127\.0\.0\.1:\d+)/.exec(out);
      if (m) { clearTimeout(timer); resolve({ child, addr: m[1], dir, pid: child.pid }); }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`${spec.name} exited (${code}):\n${out}`)); });
  });
}

async function stopServer(s) {
  s.child.removeAllListeners('exit');
  const done = new Promise((r) => s.child.once('exit', r));
  s.child.kill('SIGTERM');
  const t = setTimeout(() => s.child.kill('SIGKILL'), 5000);
  await done; clearTimeout(t);
  fs.rmSync(s.dir, { recursive: true, force: true });
  fs.rmSync(`/tmp/perf-${s.pid}.map`, { force: true });
}

// taskset is the parent; the server is its exec'd image (same pid).
function rssKiB(pid) {
  const st = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const get = (k) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(st)?.[1] ?? NaN);
  return { hwm: get('VmHWM'), rss: get('VmRSS') };
}
// CPU seconds (user + system, all threads) the process has used so far.
const CLK_TCK = (() => { try { return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100; } catch { return 100; } })();
function cpuSeconds(pid) {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) / CLK_TCK; // utime, stime (fields 14, 15)
}
// Threads now, and context switches summed over the live threads (blocking-pool hand-offs).
function sched(pid) {
  let ctx = 0, threads = 0;
  try {
    for (const t of fs.readdirSync(`/proc/${pid}/task`)) {
      try {
        const st = fs.readFileSync(`/proc/${pid}/task/${t}/status`, 'utf8');
        ctx += Number(/voluntary_ctxt_switches:\s+(\d+)/.exec(st)?.[1] ?? 0) + Number(/nonvoluntary_ctxt_switches:\s+(\d+)/.exec(st)?.[1] ?? 0);
        threads++;
      } catch { /* thread exited */ }
    }
  } catch { /* process gone */ }
  return { ctx, threads };
}
function resetPeak(pid) { try { fs.writeFileSync(`/proc/${pid}/clear_refs`, '5'); return true; } catch { return false; } }

function run(cmd, argv, timeoutMs, onErr = null) {
  return new Promise((resolve) => {
    const c = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '', err = '';
    c.stdout.on('data', (d) => { out += d; });
    c.stderr.on('data', (d) => { err += d; if (onErr) onErr(err); });
    const t = setTimeout(() => c.kill('SIGKILL'), timeoutMs);
    c.on('exit', (code) => { clearTimeout(t); resolve({ code, out, err }); });
  });
}

const loadavg = () => os.loadavg().map((x) => x.toFixed(2)).join(' ');

// perf record of the server process for `seconds`, then its hottest symbols (self time).
function perfStart(pid, file) {
  return spawn('perf', ['record', '-F', '1999', '-g', '-p', String(pid), '-o', file], { stdio: 'ignore' });
}
async function perfStop(p, file, outTxt) {
  const done = new Promise((r) => p.once('exit', r));
  p.kill('SIGINT');
  await done;
  let s = null;
  try {
    s = summarize(file);
    fs.writeFileSync(outTxt, `# perf record -F 1999 -g -p <server> (cpu-clock), measured load only\n${format(s)}\n`);
  } catch (e) {
    fs.writeFileSync(outTxt, `perf report failed: ${e}\n`);
  }
  fs.rmSync(file, { force: true });
  return s;
}

// onStart: called once the load generator has finished its set-up (logins) and starts loading.
async function loadgen(mode, addr, extra = [], onStart = null) {
  const argv = ['-c', LOAD_CPU, LOADGEN, mode, '--addr', addr, '--users', USERS, '--warmup', String(WARMUP), ...extra];
  let started = false;
  const r = await run('taskset', argv, 300000, (err) => {
    if (!started && onStart && err.includes('loadgen: load started')) { started = true; onStart(); }
  });
  if (r.code !== 0) return { error: (r.err || r.out).trim().slice(0, 500) };
  return JSON.parse(r.out.trim().split('\n').pop());
}

async function wrkBearer(addr, token) {
  if (!token) return null;
  try { execFileSync('which', ['wrk'], { stdio: 'ignore' }); } catch { return null; }
  const r = await run('taskset', ['-c', LOAD_CPU, 'wrk', '-t1', `-c${CLIENTS}`, `-d${DURATION}s`, '--latency',
    '-H', `Authorization: Bearer ${token}`, `http://${addr}/api/me`], 120000);
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(r.out)?.[1]);
  const unit = (v, u) => Number(v) * ({ us: 1, ms: 1000, s: 1e6 }[u] ?? 1);
  const p = (q) => { const m = new RegExp(`\\s${q}%\\s+([\\d.]+)(us|ms|s)`).exec(r.out); return m ? unit(m[1], m[2]) : null; };
  const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(r.out)?.[1] ?? 0);
  const sockErr = /Socket errors:.*/.exec(r.out)?.[0] ?? null;
  return { rps, p50_us: p(50), p99_us: p(99), non2xx, sockErr };
}

async function getToken(addr) {
  const r = await fetch(`http://${addr}/auth/login`, {
    method: 'POST', headers: { 'content-type': 'application/json', 'x-authfetch': '1' },
    body: JSON.stringify({ username: 'bob', password: 'bob-password' }),
  });
  if (!r.ok) return null;
  return (await r.json()).access_token;
}

const med = (xs) => { const a = xs.filter((x) => Number.isFinite(x)).sort((x, y) => x - y); if (!a.length) return null; const m = a.length >> 1; return a.length % 2 ? a[m] : (a[m - 1] + a[m]) / 2; };

const SCENARIOS = [
  { name: 'refresh', mode: 'refresh', extra: ['--clients', String(CLIENTS), '--requests', '5000000', '--duration', String(DURATION), '--login-concurrency', '2'] },
  { name: 'bearer', mode: 'bearer', extra: ['--clients', String(CLIENTS), '--requests', '5000000', '--duration', String(DURATION), '--path', '/api/me'] },
  { name: 'login', mode: 'login', extra: ['--clients', '4', '--requests', '2000', '--duration', String(DURATION)] },
  // The same two loads as a DPoP client (bench/loadgen --dpop: bound logins, a proof per request;
  // BENCHMARKS.md §0c). authfetch-server only: the Node reference has no DPoP.
  { name: 'refresh-dpop', mode: 'refresh', only: 'authfetch', extra: ['--dpop', '--clients', String(CLIENTS), '--requests', '5000000', '--duration', String(DURATION), '--login-concurrency', '2'] },
  { name: 'bearer-dpop', mode: 'bearer', only: 'authfetch', extra: ['--dpop', '--clients', String(CLIENTS), '--requests', '5000000', '--duration', String(DURATION), '--path', '/api/me'] },
  // The ceiling of this HTTP stack + load generator on these two cores: a static route with no
  // crypto and no store (GET /.well-known/jwks.json, served from memory). authfetch-server only.
  { name: 'floor (GET jwks.json)', mode: 'bearer', only: 'authfetch', extra: ['--clients', String(CLIENTS), '--requests', '5000000', '--duration', String(DURATION), '--path', '/.well-known/jwks.json'] },
];

// What one signature / verification costs on the server's core, per library (evidence for the
// profile): bench/crypto-micro, built by run.sh into the root target dir.
async function cryptoMicro() {
  const bin = path.join(root, 'target', 'release', 'authfetch-crypto-micro');
  if (!fs.existsSync(bin)) return null;
  const r = await run('taskset', ['-c', SERVER_CPU, bin, '--iters', quick ? '100' : '300'], 300000);
  try { return { ...JSON.parse(r.out.trim().split('\n').pop()), loadavg: loadavg() }; } catch { return null; }
}

const results = { binary: path.relative(root, SERVER_BIN), loadavgStart: loadavg(), crypto: only ? null : await cryptoMicro(), runs: RUNS, durationS: DURATION, warmupS: WARMUP, clients: CLIENTS, serverCpu: SERVER_CPU, loadCpu: LOAD_CPU, peers: {} };
for (const [key, mk] of Object.entries(PEERS)) {
  if (only && only !== key) continue;
  if (key === 'authfetch-mmap128k' && process.env.BENCH_NO_DIAG) continue;
  const spec = mk();
  if (key.startsWith('authfetch') && !fs.existsSync(spec.cmd)) {
    console.error(`server bench: ${spec.cmd} is missing (cargo build --release -p authfetch-server)`);
    results.peers[key] = { name: spec.name, missing: true };
    continue;
  }
  const peer = { name: spec.name, flags: key.startsWith('authfetch') ? serverFlags() : [], env: spec.env ?? null, scenarios: {} };
  results.peers[key] = peer;
  const srv = await startServer(spec);
  try {
    const startRss = rssKiB(srv.pid);
    peer.idleRssKiB = startRss.rss;
    for (const sc of SCENARIOS) {
      if (onlyScenario && onlyScenario !== sc.name) continue;
      if (sc.only && sc.only !== key) continue;
      const runs = [];
      let profiled = null;
      // With --profile, one extra run under perf, kept out of the medians (perf costs a little).
      const diag = key === 'authfetch-mmap128k';
      const nRuns = diag ? Math.min(RUNS, 3) : RUNS;
      for (let i = 0; i < nRuns + (profile && !diag ? 1 : 0); i++) {
        resetPeak(srv.pid);
        const load0 = loadavg();
        const prof = profile && !diag && i === nRuns;
        const slug = sc.name.replace(/[^A-Za-z0-9]+/g, "-").replace(/-$/, "");
        const pfile = path.join(RESULTS, `perf-${key}-${slug}.data`);
        // perf attaches once the load generator's set-up (logins) is done, so that the profile
        // shows the measured load only.
        let perfProc = null, cpu0 = null, sched0 = null;
        const r = await loadgen(sc.mode, srv.addr, sc.extra, () => {
          cpu0 = cpuSeconds(srv.pid);
          sched0 = sched(srv.pid);
          if (prof) perfProc = perfStart(srv.pid, pfile);
        });
        if (cpu0 != null && !r.error) {
          // Server CPU per request over the whole load phase (warm-up included), and how busy
          // its core was: below ~95 % the server was not the bottleneck (or shared its core).
          const dcpu = cpuSeconds(srv.pid) - cpu0;
          r.serverCpuUsPerReq = r.sent_total ? (dcpu * 1e6) / r.sent_total : null;
          r.serverCpuBusy = r.load_s ? dcpu / r.load_s : null;
          const sc1 = sched(srv.pid);
          r.serverThreads = sc1.threads;
          r.ctxSwitchesPerReq = r.sent_total ? Math.max(0, sc1.ctx - sched0.ctx) / r.sent_total : null;
        }
        if (perfProc) {
          const txt = path.join(RESULTS, `profile-${key}-${slug}.txt`);
          r.profile = await perfStop(perfProc, pfile, txt);
        }
        r.peakRssKiB = rssKiB(srv.pid).hwm;
        r.loadavgBefore = load0;
        r.loadavgAfter = loadavg();
        if (prof) profiled = r; else runs.push(r);
        process.stderr.write(`  ${key} ${sc.name} ${prof ? '(under perf, not in the medians)' : `#${i + 1}`}: ${r.error ? 'ERROR ' + r.error : `${r.rps.toFixed(0)} req/s p50 ${r.p50_us} µs p99 ${r.p99_us} µs errors ${r.errors} ${JSON.stringify(r.statuses)} cpu ${r.serverCpuUsPerReq?.toFixed(0)} µs/req busy ${(100 * (r.serverCpuBusy ?? 0)).toFixed(0)}%`} rss ${r.peakRssKiB} KiB load ${load0} → ${r.loadavgAfter}\n`);
      }
      const ok = runs.filter((r) => !r.error);
      peer.scenarios[sc.name] = {
        rps: med(ok.map((r) => r.rps)), p50_us: med(ok.map((r) => r.p50_us)), p99_us: med(ok.map((r) => r.p99_us)),
        errors: ok.reduce((a, r) => a + r.errors, 0), requests: ok.reduce((a, r) => a + r.requests, 0),
        serverCpuUsPerReq: med(ok.map((r) => r.serverCpuUsPerReq)), serverCpuBusy: med(ok.map((r) => r.serverCpuBusy)),
        serverThreads: Math.max(...ok.map((r) => r.serverThreads ?? 0)), ctxSwitchesPerReq: med(ok.map((r) => r.ctxSwitchesPerReq)),
        profile: profiled?.profile ?? null, profiledRun: profiled ? { ...profiled, profile: undefined } : null,
        peakRssKiB: Math.max(...runs.map((r) => r.peakRssKiB)), failedRuns: runs.length - ok.length, runs,
      };
    }
    if (key === 'authfetch' || key === 'node-ref') {
      const tok = await getToken(srv.addr);
      const w = [];
      for (let i = 0; i < Math.min(RUNS, 3); i++) { const x = await wrkBearer(srv.addr, tok); if (x) w.push(x); }
      if (w.length) peer.wrkBearer = { rps: med(w.map((x) => x.rps)), p50_us: med(w.map((x) => x.p50_us)), p99_us: med(w.map((x) => x.p99_us)), non2xx: w.reduce((a, x) => a + x.non2xx, 0), runs: w };
    }
    peer.peakRssKiB = Math.max(...Object.values(peer.scenarios).map((s) => s.peakRssKiB));
    peer.overallHwmKiB = rssKiB(srv.pid).hwm;
    if (key.startsWith('authfetch') && peer.flags.includes('--debug-stats')) {
      try { peer.debugStats = await (await fetch(`http://${srv.addr}/debug/stats`)).json(); } catch { /* optional */ }
    }
  } finally {
    await stopServer(srv);
  }
}
if (outPath) { fs.mkdirSync(path.dirname(outPath), { recursive: true }); fs.writeFileSync(outPath, JSON.stringify(results, null, 2)); }

console.log(`server load: median of ${RUNS} runs × ${DURATION} s (+${WARMUP} s warm-up), ${CLIENTS} keep-alive clients; server on CPU ${SERVER_CPU}, load on CPU ${LOAD_CPU}`);
for (const [key, p] of Object.entries(results.peers)) {
  if (p.missing) { console.log(`${key}: missing`); continue; }
  for (const [sc, v] of Object.entries(p.scenarios)) {
    console.log(`  ${key.padEnd(10)} ${sc.padEnd(8)} ${String(Math.round(v.rps ?? 0)).padStart(7)} req/s  p50 ${String(v.p50_us).padStart(6)} µs  p99 ${String(v.p99_us).padStart(6)} µs  errors ${v.errors}/${v.requests}  peak RSS ${(v.peakRssKiB / 1024).toFixed(1)} MiB  server CPU ${v.serverCpuUsPerReq?.toFixed(0)} µs/req (core ${(100 * (v.serverCpuBusy ?? 0)).toFixed(0)}% busy)`);
  }
  if (p.wrkBearer) console.log(`  ${key.padEnd(10)} wrk /api/me ${Math.round(p.wrkBearer.rps)} req/s  p50 ${p.wrkBearer.p50_us} µs  p99 ${p.wrkBearer.p99_us} µs  non-2xx ${p.wrkBearer.non2xx}`);
}
const a = results.peers.authfetch?.scenarios?.refresh?.rps, n = results.peers['node-ref']?.scenarios?.refresh?.rps;
if (a && n) console.log(`refresh throughput, authfetch-server / node-ref: ×${(a / n).toFixed(2)}`);
