// Many tabs, one session: the in-tab single flight, the Web Locks refresh lock with a timeout
// under which each tab gets its OWN token from the server (tabs never share a token; a
// BroadcastChannel carries payload-free hints that only make a tab ask the server), and the
// server's grace window as the backstop. One browser context (one cookie jar), several pages, the
// real server. docs/TABS.md describes the design.
//
// Each tab is a minimal page on the server's origin (served by a Playwright route with the
// server's own Content-Security-Policy) that imports /pkg/index.js and creates a client with
// `refreshAheadSeconds: 0`, so nothing refreshes on a timer: a refresh happens only when a call
// needs one, which makes every count below deterministic. The default server lifetime is 3 s.
import { test, expect } from './fixtures.mjs';
import {
  ALICE, ENDED, tabHarness, ready, isAuthenticated, eventTypes, jti, login, waitExpired, burst, holdLock, statsSince,
} from './tabs-harness.mjs';

const COOKIE = '__Host-authfetch_rt';
const TAB_PATH = '/__tabs-e2e.html';
const LOGGED_OUT = ENDED;
const harness = (context, server) => tabHarness(context, server, TAB_PATH);

test('5 tabs × 20 concurrent calls with an expired token: all 100 succeed, nobody is logged out, one refresh per tab', async ({ context, server }) => {
  const h = await harness(context, server);
  // Three tabs open before the login (a hint makes them ask the server, which signs them in),
  // two after (their own start-up refresh).
  const early = [await h.open(), await h.open(), await h.open()];
  expect(await Promise.all(early.map(ready))).toEqual([false, false, false]);
  await login(early[0]);
  for (const t of early) await expect.poll(() => isAuthenticated(t)).toBe(true);

  const refreshesBeforeNewTabs = h.refreshCount();
  const late = [await h.open(), await h.open()];
  expect(await Promise.all(late.map(ready))).toEqual([true, true]);
  expect(h.refreshCount() - refreshesBeforeNewTabs, 'a new tab refreshes once, for itself').toBe(2);
  const tabs = [...early, ...late];

  // Deterministic expiry: every tab's token has run out before anything is fired.
  await Promise.all(tabs.map(waitExpired));
  const jtiBefore = await jti(tabs[0]);
  const base = await server.stats();
  const before = h.refreshCount();

  const results = await Promise.all(tabs.map((t) => burst(t, 20)));

  const flat = results.flat();
  expect(flat).toHaveLength(100);
  expect(flat.filter((r) => r.status === 200 && r.user === 'alice')).toHaveLength(100);
  const refreshes = h.refreshCount() - before;
  const delta = await statsSince(server, base);
  console.log(`[tabs] 5 tabs × 20 calls: ${refreshes} refresh request(s) from the browser; server: refresh=${delta.refresh} grace=${delta.refresh_grace} failed=${delta.refresh_failed}`);
  test.info().annotations.push({ type: 'refreshes', description: String(refreshes) });
  // Exactly one refresh per tab (every token had expired), taking turns under the lock: no
  // grace-window answer, no failure, no reuse.
  expect(refreshes).toBe(5);
  expect(delta.refresh).toBe(5);
  expect(delta.refresh_grace).toBe(0);
  expect(delta.refresh_failed).toBe(0);
  expect(delta.reuse_detected).toBe(0);
  // Every tab holds its own new token: none was shared.
  const jtis = await Promise.all(tabs.map(jti));
  expect(new Set(jtis).size, `tokens held: ${jtis}`).toBe(5);
  expect(jtis).not.toContain(jtiBefore);
  for (const t of tabs) {
    const types = await eventTypes(t);
    expect(types.filter((e) => [...LOGGED_OUT, 'refresh_failed'].includes(e)), `${t.name} events ${types}`).toEqual([]);
    expect(await isAuthenticated(t)).toBe(true);
  }
  expect(h.problems).toEqual([]);
});

