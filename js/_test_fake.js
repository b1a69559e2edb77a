// TEST ONLY (tests/web.rs; never part of the package: the build bundles only what js/index.js
// imports). The platform below src/web.rs, faked: an in-page auth server and API behind a
// replaced global `fetch` (web-sys and gloo-net look `fetch` up when they call it). The first
// test in tests/web.rs proves that requests made through the client land here, so the others
// cannot pass against the real network by accident.
const g = globalThis;
const enc = new TextEncoder();
const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
const b64url = (s) => btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');

let state = null;

export function fake_reset(opts) {
  const o = opts || {};
  if (!o.keep || !state) state = { valid: new Set(), issued: 0, session: false };
  state.log = [];
  state.refreshOk = 0;
  state.refreshRequests = 0;
  state.refreshStatus = o.refreshStatus || 200;
  // Every auth endpoint answers as the server's CSRF guard does to an origin it does not allow.
  state.refuseOrigin = !!o.refuseOrigin;
  // Logins without a DPoP proof answered as `--dpop required` does.
  state.requireDpop = !!o.requireDpop;
  state.gate = o.refreshGate ? new Promise((r) => { state.release = r; }) : null;
}
fake_reset();

function grant() {
  state.issued += 1;
  const payload = b64url(JSON.stringify({ sub: 'u-alice', n: state.issued }));
  const token = `eyJhbGciOiJFUzI1NiJ9.${payload}.sig${state.issued}`;
  state.valid.add(token);
  return { access_token: token, token_type: 'Bearer', expires_in: 3 };
}

const realFetch = g.fetch;

async function fake(input, init) {
  const req = new Request(input, init);
  // The test harness loads the .wasm with fetch too: only the fake routes are faked.
  if (!/^\/(auth|api)\//.test(new URL(req.url).pathname) && !req.url.startsWith('http://127.0.0.2:9/')) {
    return realFetch.call(g, input, init);
  }
  // Like the real fetch: an aborted request is never sent.
  if (req.signal && req.signal.aborted) throw req.signal.reason;
  const bytes = new Uint8Array(await req.arrayBuffer());
  const url = req.url;
  const path = new URL(url).pathname;
  const rec = {
    url,
    method: req.method,
    auth: req.headers.get('authorization') || '',
    contentType: req.headers.get('content-type') || '',
    body: hex(bytes),
    status: '',
  };
  state.log.push(rec);
  const respond = (status, json, headers = {}) => {
    rec.status = String(status);
    return new Response(json === undefined ? null : JSON.stringify(json), {
      status, headers: { 'content-type': 'application/json', ...headers },
    });
  };
  if (url.startsWith('http://127.0.0.2:9/')) return respond(200, { other: true });
  if (state.refuseOrigin && path.startsWith('/auth/')) {
    return respond(403, { error: 'access_denied', error_description: 'origin' });
  }
  if (state.requireDpop && path === '/auth/login' && !req.headers.get('dpop')) {
    return respond(401, { error: 'invalid_dpop_proof', error_description: 'proof required' },
      { 'www-authenticate': 'DPoP error="invalid_dpop_proof", algs="ES256"' });
  }
  if (path === '/auth/login') {
    const { username, password } = JSON.parse(new TextDecoder().decode(bytes));
    if (password !== `${username}-password`) return respond(401, { error: 'invalid_grant' });
    state.session = true;
    return respond(200, grant());
  }
  if (path === '/auth/refresh') {
    state.refreshRequests += 1;
    if (state.gate) await state.gate;
    if (state.refreshStatus !== 200) return respond(state.refreshStatus, { error: 'server_error' });
    // No session here stands for no cookie at all (none yet, or cleared by a logout): the
    // server's quiet "no session" answer, 204 without a body.
    if (!state.session) return respond(204);
    state.refreshOk += 1;
    return respond(200, grant());
  }
  if (path === '/auth/logout' || path === '/auth/logout-all') {
    state.session = false;
    return respond(204);
  }
  if (path === '/api/forbidden') return respond(403, { error: 'insufficient_scope' });
  const token = rec.auth.replace(/^Bearer /, '');
  if (!state.valid.has(token)) {
    return respond(401, { error: 'invalid_token' }, { 'www-authenticate': 'Bearer error="invalid_token"' });
  }
  return respond(200, { ok: true, path });
}
g.fetch = fake;

