// The demo app (www/), driven as a person would: typing, clicking, a second tab, a second device.
// The real authfetch-server serves it under its strict CSP; access tokens live 3 s, so refreshes
// happen within each test. Screenshots go to test-results/screenshots/ (stable names); run with
// AUTHFETCH_UPDATE_SCREENSHOTS=1 to refresh the README's copies in docs/screenshots/ instead.
import { test, expect } from './fixtures.mjs';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './fixtures.mjs';

const SHOTS = process.env.AUTHFETCH_UPDATE_SCREENSHOTS
  ? join(ROOT, 'docs', 'screenshots')
  : join(ROOT, 'test-results', 'screenshots');
mkdirSync(SHOTS, { recursive: true });
const COOKIE = '__Host-authfetch_rt';
const GRACE_S = 2;

// A short grace window so the theft test can wait it out without a long sleep.
test.use({
  serverArgs: ['--access-ttl', '3s', '--grace', `${GRACE_S}s`, '--demo', '--debug-stats'],
  viewport: { width: 1280, height: 860 },
});

/**
 * Collects CSP violations, uncaught errors and console errors. Chromium's "Failed to load
 * resource" lines are left out: the 401 of a refused (stolen, revoked) cookie, or the 404 of the
 * optional theft route, is the app working as designed. (A signed-out load prints none at all:
 * quiet-start.spec.mjs.)
 */