test('a tab closed while it holds the refresh lock does not block the other tabs', async ({ context, server }) => {
  const h = await harness(context, server);
  const LOCK_TIMEOUT = 4000;
  const a = await h.open({ lockTimeoutMs: LOCK_TIMEOUT });
  const b = await h.open({ lockTimeoutMs: LOCK_TIMEOUT });
  await Promise.all([ready(a), ready(b)]);
  await login(a);
  await expect.poll(() => isAuthenticated(b)).toBe(true);
  const holder = await h.open({}, { name: 'holder', withClient: false });
  await holdLock(holder);
  await Promise.all([waitExpired(a), waitExpired(b)]);
  const base = await server.stats();
  const before = h.refreshCount();

  const started = Date.now();
  const calls = Promise.all([burst(a, 5), burst(b, 5)]);
  let settled = false;
  calls.then(() => { settled = true; }, () => { settled = true; });
  await a.page.waitForTimeout(800);
  expect(settled, 'the calls wait while another tab holds the lock').toBe(false);
  expect(h.refreshCount() - before, 'no refresh while the lock is held').toBe(0);

  const closedAt = Date.now();
  await holder.page.close();
  const results = (await calls).flat();
  const afterClose = Date.now() - closedAt;
  console.log(`[tabs] lock holder closed after ${closedAt - started} ms; calls done ${afterClose} ms later (lock timeout ${LOCK_TIMEOUT} ms)`);
  expect(results.every((r) => r.status === 200 && r.user === 'alice'), JSON.stringify(results)).toBe(true);
  // Released by the close itself, well before the lock timeout would have let them go.
  expect(afterClose).toBeLessThan(LOCK_TIMEOUT - (closedAt - started) - 1000);
  expect(h.refreshCount() - before, 'one refresh per tab').toBe(2);
  const delta = await statsSince(server, base);
  expect(delta.reuse_detected).toBe(0);
  for (const t of [a, b]) expect((await eventTypes(t)).filter((e) => LOGGED_OUT.includes(e))).toEqual([]);
  expect(h.problems).toEqual([]);
});

test('a lock that is never released delays the other tabs by the lock timeout, then they refresh anyway', async ({ context, server }) => {
  const h = await harness(context, server);
  const LOCK_TIMEOUT = 1500;
  const a = await h.open({ lockTimeoutMs: LOCK_TIMEOUT });
  const b = await h.open({ lockTimeoutMs: LOCK_TIMEOUT });
  await Promise.all([ready(a), ready(b)]);
  await login(a);
  await expect.poll(() => isAuthenticated(b)).toBe(true);
  const holder = await h.open({}, { name: 'holder', withClient: false });
  await holdLock(holder);
  await Promise.all([waitExpired(a), waitExpired(b)]);
  const base = await server.stats();

  const started = Date.now();
  const results = (await Promise.all([burst(a, 5), burst(b, 5)])).flat();
  const took = Date.now() - started;
  const delta = await statsSince(server, base);
  console.log(`[tabs] lock held forever: calls done after ${took} ms (lock timeout ${LOCK_TIMEOUT} ms); server: refresh=${delta.refresh} grace=${delta.refresh_grace}`);
  expect(results.every((r) => r.status === 200 && r.user === 'alice'), JSON.stringify(results)).toBe(true);
  expect(took).toBeGreaterThanOrEqual(LOCK_TIMEOUT - 100);
  expect(took).toBeLessThan(LOCK_TIMEOUT + 2500);
  // Both tabs gave up waiting at about the same time; the grace window keeps them signed in.
  expect(delta.refresh + delta.refresh_grace).toBeGreaterThanOrEqual(1);
  expect(delta.refresh + delta.refresh_grace).toBeLessThanOrEqual(2);
  expect(delta.refresh_failed).toBe(0);
  expect(delta.reuse_detected).toBe(0);
  for (const t of [a, b]) expect((await eventTypes(t)).filter((e) => LOGGED_OUT.includes(e))).toEqual([]);
  expect(h.problems).toEqual([]);
});

