// DPoP end to end (issue 12; D1–D5): the real server in `--dpop required --dpop-nonce`, the demo
// app (www/) on the package's DPoP entry (`authfetch/dpop`: pkg/dpop/, built by
// scripts/build-pkg.sh with the `dpop` cargo feature), served as the demo's /pkg/.
//
// The demo works across reload, expiry, five tabs and logout; a script injected into the page
// takes every token it can see (and calls /auth/refresh itself) and hands them to this Node
// process, which replays them against /api/me as Bearer, as DPoP with a proof from its own key,
// and with a proof captured from a real request: 401 every time.
import { test, expect, ROOT, startServer } from './fixtures.mjs';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import * as jose from 'jose';
import { webcrypto } from 'node:crypto';

const PKG = join(ROOT, 'pkg', 'dpop');
const ARGS = ['--access-ttl', '3s', '--grace', '10s', '--demo', '--debug-stats', '--dpop', 'required', '--dpop-nonce'];

test.describe.configure({ mode: 'serial', timeout: 120_000 });

let server;
test.beforeAll(async () => {
  if (!existsSync(join(PKG, 'authfetch_bg.wasm'))) {
    throw new Error('pkg/dpop/ is not built: run `bash scripts/build-pkg.sh` first');
  }
  server = await startServer(ARGS, { pkg: PKG });
});
test.afterAll(async () => server?.stop());

async function open(page, url = `${server.url}/`) {
  await page.goto(url);
  await expect(page.locator('body[data-ready="true"]')).toBeAttached();
}

async function signIn(page) {
  await expect(page.getByTestId('state')).toHaveText('signed out');
  await page.getByLabel('Username').fill('alice');
  await page.getByLabel('Password').fill('alice-password');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page.getByTestId('state')).toHaveText('signed in');
}

async function callMe(page) {
  await page.getByRole('button', { name: 'GET /api/me' }).click();
  await expect(page.getByTestId('response')).toContainText('"username": "alice"');
}

/** Every /api/me request's Authorization and DPoP headers, as they left the browser. */
function recordApiHeaders(page) {
  const seen = [];
  page.on('request', (r) => {
    if (r.url().endsWith('/api/me')) seen.push({ authorization: r.headers().authorization, dpop: r.headers().dpop });
  });
  return seen;
}

async function keyInIndexedDb(page) {
  return page.evaluate(() => new Promise((resolve, reject) => {
    const open = indexedDB.open('authfetch-dpop', 1);
    open.onupgradeneeded = () => open.result.createObjectStore('keys');
    open.onerror = () => reject(open.error);
    open.onsuccess = () => {
      const get = open.result.transaction('keys').objectStore('keys').get('current');
      get.onsuccess = () => {
        const pair = get.result;
        open.result.close();
        resolve(pair ? { extractable: pair.privateKey.extractable, type: pair.privateKey.type } : null);
      };
    };
  }));
}

test('the demo works bound to a non-extractable key across reload, expiry, five tabs and logout', async ({ context }) => {
  const page = await context.newPage();
  const headers = recordApiHeaders(page);
  await open(page);
  await signIn(page);
  expect(await keyInIndexedDb(page)).toEqual({ extractable: false, type: 'private' });
  await callMe(page);
  await expect(page.locator('#request-log li').first()).toContainText('DPoP');
  expect(headers.at(-1).authorization).toMatch(/^DPoP /);
  expect(headers.at(-1).dpop.split('.')).toHaveLength(3);

  // Expiry: the 3-second token runs out; the next call refreshes with a proof and goes through.
  await page.waitForTimeout(3500);
  await callMe(page);
  // Reload: the key comes back from IndexedDB, the start-up refresh is signed by it.
  await page.reload();
  await expect(page.locator('body[data-ready="true"]')).toBeAttached();
  await expect(page.getByTestId('state')).toHaveText('signed in');
  await callMe(page);

  // Five tabs on one session and one key.
  const tabs = [page];
  for (let i = 0; i < 4; i++) {
    const t = await context.newPage();
    await open(t);
    await expect(t.getByTestId('state')).toHaveText('signed in');
    tabs.push(t);
  }
  for (let round = 0; round < 2; round++) {
    for (const t of tabs) await callMe(t);
    await page.waitForTimeout(1600);
  }
  const stats = await server.stats();
  expect(stats.reuse_detected).toBe(0);

  // The demo's stolen-cookie card: for a bound session it says a copied cookie is refused
  // outright (the reuse walk-through is for bearer sessions), and so it is: replayed as its
  // curl line does, from outside the browser, the current cookie gets 401 invalid_dpop_proof,
  // nothing is revoked, and the page goes on.
  await expect(page.getByTestId('theft-dpop')).toBeVisible();
  await expect(page.locator('#theft-steps')).toBeHidden();
  const rt = (await context.cookies(server.url)).find((c) => c.name === '__Host-authfetch_rt');
  const replay = await fetch(`${server.url}/auth/refresh`, {
    method: 'POST', headers: { 'x-authfetch': '1', cookie: `__Host-authfetch_rt=${rt.value}` },
  });
  expect(replay.status).toBe(401);
  expect((await replay.json()).error).toBe('invalid_dpop_proof');
  await callMe(page);
  expect((await server.stats()).reuse_detected).toBe(0);

  // Logout: every tab follows, the key is gone.
  await page.getByRole('button', { name: 'Log out', exact: true }).click();
  for (const t of tabs) await expect(t.getByTestId('state')).toHaveText('signed out');
  expect(await keyInIndexedDb(page)).toBeNull();
});

