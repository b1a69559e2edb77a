// Shared end-to-end helpers: start the real authfetch-server binary on a free loopback port with
// a fresh data directory, and a Playwright `test` whose `server` fixture does that for each test.
import { test as base, expect } from '@playwright/test';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const SERVER_BIN = process.env.AUTHFETCH_SERVER_BIN || join(ROOT, 'target', 'debug', 'authfetch-server');
/** The packed package, what `npm publish` would upload (scripts/build-pkg.sh writes it). */
export const TARBALL = () => join(ROOT, 'target', `authfetch-${JSON.parse(readFileSync(join(ROOT, 'pkg', 'package.json'), 'utf8')).version}.tgz`);

/** Short token lifetime so expiry and refresh happen within a test; demo users; the stats route. */
export const DEFAULT_ARGS = ['--access-ttl', '3s', '--grace', '10s', '--demo', '--debug-stats'];

/**
 * Starts `authfetch-server --listen 127.0.0.1:0` and resolves once it printed its address.
 * @param {string[]} args extra arguments
 * @param {{dataDir?: string, listen?: string, pkg?: string}} opts reuse a data directory (restart
 *   tests); a fixed `listen` address when the URL must be known before start (OIDC redirect
 *   URIs); another package directory to serve at /pkg/ (the DPoP build)
 */
export async function startServer(args = DEFAULT_ARGS, opts = {}) {
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'authfetch-e2e-'));
  const child = spawn(
    SERVER_BIN,
    ['--listen', opts.listen ?? '127.0.0.1:0', '--data-dir', dataDir, '--www', join(ROOT, 'www'), '--pkg', opts.pkg ?? join(ROOT, 'pkg'), ...args],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'warn' } },
  );
  let log = '';
  const url = await new Promise((resolveUrl, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start in 30 s:\n${log}`)), 30_000);
    const onData = (chunk) => {
      log += chunk;
      const m = /authfetch-server listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(log);
      if (m) {
        clearTimeout(timer);
        resolveUrl(m[1]);
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', (c) => { log += c; });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code} before listening:\n${log}`));
    });
  });
  child.stdout.on('data', (c) => { log += c; });
  return {
    url,
    dataDir,
    /** The server's output so far (for failure messages). */
    log: () => log,
    /** The /debug/stats counters. */
    async stats() {
      const res = await fetch(`${url}/debug/stats`);
      if (!res.ok) throw new Error(`stats: HTTP ${res.status}`);
      return res.json();
    },
    async stop({ keepData = false } = {}) {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      if (!keepData && !opts.dataDir) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Playwright `test` with a fresh server per test (`server`) started with DEFAULT_ARGS. */
export const test = base.extend({
  serverArgs: [DEFAULT_ARGS, { option: true }],
  server: async ({ serverArgs }, use) => {
    const server = await startServer(serverArgs);
    try {
      await use(server);
    } finally {
      await server.stop();
    }
  },
});

export { expect };
