// The npm package (pkg/, built by scripts/build-pkg.sh) against the real authfetch-server in
// Chromium: the behaviour issue 4 promises, observed from outside: the server's own counters
// (/debug/stats), the requests Chromium sends, a second server on another port that records
// every Authorization header it is sent, and the page's storage after a full session.
//
// Each test loads a plain same-origin document (the package's package.json, not the demo app)
// so that nothing but the test itself uses the package. Where a server has to refuse a token
// that is still valid (as it does for a revoked one), a Playwright route answers 401 with
// `WWW-Authenticate: Bearer error="invalid_token"` for exactly that token; the refresh and the
// retry always go to the real server.
import { createHash } from 'node:crypto';
import { createServer } from 'node:http';
import { test, expect } from './fixtures.mjs';

/** Opens a same-origin page that does not use the package by itself. */
async function blank(page, server) {
  const res = await page.goto(`${server.url}/pkg/package.json`);
  expect(res.status()).toBe(200);
}

/** Imports the package in the page and keeps its traces and events on `window`. */
async function load(page, options) {
  await page.evaluate(async (opts) => {
    const m = await import('/pkg/index.js');
    if (opts) m.configure(opts);
    window.af = m;
    window.traces = [];
    window.events = [];
    m.onRequest((t) => window.traces.push(t));
    m.onAuthStateChange((e) => window.events.push(e.type));
  }, options);
}

async function signIn(page) {
  return page.evaluate(async () => {
    const signedIn = await af.ready();
    await af.login({ username: 'alice', password: 'alice-password' });
    return { before: signedIn, after: af.isAuthenticated() };
  });
}

/** Waits until the client's own monotonic clock says the token has expired. */
async function waitForExpiry(page) {
  await page.waitForFunction(() => af.expiresIn() !== undefined && af.expiresIn() < 0, null, { timeout: 10_000 });
}

/**
 * From now on the API answers 401 invalid_token to requests carrying the bearer the page holds
 * now (learnt from one call that is let through), as a server does for a revoked token.
 * Returns a counter of the requests it refused.
 */
async function rejectCurrentToken(page, pattern) {
  let current = null;
  const seen = { refused: 0 };
  await page.route(pattern, async (route) => {
    const auth = route.request().headers().authorization;
    if (current === null) {
      current = auth;
      return route.continue();
    }
    if (auth && auth === current) {
      seen.refused += 1;
      return route.fulfill({ status: 401, headers: { 'www-authenticate': 'Bearer error="invalid_token"' }, body: '' });
    }
    return route.continue();
  });
  const first = await page.evaluate((url) => af.authFetch(url).then((r) => r.status), pattern.replace('**', ''));
  expect(current).toMatch(/^Bearer /);
  return { seen, first };
}

test('login, authFetch, expiry: the token is refreshed transparently, and a rejected one is refreshed and the call retried', async ({ page, server }) => {
  await blank(page, server);
  // No refresh-ahead timer: the token really expires, and the next call must notice.
  await load(page, { refreshAheadSeconds: 0 });
  expect(await signIn(page)).toEqual({ before: false, after: true });
  const s0 = await server.stats();

  const me = await page.evaluate(async () => {
    const r = await af.authFetch('/api/me');
    return { status: r.status, body: await r.json(), trace: traces.at(-1), sub: af.claims().sub };
  });
  expect(me.status).toBe(200);
  expect(me.body.username).toBe('alice');
  expect(me.sub).toBe(me.body.sub);
  expect(me.trace).toMatchObject({ method: 'GET', steps: ['200'], status: 200, bearer: true });
  expect(me.trace.url).toBe(`${server.url}/api/me`);

  // Expired (by the client's monotonic clock, from expires_in): one refresh before the call.
  await waitForExpiry(page);
  const later = await page.evaluate(async () => {
    const r = await af.authFetch('/api/me');
    return { status: r.status, trace: traces.at(-1), events: [...events] };
  });
  expect(later.status).toBe(200);
  expect(later.trace.steps).toEqual(['waited', '200']);
  expect(later.events).toEqual(['signed_in', 'refreshed']);
  expect((await server.stats()).refresh).toBe(s0.refresh + 1);

  // A token the server refuses while the client still thinks it valid: 401 → refresh → retry.
  const { seen } = await rejectCurrentToken(page, '**/api/me');
  const s1 = await server.stats();
  const retried = await page.evaluate(async () => {
    const r = await af.authFetch('/api/me');
    return { status: r.status, body: await r.json(), trace: traces.at(-1) };
  });
  expect(retried.status).toBe(200);
  expect(retried.body.username).toBe('alice');
  expect(retried.trace.steps).toEqual(['401', 'refreshed', 'retried', '200']);
  expect(seen.refused).toBe(1);
  expect((await server.stats()).refresh).toBe(s1.refresh + 1);
});

