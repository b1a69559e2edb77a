// The "Use it in your app" snippets, exercised: each example app under examples/ is installed
// (its own dependencies only when its lockfile changed) plus the package as users get it: the
// tarball `npm run build` packs (target/authfetch-<version>.tgz), installed with `npm install`,
// which unpacks a copy into node_modules (a `file:` link to pkg/ would be a symlink, which
// bundlers treat differently). Each is built, served by the real authfetch-server under its
// strict CSP, and driven in Chromium until authFetch has signed in and got 200 from /api/me.
// Plus: importing the package in Node (server-side rendering) neither crashes nor touches the
// network.
import { test, expect, ROOT, SERVER_BIN, TARBALL, freePort } from './fixtures.mjs';
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const EXAMPLES = join(ROOT, 'examples');
const PKG = join(ROOT, 'pkg');

test.describe.configure({ timeout: 120_000 });

test.beforeAll(() => {
  if (!existsSync(join(PKG, 'package.json')) || !existsSync(TARBALL())) {
    throw new Error('pkg/ or its tarball is not built: run `bash scripts/build-pkg.sh` first');
  }
});

/** Runs a program to completion: its output in the error when it fails, and a hard time limit. */
function run(cmd, args, cwd, timeout = 90_000) {
  try {
    return execFileSync(cmd, args, {
      cwd,
      timeout,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, npm_config_update_notifier: 'false', NO_COLOR: '1' },
    });
  } catch (err) {
    throw new Error(`${cmd} ${args.join(' ')} (in ${cwd}) failed:\n${err.stdout ?? ''}\n${err.stderr ?? err}`);
  }
}

/**
 * `npm ci` only when node_modules is missing or was installed from another lockfile: the stamp
 * holds the hash of package.json + package-lock.json (as scripts/bootstrap.sh does for the root).
 * Then, every time, the current tarball: `npm install --no-save` unpacks it into
 * node_modules/authfetch without writing its path (a build artefact) into the example's manifest.
 */