export const fake_installed = () => state.log.length > 0;
export const fake_log = () => state.log;
export const fake_expire = () => state.valid.clear();
export const fake_refreshes = () => state.refreshOk;
export const fake_refresh_requests = () => state.refreshRequests;
export const fake_release = () => state.release && state.release();
export const origin = () => location.origin;

export function recorder() {
  const f = (...args) => { f.calls.push(args); };
  f.calls = [];
  return f;
}
export const calls = (f) => f.calls;

/**
 * The `ResolvedOptions` js/index.js would build for the page's origin: no cross-tab
 * coordination (one tab here) and no refresh-ahead timer (tests control every refresh).
 * Errors are plain `Error`s carrying `code` and `cause`, as `AuthFetchError` would.
 */
export function options(onEvent, onTrace) {
  const o = location.origin;
  return {
    loginUrl: `${o}/auth/login`, refreshUrl: `${o}/auth/refresh`,
    logoutUrl: `${o}/auth/logout`, logoutAllUrl: `${o}/auth/logout-all`,
    allowedOrigins: [o], csrfName: 'x-authfetch', csrfValue: '1',
    refreshAheadMs: 0, crossTab: false, lockTimeoutMs: 1000,
    channelName: 'authfetch', lockName: 'authfetch-refresh',
    onEvent, onTrace,
    error(code, cause) {
      const e = new Error(code);
      e.name = 'AuthFetchError';
      e.code = code;
      e.cause = cause;
      return e;
    },
  };
}
export const controller = () => new AbortController();
export const delay = (ms) => new Promise((r) => setTimeout(r, ms));

const CASES = {
  string: () => [{ method: 'POST', body: 'hello, wörld' }, enc.encode('hello, wörld')],
  json: () => {
    const s = JSON.stringify({ a: 1, b: [true, null, 'ü'] });
    return [{ method: 'POST', headers: { 'content-type': 'application/json' }, body: s }, enc.encode(s)];
  },
  params: () => [{ method: 'POST', body: new URLSearchParams({ a: '1', b: 'x y&z' }) }, enc.encode('a=1&b=x+y%26z')],
  form: () => {
    const f = new FormData();
    f.append('f', 'value-1');
    f.append('file', new Blob(['file-bytes'], { type: 'text/plain' }), 'a.txt');
    // The boundary is random; the part below must be in both attempts, byte for byte.
    return [{ method: 'POST', body: f }, enc.encode('name="f"\r\n\r\nvalue-1')];
  },
  blob: () => {
    const b = new Uint8Array([0, 1, 2, 254, 255]);
    return [{ method: 'POST', body: new Blob([b], { type: 'application/octet-stream' }) }, b];
  },
  buffer: () => {
    const b = new Uint8Array([9, 8, 7, 0, 255]);
    return [{ method: 'PATCH', body: b.slice().buffer }, b];
  },
  request: () => [{ method: 'PUT', body: 'from a Request', headers: { 'x-test': '1' } }, enc.encode('from a Request')],
};

export function body_case(kind, url) {
  const [init] = CASES[kind]();
  // A Request object as the input: the init goes into the Request, not into authFetch.
  if (kind === 'request') return [new Request(url, init), undefined];
  return [url, init];
}
export const expected = (kind) => hex(CASES[kind]()[1]);

export async function storage_dump() {
  const parts = [];
  for (const s of [localStorage, sessionStorage]) {
    for (let i = 0; i < s.length; i += 1) parts.push(`${s.key(i)}=${s.getItem(s.key(i))}`);
  }
  parts.push(`cookie:${document.cookie}`);
  parts.push(`idb:${JSON.stringify((await indexedDB.databases()).map((d) => d.name))}`);
  parts.push(`caches:${JSON.stringify(g.caches ? await g.caches.keys() : null)}`);
  return parts.join('\n');
}