function watchForProblems(page) {
  const problems = [];
  page.on('pageerror', (e) => problems.push(`pageerror: ${e}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) problems.push(`console: ${m.text()}`);
  });
  return problems;
}

async function open(page, url) {
  const res = await page.goto(url);
  await expect(page.locator('body[data-ready="true"]')).toBeAttached();
  return res;
}

/** Signs in through the form by typing, as a person would. */
async function signIn(page, user = 'alice') {
  await expect(page.getByTestId('state')).toHaveText('signed out');
  await page.getByLabel('Username').pressSequentially(user);
  await page.getByLabel('Password').pressSequentially(`${user}-password`);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page.getByTestId('state')).toHaveText('signed in');
  await expect(page.getByTestId('who')).toHaveText(user);
}

/** Clicks "GET /api/me" unless the tab already noticed it was signed out (its panel is gone then). */
async function callIfSignedIn(page) {
  const button = page.getByRole('button', { name: 'GET /api/me' });
  if (await button.isVisible()) await button.click({ timeout: 2000 }).catch(() => {});
}

const requestLog = (page) => page.getByTestId('request-log').locator('li');
const eventTypes = (page) => page.getByTestId('event-log').locator('li').evaluateAll((lis) => lis.map((li) => li.dataset.type));

test('sign in, see the public claims and a countdown, call the API, watch a silent refresh', async ({ page, server }) => {
  const problems = watchForProblems(page);
  const res = await open(page, `${server.url}/`);
  const csp = res.headers()['content-security-policy'];
  expect(csp).toContain("script-src 'self' 'wasm-unsafe-eval'");
  expect(csp).not.toContain('unsafe-inline');
  await expect(page.getByText('alice-password')).toBeVisible(); // the demo users are on the page
  await page.screenshot({ path: join(SHOTS, 'demo-signed-out.png') });

  // A wrong password first: a clear message, still signed out.
  await page.getByLabel('Username').pressSequentially('alice');
  await page.getByLabel('Password').pressSequentially('not-her-password');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page.getByRole('alert')).toContainText(/wrong username or password|sign-in failed/i);
  await page.getByLabel('Username').fill('');
  await page.getByLabel('Password').fill('');

  const loginResponse = page.waitForResponse((r) => r.url().endsWith('/auth/login') && r.status() === 200);
  await signIn(page);
  const accessToken = (await (await loginResponse).json()).access_token;
  expect(typeof accessToken).toBe('string');

  // Claims and countdown, never the token.
  const claims = page.getByTestId('claims');
  await expect(claims).toContainText('sub');
  await expect(claims).toContainText('exp');
  await expect(page.getByTestId('countdown')).toHaveText(/^\d+\.\d s$/);
  const first = Number.parseFloat(await page.getByTestId('countdown').textContent());
  expect(first).toBeGreaterThan(0);
  expect(first).toBeLessThanOrEqual(3.1);

  // A protected GET.
  await page.getByRole('button', { name: 'GET /api/me' }).click();
  await expect(page.getByTestId('response')).toContainText('200');
  await expect(page.getByTestId('response')).toContainText('"username": "alice"');
  await expect(requestLog(page).first()).toContainText('/api/me');
  await expect(requestLog(page).first()).toContainText('200');
  await expect(requestLog(page).first()).toContainText('bearer');

  // A POST with a body the person typed.
  const body = page.getByLabel(/Body for/);
  await body.fill('');
  await body.pressSequentially('{"note": "typed in the demo"}');
  await page.getByRole('button', { name: 'POST /api/echo' }).click();
  await expect(page.getByTestId('response')).toContainText('"method": "POST"');
  await expect(page.getByTestId('response')).toContainText('typed in the demo');
  await expect(page.getByTestId('response')).toContainText('sha256');
  await expect(requestLog(page).first()).toContainText('POST');

  // A 403 is not an expired token: no refresh, no retry (the trace is the bare status).
  const refreshesBefore = (await server.stats()).refresh;
  await page.getByRole('button', { name: 'GET /api/forbidden' }).click();
  await expect(requestLog(page).first()).toContainText('403');
  expect(await requestLog(page).first().getAttribute('data-steps')).toBe('403');

  // Let the 3-second token run out, then call again: authfetch refreshes (before expiry or on the
  // 401) and the call succeeds; the event log shows the refresh, the claims show a new token.
  const jti = await claims.textContent();
  await page.waitForFunction(() => {
    const t = Number.parseFloat(document.getElementById('countdown').textContent);
    return !(t > 0.3) || document.querySelector('#event-log [data-type="refreshed"]');
  }, null, { timeout: 6000 });
  await page.getByRole('button', { name: 'GET /api/me' }).click();
  await expect(page.getByTestId('event-log').locator('[data-type="refreshed"]').first()).toBeVisible({ timeout: 8000 });
  await expect(requestLog(page).first()).toContainText('200');
  await expect(claims).not.toHaveText(jti);
  expect((await server.stats()).refresh).toBeGreaterThan(refreshesBefore);

  // The page shows the claims, never the token; nothing is kept in web storage either.
  const visible = await page.evaluate(() => document.documentElement.outerHTML + document.body.innerText);
  const tail = accessToken.slice(-40); // the end of the signature: unique to this token
  expect(visible).not.toContain(accessToken);
  expect(visible).not.toContain(tail);
  const stored = await page.evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }) + document.cookie);
  expect(stored).not.toContain(tail);

  await expect(page.getByTestId('stats')).toContainText('refreshes');
  await page.screenshot({ path: join(SHOTS, 'demo-signed-in.png'), fullPage: true });
  expect(problems).toEqual([]);
});

test.describe('with a 30-second token (no background refresh during the test)', () => {
  test.use({ serverArgs: ['--access-ttl', '30s', '--grace', `${GRACE_S}s`, '--demo', '--debug-stats'] });

  test('a request whose token the server rejects shows 401 → refreshed → retried → 200', async ({ page, server }) => {
    const problems = watchForProblems(page);
    await open(page, `${server.url}/`);
    await signIn(page);
    // Make the next /api/me answer 401 as a server does for a revoked or expired token; the refresh
    // and the retry then go to the real server.
    let rejected = 0;
    await page.route('**/api/me', async (route) => {
      if (rejected++ === 0) {
        await route.fulfill({ status: 401, headers: { 'www-authenticate': 'Bearer error="invalid_token"' }, body: '' });
      } else {
        await route.continue();
      }
    });
    const before = (await server.stats()).refresh;
    await page.getByRole('button', { name: 'GET /api/me' }).click();
    await expect(page.getByTestId('response')).toContainText('"username": "alice"');
    const steps = await requestLog(page).first().getAttribute('data-steps');
    expect(steps).toBe('401 refreshed retried 200');
    await expect(requestLog(page).first()).toContainText(/401\s*→\s*refreshed\s*→\s*retried\s*→\s*200/);
    expect((await server.stats()).refresh).toBe(before + 1);
    await expect(page.getByTestId('event-log').locator('[data-type="refreshed"]')).toHaveCount(1);
    await expect(page.getByTestId('stats').locator('[data-stat="refresh"] dd')).toHaveText(String(before + 1));
    await page.screenshot({ path: join(SHOTS, 'demo-refresh-trace.png') });
    expect(problems).toEqual([]);
  });
});

test('a second tab opened from the hint shares the session and follows a logout', async ({ page, context, server }) => {
  const problems = watchForProblems(page);
  await open(page, `${server.url}/`);
  await signIn(page);

  // The person follows the hint and opens a second tab: it signs in silently from the cookie.
  const [second] = await Promise.all([context.waitForEvent('page'), page.getByRole('link', { name: 'second tab' }).click()]);
  await expect(second.locator('body[data-ready="true"]')).toBeAttached();
  await expect(second.getByTestId('state')).toHaveText('signed in');
  await expect(second.getByTestId('who')).toHaveText('alice');
  await second.getByRole('button', { name: 'GET /api/me' }).click();
  await expect(second.getByTestId('response')).toContainText('"username": "alice"');

  // Both tabs keep working across several 3-second lifetimes without logging each other out.
  for (let i = 0; i < 3; i++) {
    await page.waitForTimeout(1500);
    await page.getByRole('button', { name: 'GET /api/me' }).click();
    await second.getByRole('button', { name: 'GET /api/me' }).click();
    await expect(page.getByTestId('state')).toHaveText('signed in');
    await expect(second.getByTestId('state')).toHaveText('signed in');
  }
  expect((await server.stats()).reuse_detected).toBe(0);

  // Log out in the first tab: the second follows without being touched.
  await page.getByRole('button', { name: 'Log out', exact: true }).click();
  await expect(page.getByTestId('state')).toHaveText('signed out');
  await expect(second.getByTestId('state')).toHaveText('signed out');
  expect(await eventTypes(second)).toContain('signed_out');
  expect(problems).toEqual([]);
});

test('log out everywhere ends the session on another device too', async ({ browser, page, server }) => {
  await open(page, `${server.url}/`);
  await signIn(page);
  // A second device: a separate browser context, its own cookie, its own session family.
  const device = await browser.newContext();
  const other = await device.newPage();
  try {
    await open(other, `${server.url}/`);
    await signIn(other);

    await page.getByRole('button', { name: 'Log out everywhere' }).click();
    await expect(page.getByTestId('state')).toHaveText('signed out');
    // The page signs out at once; the server is told right after (under the tabs' lock).
    await expect.poll(async () => (await server.stats()).logout_all).toBe(1);

    // The other device finds out at its next call (its token and its refresh cookie are revoked).
    await callIfSignedIn(other);
    await expect(other.getByTestId('state')).toHaveText('signed out', { timeout: 8000 });
    const types = await eventTypes(other);
    expect(types.some((t) => t === 'session_expired' || t === 'signed_out')).toBe(true);
    // And its cookie is gone: the refused refresh cleared it, so a refresh now carries no
    // cookie and the server answers "no session" (204), not a new token.
    const res = await other.evaluate(async () => (await fetch('/auth/refresh', { method: 'POST', headers: { 'x-authfetch': '1' } })).status);
    expect(res).toBe(204);
  } finally {
    await device.close();
  }
});

/**
 * Replays a command line the page shows (`curl -i -X POST URL -H 'name: value' …`) with Node's
 * fetch, so the test does not depend on curl being installed, but does depend on the page's text.
 */
async function runCurlSnippet(snippet) {
  const url = /curl\b[^\n]*?(https?:\/\/\S+)/.exec(snippet)?.[1];
  const method = /-X\s+([A-Z]+)/.exec(snippet)?.[1] ?? 'GET';
  const headers = {};
  for (const [, name, value] of snippet.matchAll(/-H\s+'([^:']+):\s*([^']*)'/g)) headers[name.toLowerCase()] = value;
  expect(url, `a URL in the snippet:\n${snippet}`).toBeTruthy();
  return fetch(url, { method, headers });
}

test('the stolen-refresh-token walk-through: a replayed old cookie kills the session in every tab', async ({ page, context, server }) => {
  const problems = watchForProblems(page);
  await open(page, `${server.url}/`);
  await signIn(page);
  const second = await context.newPage();
  await open(second, `${server.url}/`);
  await expect(second.getByTestId('state')).toHaveText('signed in');

  // Step 1, the thief's copy. Page scripts cannot read this HttpOnly cookie; DevTools — or anyone
  // with the browser profile — can. The test reads it from outside the page, as DevTools does.
  const cookieOf = async () => (await context.cookies(server.url)).find((c) => c.name === COOKIE);
  const stolen = await cookieOf();
  expect(stolen.httpOnly).toBe(true);
  expect(stolen.secure).toBe(true);
  expect(stolen.sameSite).toBe('Strict');
  expect(await page.evaluate(() => document.cookie)).not.toContain('authfetch_rt');
  const card = page.getByTestId('theft-card');
  await card.getByRole('button', { name: 'I copied it' }).click();
  await expect(page.getByTestId('theft-status')).toContainText('refreshed');

  // Step 2: the person keeps using the app; after the 3-second token runs out, authfetch
  // refreshes, the cookie rotates, and the card notices.
  await page.waitForTimeout(3200);
  await page.getByRole('button', { name: 'GET /api/me' }).click();
  await expect(card.locator('#theft-step-rotate')).toHaveClass(/is-done/, { timeout: 8000 });
  await expect(card).toContainText('your copy is now an old token');
  await expect.poll(async () => (await cookieOf()).value).not.toBe(stolen.value);

  // Steps 3 and 4: past the grace window, the thief replays the old cookie with the page's command.
  await page.waitForTimeout(GRACE_S * 1000 + 500);
  const snippet = await page.getByTestId('curl-snippet').textContent();
  expect(snippet).toContain(`${server.url}/auth/refresh`);
  expect(snippet).toContain('PASTE_THE_COPIED_VALUE');
  const replay = await runCurlSnippet(snippet.replace('PASTE_THE_COPIED_VALUE', stolen.value));
  expect(replay.status).toBe(401);
  expect((await replay.json()).error).toBe('invalid_grant');
  expect((await server.stats()).reuse_detected).toBe(1);

  // Step 5: the server revoked the whole family, access tokens included: the next call signs
  // every tab out (unless a background refresh already found out), and the card tells the story.
  // The second tab calls first, so it finds out first and this one learns through the tabs'
  // hint (the order the CI run once hit by chance, when this tab reported `signed_out`).
  await callIfSignedIn(second);
  await expect(second.getByTestId('state')).toHaveText('signed out', { timeout: 8000 });
  await callIfSignedIn(page);
  await expect(page.getByTestId('state')).toHaveText('signed out', { timeout: 8000 });
  await expect(second.getByTestId('state')).toHaveText('signed out', { timeout: 8000 });
  // Whichever tab found out first (this one's call, or the other's background refresh), both
  // tell their app the same story: the server ended the session; nobody signed out.
  expect(await eventTypes(page)).toContain('session_expired');
  expect(await eventTypes(second)).toContain('session_expired');
  expect(await eventTypes(page)).not.toContain('signed_out');
  await expect(page.getByTestId('theft-status')).toContainText('Reuse detected');
  for (const step of ['copy', 'rotate', 'grace', 'replay', 'result']) {
    await expect(card.locator(`#theft-step-${step}`)).toHaveClass(/is-done/);
  }
  // The stolen copy, and the cookie the browser still had, are both dead.
  const again = await runCurlSnippet(snippet.replace('PASTE_THE_COPIED_VALUE', stolen.value));
  expect(again.status).toBe(401);
  await expect(page.getByTestId('stats').locator('[data-stat="reuse_detected"] dd')).toHaveText('1');
  await page.screenshot({ path: join(SHOTS, 'demo-reuse-detected.png'), fullPage: true });
  expect(problems).toEqual([]);
});