test('100 concurrent authFetch calls with an expired token: exactly one refresh, all 100 succeed', async ({ page, server }) => {
  await blank(page, server);
  await load(page, { refreshAheadSeconds: 0 });
  await signIn(page);
  await waitForExpiry(page);
  const before = (await server.stats()).refresh;
  const statuses = await page.evaluate(() => Promise.all(
    Array.from({ length: 100 }, () => af.authFetch('/api/me').then((r) => r.status)),
  ));
  expect(statuses).toEqual(Array(100).fill(200));
  expect((await server.stats()).refresh).toBe(before + 1);
});

test('100 concurrent authFetch calls whose token the server rejects: exactly one refresh, all 100 retried once and succeed', async ({ page, server }) => {
  await blank(page, server);
  // A long-lived token: only the server's refusal can cause the refresh.
  await load(page, { refreshAheadSeconds: 0 });
  await signIn(page);
  const { seen } = await rejectCurrentToken(page, '**/api/me');
  const before = (await server.stats()).refresh;
  const result = await page.evaluate(async () => {
    traces.length = 0;
    const statuses = await Promise.all(Array.from({ length: 100 }, () => af.authFetch('/api/me').then((r) => r.status)));
    return { statuses, steps: traces.map((t) => t.steps.join(' ')) };
  });
  expect(result.statuses).toEqual(Array(100).fill(200));
  expect(seen.refused).toBe(100);
  expect((await server.stats()).refresh).toBe(before + 1);
  // Each call: its 401, then its single retry, after waiting for the one shared refresh, or at
  // once with the new token when its 401 arrived after that refresh had already landed.
  for (const s of result.steps) expect(['401 refreshed retried 200', '401 retried 200']).toContain(s);
  expect(result.steps).toContain('401 refreshed retried 200');
});

test('a FormData POST to /api/echo is replayed intact after a 401', async ({ page, server }) => {
  await blank(page, server);
  await load(page, { refreshAheadSeconds: 0 });
  await signIn(page);
  // Refuse the first POST (recording exactly what was sent); let the retry reach the server.
  const first = [];
  await page.route('**/api/echo', async (route) => {
    if (first.length === 0) {
      first.push(route.request().postDataBuffer());
      return route.fulfill({ status: 401, headers: { 'www-authenticate': 'Bearer error="invalid_token"' }, body: '' });
    }
    return route.continue();
  });
  const before = (await server.stats()).refresh;
  const echo = await page.evaluate(async () => {
    const form = new FormData();
    form.append('note', 'héllo wörld');
    form.append('file', new Blob([new Uint8Array([0, 1, 2, 253, 254, 255])], { type: 'application/octet-stream' }), 'bytes.bin');
    const r = await af.authFetch('/api/echo', { method: 'POST', body: form });
    return { status: r.status, body: await r.json(), trace: traces.at(-1) };
  });
  expect(echo.status).toBe(200);
  expect(echo.trace.steps).toEqual(['401', 'refreshed', 'retried', '200']);
  expect((await server.stats()).refresh).toBe(before + 1);
  expect(first).toHaveLength(1);
  // The server got, byte for byte, what the refused first attempt carried (boundary included).
  expect(echo.body.sha256).toBe(createHash('sha256').update(first[0]).digest('hex'));
  expect(echo.body.length).toBe(first[0].length);
  expect(echo.body.content_type).toMatch(/^multipart\/form-data; boundary=/);
  expect(echo.body.body).toContain('name="note"\r\n\r\nhéllo wörld');
  expect(echo.body.body).toContain('filename="bytes.bin"');
});

