// Shared end-to-end helpers: start the real authfetch-server binary on a free loopback port with
// a fresh data directory, and a Playwright `test` whose `server` fixture does that for each test.
import { test as base, expect } from '@playwright/test';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer as createTcpServer } from 'node:net';
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
 *   URIs); another package directory to serve at /pkg/ (the DPoP entry, pkg/dpop)
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

const CONTENT_TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.wasm': 'application/wasm',
  '.json': 'application/json',
  '.ts': 'text/plain; charset=utf-8',
};

/**
 * A static file server on a free 127.0.0.1 port for pages that live on another origin than
 * authfetch-server (cross-origin deployments): `files` maps a path to its body, and `/pkg/…`
 * serves the built package from pkg/. Resolves to `{ port, close() }`.
 * @param {Record<string, string>} files
 */
export async function startStatic(files = {}) {
  const { createServer } = await import('node:http');
  const { readFile } = await import('node:fs/promises');
  const { extname, normalize } = await import('node:path');
  const server = createServer(async (req, res) => {
    const path = new URL(req.url, 'http://x').pathname;
    const type = CONTENT_TYPES[extname(path)] || 'application/octet-stream';
    if (Object.hasOwn(files, path)) {
      res.writeHead(200, { 'content-type': type }).end(files[path]);
      return;
    }
    const rel = normalize(path).replace(/^\/+/, '');
    if (rel.startsWith('pkg/') && !rel.includes('..')) {
      try {
        const body = await readFile(join(ROOT, rel));
        res.writeHead(200, { 'content-type': type }).end(body);
        return;
      } catch { /* 404 below */ }
    }
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: server.address().port,
    close: () => new Promise((r) => { server.closeAllConnections(); server.close(r); }),
  };
}

/** A loopback TCP port that was free a moment ago (for a process that must be told its port). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createTcpServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}