test('logout in one tab: every other tab checks with the server once on the hint, reports signed_out, then gets 401 without a refresh', async ({ context, server }) => {
  const h = await harness(context, server);
  const tabs = [await h.open(), await h.open(), await h.open()];
  await Promise.all(tabs.map(ready));
  await login(tabs[0]);
  for (const t of tabs) await expect.poll(() => isAuthenticated(t)).toBe(true);
  // Every tab holds a working token.
  for (const t of tabs) expect(await burst(t, 1)).toEqual([{ status: 200, user: 'alice' }]);

  const base = await server.stats();
  const before = h.refreshCount();
  const loggedOutAt = await tabs[0].page.evaluate(async () => {
    const at = Date.now();
    await window.__tab.client.logout();
    return at;
  });
  // `signed_out` is what a tab reports only when a hint sent it to the server: one that found the
  // cookie dead by itself (its next scheduled refresh) reports `session_expired`. So the event's
  // type, not a wall-clock bound, shows that the hint did the work; the delay is logged.
  const heard = [];
  for (const t of tabs.slice(1)) {
    await t.page.waitForFunction(() => window.__tab.events.some((e) => ['signed_out', 'session_expired'].includes(e.type)), null, { timeout: 10_000 });
    const ended = await t.page.evaluate(() => window.__tab.events.find((e) => ['signed_out', 'session_expired'].includes(e.type)));
    heard.push(`${t.name} ${ended.at - loggedOutAt} ms`);
    expect(ended.type, `${t.name} learnt of the logout from the hint`).toBe('signed_out');
    expect(await isAuthenticated(t)).toBe(false);
  }
  console.log(`[tabs] after the logout call: ${heard.join(', ')}`);
  expect(await eventTypes(tabs[0])).toContain('signed_out');
  // The hint made each other tab ask the server once (a refresh the server refused); none of them
  // believed the hint alone, and the logging-out tab asked nothing.
  const checks = h.refreshRequests.slice(before);
  expect(checks.length, 'one check per other tab').toBe(2);
  expect(checks.some((r) => r.page === tabs[0].page)).toBe(false);
  const afterChecks = h.refreshCount();

  // Their next call goes out without a bearer and gets the server's 401: no refresh is attempted.
  for (const t of tabs.slice(1)) {
    expect(await burst(t, 1)).toEqual([{ status: 401, user: undefined }]);
    const trace = await t.page.evaluate(() => window.__tab.traces.at(-1));
    expect(trace.bearer).toBe(false);
    expect(trace.steps).not.toContain('refreshed');
  }
  expect(h.refreshCount() - afterChecks).toBe(0);
  const delta = await statsSince(server, base);
  expect(delta.logout).toBe(1);
  expect(delta.refresh + delta.refresh_grace, 'no check was granted a token').toBe(0);
  expect(h.problems).toEqual([]);
});

test.describe('with a 1-second grace window', () => {
  test.use({ serverArgs: ['--access-ttl', '3s', '--grace', '1s', '--demo', '--debug-stats'] });

  test('the old refresh cookie replayed after the grace window kills the session in every tab', async ({ context, server }) => {
    const h = await harness(context, server);
    const tabs = [await h.open(), await h.open(), await h.open()];
    await Promise.all(tabs.map(ready));
    await login(tabs[0]);
    for (const t of tabs) await expect.poll(() => isAuthenticated(t)).toBe(true);
    const cookieOf = async () => (await context.cookies(server.url)).find((c) => c.name === COOKIE);
    const stolen = await cookieOf();
    expect(stolen, 'the refresh cookie is set').toBeTruthy();

    // The session goes on: the token runs out, one tab refreshes, the cookie rotates.
    await Promise.all(tabs.map(waitExpired));
    expect((await Promise.all(tabs.map((t) => burst(t, 3)))).flat().every((r) => r.status === 200)).toBe(true);
    const rotated = await cookieOf();
    expect(rotated.value).not.toBe(stolen.value);

    // Past the grace window, the old cookie is replayed from outside the browser.
    await tabs[0].page.waitForTimeout(1500);
    const base = await server.stats();
    const replay = await fetch(`${server.url}/auth/refresh`, {
      method: 'POST',
      headers: { 'x-authfetch': '1', origin: server.url, cookie: `${COOKIE}=${stolen.value}` },
    });
    expect(replay.status).toBe(401);
    expect((await statsSince(server, base)).reuse_detected).toBe(1);

    // Every tab finds out at its next call: the family is dead, its tokens are refused.
    const results = (await Promise.all(tabs.map((t) => burst(t, 2)))).flat();
    expect(results.some((r) => r.status === 200), JSON.stringify(results)).toBe(false);
    for (const r of results) {
      expect(r.error === 'ERR_SESSION_EXPIRED' || r.error === 'ERR_SIGNED_OUT' || r.status === 401, JSON.stringify(r)).toBe(true);
    }
    for (const t of tabs) {
      await expect.poll(() => isAuthenticated(t), { message: `${t.name} signed out` }).toBe(false);
      const types = await eventTypes(t);
      expect(types.some((e) => LOGGED_OUT.includes(e)), `${t.name} events ${types}`).toBe(true);
    }
    expect((await statsSince(server, base)).refresh).toBe(0);
    expect(h.problems).toEqual([]);
  });
});

