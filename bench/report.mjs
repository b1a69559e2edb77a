// Turns bench/results/*.json into markdown tables (bench/results/report.md), each figure next
// to its target. BENCHMARKS.md quotes these tables from the last full run.
//
//   node bench/report.mjs bench/results > bench/results/report.md
import fs from 'node:fs';
import path from 'node:path';

const dir = process.argv[2] ?? 'bench/results';
const load = (f) => { try { return JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')); } catch { return null; } };
const env = load('env.json'), size = load('size.json'), browser = load('browser.json'), server = load('server.json');
const out = [];
const p = (s = '') => out.push(s);
// KB = 1000 bytes (as scripts/build-pkg.sh counts its budget); MiB for memory.
const kb = (n) => (n == null ? '—' : (n / 1000).toFixed(1));
const f1 = (n) => (n == null ? '—' : Number(n).toFixed(1));
const f2 = (n) => (n == null ? '—' : Number(n).toFixed(2));
const int = (n) => (n == null ? '—' : Math.round(n).toLocaleString('en-US'));
const mark = (ok) => (ok == null ? '' : ok ? '✅' : '❌');

if (env) {
  p('### Machine and versions'); p();
  p(`- ${env.nproc} cores, ${env.cpu}, ${env.mem} RAM, Linux ${env.kernel}; load average at start ${env.loadavg}`);
  p(`- ${env.rustc}; Node ${env.node}; ${env.chromium}; ${env.wasmBindgen ?? 'wasm-bindgen: —'}; ${env.wrk ?? 'wrk: —'}`);
  p(`- commit ${env.git}, ${env.date}`);
  if (env.pkgWasmSha256) p(`- measured pkg/: authfetch_bg.wasm sha256 ${env.pkgWasmSha256}…, built ${env.pkgBuilt ?? '—'}`);
  if (env.pkgNote) p(`- **note:** ${env.pkgNote}`);
  p();
}

if (size) {
  p('### 1. Shipped size (esbuild bundle + minify, ESM, es2020; gzip -9; brotli q11; KB = 1000 bytes)'); p();
  p('| library (version) | min KB | gzip KB | brotli KB | vs authfetch (gzip) |');
  p('|---|---:|---:|---:|---:|');
  const af = size.rows.find((r) => r.name === 'authfetch' && !r.missing);
  for (const r of size.rows) {
    if (r.missing) { p(`| ${r.name} | (pkg/ missing) | | | |`); continue; }
    const detail = r.wasm ? ` (JS ${kb(r.js.gz)} + wasm ${kb(r.wasm.gz)})` : '';
    p(`| ${r.name} ${r.version ? `(${r.version})` : ''} | ${kb(r.total.min)} | ${kb(r.total.gz)}${detail} | ${kb(r.total.br)} | ${af ? '×' + (r.total.gz / af.total.gz).toFixed(1) : ''} |`);
  }
  if (af) { p(); p(`Target: authfetch ≤ ${kb(size.budgetGz)} KB gzip → **${kb(af.total.gz)} KB** ${mark(size.pass)}`); }
  if (af?.files) {
    p(); p('Shipped files of pkg/ on their own (the files scripts/build-pkg.sh sums for its test budget of 40 KB = 40,000 bytes; gzip here is Node\'s zlib at level 9, build-pkg.sh uses GNU gzip -9, so the sums differ by a few dozen bytes):'); p();
    p('| file | raw B | gzip -9 B | brotli B |'); p('|---|---:|---:|---:|');
    for (const f of af.files) p(`| ${f.file} | ${f.raw} | ${f.gz} | ${f.br} |`);
    p(`| **sum** | ${af.files.reduce((a, f) => a + f.raw, 0)} | ${af.files.reduce((a, f) => a + f.gz, 0)} | ${af.files.reduce((a, f) => a + f.br, 0)} |`);
  }
  const bd = af?.namedBreakdown ?? af?.wasmBreakdown;
  if (bd) {
    p(); p(`Per-crate breakdown of the .wasm code section (${bd.named ? 'function names from ' + (af.namedBreakdown ? 'a name-keeping build with the same flags' : 'the shipped file') : 'no name section'}; ${bd.totalBytes} bytes in all):`); p();
    p('| crate | code bytes | functions |'); p('|---|---:|---:|');
    for (const c of bd.crates) p(`| ${c.crate} | ${c.bytes} | ${c.functions} |`);
    const other = Object.entries(bd.sections).filter(([k]) => k !== 'code').map(([k, v]) => `${k} ${v}`).join(', ');
    p(); p(`Other sections (bytes): ${other}`);
    if (af.namedBreakdown) p(`(code section of the named build ${af.namedBreakdown.sections.code} B vs shipped ${af.namedBreakdown.codeShipped} B)`);
    if (bd.topFunctions?.length) {
      p(); p('Largest functions (code bytes):'); p();
      p('| bytes | function |'); p('|---:|---|');
      for (const t of bd.topFunctions.slice(0, 15)) p(`| ${t.bytes} | \`${t.name.replace(/\|/g, '\\|')}\` |`);
    }
  }
  p();
}

if (browser) {
  const s = browser.summary;
  p(`### 2. Per-call overhead (headless ${s.chromium}; median of ${s.rounds} rounds × ${s.callsPerRound} sequential calls, stubbed network)`); p();
  p('| call | µs / call | overhead vs fetch (µs) | ratio to fetch |'); p('|---|---:|---:|---:|');
  for (const [group, rows] of Object.entries(s.overhead)) {
    for (const [k, v] of Object.entries(rows)) {
      if (group === 'platformSteps') continue;
      p(`| ${k}${group === 'callOnly' ? ' (call only, body not read)' : ' (call + JSON body)'} | ${f2(v.medianUs)} | ${f2(v.overheadUs)} | ×${f2(v.ratio)} |`);
    }
  }
  const af = s.overhead.withBody?.authFetch, ax = s.overhead.withBody?.['axios + axios-auth-refresh'];
  if (af && ax) {
    p(); p(`Targets: authFetch overhead ≤ axios interceptor overhead → ${f2(af.overheadUs)} µs vs ${f2(ax.overheadUs)} µs ${mark(af.overheadUs <= ax.overheadUs)}; ≤ 10 µs per call → ${f2(af.overheadUs)} µs ${mark(af.overheadUs <= 10)}`);
  }
  if (s.overhead.platformSteps) {
    p(); p('The platform steps of authFetch\'s bridge, each on its own around raw fetch (call + JSON body; same rounds):'); p();
    p('| call | µs / call | added vs fetch (µs) |'); p('|---|---:|---:|');
    for (const [k, v] of Object.entries(s.overhead.platformSteps)) p(`| \`${k}\` | ${f2(v.medianUs)} | ${f2(v.overheadUs)} |`);
  }
  if (s.profiles) {
    p(); p('Where the per-call time goes (DevTools CPU profiler, 50 µs sampling, self time per source; the profiler itself slows every call):'); p();
    const libs = Object.keys(s.profiles);
    const srcs = [...new Set(libs.flatMap((l) => s.profiles[l].bySource.map((b) => b.source)))];
    p(`| source | ${libs.map((l) => `${l} µs/call`).join(' | ')} |`); p(`|---|${libs.map(() => '---:').join('|')}|`);
    for (const src of srcs) p(`| ${src} | ${libs.map((l) => f2(s.profiles[l].bySource.find((b) => b.source === src)?.usPerCall ?? 0)).join(' | ')} |`);
    p(`| **sampled total** | ${libs.map((l) => f2(s.profiles[l].sampledUsPerCall)).join(' | ')} |`);
    const a = s.profiles.authFetch;
    if (a) {
      p(); p('Top functions under authFetch (self µs/call):'); p();
      p('| µs/call | % | function [source:line] |'); p('|---:|---:|---|');
      for (const t of a.topFunctions.slice(0, 15)) p(`| ${f2(t.usPerCall)} | ${t.pct} | \`${t.fn}\` |`);
    }
  }
  p();
  p('### 3. Refresh coalescing (N concurrent calls, every token already rejected by the server; stub answers instantly)'); p();
  p('| library | N | refreshes (median / max) | calls answered 200 | added latency ms (expired − valid) |'); p('|---|---:|---:|---:|---:|');
  for (const [k, byN] of Object.entries(s.coalesce)) {
    for (const [N, v] of Object.entries(byN)) p(`| ${k} | ${N} | ${v.refreshes} / ${v.maxRefreshes} | ${v.ok} / ${N} | ${f2(v.addedMs)} (${f2(v.baseMs)} → ${f2(v.expiredMs)}) |`);
  }
  if (s.coalesceReal?.byN) {
    p(); p(`Against the real server on loopback (\`${s.coalesceReal.server}\`, \`--access-ttl\` as listed, the client configured with \`refreshAheadSeconds: 0\` so the token really is expired; refreshes counted by the server's /debug/stats):`); p();
    p('| N | access TTL s | runs | refreshes at the server (median / max) | calls answered 200 | added latency ms (expired − valid) |'); p('|---:|---:|---:|---:|---:|---:|');
    for (const [N, v] of Object.entries(s.coalesceReal.byN)) p(`| ${N} | ${v.accessTtlS} | ${v.reps} | ${v.refreshes} / ${v.maxRefreshes} | ${v.ok} / ${N} | ${f2(v.addedMs)} (${f2(v.baseMs)} → ${f2(v.expiredMs)}) |`);
  } else if (s.coalesceReal?.skipped) { p(); p(`Real-server coalescing run skipped: ${s.coalesceReal.skipped}`); }
  p();
}

if (server) {
  p(`### 4–5. Server on loopback (median of ${server.runs} runs × ${server.durationS} s after ${server.warmupS} s warm-up; ${server.clients} keep-alive clients; server on CPU ${server.serverCpu}, load generator on CPU ${server.loadCpu})`); p();
  p(`Load average at start ${server.loadavgStart ?? '—'}; binary \`${server.binary ?? '—'}\`.`); p();
  p('| server | scenario | req/s | p50 µs | p99 µs | errors / requests | peak RSS MiB | server CPU µs/req | server core busy | threads / context switches per req | load avg (1 min) per run |'); p('|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|');
  for (const [key, peer] of Object.entries(server.peers)) {
    if (peer.missing) { p(`| ${key} | (binary missing) | | | | | |`); continue; }
    for (const [sc, v] of Object.entries(peer.scenarios)) {
      const la = (v.runs ?? []).map((r) => r.loadavgBefore?.split(' ')[0]).filter(Boolean).join(', ');
      p(`| ${peer.name} | ${sc} | ${int(v.rps)} | ${int(v.p50_us)} | ${int(v.p99_us)} | ${v.errors} / ${v.requests}${v.failedRuns ? ` (${v.failedRuns} runs failed)` : ''} | ${f1(v.peakRssKiB / 1024)} | ${int(v.serverCpuUsPerReq)} | ${v.serverCpuBusy == null ? '—' : Math.round(100 * v.serverCpuBusy) + ' %'} | ${v.serverThreads ?? '—'} / ${f1(v.ctxSwitchesPerReq)} | ${la} |`);
    }
    if (peer.wrkBearer) p(`| ${peer.name} | bearer (wrk cross-check) | ${int(peer.wrkBearer.rps)} | ${int(peer.wrkBearer.p50_us)} | ${int(peer.wrkBearer.p99_us)} | ${peer.wrkBearer.non2xx} non-2xx | | | | | |`);
  }
  const a = server.peers.authfetch, n = server.peers['node-ref'];
  p();
  if (a && !a.missing) {
    const r = a.scenarios.refresh?.rps, b = a.scenarios.bearer?.rps;
    p(`Targets: refresh ≥ 10,000/s → ${int(r)} ${mark(r >= 10000)}; verified ≥ 20,000/s → ${int(b)} ${mark(b >= 20000)}; RSS ≤ 50 MB → ${f1(a.peakRssKiB / 1024)} MiB ${mark(a.peakRssKiB / 1024 <= 50)}`);
    if (a.flags?.length) p(`authfetch-server flags: \`${a.flags.join(' ')}\``);
  }
  if (a && n && !a.missing && !n.missing) {
    const x = a.scenarios.refresh.rps / n.scenarios.refresh.rps;
    p(`Refresh throughput vs the Node reference: ×${f2(x)} (target ≥ ×5) ${mark(x >= 5)}`);
  }
  if (server.crypto?.us) {
    const u = server.crypto.us;
    p(); p(`One signature / verification of a JWT-sized message on the server's core (bench/crypto-micro, median of 5 × ${server.crypto.iters}; load average ${server.crypto.loadavg}):`); p();
    p('| library | ES256 sign µs | ES256 verify µs | Ed25519 sign µs | Ed25519 verify µs |'); p('|---|---:|---:|---:|---:|');
    p(`| RustCrypto p256 0.13 / ed25519-dalek 2 (authfetch-server: Ed25519) | ${f1(u.p256_es256_sign)} | ${f1(u.p256_es256_verify)} | ${f1(u.ed25519_dalek_sign)} | ${f1(u.ed25519_dalek_verify)} |`);
    p(`| ring 0.17 (assembly; authfetch-server: ES256) | ${f1(u.ring_es256_sign)} | ${f1(u.ring_es256_verify)} | ${f1(u.ring_ed25519_sign)} | ${f1(u.ring_ed25519_verify)} |`);
  }
  const profs = Object.entries(server.peers).flatMap(([k, peer]) => Object.entries(peer.scenarios ?? {}).filter(([, v]) => v.profile).map(([sc, v]) => [`${k} ${sc}`, v.profile]));
  if (profs.length) {
    p(); p('Server CPU profile (perf, self time by component, % of the server\'s samples during the measured load):'); p();
    const keys = [...new Set(profs.flatMap(([, pr]) => pr.buckets.map((b) => b.bucket)))];
    p(`| component | ${profs.map(([k]) => k).join(' | ')} |`); p(`|---|${profs.map(() => '---:').join('|')}|`);
    for (const k of keys) p(`| ${k} | ${profs.map(([, pr]) => { const b = pr.buckets.find((x) => x.bucket === k); return b ? b.pct.toFixed(1) : '·'; }).join(' | ')} |`);
  }
  p();
}
console.log(out.join('\n'));
