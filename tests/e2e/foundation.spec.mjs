// The pipeline itself: the demo command's server serves the page and the npm package under the
// strict CSP, and Chromium loads the WebAssembly module and calls into it.
import { test, expect } from './fixtures.mjs';

test('demo page loads the wasm module in Chromium and calls into it', async ({ page, server }) => {
  const wasm = page.waitForResponse((r) => r.url().endsWith('.wasm'));
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  // The start-up refresh without a cookie is answered 204 ("no session"): no console error at all.
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });

  const res = await page.goto(`${server.url}/`);
  expect(res.status()).toBe(200);
  const csp = res.headers()['content-security-policy'];
  expect(csp).toContain("script-src 'self' 'wasm-unsafe-eval'");
  expect(csp).toContain("frame-ancestors 'none'");

  const wasmRes = await wasm;
  expect(wasmRes.status()).toBe(200);
  expect(wasmRes.headers()['content-type']).toBe('application/wasm');

  // Call into the module from the page: no session cookie yet, so the start-up refresh says "signed out".
  const state = await page.evaluate(async () => {
    const m = await import('/pkg/index.js');
    const signedIn = await m.ready();
    return { signedIn, isAuthenticated: m.isAuthenticated(), claims: m.claims() };
  });
  expect(state).toEqual({ signedIn: false, isAuthenticated: false, claims: null });
  expect(errors).toEqual([]);
});

test('the package signs in against the real server and calls a protected route', async ({ page, server }) => {
  await page.goto(`${server.url}/`);
  const me = await page.evaluate(async () => {
    const m = await import('/pkg/index.js');
    await m.ready();
    await m.login({ username: 'alice', password: 'alice-password' });
    const res = await m.authFetch('/api/me');
    return { status: res.status, body: await res.json(), sub: m.claims()?.sub };
  });
  expect(me.status).toBe(200);
  expect(me.body.username).toBe('alice');
  expect(me.sub).toBe(me.body.sub);
});
