// What a developer sees in the console before anyone signed in, and what the app is told when
// the auth server refuses the page's origin (issue 15).
//
// A quiet start: the start-up refresh of a signed-out page carries no cookie, and the server
// answers `204` ("no session", docs/PROTOCOL.md), which Chromium does not print. Every console
// message of type error or warning, every uncaught error, every failed request and every HTTP
// error status counts here: none is excused.
//
// A refused origin: a page whose Origin the server does not allow (here: an app origin whose dev
// server forwards /auth and /pkg to the auth server, as Vite's proxy does) gets
// `ERR_ORIGIN_REFUSED`, not `ERR_INVALID_RESPONSE`; with `--allowed-origin` naming that origin,
// the same page signs in.
import http from 'node:http';
import { test, expect, startServer } from './fixtures.mjs';

/** Records everything that would show up red (or yellow) in the developer's console. */
function watchConsole(page) {
  const problems = [];
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') problems.push(`console ${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`pageerror: ${e}`));
  page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
  page.on('response', (r) => {
    if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.request().method()} ${r.url()}`);
  });
  return problems;
}

/** The statuses the page's refresh requests got. */
function refreshStatuses(page) {
  const statuses = [];
  page.on('response', (r) => {
    if (new URL(r.url()).pathname === '/auth/refresh') statuses.push(r.status());
  });
  return statuses;
}

test('a signed-out load of the demo prints nothing to the console and counts no refused refresh', async ({ page, server }) => {
  const problems = watchConsole(page);
  const refreshes = refreshStatuses(page);
  await page.goto(server.url);
  await expect(page.locator('body[data-ready="true"]')).toBeAttached();
  await expect(page.getByTestId('state')).toHaveText('signed out');
  // The demo's counters come from the server: the start-up refresh was no refused refresh.
  const refused = page.locator('[data-stat="refresh_failed"] dd');
  await expect(refused).toHaveText('0');
  expect(refreshes).toEqual([204]);
  expect((await server.stats()).refresh_failed).toBe(0);
  // Let anything late (the stats poll, a retry) happen before judging.
  await page.waitForTimeout(1500);
  expect(problems).toEqual([]);
});

test('a signed-out load of a plain page that imports the package is quiet and emits no event', async ({ page, server }) => {
  // The browser's own favicon request is not the package's doing (the demo declares an icon).
  await page.route('**/favicon.ico', (route) => route.fulfill({ status: 204 }));
  const problems = watchConsole(page);
  const refreshes = refreshStatuses(page);
  await page.goto(`${server.url}/pkg/package.json`);
  const out = await page.evaluate(async () => {
    const m = await import('/pkg/index.js');
    const events = [];
    m.onAuthStateChange((e) => events.push(e.type));
    const first = await m.ready();
    // Signed out is settled: asking again sends nothing.
    const second = await m.ready();
    return { first, second, events, authenticated: m.isAuthenticated() };
  });
  expect(out).toEqual({ first: false, second: false, events: [], authenticated: false });
  expect(refreshes).toEqual([204]);
  expect(problems).toEqual([]);
});

/**
 * An app origin (127.0.0.1, its own port) whose dev server forwards everything to the auth
 * server, headers unchanged: the auth server sees the app's Origin, as behind Vite's proxy.
 */
async function devProxy() {
  let target = null;
  const proxy = http.createServer((req, res) => {
    const up = http.request(`${target}${req.url}`, { method: req.method, headers: { ...req.headers, host: new URL(target).host } }, (r) => {
      res.writeHead(r.statusCode, r.headers);
      r.pipe(res);
    });
    up.on('error', () => { res.writeHead(502); res.end(); });
    req.pipe(up);
  });
  await new Promise((r) => proxy.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${proxy.address().port}`,
    to(url) { target = url; },
    close: () => new Promise((r) => proxy.close(r)),
  };
}

async function tryLogin(page) {
  return page.evaluate(async () => {
    const m = await import('/pkg/index.js');
    try {
      await m.login({ username: 'alice', password: 'alice-password' });
      return { ok: true };
    } catch (e) {
      return { ok: false, name: e.name, code: e.code, message: e.message };
    }
  });
}

test('a login from an origin the server does not allow rejects with ERR_ORIGIN_REFUSED', async ({ page }) => {
  const proxy = await devProxy();
  const refused = await startServer(['--demo', '--debug-stats']);
  try {
    proxy.to(refused.url);
    await page.goto(`${proxy.url}/pkg/package.json`);
    const out = await tryLogin(page);
    expect(out).toEqual({
      ok: false,
      name: 'AuthFetchError',
      code: 'ERR_ORIGIN_REFUSED',
      message: 'the auth server does not allow this origin: add it with --allowed-origin',
    });
    expect((await refused.stats()).login).toBe(0);
  } finally {
    await refused.stop();
  }
  // The fix the message names: the same page, the same proxy, the origin allowed.
  const allowed = await startServer(['--demo', '--debug-stats', '--allowed-origin', proxy.url]);
  try {
    proxy.to(allowed.url);
    await page.goto(`${proxy.url}/pkg/package.json`);
    expect(await tryLogin(page)).toEqual({ ok: true });
    expect((await allowed.stats()).login).toBe(1);
  } finally {
    await allowed.stop();
    await proxy.close();
  }
});
