// The README's quick start, followed as printed on a fresh temporary directory: the blocks that
// README.md marks `<!-- quickstart-run: NAME -->` (shell) and `<!-- quickstart-file: PATH -->`
// (a file of the app) are read from the README itself, never copied into this test. The only
// changes: the checkout's path for `/path/to/authfetch`, free ports for 8080 and 5173 (another
// test run may hold them), and a temporary data directory for `.data/quickstart`. Then Chromium
// opens the app on the Vite dev server and signs in; the console must stay empty.
import { test, expect, ROOT, TARBALL, freePort } from './fixtures.mjs';
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, lstatSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

test.describe.configure({ timeout: 240_000 });

const README = readFileSync(join(ROOT, 'README.md'), 'utf8');

/** The marked blocks, by kind and name, in README order. */
function quickstart() {
  const blocks = { run: {}, file: {} };
  for (const m of README.matchAll(/<!-- quickstart-(run|file): ([^\s]+) -->\n```\w*\n([\s\S]*?)```/g)) {
    expect(blocks[m[1]][m[2]], `one block named ${m[2]}`).toBeUndefined();
    blocks[m[1]][m[2]] = m[3];
  }
  return blocks;
}

const ENV = {
  ...process.env,
  npm_config_update_notifier: 'false',
  npm_config_fund: 'false',
  npm_config_audit: 'false',
  // The registry is used only for what is not in npm's cache already.
  npm_config_prefer_offline: 'true',
  NO_COLOR: '1',
  FORCE_COLOR: '0',
};
delete ENV.AUTHFETCH_SERVER; // the printed vite.config.js must find the server by itself

/** Runs a shell block to completion (bash -e: the first failing command fails the test). */
function sh(block, cwd) {
  try {
    return execFileSync('bash', ['-euo', 'pipefail', '-c', block], { cwd, env: ENV, encoding: 'utf8', timeout: 180_000, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    throw new Error(`README block failed (in ${cwd}):\n${block}\n${err.stdout ?? ''}\n${err.stderr ?? err}`);
  }
}

/** Starts a long-running shell block; resolves once its output matches `ready`. */
async function start(block, cwd, ready) {
  const child = spawn('bash', ['-c', `exec ${block}`], { cwd, env: ENV, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`did not start in 60 s:\n${block}\n${log}`)), 60_000);
    const onData = (c) => {
      log += c;
      if (ready.test(log)) { clearTimeout(timer); resolve(); }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`exited with ${code}:\n${block}\n${log}`)); });
  });
  return {
    log: () => log,
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      process.kill(-child.pid, 'SIGTERM');
      await exited;
    },
  };
}

test('the README names the versions it was tested with, and the Vite it installs is the example\'s', () => {
  const { run } = quickstart();
  const vite = JSON.parse(readFileSync(join(ROOT, 'examples', 'vite', 'package.json'), 'utf8')).devDependencies.vite;
  expect(run.app).toContain(`vite@${vite}`);
  expect(README).toContain(`Vite ${vite}`);
  expect(README).toContain(`Vite ${vite.split('.')[0]}`);
  expect(README).not.toMatch(/Vite 7\b/);
  // The tarball the README installs is the one the build writes.
  expect(run.app).toContain(`/path/to/authfetch/target/${TARBALL().split('/').pop()}`);
  // The grace window is one number: the server's default, in the README and the docs.
  const grace = /default_value = "(\d+)s"/.exec(readFileSync(join(ROOT, 'server', 'src', 'cli.rs'), 'utf8').split('pub grace')[0].split('\n').slice(-3).join('\n'))[1];
  expect(README).toContain(`Grace window: ${grace} s`);
  for (const doc of ['README.md', 'docs/PROTOCOL.md', 'docs/TABS.md']) {
    const text = readFileSync(join(ROOT, doc), 'utf8');
    for (const m of text.matchAll(/grace window[^.]{0,60}?(\d+) ?s\b/gi)) expect(m[1], `${doc}: ${m[0]}`).toBe(grace);
  }
});

test('the quick start, as printed, on a fresh directory: a Vite 8 app with the packed tarball signs in through Chromium', async ({ page }) => {
  const { run, file } = quickstart();
  for (const name of ['checkout', 'app', 'server', 'dev']) expect(run[name], `quickstart-run: ${name}`).toBeDefined();
  for (const name of ['index.html', 'src/main.js', 'vite.config.js']) expect(file[name], `quickstart-file: ${name}`).toBeDefined();
  // The page the README prints is the Vite example's, so that one is built and tested as well.
  expect(file['index.html']).toBe(readFileSync(join(ROOT, 'examples', 'vite', 'index.html'), 'utf8'));

  const [serverPort, vitePort] = [await freePort(), await freePort()];
  const tmp = mkdtempSync(join(tmpdir(), 'authfetch-readme-'));
  const subst = (text) => text
    .replaceAll('/path/to/authfetch', ROOT)
    .replaceAll('.data/quickstart', join(tmp, 'data'))
    .replaceAll('8080', String(serverPort))
    .replaceAll('5173', String(vitePort));
  let server;
  let vite;
  try {
    // 1. The checkout: build the package tarball and the server (quick when they are up to date).
    sh(subst(run.checkout), ROOT);
    // 2. A new app, created the way the README says.
    sh(subst(run.app), tmp);
    const app = join(tmp, 'my-app');
    const manifest = JSON.parse(readFileSync(join(app, 'package.json'), 'utf8'));
    expect(manifest.type).toBe('module');
    expect(manifest.dependencies.authfetch).toMatch(/^file:.*authfetch-.*\.tgz$/);
    expect(lstatSync(join(app, 'node_modules', 'authfetch')).isSymbolicLink(), 'installed as a copy').toBe(false);
    // 3. Its files, as printed.
    for (const [path, text] of Object.entries(file)) {
      mkdirSync(dirname(join(app, path)), { recursive: true });
      writeFileSync(join(app, path), subst(text));
    }
    // 4. The auth server, from the checkout.
    server = await start(subst(run.server), ROOT, /authfetch-server listening on http:\/\/127\.0\.0\.1:\d+/);
    // 5. Vite's dev server in the app.
    vite = await start(subst(run.dev), app, new RegExp(`localhost:${vitePort}`));

    const problems = [];
    page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') problems.push(`console ${m.type()}: ${m.text()}`); });
    page.on('pageerror', (e) => problems.push(`pageerror: ${e}`));
    page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()}`));
    page.on('response', (r) => { if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.url()}`); });
    // Vite's dev page declares no icon; the browser's own favicon request is not the app's.
    await page.route('**/favicon.ico', (route) => route.fulfill({ status: 204 }));
    const wasm = page.waitForResponse((r) => r.url().endsWith('.wasm'));
    await page.goto(`http://localhost:${vitePort}/`);
    expect((await wasm).status()).toBe(200);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expect(page.locator('#out')).toContainText(/^200 /);
    const me = JSON.parse((await page.locator('#out').textContent()).replace(/^200 /, ''));
    expect(me.username).toBe('alice');
    expect(problems).toEqual([]);
    // The app's package.json is an ES module one: Vite has nothing to warn about.
    expect(vite.log()).not.toMatch(/CJS|warn/i);
  } finally {
    if (vite) await vite.stop();
    if (server) await server.stop();
    rmSync(tmp, { recursive: true, force: true });
  }
});
