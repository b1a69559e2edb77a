// The same client and the same flow in each `--access-tokens` mode (docs/ACCESS-TOKENS.md),
// against the real server: login, a call, a token the server refuses (401 → refresh → retry),
// expiry, logout, logout-everywhere from another device, and five tabs of one browser. What
// differs between the modes is only when the server stops accepting an outstanding token:
// at once for `checked` and `opaque`, at its expiry for `stateless`; each test asserts that.
//
// The package is loaded into a plain same-origin document (as in client.spec.mjs). The token
// never reaches page scripts, so the tests read it off the requests Chromium sends.
import { test, expect, DEFAULT_ARGS } from './fixtures.mjs';

const MODES = ['stateless', 'checked', 'opaque'];

async function load(page, server) {
  const res = await page.goto(`${server.url}/pkg/package.json`);
  expect(res.status()).toBe(200);
  await page.evaluate(async () => {
    const m = await import('/pkg/index.js');
    // No refresh-ahead timer: a refresh happens only when a call needs one.
    m.configure({ refreshAheadSeconds: 0 });
    window.af = m;
  });
}

/** Records every Authorization header and status of /api/* requests the page makes. */
function watchApi(page) {
  const seen = [];
  page.on('response', (r) => {
    if (new URL(r.url()).pathname.startsWith('/api/')) {
      seen.push({ auth: r.request().headers().authorization, status: r.status() });
    }
  });
  return seen;
}

// A call whose refresh the server refuses rejects with the client's "sign in again" error.
const me = (page) => page.evaluate(async () => {
  try {
    const r = await af.authFetch('/api/me');
    return { status: r.status, body: r.status === 200 ? await r.json() : null };
  } catch (e) {
    return { status: 'signed out', error: String(e.message) };
  }
});

/** GET /api/me from Node with a bearer the test holds (not through the client). */
const meWith = (server, auth) => fetch(`${server.url}/api/me`, { headers: { authorization: auth } }).then((r) => r.status);

const post = (server, path, headers) => fetch(`${server.url}${path}`, {
  method: 'POST', headers: { 'x-authfetch': '1', ...headers },
}).then((r) => r.status);

for (const mode of MODES) {
  test.describe(`--access-tokens ${mode}`, () => {
    test.use({ serverArgs: [...DEFAULT_ARGS, '--access-tokens', mode] });
    const immediate = mode !== 'stateless';

    test('login, call, a refused token is refreshed and retried, expiry, logout', async ({ page, server }) => {
      await load(page, server);
      const seen = watchApi(page);
      expect(await page.evaluate(() => af.login({ username: 'alice', password: 'alice-password' }).then(() => af.isAuthenticated()))).toBe(true);
      const first = await me(page);
      expect(first.status).toBe(200);
      expect(first.body.username).toBe('alice');
      const bearer = seen.at(-1).auth;
      expect(bearer).toMatch(/^Bearer /);
      // The token's form: a JWT in the JWT modes, 43 base64url characters in the opaque one.
      const token = bearer.slice('Bearer '.length);
      if (mode === 'opaque') expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
      else expect(token.split('.')).toHaveLength(3);

      // The server revokes this access token behind the client's back (a bearer-only logout
      // denylists it and leaves the session): the next call meets a real 401, refreshes and
      // retries in checked/opaque; in stateless the token is still accepted as it stands.
      const refreshesBefore = (await server.stats()).refresh;
      expect(await post(server, '/auth/logout', { authorization: bearer })).toBe(204);
      expect(await meWith(server, bearer)).toBe(immediate ? 401 : 200);
      const again = await me(page);
      expect(again.status).toBe(200);
      const statuses = seen.slice(1).map((s) => s.status);
      if (immediate) {
        expect(statuses).toEqual([401, 200]);
        expect((await server.stats()).refresh).toBe(refreshesBefore + 1);
        expect(seen.at(-1).auth).not.toBe(bearer);
      } else {
        expect(statuses).toEqual([200]);
        expect((await server.stats()).refresh).toBe(refreshesBefore);
      }

      // Expiry (3 s tokens): the client refreshes and the call succeeds in every mode.
      await page.waitForFunction(() => af.expiresIn() !== undefined && af.expiresIn() < 0, null, { timeout: 10_000 });
      expect((await me(page)).status).toBe(200);
      const current = seen.at(-1).auth;

      // Logout: the session is gone in every mode; the outstanding access token is refused
      // at once in checked/opaque, and only at its expiry in stateless.
      await page.evaluate(() => af.logout());
      expect(await page.evaluate(() => af.isAuthenticated())).toBe(false);
      expect(await meWith(server, current)).toBe(immediate ? 401 : 200);
      if (!immediate) {
        await expect.poll(() => meWith(server, current), { timeout: 8000, intervals: [250] }).toBe(401);
      }
    });

    test('logout-everywhere from another device reaches this one as the mode documents', async ({ browser, server }) => {
      const phoneContext = await browser.newContext();
      const laptopContext = await browser.newContext();
      try {
        const phone = await phoneContext.newPage();
        const laptop = await laptopContext.newPage();
        await load(phone, server);
        await load(laptop, server);
        const phoneSeen = watchApi(phone);
        for (const p of [phone, laptop]) {
          await p.evaluate(() => af.login({ username: 'alice', password: 'alice-password' }));
          expect((await me(p)).status).toBe(200);
        }
        const phoneBearer = phoneSeen.at(-1).auth;
        await laptop.evaluate(() => af.logoutEverywhere());
        if (immediate) {
          // The phone's next call: 401, the refresh is refused (family revoked), signed out.
          expect(await meWith(server, phoneBearer)).toBe(401);
          expect(await me(phone)).toMatchObject({ status: 'signed out', error: expect.stringMatching(/sign in again/) });
          expect(await phone.evaluate(() => af.isAuthenticated())).toBe(false);
        } else {
          // Stateless: the phone's token still works until it expires; then the refresh is
          // refused and the phone is signed out.
          expect((await me(phone)).status).toBe(200);
          expect(phoneSeen.at(-1).auth).toBe(phoneBearer);
          // (Polled: the client's monotonic countdown and the server's whole-second `exp` need
          // not end in the same instant.)
          await expect.poll(() => meWith(server, phoneBearer), { timeout: 8000, intervals: [250] }).toBe(401);
          expect(await me(phone)).toMatchObject({ status: 'signed out', error: expect.stringMatching(/sign in again/) });
          expect(await phone.evaluate(() => af.isAuthenticated())).toBe(false);
        }
      } finally {
        await phoneContext.close();
        await laptopContext.close();
      }
    });

    test('five tabs of one browser share the session and each calls the API', async ({ context, server }) => {
      const tabs = [];
      for (let i = 0; i < 5; i += 1) {
        const p = await context.newPage();
        await load(p, server);
        tabs.push(p);
      }
      await tabs[0].evaluate(() => af.login({ username: 'alice', password: 'alice-password' }));
      // The other tabs learn of the login and get their own token from the refresh cookie.
      const results = await Promise.all(tabs.map((t) => t.evaluate(async () => {
        await af.ready();
        const r = await Promise.all([1, 2, 3].map(() => af.authFetch('/api/me').then((x) => x.status)));
        return r;
      })));
      expect(results.flat()).toEqual(Array(15).fill(200));
      expect((await server.stats()).reuse_detected).toBe(0);
    });
  });
}