function install(dir) {
  const stamp = join(dir, 'node_modules', '.authfetch-lock.sha256');
  const want = createHash('sha256')
    .update(readFileSync(join(dir, 'package.json')))
    .update(readFileSync(join(dir, 'package-lock.json')))
    .digest('hex');
  const have = existsSync(stamp) ? readFileSync(stamp, 'utf8').trim() : '';
  if (have !== want) {
    run('npm', ['ci', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error'], dir);
    mkdirSync(join(dir, 'node_modules'), { recursive: true }); // none when the lockfile is empty
    writeFileSync(stamp, `${want}\n`);
  }
  run('npm', ['install', '--no-save', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error', TARBALL()], dir);
  const installed = join(dir, 'node_modules', 'authfetch');
  expect(lstatSync(installed).isSymbolicLink(), 'a copy, as from a registry').toBe(false);
  expect(readFileSync(join(installed, 'authfetch_bg.wasm'))).toEqual(readFileSync(join(PKG, 'authfetch_bg.wasm')));
}

/** Starts authfetch-server serving `www` (an example's build output) on a free loopback port. */
async function serve(www, extraArgs = []) {
  const dataDir = mkdtempSync(join(tmpdir(), 'authfetch-example-'));
  const child = spawn(
    SERVER_BIN,
    ['--listen', '127.0.0.1:0', '--data-dir', dataDir, '--www', www, '--pkg', PKG, '--demo', ...extraArgs],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'warn' } },
  );
  let log = '';
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${log}`)), 30_000);
    const onData = (chunk) => {
      log += chunk;
      const m = /authfetch-server listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(log);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`server exited with ${code}:\n${log}`)); });
  });
  return {
    url,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Signs in through the example page and expects the /api/me answer it prints. */
async function signInAndCallApi(page, url, { csp = true } = {}) {
  // The examples declare no icon; the browser's own /favicon.ico 404 is not authfetch's doing.
  await page.route('**/favicon.ico', (route) => route.fulfill({ status: 204 }));
  const problems = [];
  page.on('pageerror', (e) => problems.push(`pageerror: ${e}`));
  page.on('console', (m) => {
    // The start-up refresh without a cookie is a quiet 204: any console error is a problem.
    if (m.type() === 'error') problems.push(m.text());
  });
  const wasm = page.waitForResponse((r) => r.url().endsWith('.wasm'));
  const res = await page.goto(url);
  expect(res.status()).toBe(200);
  if (csp) expect(res.headers()['content-security-policy']).toContain("script-src 'self' 'wasm-unsafe-eval'");
  const wasmRes = await wasm;
  expect(wasmRes.status()).toBe(200);
  expect(wasmRes.headers()['content-type']).toBe('application/wasm');

  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page.locator('#out')).toContainText(/^200 /);
  const me = JSON.parse((await page.locator('#out').textContent()).replace(/^200 /, ''));
  expect(me.username).toBe('alice');
  expect(problems).toEqual([]);
  return new URL(wasmRes.url()).pathname;
}

for (const [name, wasmPath] of [
  ['plain', /^\/vendor\/authfetch\/[^/]+\.wasm$/],
  ['vite', /^\/assets\/[^/]+\.wasm$/],
  ['webpack', /^\/[^/]+\.[0-9a-f]{8,}\.wasm$/],
]) {
  test(`${name} example: builds with the packed tarball installed and signs in with authFetch in Chromium`, async ({ page }) => {
    const dir = join(EXAMPLES, name);
    install(dir);
    run('npm', ['run', '--silent', 'build'], dir);
    expect(existsSync(join(dir, 'dist', 'index.html'))).toBe(true);

    const server = await serve(join(dir, 'dist'));
    try {
      const loaded = await signInAndCallApi(page, `${server.url}/`);
      // The .wasm came from the app's own build output (not the server's /pkg/): the bundler, or the
      // plain page's copy, handled it.
      expect(loaded).toMatch(wasmPath);
    } finally {
      await server.stop();
    }
  });
}

test('vite example on the DPoP entry (authfetch/dpop) against --dpop required: the bundle carries its .wasm, and every API call is bound', async ({ page }) => {
  const dir = join(EXAMPLES, 'vite');
  install(dir);
  // The example as an app that imports 'authfetch/dpop' would be: the same source, built with an
  // alias (a config of its own, outside the example, which the README quotes word for word).
  const tmp = mkdtempSync(join(tmpdir(), 'authfetch-vite-dpop-'));
  let server;
  try {
    writeFileSync(join(tmp, 'vite.config.mjs'),
      "export default { build: { target: 'es2022' }, resolve: { alias: [{ find: /^authfetch$/, replacement: 'authfetch/dpop' }] } };\n");
    run(join(dir, 'node_modules', '.bin', 'vite'),
      ['build', '--config', join(tmp, 'vite.config.mjs'), '--outDir', join(tmp, 'dist'), '--emptyOutDir', '--logLevel', 'warn'], dir);
    const assets = readdirSync(join(tmp, 'dist', 'assets')).filter((f) => f.endsWith('.wasm'));
    expect(assets).toHaveLength(1);
    expect(readFileSync(join(tmp, 'dist', 'assets', assets[0]))).toEqual(readFileSync(join(PKG, 'dpop', 'authfetch_bg.wasm')));
    server = await serve(join(tmp, 'dist'), ['--dpop', 'required']);
    const schemes = [];
    page.on('request', (r) => { if (r.url().endsWith('/api/me')) schemes.push(r.headers().authorization?.split(' ')[0]); });
    await signInAndCallApi(page, `${server.url}/`);
    expect(schemes.length).toBeGreaterThan(0);
    expect(new Set(schemes)).toEqual(new Set(['DPoP']));
  } finally {
    await server?.stop();
    rmSync(tmp, { recursive: true, force: true });
  }
});

test('vite example in development: `vite` serves the installed package with its .wasm and proxies to the server', async ({ page }) => {
  const dir = join(EXAMPLES, 'vite');
  install(dir);
  // The installed tarball is a real copy in node_modules, which Vite pre-bundles unless told not
  // to (the optimizeDeps line of vite.config.js) and serves without any server.fs.allow.
  const port = await freePort();
  let vite;
  const server = await serve(mkdtempSync(join(tmpdir(), 'authfetch-vite-dev-')), ['--allowed-origin', `http://localhost:${port}`]);
  try {
    vite = spawn(process.execPath, [join(dir, 'node_modules', 'vite', 'bin', 'vite.js'), '--port', String(port), '--strictPort', '--host', 'localhost'], {
      cwd: dir,
      detached: true, // its own process group: esbuild's service goes with it
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, AUTHFETCH_SERVER: server.url, NO_COLOR: '1', FORCE_COLOR: '0' },
    });
    let log = '';
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`vite did not start:\n${log}`)), 30_000);
      const onData = (c) => {
        log += c;
        if (log.includes(`localhost:${port}`)) { clearTimeout(timer); resolve(); }
      };
      vite.stdout.on('data', onData);
      vite.stderr.on('data', onData);
      vite.on('exit', (code) => { clearTimeout(timer); reject(new Error(`vite exited with ${code}:\n${log}`)); });
    });
    const loaded = await signInAndCallApi(page, `http://localhost:${port}/`, { csp: false });
    expect(loaded).toBe('/node_modules/authfetch/authfetch_bg.wasm'); // not moved into .vite/deps
  } finally {
    if (vite && vite.exitCode === null) {
      const exited = new Promise((r) => vite.once('exit', r));
      process.kill(-vite.pid, 'SIGTERM');
      await exited;
    }
    await server.stop();
  }
});

test('the tarball carries README, licences, types and an exports map for browsers, bundlers and Node', () => {
  const list = run('tar', ['-tzf', TARBALL()], ROOT).trim().split('\n').sort();
  expect(list).toEqual(['package/LICENSE-APACHE', 'package/LICENSE-MIT', 'package/README.md', 'package/authfetch_bg.wasm',
    'package/dpop/authfetch_bg.wasm', 'package/dpop/index.js', 'package/index.d.ts', 'package/index.js',
    'package/package.json']);
  const manifest = JSON.parse(run('tar', ['-xzOf', TARBALL(), 'package/package.json'], ROOT));
  expect(manifest.type).toBe('module');
  expect(manifest.types).toBe('./index.d.ts');
  expect(manifest.exports['.']).toEqual({ types: './index.d.ts', import: './index.js', default: './index.js' });
  expect(manifest.exports['./dpop']).toEqual({ types: './index.d.ts', import: './dpop/index.js', default: './dpop/index.js' });
  expect(manifest.license).toBe('MIT OR Apache-2.0');
});