test('the demo page itself keeps to the strict CSP: no inline script, style or handler', async ({ page, server }) => {
  const violations = [];
  page.on('console', (m) => { if (/Content Security Policy/i.test(m.text())) violations.push(m.text()); });
  await open(page, `${server.url}/`);
  await signIn(page);
  await page.getByRole('button', { name: 'GET /api/me' }).click();
  await expect(page.getByTestId('response')).toContainText('200');
  const inline = await page.evaluate(() => ({
    scripts: [...document.scripts].filter((s) => !s.src).length,
    styles: document.querySelectorAll('style').length,
    styleAttrs: document.querySelectorAll('[style]').length,
    handlers: [...document.querySelectorAll('*')].flatMap((e) => [...e.attributes].map((a) => a.name)).filter((n) => n.startsWith('on')).length,
  }));
  expect(inline).toEqual({ scripts: 0, styles: 0, styleAttrs: 0, handlers: 0 });
  expect(violations).toEqual([]);
});

test('what a script injected into the page can and cannot do (as the README says)', async ({ page, server }) => {
  await open(page, `${server.url}/`);
  await signIn(page);
  const seen = await page.evaluate(async () => {
    // The "XSS": it hooks fetch and Headers after authfetch was imported, then uses the session.
    // (Whether such hooks see the bearer is not a promise: a script in the page's realm can
    // observe the access token, README "What it protects against, and what it doesn't". The
    // promises are the refresh cookie and storage, below, and K9 in injected-script.spec.mjs.)
    const headersSeen = [];
    const realFetch = window.fetch;
    window.fetch = function hooked(input, init) {
      const h = new Headers((init && init.headers) || (input instanceof Request ? input.headers : undefined));
      headersSeen.push(h.get('authorization'));
      return realFetch.call(this, input, init);
    };
    const realSet = Headers.prototype.set;
    Headers.prototype.set = function hookedSet(name, value) {
      headersSeen.push(`${name}: ${value}`);
      return realSet.call(this, name, value);
    };
    const m = await import('/pkg/index.js'); // the same module instance the page uses
    const res = await m.authFetch('/api/me');
    const me = await res.json();
    return {
      cookie: document.cookie,
      status: res.status,
      username: me.username,
      leaked: headersSeen.filter((h) => h && /bearer/i.test(h)),
      idb: (await indexedDB.databases()).map((d) => d.name),
      caches: await caches.keys(),
      storage: localStorage.length + sessionStorage.length,
    };
  });
  // It can use the session: authFetch works for any script on the page.
  expect(seen.status).toBe(200);
  expect(seen.username).toBe('alice');
  // It cannot read the refresh cookie.
  expect(seen.cookie).not.toContain('authfetch_rt');
  // Nothing in any web storage.
  expect(seen.idb).toEqual([]);
  expect(seen.caches).toEqual([]);
  expect(seen.storage).toBe(0);
  // The page's own calls, made through the hooked globals, still work, and the cookie stays hidden.
  await page.getByRole('button', { name: 'GET /api/me' }).click();
  await expect(page.getByTestId('response')).toContainText('"username": "alice"');
  expect(await page.evaluate(() => document.cookie)).not.toContain('authfetch_rt');
});

test("without 'wasm-unsafe-eval' in the CSP the module cannot compile, and the demo says why", async ({ page, server }) => {
  // The same page, served with the CSP minus 'wasm-unsafe-eval' (everything else unchanged).
  await page.route(`${server.url}/`, async (route) => {
    const res = await route.fetch();
    const headers = { ...res.headers() };
    expect(headers['content-security-policy']).toContain("'wasm-unsafe-eval'");
    headers['content-security-policy'] = headers['content-security-policy'].replace(" 'wasm-unsafe-eval'", '');
    await route.fulfill({ response: res, headers });
  });
  await page.goto(`${server.url}/`);
  await expect(page.getByTestId('fatal')).toContainText('ERR_UNSUPPORTED');
  await expect(page.getByTestId('fatal')).toContainText("'wasm-unsafe-eval'");
  const code = await page.evaluate(async () => {
    const m = await import('/pkg/index.js');
    return m.authFetch('/api/me').then(() => 'resolved', (err) => `${err.name} ${err.code}`);
  });
  expect(code).toBe('AuthFetchError ERR_UNSUPPORTED');
});