test.describe('without Web Locks and BroadcastChannel', () => {
  test('two tabs refreshing at once stay signed in thanks to the server grace window', async ({ context, server }) => {
    await context.addInitScript(() => {
      delete Navigator.prototype.locks;
      delete globalThis.BroadcastChannel;
    });
    const h = await harness(context, server);
    const a = await h.open();
    const b = await h.open();
    expect(await a.page.evaluate(() => ['locks' in navigator, typeof BroadcastChannel])).toEqual([false, 'undefined']);
    expect(await ready(a)).toBe(false);
    await login(a);
    // No channel: the second tab bootstraps through its own refresh.
    expect(await ready(b)).toBe(true);
    await Promise.all([waitExpired(a), waitExpired(b)]);

    // Hold the first refresh request until the second one arrives, so both carry the same cookie.
    let arrived = 0;
    let release;
    const bothArrived = new Promise((r) => { release = r; });
    await context.route(`${server.url}/auth/refresh`, async (route) => {
      if (++arrived === 2) release();
      await Promise.race([bothArrived, new Promise((r) => setTimeout(r, 3000))]);
      await route.continue();
    });
    const base = await server.stats();
    const results = (await Promise.all([burst(a, 10), burst(b, 10)])).flat();
    const delta = await statsSince(server, base);
    console.log(`[tabs] no locks/channel: server refresh=${delta.refresh} grace=${delta.refresh_grace} failed=${delta.refresh_failed}`);
    expect(arrived, 'one refresh per tab (single flight within each tab)').toBe(2);
    expect(results.every((r) => r.status === 200 && r.user === 'alice'), JSON.stringify(results)).toBe(true);
    expect(delta.refresh).toBe(1);
    expect(delta.refresh_grace).toBe(1);
    expect(delta.refresh_failed).toBe(0);
    expect(delta.reuse_detected).toBe(0);
    for (const t of [a, b]) {
      expect((await eventTypes(t)).filter((e) => LOGGED_OUT.includes(e))).toEqual([]);
      expect(await isAuthenticated(t)).toBe(true);
    }
    expect(h.problems).toEqual([]);
  });
});

