// A cross-origin, same-site deployment on three loopback origins (issue 15), in Chromium:
//   app   http://localhost:A  a static server with the page and the package from pkg/
//   auth  http://localhost:B  authfetch-server --cors-origin http://localhost:A
//   API   http://localhost:C  a plain reverse proxy to the same server's /api/* (a second
//                             process on one SQLite file is not a supported deployment; the CORS
//                             answers the page gets are authfetch-server's own, passed through)
// Distinct ports of `localhost` are distinct origins of one site, like app.example.com and
// auth.example.com; `127.0.0.1` and `localhost` are different sites, like example.com and
// example.net. The cross-site case is refused even when its origin is on the CORS list.
import { request as httpRequest, createServer } from 'node:http';
import { test as base, expect, startServer, startStatic, DEFAULT_ARGS } from './fixtures.mjs';

const PAGE = '<!doctype html><meta charset="utf-8"><title>app</title><p>cross-origin app</p>';

/** A reverse proxy on a free port that forwards every request to `target` unchanged. */
async function startProxy(target) {
  const t = new URL(target);
  const server = createServer((req, res) => {
    const up = httpRequest(
      { host: t.hostname, port: t.port, method: req.method, path: req.url, headers: { ...req.headers, host: t.host } },
      (r) => {
        res.writeHead(r.statusCode, r.headers);
        r.pipe(res);
      },
    );
    up.on('error', () => res.writeHead(502).end());
    req.pipe(up);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { port: server.address().port, close: () => new Promise((r) => { server.closeAllConnections(); server.close(r); }) };
}

const test = base.extend({
  deployment: async ({}, use) => {
    const app = await startStatic({ '/index.html': PAGE });
    const appOrigin = `http://localhost:${app.port}`;
    // The cross-site origin is listed on purpose: CORS would let it read answers, and the
    // server must still refuse it (Sec-Fetch-Site: cross-site; its cookie is never sent).
    const crossSite = `http://127.0.0.1:${app.port}`;
    const server = await startServer([...DEFAULT_ARGS, '--cors-origin', appOrigin, '--cors-origin', crossSite]);
    const auth = server.url.replace('127.0.0.1', 'localhost');
    const api = await startProxy(server.url);
    try {
      await use({ app: appOrigin, crossSite, auth, api: `http://localhost:${api.port}`, server });
    } finally {
      await api.close();
      await server.stop();
      await app.close();
    }
  },
});

/** Loads the package on the app page, configured for the auth and API origins. */
async function load(page, origin, d) {
  const res = await page.goto(`${origin}/index.html`);
  expect(res.status()).toBe(200);
  await page.evaluate(async ({ auth, api }) => {
    const m = await import('/pkg/index.js');
    m.configure({ baseUrl: auth, allowedOrigins: [api], refreshAheadSeconds: 0, crossTab: false });
    window.af = m;
    window.traces = [];
    m.onRequest((t) => window.traces.push(t));
  }, { auth: d.auth, api: d.api });
}

test('three origins: sign in on the auth origin, call the API origin, refresh, reload, log out', async ({ page, deployment: d }) => {
  await load(page, d.app, d);
  expect(await page.evaluate(() => af.ready())).toBe(false);
  await page.evaluate(() => af.login({ username: 'alice', password: 'alice-password' }));
  expect(await page.evaluate(() => af.isAuthenticated())).toBe(true);

  // The bearer goes to the API origin, cross-origin; the answer is readable (CORS).
  const me = await page.evaluate(async (api) => {
    const r = await af.authFetch(`${api}/api/me`);
    return { status: r.status, body: await r.json(), trace: window.traces.at(-1) };
  }, d.api);
  expect(me.status).toBe(200);
  expect(me.body.username).toBe('alice');
  expect(me.trace.bearer).toBe(true);

  // The refresh cookie was stored for the auth origin and is sent cross-origin (same-site):
  // after the 3 s token expires, the next call refreshes first.
  await page.waitForFunction(() => af.expiresIn() !== undefined && af.expiresIn() < 0, null, { timeout: 10_000 });
  const before = await d.server.stats();
  const again = await page.evaluate(async (api) => {
    const r = await af.authFetch(`${api}/api/me`);
    return { status: r.status, steps: window.traces.at(-1).steps };
  }, d.api);
  expect(again.status).toBe(200);
  // 'waited': the client saw the token expired and refreshed before sending.
  expect(again.steps).toEqual(['waited', '200']);
  const after = await d.server.stats();
  expect(after.refresh).toBeGreaterThan(before.refresh);

  // A new page load starts signed in from the cookie alone.
  await load(page, d.app, d);
  expect(await page.evaluate(() => af.ready())).toBe(true);

  // Logout clears the cookie: the next page load is signed out and the API refuses.
  await page.evaluate(() => af.logout());
  await load(page, d.app, d);
  expect(await page.evaluate(() => af.ready())).toBe(false);
  const out = await page.evaluate(async (api) => (await af.authFetch(`${api}/api/me`)).status, d.api);
  expect(out).toBe(401);
  expect(d.server.log()).not.toContain('cross-origin cookie POST refused');
});

test('a cross-site origin is refused even when it is on the CORS list', async ({ page, deployment: d }) => {
  const before = await d.server.stats();
  await load(page, d.crossSite, d);
  const err = await page.evaluate(async () => {
    try {
      await af.login({ username: 'alice', password: 'alice-password' });
      return null;
    } catch (e) {
      return { name: e.name, code: e.code };
    }
  });
  expect(err).not.toBeNull();
  expect(err.name).toBe('AuthFetchError');
  expect(await page.evaluate(() => af.isAuthenticated())).toBe(false);
  const after = await d.server.stats();
  expect(after.login).toBe(before.login);
  // The server says which origin it refused, and why.
  await expect.poll(() => d.server.log()).toContain('cross-origin cookie POST refused');
  const line = d.server.log().split('\n').find((l) => l.includes('cross-origin cookie POST refused') && l.includes(d.crossSite));
  expect(line).toBeTruthy();
  expect(line).toContain('cross-site');
});
