// Machine and tool versions for the benchmark report.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execSync } from 'node:child_process';

const sh = (c) => { try { return execSync(c, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim(); } catch { return null; } };
const env = {
  date: new Date().toISOString(),
  nproc: sh('nproc'),
  cpu: sh("lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1"),
  mem: sh("free -h | awk '/^Mem:/ {print $2}'"),
  kernel: os.release(),
  rustc: sh('rustc -V'),
  node: process.version,
  chromium: sh('/usr/bin/chromium --version'),
  wasmBindgen: sh('wasm-bindgen --version'),
  wrk: sh('wrk -v 2>&1 | head -1'),
  git: sh('git rev-parse --short HEAD'),
  loadavg: os.loadavg().map((x) => x.toFixed(2)).join(' '),
  // Which pkg/ was measured (the snapshot run.sh takes), and whether its build failed.
  pkgWasmSha256: sh('sha256sum bench/results/pkg/authfetch_bg.wasm 2>/dev/null || sha256sum pkg/authfetch_bg.wasm')?.slice(0, 12) ?? null,
  pkgBuilt: (() => { try { return fs.statSync('pkg/package.json').mtime.toISOString(); } catch { return null; } })(),
  pkgNote: (() => { try { return fs.readFileSync('bench/results/pkg-note.txt', 'utf8').trim(); } catch { return null; } })(),
};
const i = process.argv.indexOf('--out');
if (i > 0) { fs.mkdirSync(path.dirname(process.argv[i + 1]), { recursive: true }); fs.writeFileSync(process.argv[i + 1], JSON.stringify(env, null, 2)); }
console.log(Object.entries(env).map(([k, v]) => `${k}: ${v}`).join('\n'));
