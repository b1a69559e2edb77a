// The platform bindings of authfetch's wasm module, imported by the generated glue.
//
// Every global the token touches is captured HERE, when the package is first imported (K2):
// a script that later replaces `fetch`, `Request`, `Headers.prototype.set`, the `headers` getter
// or `Response.prototype.json` does not see the bearer. (It can still call authFetch itself,
// and a script that ran BEFORE this import, or that patches intrinsics such as
// `Promise.prototype.then`, can observe more: see the crate docs.)
// Nothing in this file keeps the token: it arrives as an argument, goes into a header, and the
// string is garbage the moment `fetch` has been called.
const g = globalThis;
const F = g.fetch;
const Req = g.Request;
const clone = Req && Req.prototype.clone;
const headersOf = Req && (Object.getOwnPropertyDescriptor(Req.prototype, 'headers') || {}).get;
const urlOf = Req && (Object.getOwnPropertyDescriptor(Req.prototype, 'url') || {}).get;
const setHeader = g.Headers && g.Headers.prototype.set;
const getHeader = g.Headers && g.Headers.prototype.get;
const Res = g.Response;
const statusOf = Res && (Object.getOwnPropertyDescriptor(Res.prototype, 'status') || {}).get;
const resHeadersOf = Res && (Object.getOwnPropertyDescriptor(Res.prototype, 'headers') || {}).get;
const json = Res && Res.prototype.json;
const stringify = JSON.stringify;
const perf = g.performance;
const clock = perf ? perf.now.bind(perf) : Date.now;
const timer = g.setTimeout;

/** `new Request(input, init)` with the captured constructor (throws like fetch would). */
export function make(input, init) {
  return new Req(input, init);
}

/**
 * The request's absolute URL, for the allowlist; `''` (never allowed) when the caller set an
 * Authorization header of its own, which then goes out as given (and a 401 is theirs to handle).
 */
export function url(req) {
  return getHeader.call(headersOf.call(req), 'authorization') === null ? urlOf.call(req) : '';
}

/**
 * `p`, except that it rejects with the signal's reason as soon as `req`'s signal aborts (as
 * fetch does), even while the call is still waiting for a token. What it waited for (a shared
 * refresh) carries on; the request itself is not sent, because its clone carries the signal.
 */
export function abortable(p, req) {
  const s = req.signal;
  if (!s) return p;
  if (s.aborted) return Promise.reject(s.reason);
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(s.reason);
    s.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => s.removeEventListener('abort', onAbort));
  });
}

/** Sends a fresh clone of `req` (the original is never sent, so it can be replayed: K5). */
export function send(req, bearer) {
  const r = clone.call(req);
  if (bearer) setHeader.call(headersOf.call(r), 'authorization', 'Bearer ' + bearer);
  return F.call(g, r);
}

/** The response's status. */
export function status(res) {
  return statusOf.call(res);
}

/** The response's `WWW-Authenticate` header, or `''`. */
export function challenge(res) {
  return getHeader.call(resHeadersOf.call(res), 'www-authenticate') || '';
}

/**
 * POSTs to an auth endpoint with the cookie and the CSRF header, never a bearer (K3); a JSON
 * body only for a login. Resolves
 * `[status, access_token, token_type, expires_in, error]`, each undefined when absent or of
 * the wrong type. The wasm module validates the rest.
 */
export function post(url, name, value, username, password) {
  const headers = { [name]: value };
  let body;
  if (username !== undefined) {
    headers['content-type'] = 'application/json';
    body = stringify({ username, password });
  }
  const str = (v) => (typeof v === 'string' ? v : undefined);
  return F.call(g, url, {
    method: 'POST', headers, body, credentials: 'include', cache: 'no-store', redirect: 'error',
  }).then((r) => json.call(r).then((j) => j || {}, () => ({})).then((j) => [
    statusOf.call(r), str(j.access_token), str(j.token_type),
    typeof j.expires_in === 'number' ? j.expires_in : undefined, str(j.error),
  ]));
}

/** Monotonic milliseconds (K8). */
export function now() {
  return clock();
}

/** Resolves after `ms`. */
export function sleep(ms) {
  return new Promise((resolve) => timer(resolve, ms));
}

// The refresh lock is released only once this tab's last message has gone round the channel
// (echoed to a second BroadcastChannel object of this tab), capped at 250 ms: released at once,
// a tab waiting for the lock could be granted it before the new token reaches it, and refresh a
// second time (docs/TABS.md).
let delivered = Promise.resolve();
const echoes = new Map();
let seq = 0;

/**
 * Takes the Web Lock `name`; resolves with its release function, or with `undefined` after
 * `ms` (or at once without Web Locks). A tab that closes while holding it releases it.
 */
export function lock(name, ms) {
  const locks = g.navigator && g.navigator.locks;
  if (!locks || !g.AbortController) return Promise.resolve();
  return new Promise((resolve) => {
    const ac = new AbortController();
    const t = timer(() => ac.abort(), ms);
    locks.request(name, { signal: ac.signal }, () => {
      g.clearTimeout(t);
      return new Promise((release) => resolve(() => {
        Promise.race([delivered, new Promise((r) => timer(r, 250))]).then(release);
      }));
    }).catch(() => resolve());
  });
}

/** Calls the release function `lock` resolved with. */
export function unlock(release) {
  release();
}

/**
 * Opens the BroadcastChannel `name` (undefined where there is none). Messages are unpacked here and
 * handed on as `(kind, token, ms, flag)`; anything malformed is dropped.
 */
export function channel(name, onMessage) {
  if (!g.BroadcastChannel) return undefined;
  const c = new g.BroadcastChannel(name);
  c.onmessage = (e) => {
    const d = e.data;
    if (!d || typeof d !== 'object' || ![0, 1, 2].includes(d.k)) return;
    onMessage(d.k, typeof d.t === 'string' ? d.t : '', typeof d.m === 'number' ? d.m : 0, d.l === true);
  };
  new g.BroadcastChannel(name).onmessage = (e) => {
    const done = echoes.get(e.data && e.data.n);
    if (done) done();
  };
  return c;
}

/** Posts a message built by the wasm module; `delivered` settles when it has gone round. */
export function post_message(c, kind, token, ms, flag) {
  const n = `${clock()}:${++seq}`;
  delivered = new Promise((r) => echoes.set(n, () => { echoes.delete(n); r(); }));
  c.postMessage({ k: kind, t: token, m: ms, l: flag, n });
}

const STEPS = [, 'waited', 'no-bearer', 'refreshed', 'retried']; // eslint-disable-line no-sparse-arrays

/**
 * Reports one authFetch call to `cb` as `{method, url, steps, status, bearer}`. `packed` holds
 * the step codes as base-600 digits (see `pack_steps` in src/web.rs).
 */
export function trace(cb, req, packed, bearer) {
  const codes = [];
  for (let x = packed; x > 0; x = Math.floor(x / 600)) codes.unshift(x % 600);
  const steps = codes.map((c) => (c >= 100 ? String(c) : STEPS[c]));
  let status = null;
  for (const c of codes) if (c >= 100) status = c;
  cb({ method: req.method, url: urlOf.call(req), steps, status, bearer: bearer && status !== null });
}

/** Delivers auth-state event number `n` (the order of `session::Event`) to `cb`. */
export function emit(cb, n) {
  cb(n);
}