test('logout everywhere reaches a tab whose calls are queued behind a stuck lock, through the server', async ({ context, server }) => {
  const h = await harness(context, server);
  const LOCK_TIMEOUT = 1500;
  const a = await h.open({ lockTimeoutMs: LOCK_TIMEOUT });
  const b = await h.open({ lockTimeoutMs: LOCK_TIMEOUT });
  await Promise.all([ready(a), ready(b)]);
  await login(a);
  await expect.poll(() => isAuthenticated(b)).toBe(true);
  // A third tab holds the refresh lock and never lets go, so B's calls queue behind B's refresh
  // and A's logout-everywhere waits for the lock timeout before it is sent.
  const holder = await h.open({}, { name: 'holder', withClient: false });
  await holdLock(holder);
  await waitExpired(b);
  const queued = burst(b, 3);
  await b.page.waitForTimeout(300);
  const base = await server.stats();
  const loggedOutAt = await a.page.evaluate(async () => {
    const at = Date.now();
    await window.__tab.client.logoutEverywhere();
    return at;
  });
  // B's calls were queued while the session was alive: each either ran (B's own refresh, once
  // its wait for the lock timed out, came before the server ended the session) or was rejected
  // when B learnt of the end. None hangs, none fails otherwise.
  for (const r of await queued) {
    expect([JSON.stringify({ status: 200, user: 'alice' }), JSON.stringify({ error: 'ERR_SIGNED_OUT' })]).toContain(JSON.stringify(r));
  }
  // B signs out once the server has ended the session, not on anyone's word.
  await b.page.waitForFunction(() => window.__tab.events.some((e) => e.type === 'signed_out'), null, { timeout: 3000 });
  const at = await b.page.evaluate(() => window.__tab.events.find((e) => e.type === 'signed_out').at);
  // Two waits for the stuck lock: A's logout-everywhere before it is sent, then B's check.
  expect(at - loggedOutAt).toBeLessThanOrEqual(2 * LOCK_TIMEOUT + 1000);
  expect(await isAuthenticated(b)).toBe(false);
  expect((await statsSince(server, base)).logout_all).toBe(1);
  // Its next call: no bearer, the server's 401, no refresh.
  const n = h.refreshCount();
  expect(await burst(b, 1)).toEqual([{ status: 401, user: undefined }]);
  expect(h.refreshCount() - n).toBe(0);
  expect(h.problems).toEqual([]);
});

test('a refresh queued behind the lock is abandoned when the tab signs out meanwhile', async ({ context, server }) => {
  const h = await harness(context, server);
  const b = await h.open();
  expect(await ready(b)).toBe(false);
  await login(b);
  const holder = await h.open({}, { name: 'holder', withClient: false });
  await holdLock(holder);
  await waitExpired(b);
  const queued = burst(b, 1);
  await b.page.waitForTimeout(300);
  const loggedOut = b.page.evaluate(() => window.__tab.client.logout());
  expect(await queued).toEqual([{ error: 'ERR_SIGNED_OUT' }]);
  const before = h.refreshCount();
  // The lock comes free: B, signed out, has nothing left to refresh (its logout goes out).
  await holder.page.close();
  await loggedOut;
  await b.page.waitForTimeout(700);
  expect(await isAuthenticated(b)).toBe(false);
  expect(h.refreshCount() - before, 'refresh requests sent after the sign-out').toBe(0);
});

test('two clients for different auth servers do not take each other\'s tokens', async ({ context, server }) => {
  const h = await harness(context, server);
  const a = await h.open();
  // Another app on this origin with its own auth server (never reached: the page's CSP blocks it).
  const other = 'http://127.0.0.1:9';
  const b = await h.open({ baseUrl: other, allowedOrigins: [other] });
  expect(await ready(a)).toBe(false);
  expect(await ready(b)).toBe(false);
  await login(a);
  await a.page.waitForTimeout(300);
  expect(await isAuthenticated(a)).toBe(true);
  // With the bug, b adopts a's login token and would send it to its own allowed origin.
  expect(await b.page.evaluate(() => window.__tab.client.claims())).toBeNull();
  expect(await isAuthenticated(b)).toBe(false);
});

test('a new tab gets its own token without making the live tabs report anything', async ({ context, server }) => {
  const h = await harness(context, server);
  const a = await h.open();
  const c = await h.open();
  await Promise.all([ready(a), ready(c)]);
  await login(a);
  await expect.poll(() => isAuthenticated(c)).toBe(true);
  const before = h.refreshCount();
  const b = await h.open();
  expect(await ready(b)).toBe(true);
  await b.page.waitForTimeout(300);
  expect(h.refreshCount() - before, 'its own start-up refresh').toBe(1);
  expect(await jti(b)).not.toBe(await jti(a));
  // No token was replaced anywhere: each tab has seen exactly one event, its sign-in.
  for (const t of [a, b, c]) expect(await eventTypes(t), t.name).toEqual(['signed_in']);
});