test('the bearer never reaches a second origin on another port', async ({ browser, server }) => {
  // A second server on 127.0.0.1:<other port> records the Authorization header of every request.
  const seen = [];
  const other = createServer((req, res) => {
    seen.push({ method: req.method, url: req.url, authorization: req.headers.authorization ?? null });
    res.writeHead(200, {
      'access-control-allow-origin': '*',
      'access-control-allow-headers': '*',
      'access-control-allow-methods': 'GET, POST',
      'content-type': 'application/json',
    });
    res.end('{"other":true}');
  });
  await new Promise((r) => other.listen(0, '127.0.0.1', r));
  const otherUrl = `http://127.0.0.1:${other.address().port}`;
  // The demo server's CSP (connect-src 'self') would stop these requests in the browser before
  // they leave; bypass it so that the second server can testify.
  const context = await browser.newContext({ bypassCSP: true });
  const page = await context.newPage();
  try {
    await blank(page, server);
    await load(page, { refreshAheadSeconds: 0 });
    await signIn(page);
    const results = await page.evaluate(async (url) => {
      const out = [];
      for (const u of [`${url}/api/me`, `${url}/`, `${url}/x?y=1`]) {
        const r = await af.authFetch(u);
        out.push({ status: r.status, trace: traces.at(-1) });
      }
      const r = await af.authFetch(new Request(`${url}/post`, { method: 'POST', body: 'x' }));
      out.push({ status: r.status, trace: traces.at(-1) });
      // Our own API still gets it (so the token was there to leak).
      const own = await af.authFetch('/api/me');
      out.push({ status: own.status, trace: traces.at(-1) });
      return out;
    }, otherUrl);
    expect(results.map((r) => r.status)).toEqual([200, 200, 200, 200, 200]);
    expect(results.slice(0, 4).map((r) => r.trace.bearer)).toEqual([false, false, false, false]);
    expect(results[4].trace.bearer).toBe(true);
    expect(seen.filter((r) => r.method !== 'OPTIONS')).toHaveLength(4);
    expect(seen.map((r) => r.authorization)).toEqual(seen.map(() => null));
  } finally {
    await context.close();
    await new Promise((r) => other.close(r));
  }
});

test('a 403 is returned as it is: no refresh, no retry', async ({ page, server }) => {
  await blank(page, server);
  await load(page);
  await signIn(page);
  const before = await server.stats();
  let requests = 0;
  page.on('request', (r) => { if (r.url().endsWith('/api/forbidden')) requests += 1; });
  const res = await page.evaluate(async () => {
    const r = await af.authFetch('/api/forbidden');
    return { status: r.status, body: await r.json(), trace: traces.at(-1) };
  });
  expect(res.status).toBe(403);
  expect(res.body.error).toBe('insufficient_scope');
  expect(res.trace.steps).toEqual(['403']);
  expect(requests).toBe(1);
  expect((await server.stats()).refresh).toBe(before.refresh);
});

