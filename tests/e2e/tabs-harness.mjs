// The many-tabs harness shared by tabs.spec.mjs and hardening.spec.mjs: each tab is a minimal page
// on the server's origin (served by a Playwright route with the server's own
// Content-Security-Policy) that imports /pkg/index.js and creates a client with
// `refreshAheadSeconds: 0`, so nothing refreshes on a timer: a refresh happens only when a call
// needs one, which makes every count deterministic. The client is exposed to the test as
// `window.__tab = { m, client, events, traces }`.
import { expect } from './fixtures.mjs';

export const ALICE = { username: 'alice', password: 'alice-password' };
/** The events that end a session in a tab. */
export const ENDED = ['signed_out', 'session_expired'];
/** The Web Lock the package takes around refreshes (src/web.rs `LOCK_NAME`). */
export const LOCK_NAME = 'authfetch-refresh';

const TAB_HTML = '<!doctype html><meta charset="utf-8"><title>authfetch tab</title><body></body>';

/**
 * Serves the tab page at `path` on the server's origin, counts the refresh requests each page
 * sends, and collects page errors. Returns helpers bound to this context and server.
 */
export async function tabHarness(context, server, path = '/__tabs-e2e.html') {
  const csp = (await fetch(`${server.url}/`)).headers.get('content-security-policy');
  expect(csp, 'the server sends a CSP').toBeTruthy();
  await context.route(`${server.url}${path}`, (route) => route.fulfill({
    status: 200,
    headers: { 'content-type': 'text/html; charset=utf-8', 'content-security-policy': csp, 'cache-control': 'no-store' },
    body: TAB_HTML,
  }));
  const refreshRequests = [];
  context.on('request', (r) => {
    if (new URL(r.url()).pathname === '/auth/refresh') refreshRequests.push({ at: Date.now(), page: r.frame()?.page() });
  });
  const problems = [];
  const tabs = [];

  /**
   * Opens a tab; unless `withClient` is false, imports the package, creates a client (not
   * started) and records its events and request traces.
   */
  async function open(clientOptions = {}, { name = `tab${tabs.length + 1}`, withClient = true } = {}) {
    const page = await context.newPage();
    page.on('pageerror', (e) => problems.push(`${name}: pageerror: ${e}`));
    await page.goto(`${server.url}${path}`);
    if (withClient) {
      await page.evaluate(async (options) => {
        const m = await import('/pkg/index.js');
        const client = m.createAuthClient(options);
        const events = [];
        client.onAuthStateChange((e) => events.push({ type: e.type, at: Date.now() }));
        const traces = [];
        client.onRequest((t) => traces.push(t));
        window.__tab = { m, client, events, traces };
      }, { refreshAheadSeconds: 0, ...clientOptions });
    }
    const tab = { page, name };
    tabs.push(tab);
    return tab;
  }

  return {
    open,
    problems,
    refreshRequests,
    /** Refresh requests sent so far, by every page or by `tab`'s page. */
    refreshCount: (tab) => refreshRequests.filter((r) => !tab || r.page === tab.page).length,
  };
}

/** `client.ready()` in the tab. */
export const ready = (tab) => tab.page.evaluate(() => window.__tab.client.ready());
export const isAuthenticated = (tab) => tab.page.evaluate(() => window.__tab.client.isAuthenticated());
export const eventTypes = (tab) => tab.page.evaluate(() => window.__tab.events.map((e) => e.type));
/** The `jti` of the token the tab holds (from the public claims; never the token itself). */
export const jti = (tab) => tab.page.evaluate(() => window.__tab.client.claims()?.jti);
export const login = (tab, who = ALICE) => tab.page.evaluate((c) => window.__tab.client.login(c), who);

/**
 * Waits (up to 15 s) until the tab holds a token that its own monotonic clock says has expired.
 * One parameter only, so that `tabs.map(waitExpired)` works.
 */
export async function waitExpired(tab) {
  const timeout = 15_000;
  await tab.page.waitForFunction(() => {
    const c = window.__tab.client;
    return c.isAuthenticated() && c.expiresIn() <= 0;
  }, null, { timeout, polling: 50 });
}

/**
 * Starts `n` concurrent `authFetch(path)` in the tab, kept on `window.__burst`; `settle(tab)`
 * resolves with their outcomes: {status, user} or {error: code or name}.
 */
export async function startBurst(tab, n, path = '/api/me') {
  await tab.page.evaluate(({ n, path }) => {
    const { client } = window.__tab;
    const one = async () => {
      try {
        const r = await client.authFetch(path);
        const body = await r.json().catch(() => null);
        return { status: r.status, user: body && body.username };
      } catch (e) {
        return { error: (e && (e.code || e.name)) || String(e) };
      }
    };
    window.__burst = Promise.all(Array.from({ length: n }, one));
  }, { n, path });
}
export const settle = (tab) => tab.page.evaluate(() => window.__burst);
/** `n` concurrent `authFetch(path)` in the tab, and their outcomes. */
export const burst = async (tab, n, path) => { await startBurst(tab, n, path); return settle(tab); };

/** A page (without the package) takes the refresh lock and never releases it. */
export async function holdLock(tab) {
  await tab.page.evaluate((name) => new Promise((held) => {
    navigator.locks.request(name, () => {
      held();
      return new Promise(() => {});
    });
  }), LOCK_NAME);
}

/** Server counters minus a baseline. */
export async function statsSince(server, base) {
  const now = await server.stats();
  return Object.fromEntries(Object.entries(now).map(([k, v]) => [k, v - (base[k] ?? 0)]));
}