test('tokens and proofs taken by an injected script are refused outside the page', async ({ context }) => {
  const page = await context.newPage();
  // The "injected script": installed before the app, it records every header value set on any
  // Headers object (where the client writes Authorization and DPoP).
  await page.addInitScript(() => {
    window.__taken = [];
    const set = Headers.prototype.set;
    Headers.prototype.set = function (name, value) {
      window.__taken.push([String(name).toLowerCase(), String(value)]);
      return set.call(this, name, value);
    };
  });
  const captured = recordApiHeaders(page);
  await open(page);
  await signIn(page);
  await callMe(page);

  // The script also calls /auth/refresh itself, which the cookie authorizes: without a proof by
  // the session's key the server refuses, and keeps the cookie.
  const selfRefresh = await page.evaluate(async () => {
    const r = await fetch('/auth/refresh', { method: 'POST', headers: { 'x-authfetch': '1' }, credentials: 'include' });
    return { status: r.status, body: await r.text(), challenge: r.headers.get('www-authenticate') };
  });
  expect(selfRefresh.status).toBe(401);
  expect(selfRefresh.body).not.toContain('access_token');
  expect(selfRefresh.challenge).toContain('DPoP');

  const taken = await page.evaluate(() => window.__taken);
  const tokens = [...new Set(taken.filter(([n]) => n === 'authorization').map(([, v]) => v.split(' ')[1]))];
  expect(tokens.length).toBeGreaterThan(0);
  const me = `${server.url}/api/me`;
  const statusOf = async (headers) => (await fetch(me, { headers })).status;

  // Node's own key, as the thief would have.
  const { privateKey, publicKey } = await jose.generateKeyPair('ES256');
  const jwk = await jose.exportJWK(publicKey);
  const nonce = (await fetch(me, { headers: { authorization: `DPoP ${tokens[0]}` } })).headers.get('dpop-nonce');
  const ownProof = async (token) => new jose.SignJWT({
    jti: crypto.randomUUID(), htm: 'GET', htu: me, nonce,
    ath: jose.base64url.encode(new Uint8Array(await webcrypto.subtle.digest('SHA-256', new TextEncoder().encode(token)))),
  }).setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk }).setIssuedAt().sign(privateKey);

  for (const token of tokens) {
    expect(await statusOf({ authorization: `Bearer ${token}` })).toBe(401);
    expect(await statusOf({ authorization: `DPoP ${token}` })).toBe(401);
    expect(await statusOf({ authorization: `DPoP ${token}`, dpop: await ownProof(token) })).toBe(401);
  }
  // A proof captured from a real request, replayed with its token.
  const real = captured.at(-1);
  expect(real.authorization).toMatch(/^DPoP /);
  expect(await statusOf({ authorization: real.authorization, dpop: real.dpop })).toBe(401);

  // None of this touched the user's session in the page.
  await callMe(page);
  await expect(page.getByTestId('state')).toHaveText('signed in');
});

test('the default entry against --dpop required: the login says ERR_DPOP_REQUIRED, not a wrong password', async ({ context }) => {
  const plain = await startServer(ARGS); // serves pkg/ (the default entry) as /pkg/
  try {
    const page = await context.newPage();
    await page.goto(`${plain.url}/`);
    await expect(page.locator('body[data-ready="true"]')).toBeAttached();
    const code = await page.evaluate(async () => {
      const { login } = await import('/pkg/index.js');
      try {
        await login({ username: 'alice', password: 'alice-password' });
        return 'signed in';
      } catch (e) {
        return e.code;
      }
    });
    expect(code).toBe('ERR_DPOP_REQUIRED');
  } finally {
    await plain.stop();
  }
});