test('the refresh endpoint down: a typed error, the session kept, no retry loop', async ({ page, server }) => {
  await blank(page, server);
  await load(page, { refreshAheadSeconds: 0 });
  await signIn(page);
  // The refresh endpoint is unreachable from now on (connection refused), the API is up.
  let refreshes = 0;
  await page.route('**/auth/refresh', (route) => { refreshes += 1; return route.abort('connectionrefused'); });
  const { seen } = await rejectCurrentToken(page, '**/api/me');
  const out = await page.evaluate(async () => {
    const tries = [];
    for (let i = 0; i < 3; i += 1) {
      try {
        const r = await af.authFetch('/api/me');
        tries.push({ status: r.status });
      } catch (err) {
        tries.push({
          name: err.name,
          code: err.code,
          isError: err instanceof Error,
          isAuthFetchError: err instanceof af.AuthFetchError,
          cause: err.cause ? err.cause.name : null,
        });
      }
    }
    return { tries, signedIn: af.isAuthenticated(), events: [...events] };
  });
  // The first call's refresh fails (network): ERR_NETWORK with the TypeError as cause (K11).
  expect(out.tries[0]).toEqual({
    name: 'AuthFetchError', code: 'ERR_NETWORK', isError: true, isAuthFetchError: true, cause: 'TypeError',
  });
  // The next ones, inside the back-off, do not even ask, and still say what is wrong.
  expect(out.tries.slice(1).map((t) => t.code)).toEqual(['ERR_NETWORK', 'ERR_NETWORK']);
  expect(refreshes).toBe(1);
  expect(seen.refused).toBe(3); // each call's request was sent once, never retried without a token
  // A network error during refresh is not a logout (K7).
  expect(out.signedIn).toBe(true);
  expect(out.events).toEqual(['signed_in', 'refresh_failed']);
});

test('after a full session, no storage holds the token (and no auth endpoint ever got the bearer)', async ({ page, context, server }) => {
  const tokens = new Set();
  const authCalls = [];
  page.on('request', (r) => {
    const a = r.headers().authorization;
    if (a) tokens.add(a.replace(/^Bearer /, ''));
    if (new URL(r.url()).pathname.startsWith('/auth/')) authCalls.push({ path: new URL(r.url()).pathname, authorization: a ?? null });
  });
  page.on('response', async (r) => {
    if (/\/auth\/(login|refresh)$/.test(r.url()) && r.status() === 200) {
      tokens.add((await r.json()).access_token);
    }
  });
  await blank(page, server);
  await load(page, { refreshAheadSeconds: 1 });
  await signIn(page);
  await page.evaluate(() => af.authFetch('/api/me'));
  // Let the refresh-ahead timer replace the token at least once, then use the new one.
  await page.waitForFunction(() => events.includes('refreshed'), null, { timeout: 10_000 });
  await page.evaluate(() => af.authFetch('/api/echo', { method: 'POST', body: 'x' }));
  const dump = await page.evaluate(async () => {
    const parts = [];
    for (const s of [localStorage, sessionStorage]) {
      for (let i = 0; i < s.length; i += 1) parts.push(`${s.key(i)}=${s.getItem(s.key(i))}`);
    }
    const dbs = await indexedDB.databases();
    const cacheKeys = await caches.keys();
    return {
      local: localStorage.length, session: sessionStorage.length, cookie: document.cookie,
      dbs: dbs.map((d) => d.name), caches: cacheKeys, text: parts.join('\n'),
    };
  });
  await page.evaluate(() => af.logout());
  expect(tokens.size).toBeGreaterThanOrEqual(2);
  // login, the start-up refresh, the refresh-ahead, logout: cookie and CSRF header only (K3).
  expect(authCalls.map((c) => c.path)).toEqual(expect.arrayContaining(['/auth/login', '/auth/refresh', '/auth/logout']));
  expect(authCalls.filter((c) => c.authorization !== null)).toEqual([]);
  expect(dump).toMatchObject({ local: 0, session: 0, cookie: '', dbs: [], caches: [], text: '' });
  // The browser's cookie jar holds only the refresh cookie (HttpOnly), never an access token.
  for (const c of await context.cookies()) {
    for (const t of tokens) expect(c.value).not.toContain(t);
  }
  const after = await page.evaluate(() => [localStorage.length, sessionStorage.length, document.cookie]);
  expect(after).toEqual([0, 0, '']);
});

