// The platform bindings of authfetch's wasm module, imported by the generated glue.
//
// Every global the token touches is captured HERE, when the package is first imported (K2):
// a script that later replaces `fetch`, `Request`, `Headers.prototype.set` or the `headers`
// getter does not see the bearer. (It can still call authFetch itself: see the crate docs.)
// Nothing in this file keeps the token: it arrives as an argument, goes into a header, and
// the string is garbage the moment `fetch` has been called.
const g = globalThis;
const F = g.fetch;
const Req = g.Request;
const clone = Req && Req.prototype.clone;
const headersOf = Req && (Object.getOwnPropertyDescriptor(Req.prototype, 'headers') || {}).get;
const setHeader = g.Headers && g.Headers.prototype.set;
const json = g.Response && g.Response.prototype.json;
const stringify = JSON.stringify;
const perf = g.performance;
const clock = perf ? perf.now.bind(perf) : Date.now;
const timer = g.setTimeout;

/** `new Request(input, init)` with the captured constructor (throws like fetch would). */
export function make(input, init) {
  return new Req(input, init);
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

/** POSTs to an auth endpoint; resolves `[status, parsedJsonOrNull]`. */
export function post(url, name, value, body, bearer) {
  const headers = { [name]: value };
  if (body) headers['content-type'] = 'application/json';
  if (bearer) headers.authorization = 'Bearer ' + bearer;
  return F.call(g, url, {
    method: 'POST', headers, body: body ? stringify(body) : undefined, credentials: 'include', cache: 'no-store', redirect: 'error',
  }).then((r) => json.call(r).then((j) => [r.status, j], () => [r.status, null]));
}

/** Monotonic milliseconds (K8). */
export function now() {
  return clock();
}

/** Resolves after `ms`. */
export function sleep(ms) {
  return new Promise((resolve) => timer(resolve, ms));
}

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
      return new Promise((release) => resolve(release));
    }).catch(() => resolve());
  });
}

/** Opens the BroadcastChannel `name` (null where there is none). */
export function channel(name, onMessage) {
  if (!g.BroadcastChannel) return null;
  const c = new g.BroadcastChannel(name);
  c.onmessage = (e) => onMessage(e.data);
  return c;
}

/** Posts a message built by the wasm module. */
export function post_message(c, kind, token, ms, login) {
  c.postMessage({ k: kind, t: token, m: ms, l: login });
}