test('importing (and calling) the package in Node (server-side rendering) does not crash or touch the network', () => {
  const dir = join(EXAMPLES, 'node');
  install(dir);
  const out = run('node', ['--import', './no-network.mjs', 'ssr.mjs'], dir, 30_000);
  const report = JSON.parse(out.trim().split('\n').pop());
  expect(report.networkAttempts).toEqual([]);
  // Calling it in Node is harmless too, as the README says.
  expect(report.isAuthenticated).toBe(false);
  expect(report.claims).toBe(null);
  expect(report.expiresIn).toBe(null);
  expect(report.ready).toEqual({ resolved: false });
  expect(report.authFetch).toEqual({ rejected: 'AuthFetchError', code: 'ERR_UNSUPPORTED' });
  expect(report.login).toEqual({ rejected: 'AuthFetchError', code: 'ERR_UNSUPPORTED' });
  for (const name of ['authFetch', 'configure', 'createAuthClient', 'login', 'logout', 'logoutEverywhere', 'ready',
    'isAuthenticated', 'claims', 'expiresIn', 'onAuthStateChange', 'onRequest', 'AuthFetchError']) {
    expect(report.functions, `export ${name}`).toContain(name);
  }
  // The DPoP entry, as an installed package resolves it: the same API, its own .wasm.
  const entries = JSON.parse(run('node', ['--input-type=module', '-e',
    "const [a, b] = await Promise.all([import('authfetch'), import('authfetch/dpop')]);" +
    "console.log(JSON.stringify([Object.keys(a).sort(), Object.keys(b).sort(), import.meta.resolve('authfetch/dpop')]))"],
  dir, 30_000));
  expect(entries[1]).toEqual(entries[0]);
  expect(entries[2]).toMatch(/node_modules\/authfetch\/dpop\/index\.js$/);
});

test('the Node guard itself catches a network call (so the test above can fail)', () => {
  const dir = join(EXAMPLES, 'node');
  let failed = false;
  try {
    execFileSync('node', ['--import', './no-network.mjs', '--input-type=module', '-e', "await fetch('http://127.0.0.1:9/')"], {
      cwd: dir, stdio: 'pipe', timeout: 20_000,
    });
  } catch (err) {
    failed = /network access during import: fetch/.test(String(err.stderr));
  }
  expect(failed).toBe(true);
});

test("the README's snippets are the example files, word for word", () => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const blocks = [...readme.matchAll(/```(?:js|html)\n([\s\S]*?)```/g)].map((m) => m[1]);
  const body = (file) => readFileSync(join(EXAMPLES, file), 'utf8').replace(/^(\/\/[^\n]*\n)+/, '');
  const withoutImport = (src) => src.replace(/^import [^\n]*\n/, '');

  // The app code, shared by the three setups (only the import line differs: by URL for the plain page).
  const app = body('vite/src/main.js');
  expect(blocks).toContain(app);
  expect(withoutImport(body('webpack/src/main.js'))).toBe(withoutImport(app));
  expect(withoutImport(body('plain/app.js'))).toBe(withoutImport(app));
  expect(readme).toContain(readFileSync(join(EXAMPLES, 'plain/app.js'), 'utf8').match(/^import [^\n]*\n/m)[0]);
  expect(readme).toContain(readFileSync(join(EXAMPLES, 'plain/index.html'), 'utf8').match(/<script type="module"[^\n]*<\/script>/)[0]);

  // The bundler configs, whole.
  for (const file of ['vite/vite.config.js', 'webpack/webpack.config.js']) {
    const name = file.split('/').pop();
    expect(blocks, `README block for ${file}`).toContain(`// ${name}\n${readFileSync(join(EXAMPLES, file), 'utf8')}`);
  }
});

test("the README's API tables list exactly the package's exports and error codes", () => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const dts = readFileSync(join(PKG, 'index.d.ts'), 'utf8');
  const functions = [...dts.matchAll(/^export declare function (\w+)/gm)].map((m) => m[1]);
  expect(functions.length).toBeGreaterThan(5);
  const rows = [...readme.matchAll(/^\| `(\w+)(?:\(|`)/gm)].map((m) => m[1]).filter((r) => r !== 'code'); // 'code' heads the codes table
  expect(rows.filter((r) => !r.startsWith('ERR_')).sort()).toEqual([...functions, 'AuthFetchError'].sort());
  const codes = [...dts.match(/type AuthFetchErrorCode =([^;]+);/)[1].matchAll(/'(ERR_\w+)'/g)].map((m) => m[1]);
  expect(codes.length).toBeGreaterThan(5);
  expect(rows.filter((r) => r.startsWith('ERR_')).sort()).toEqual([...codes].sort());
});