test('configuration errors and the public error type', async ({ page, server }) => {
  await blank(page, server);
  const out = await page.evaluate(async () => {
    const m = await import('/pkg/index.js');
    const codeOf = async (f) => {
      try { await f(); return 'no error'; } catch (e) { return `${e.name}:${e.code}`; }
    };
    const bad = m.createAuthClient({ allowedOrigins: ['javascript:alert(1)'] });
    const r = {
      badOrigin: await codeOf(() => bad.authFetch('/api/me')),
      badNumber: await codeOf(() => m.createAuthClient({ refreshAheadSeconds: -1 }).ready()),
      badLogin: await codeOf(() => m.login({ username: 'alice', password: 'nope' })),
    };
    r.lateConfigure = await codeOf(() => m.configure({}));
    r.sync = [m.isAuthenticated(), m.claims(), m.expiresIn() === undefined];
    const e = new m.AuthFetchError('ERR_SIGNED_OUT');
    r.error = [e instanceof Error, e.name, e.code, typeof e.message];
    return r;
  });
  expect(out.badOrigin).toBe('AuthFetchError:ERR_INVALID_CONFIG');
  expect(out.badNumber).toBe('AuthFetchError:ERR_INVALID_CONFIG');
  expect(out.badLogin).toBe('AuthFetchError:ERR_INVALID_CREDENTIALS');
  expect(out.lateConfigure).toBe('AuthFetchError:ERR_ALREADY_STARTED');
  expect(out.sync).toEqual([false, null, true]);
  expect(out.error).toEqual([true, 'AuthFetchError', 'ERR_SIGNED_OUT', 'string']);
});

test('a .wasm that cannot be loaded: the error names its URL and the status or content-type; ready() rejects the same way; the next call loads it', async ({ page, server }) => {
  await blank(page, server);
  const wasmUrl = `${server.url}/pkg/authfetch_bg.wasm`;
  let serve = 'missing';
  await page.route(wasmUrl, async (route) => {
    if (serve === 'missing') return route.fulfill({ status: 404, contentType: 'text/plain', body: 'not found' });
    if (serve === 'html') return route.fulfill({ status: 200, contentType: 'text/html', body: '<!doctype html><title>app</title>' });
    if (serve === 'offline') return route.abort('internetdisconnected');
    return route.continue();
  });
  const attempt = () => page.evaluate(async () => {
    const m = await import('/pkg/index.js');
    const outcome = (p) => p.then((v) => ({ resolved: v instanceof Response ? v.status : v }), (e) => ({ name: e.name, code: e.code, message: e.message }));
    return { ready: await outcome(m.ready()), authFetch: await outcome(m.authFetch('/api/me')) };
  });

  const missing = await attempt();
  for (const r of [missing.ready, missing.authFetch]) {
    expect(r).toMatchObject({ name: 'AuthFetchError', code: 'ERR_INVALID_RESPONSE' });
    expect(r.message).toContain(wasmUrl);
    expect(r.message).toContain('HTTP 404');
    expect(r.message).not.toContain('auth server');
  }

  serve = 'html';
  const html = await attempt();
  for (const r of [html.ready, html.authFetch]) {
    expect(r).toMatchObject({ name: 'AuthFetchError', code: 'ERR_INVALID_RESPONSE' });
    expect(r.message).toContain(wasmUrl);
    expect(r.message).toContain('not a WebAssembly module (content-type text/html');
    expect(r.message).not.toContain('CSP');
  }

  serve = 'offline';
  const offline = await attempt();
  expect(offline.authFetch).toMatchObject({ name: 'AuthFetchError', code: 'ERR_NETWORK' });
  expect(offline.authFetch.message).toContain(wasmUrl);

  // Each failure left nothing behind: once the file is served, the same module starts.
  serve = 'real';
  const ok = await attempt();
  expect(ok.ready).toEqual({ resolved: false });
  expect(ok.authFetch).toEqual({ resolved: 401 }); // /api/me without a session
  expect(await page.evaluate(async () => (await import('/pkg/index.js')).expiresIn())).toBeUndefined();
});
