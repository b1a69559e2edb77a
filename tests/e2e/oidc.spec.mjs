// "Sign in with …" end to end, against a real OpenID Provider: panva's oidc-provider on
// 127.0.0.1 (tests/oidc/provider.mjs), the app on localhost, so the two are cross-site and a
// SameSite mistake on the transaction or refresh cookie would break the flow here. The browser
// is Debian's Chromium, driven through the provider's own login and consent pages.
import { test as base, expect, startServer, DEFAULT_ARGS, freePort, ROOT } from './fixtures.mjs';
import { startProvider } from '../oidc/provider.mjs';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const CLIENT_ID = 'authfetch-e2e';
const TXN_COOKIE = '__Host-authfetch_oidc';
const RT_COOKIE = '__Host-authfetch_rt';

/**
 * One provider and one server per test: `app` is the app's origin (localhost), `provider` the
 * running provider (restartable with a new key on the same port: `rotateKeys()`), `server` the
 * authfetch server (restartable on the same port and data directory).
 */
const test = base.extend({
  // `true`: the server in `--dpop required` and the demo on the package's DPoP entry (pkg/dpop).
  dpop: [false, { option: true }],
  oidc: async ({ dpop }, use) => {
    const dir = mkdtempSync(join(tmpdir(), 'authfetch-oidc-'));
    const appPort = await freePort();
    const app = `http://localhost:${appPort}`;
    const secret = 'e2e-client-secret-not-a-flag';
    const redirectUris = [`${app}/auth/oidc/test/callback`];
    let provider = await startProvider({ clientId: CLIENT_ID, clientSecret: secret, redirectUris });
    writeFileSync(join(dir, 'client-secret'), `${secret}\n`);
    writeFileSync(join(dir, 'oidc.json'), JSON.stringify({
      public_url: app,
      providers: [{
        name: 'test', label: 'Local OIDC', issuer: provider.issuer, client_id: CLIENT_ID,
        client_secret_file: 'client-secret', scopes: ['email', 'profile'],
      }],
    }));
    const args = [...DEFAULT_ARGS, '--oidc-config', join(dir, 'oidc.json'), '--oidc-allow-insecure-issuer',
      ...(dpop ? ['--dpop', 'required'] : [])];
    const dataDir = join(dir, 'data');
    const pkg = dpop ? join(ROOT, 'pkg', 'dpop') : undefined;
    const start = () => startServer(args, { listen: `127.0.0.1:${appPort}`, dataDir, pkg });
    let server = await start();
    const ctx = {
      app,
      get server() { return server; },
      get provider() { return provider; },
      /** Stops the server (its data directory, with the transaction key, stays). */
      async stopServer() { await server.stop(); },
      async startServer() { server = await start(); },
      async rotateKeys() {
        const { port, kid } = provider;
        await provider.stop();
        provider = await startProvider({ port, clientId: CLIENT_ID, clientSecret: secret, redirectUris });
        expect(provider.kid).not.toBe(kid);
      },
    };
    try {
      await use(ctx);
    } finally {
      await server.stop();
      await provider.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  },
});

async function openApp(page, url) {
  await page.goto(url);
  await expect(page.locator('body[data-ready="true"]')).toBeAttached();
}

/** From the app's sign-in card to the provider's login form. */
async function toProvider(page, oidc) {
  await openApp(page, `${oidc.app}/`);
  await expect(page.getByTestId('state')).toHaveText('signed out');
  await page.getByRole('button', { name: 'Sign in with Local OIDC' }).click();
  await page.waitForURL(`${oidc.provider.issuer}/**`);
  await expect(page.locator('input[name=login]')).toBeVisible();
}

/** The provider's dev interactions: any login name (it becomes `sub`), then consent. */
async function atProvider(page, login) {
  await page.locator('input[name=login]').fill(login);
  await page.locator('input[name=password]').fill('any password');
  await page.locator('button[type=submit]').click();
  await page.getByRole('button', { name: 'Continue' }).click();
}

/** A full sign-in in `page`; resolves with /api/me once the app says "signed in". */
async function signIn(page, oidc, login) {
  await toProvider(page, oidc);
  await atProvider(page, login);
  await page.waitForURL(`${oidc.app}/`);
  await expect(page.getByTestId('state')).toHaveText('signed in');
  return me(page);
}

/** GET /api/me through the package in the page (the demo app's own instance). */
const me = (page) => page.evaluate(async () => {
  const { authFetch } = await import('/pkg/index.js');
  const r = await authFetch('/api/me');
  return { status: r.status, body: r.status === 200 ? await r.json() : null };
});

const errorCode = (page) => page.locator('#error-code');

test('sign in with the provider, call the API, refresh, log out; the same person again is the same account', async ({ browser, oidc }) => {
  const ctx1 = await browser.newContext();
  const page = await ctx1.newPage();
  const first = await signIn(page, oidc, 'ada');
  expect(first.status).toBe(200);
  expect(first.body.username).toBe('test:ada');
  await expect(page.getByTestId('who')).toHaveText('test:ada');
  // The session is the ordinary one: the refresh cookie, HttpOnly and Strict; the transaction
  // cookie is gone.
  const cookies = await ctx1.cookies(oidc.app);
  const rt = cookies.find((c) => c.name === RT_COOKIE);
  expect(rt).toMatchObject({ httpOnly: true, secure: true, sameSite: 'Strict', path: '/' });
  expect(cookies.find((c) => c.name === TXN_COOKIE)).toBeUndefined();

  // Access tokens live 3 s: wait one out, call again, and the client refreshes (rotation).
  const before = (await oidc.server.stats()).refresh;
  await page.waitForTimeout(3500);
  const again = await me(page);
  expect(again.status).toBe(200);
  expect(again.body.sub).toBe(first.body.sub);
  expect((await oidc.server.stats()).refresh).toBeGreaterThan(before);
  expect((await ctx1.cookies(oidc.app)).find((c) => c.name === RT_COOKIE).value).not.toBe(rt.value);

  await page.getByRole('button', { name: 'Log out', exact: true }).click();
  await expect(page.getByTestId('state')).toHaveText('signed out');
  // The session is over on the server: a fresh load of the app finds none. (Not "the cookie is
  // gone": a refresh-ahead answered just after the logout may set a cookie of the dead family.)
  await openApp(page, `${oidc.app}/`);
  await expect(page.getByTestId('state')).toHaveText('signed out');
  expect((await me(page)).status).toBe(401);
  await ctx1.close();

  // Another browser (no provider session, no cookies): the same login maps to the same account,
  // another login to another one.
  for (const [login, same] of [['ada', true], ['grace', false]]) {
    const ctx = await browser.newContext();
    const p = await ctx.newPage();
    const r = await signIn(p, oidc, login);
    expect(r.status).toBe(200);
    if (same) expect(r.body.sub).toBe(first.body.sub);
    else expect(r.body.sub).not.toBe(first.body.sub);
    expect(r.body.username).toBe(`test:${login}`);
    await ctx.close();
  }
});

test('provider key rotation between two logins: the new key is fetched and the login works', async ({ browser, oidc }) => {
  const ctx1 = await browser.newContext();
  const first = await signIn(await ctx1.newPage(), oidc, 'ada');
  await ctx1.close();
  await oidc.rotateKeys();
  const ctx2 = await browser.newContext();
  const page = await ctx2.newPage();
  const second = await signIn(page, oidc, 'ada');
  expect(second.status).toBe(200);
  expect(second.body.sub).toBe(first.body.sub);
  await ctx2.close();
});

/**
 * Runs a sign-in up to the provider's answer, which is kept from reaching the server (Playwright
 * cannot intercept the target of a redirect, so the server is down at that moment, then started
 * again on the same port and data directory). Resolves with the callback URL.
 */
async function answerNotDelivered(page, oidc) {
  await toProvider(page, oidc);
  await oidc.stopServer();
  const failed = page.waitForEvent('requestfailed', (r) => r.url().startsWith(`${oidc.app}/auth/oidc/test/callback`));
  await atProvider(page, 'ada');
  const callback = (await failed).url();
  await oidc.startServer();
  return callback;
}

test('a tampered state is refused, and the untampered answer cannot be used afterwards', async ({ page, oidc }) => {
  const url = new URL(await answerNotDelivered(page, oidc));
  expect(url.searchParams.get('iss')).toBe(oidc.provider.issuer); // RFC 9207: sent, and checked
  const tampered = new URL(url);
  tampered.searchParams.set('state', `${url.searchParams.get('state')}x`);
  const res = await page.goto(tampered.href);
  expect(res.status()).toBe(400);
  await expect(errorCode(page)).toHaveText('state_mismatch');
  // The refusal cleared the transaction: the genuine answer is refused too.
  const res2 = await page.goto(url.href);
  expect(res2.status()).toBe(400);
  await expect(errorCode(page)).toHaveText('transaction_missing');
  await openApp(page, `${oidc.app}/`);
  await expect(page.getByTestId('state')).toHaveText('signed out');
});

test('a replayed callback (same code, even with the old transaction cookie) is refused', async ({ page, context, oidc }) => {
  await toProvider(page, oidc);
  // What an attacker would copy: the transaction cookie now, the callback URL in a moment.
  const txn = (await context.cookies(oidc.app)).find((c) => c.name === TXN_COOKIE);
  expect(txn).toMatchObject({ httpOnly: true, secure: true, sameSite: 'Lax', path: '/' });
  let callback;
  page.on('request', (r) => {
    if (r.url().startsWith(`${oidc.app}/auth/oidc/test/callback`)) callback = r.url();
  });
  await atProvider(page, 'ada');
  await page.waitForURL(`${oidc.app}/`);
  await expect(page.getByTestId('state')).toHaveText('signed in');
  expect(callback).toBeTruthy();
  const stats = await oidc.server.stats();

  // The browser dropped the transaction cookie: replaying the URL finds no transaction.
  let res = await page.goto(callback);
  expect(res.status()).toBe(400);
  await expect(errorCode(page)).toHaveText('transaction_missing');
  // An attacker who also kept the old cookie: the transaction is single use.
  await context.addCookies([txn]);
  res = await page.goto(callback);
  expect(res.status()).toBe(400);
  await expect(errorCode(page)).toHaveText('transaction_replayed');
  expect((await oidc.server.stats()).login).toBe(stats.login);
});

test('an error from the provider (access_denied) ends on a clean error page, signed out', async ({ page, oidc }) => {
  await toProvider(page, oidc);
  const answer = page.waitForResponse((r) => r.url().startsWith(`${oidc.app}/auth/oidc/test/callback`));
  await page.getByText('[ Cancel ]').click();
  const res = await answer;
  expect(res.status()).toBe(400);
  expect(new URL(res.url()).searchParams.get('error')).toBe('access_denied');
  await expect(errorCode(page)).toHaveText('access_denied');
  await expect(page.getByRole('heading', { name: 'Sign-in failed' })).toBeVisible();
  await page.getByRole('link', { name: 'Back to the app' }).click();
  await expect(page.locator('body[data-ready="true"]')).toBeAttached();
  await expect(page.getByTestId('state')).toHaveText('signed out');
});

test('a return path to another origin is refused, by the server and by loginWithProvider', async ({ page, oidc }) => {
  for (const bad of ['//evil.example/', '/\\evil.example', 'https://evil.example/', '/%2f%2fevil.example']) {
    const res = await page.goto(`${oidc.app}/auth/oidc/test/start?return_to=${encodeURIComponent(bad)}`);
    expect(res.status(), bad).toBe(400);
    await expect(errorCode(page)).toHaveText('invalid_return_to');
  }
  await openApp(page, `${oidc.app}/`);
  const thrown = await page.evaluate(async () => {
    const { loginWithProvider } = await import('/pkg/index.js');
    try {
      loginWithProvider('test', { returnTo: 'https://evil.example/' });
      return 'no error';
    } catch (e) {
      return e.code;
    }
  });
  expect(thrown).toBe('ERR_INVALID_CONFIG');
  // A same-origin path is where the browser lands after signing in.
  await page.evaluate(async () => {
    const { loginWithProvider } = await import('/pkg/index.js');
    loginWithProvider('test', { returnTo: '/?after=signin#here' });
  });
  await page.waitForURL(`${oidc.provider.issuer}/**`);
  await atProvider(page, 'ada');
  await page.waitForURL(`${oidc.app}/?after=signin#here`);
  await expect(page.getByTestId('state')).toHaveText('signed in');
});

test.describe('with DPoP required', () => {
  test.use({ dpop: true });

  test('a provider sign-in from the DPoP entry starts a session bound to its key; without one the server refuses to start', async ({ browser, oidc }) => {
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    const sent = [];
    page.on('request', (r) => {
      if (r.url().includes('/auth/oidc/test/start')) sent.push({ start: r.url() });
      if (r.url().endsWith('/api/me')) sent.push({ authorization: r.headers().authorization, dpop: r.headers().dpop });
    });
    const first = await signIn(page, oidc, 'ada');
    expect(first.status).toBe(200);
    expect(first.body.username).toBe('test:ada');
    // The start named the key (RFC 9449 §10); every API call went as DPoP with a proof.
    const start = new URL(sent.find((s) => s.start).start);
    expect(start.searchParams.get('dpop_jkt')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const calls = sent.filter((s) => 'authorization' in s);
    expect(calls.length).toBeGreaterThan(0);
    for (const c of calls) {
      expect(c.authorization).toMatch(/^DPoP /);
      expect(c.dpop.split('.')).toHaveLength(3);
    }
    // The refresh cookie alone (an injected script's own /auth/refresh) is refused: the family is
    // bound to the key the page named, which signs nothing for that script.
    const own = await page.evaluate(async () => {
      const r = await fetch('/auth/refresh', { method: 'POST', headers: { 'x-authfetch': '1' }, credentials: 'include' });
      return { status: r.status, body: await r.text() };
    });
    expect(own.status).toBe(401);
    expect(own.body).toContain('invalid_dpop_proof');
    // A reload keeps the session (the key is read back from IndexedDB, the refresh proves it).
    await openApp(page, `${oidc.app}/`);
    await expect(page.getByTestId('state')).toHaveText('signed in');
    expect((await me(page)).status).toBe(200);

    // A start that names no key (the default entry, or a hand-made link) is refused at once.
    const other = await (await browser.newContext()).newPage();
    await other.goto(`${oidc.app}/auth/oidc/test/start?return_to=%2F`);
    await expect(errorCode(other)).toHaveText('dpop_required');
    await ctx.close();
  });
});
