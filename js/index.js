// authfetch: the package entry. `import { authFetch } from 'authfetch'` needs no set-up: the
// WebAssembly module is fetched and instantiated on the first call, from the file next to this
// one (`new URL(…, import.meta.url)`, which browsers, Vite and webpack 5 all understand).
//
// This file is the lazy loader and the public wrapper; the behaviour is in Rust (src/). Importing
// it has no effect: no network, no timers, no storage. In Node (server-side rendering) the
// functions exist, the getters say "signed out" and the async calls settle without touching the
// network.
import init, { Client } from './authfetch.js';
// The DPoP entry's extra export (`dpopNewKey`), read through the namespace: the default build's
// glue has no such export, and AUTHFETCH_DPOP (an esbuild define, false there) drops its use.
import * as glue from './authfetch.js';
import { makeLoginWithProvider } from './provider.js';

/** Human-readable text per code; callers branch on `code`, never on this text. */
const MESSAGES = {
  ERR_INVALID_CREDENTIALS: 'wrong username or password',
  ERR_SESSION_EXPIRED: 'the session has expired; sign in again',
  ERR_SIGNED_OUT: 'signed out while waiting for a token',
  ERR_REFRESH_FAILED: 'the token could not be refreshed',
  ERR_REFRESH_BACKOFF: 'refresh failed repeatedly; backing off',
  ERR_NETWORK: 'the auth server could not be reached',
  ERR_RATE_LIMITED: 'rate-limited by the auth server',
  ERR_INVALID_RESPONSE: 'invalid response from the auth server',
  ERR_ORIGIN_REFUSED: 'the auth server does not allow this origin: add it with --allowed-origin',
  ERR_DPOP_REQUIRED: 'the auth server requires DPoP: import from "authfetch/dpop"',
  ERR_INVALID_CONFIG: 'invalid authfetch options',
  ERR_ALREADY_STARTED: 'configure() must come before the first use',
  ERR_UNSUPPORTED: 'needs a browser, with WebAssembly allowed by the CSP',
};

/**
 * Every auth failure. Branch on `err.code` (stable), not on the message. `instanceof` works
 * within one copy of the package; `err.name === 'AuthFetchError'` works across copies.
 */
export class AuthFetchError extends Error {
  constructor(code, cause) {
    super(MESSAGES[code] || String(code), cause === undefined ? undefined : { cause });
    this.name = 'AuthFetchError';
    this.code = code;
  }
}

const g = globalThis;

/** A page or worker (http/https) with fetch and WebAssembly: not Node, not a bare runtime. */
const inBrowser = () => typeof g.WebAssembly === 'object' && typeof g.fetch === 'function'
  && /^https?:$/.test(g.location && g.location.protocol);


/**
 * Fetches and instantiates the .wasm next to this file, once (a failed load is tried again by
 * the next call). A failure names the URL and what went wrong: `ERR_NETWORK` when it could not
 * be fetched, `ERR_INVALID_RESPONSE` when the answer is not the module (an HTTP error status, or
 * an HTML page served in its place), `ERR_UNSUPPORTED` when the browser refuses to compile it
 * (a CSP without 'wasm-unsafe-eval').
 */
let wasmLoading;
function loadWasm() {
  if (!wasmLoading) {
    const href = new URL('./authfetch_bg.wasm', import.meta.url).href;
    const fail = (code, what, cause) => {
      const err = new AuthFetchError(code, cause);
      err.message = `authfetch could not load its WebAssembly module ${href}: ${what}`;
      return err;
    };
    let step = 0; // 0 fetching, 1 reading, 2 compiling
    wasmLoading = g.fetch(href).then((res) => {
      const type = `content-type ${res.headers.get('content-type') || 'none'}`;
      if (!res.ok) throw fail('ERR_INVALID_RESPONSE', `HTTP ${res.status}${res.statusText && ' ' + res.statusText} (${type})`);
      step = 1;
      return res.arrayBuffer().then((bytes) => {
        // Not "\0asm": most likely a page served in its place (an SPA fallback, a login wall).
        if (String(new Uint8Array(bytes.slice(0, 4))) !== '0,97,115,109') {
          throw fail('ERR_INVALID_RESPONSE', `not a WebAssembly module (${type})`);
        }
        step = 2;
        // wasm-bindgen's own entry point instantiates the bytes with its imports.
        return init({ module_or_path: bytes });
      });
    }).then(() => undefined, (cause) => {
      wasmLoading = undefined; // a later call tries again
      if (cause instanceof AuthFetchError) throw cause;
      throw step < 2
        ? fail('ERR_NETWORK', `${step ? 'reading' : 'fetching'} it failed (${cause})`, cause)
        : fail('ERR_UNSUPPORTED', `the browser refused it (a CSP needs script-src 'wasm-unsafe-eval'): ${cause}`, cause);
    });
  }
  return wasmLoading;
}

/** Resolves `url` against the page; ERR_INVALID_CONFIG unless it is an http(s) URL. */
function absolute(url, key) {
  if (typeof url !== 'string' && !(url instanceof URL)) throw new AuthFetchError('ERR_INVALID_CONFIG', key);
  const u = new URL(url, g.location.href);
  if (!/^https?:$/.test(u.protocol)) throw new AuthFetchError('ERR_INVALID_CONFIG', key);
  return u.href;
}

const num = (v, dflt, key) => {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !(v >= 0 && v <= 1e9)) throw new AuthFetchError('ERR_INVALID_CONFIG', key);
  return v;
};

/**
 * The public options → the `ResolvedOptions` the wasm `Client` reads through typed getters
 * (`Options` in src/web.rs): URLs resolved by the platform's URL parser, defaults filled in.
 */
function normalise(options) {
  const o = options || {};
  try {
    const base = (o.baseUrl === undefined ? g.location.origin : absolute(o.baseUrl, 'baseUrl')).replace(/\/+$/, '');
    const url = (v, key, path) => (v === undefined ? base + path : absolute(v, key));
    const allowed = (o.allowedOrigins ?? [g.location.origin]).map((entry) => {
      const u = new URL(absolute(entry, 'allowedOrigins'));
      if (u.username || u.password) throw new AuthFetchError('ERR_INVALID_CONFIG', 'allowedOrigins');
      return u.origin + (u.pathname === '/' ? '' : u.pathname);
    });
    const csrf = o.csrfHeader === undefined ? { name: 'x-authfetch', value: '1' } : o.csrfHeader;
    if (typeof csrf.name !== 'string' || typeof csrf.value !== 'string') {
      throw new AuthFetchError('ERR_INVALID_CONFIG', 'csrfHeader');
    }
    if (o.crossTab !== undefined && typeof o.crossTab !== 'boolean') {
      throw new AuthFetchError('ERR_INVALID_CONFIG', 'crossTab');
    }
    const refreshUrl = url(o.refreshUrl, 'refreshUrl', '/auth/refresh');
    // Tabs hint each other and take turns refreshing only with clients of the same auth server.
    const scope = (n) => (refreshUrl === `${g.location.origin}/auth/refresh` ? n : `${n} ${refreshUrl}`);
    return {
      loginUrl: url(o.loginUrl, 'loginUrl', '/auth/login'),
      refreshUrl,
      logoutUrl: url(o.logoutUrl, 'logoutUrl', '/auth/logout'),
      logoutAllUrl: url(o.logoutAllUrl, 'logoutAllUrl', '/auth/logout-all'),
      allowedOrigins: allowed,
      csrfName: csrf.name,
      csrfValue: csrf.value,
      refreshAheadMs: num(o.refreshAheadSeconds, 30, 'refreshAheadSeconds') * 1000,
      crossTab: o.crossTab !== false,
      lockTimeoutMs: num(o.lockTimeoutMs, 5000, 'lockTimeoutMs'),
      channelName: scope('authfetch'),
      lockName: scope('authfetch-refresh'),
    };
  } catch (err) {
    throw err instanceof AuthFetchError ? err : new AuthFetchError('ERR_INVALID_CONFIG', err);
  }
}

/** Calls each listener; one that throws is reported and does not stop the others. */
function deliver(listeners, value) {
  for (const cb of [...listeners]) {
    try {
      cb(value);
    } catch (err) {
      if (typeof g.reportError === 'function') g.reportError(err);
      else g.setTimeout(() => { throw err; });
    }
  }
}

function subscribe(set, cb) {
  if (typeof cb !== 'function') throw new TypeError('authfetch: the listener must be a function');
  const entry = (v) => cb(v); // a distinct entry per call, so unsubscribing one leaves the others
  set.add(entry);
  return () => { set.delete(entry); };
}

/** One client (session + options). Created lazily by the top-level functions or createAuthClient. */
function makeInstance(initialOptions) {
  let options = initialOptions;
  let client; // the wasm Client once started
  let starting; // Promise<Client>
  const events = new Set();
  const traces = new Set();

  function start() {
    if (!starting) {
      if (!inBrowser()) return Promise.reject(new AuthFetchError('ERR_UNSUPPORTED'));
      starting = loadWasm().then(() => {
        const c = new Client({
          ...normalise(options),
          onEvent: (event) => deliver(events, event),
          onTrace: (trace) => deliver(traces, trace),
          error: (code, cause) => new AuthFetchError(code, cause),
        });
        client = c;
        c.ready(); // the start-up silent refresh: does the cookie hold a session?
        return c;
      });
      starting.catch(() => {
        if (!client) starting = undefined; // loading failed: a later call tries again
      });
    }
    return starting;
  }

  /** Runs `f` on the started client. */
  const run = (f) => start().then(f);
  const out = (everywhere) => (client || inBrowser() ? run((c) => c.logout(everywhere)) : Promise.resolve());

  const api = {
    authFetch: (input, init) => run((c) => c.fetch(input, init)),
    login(credentials) {
      const { username, password } = credentials || {};
      if (typeof username !== 'string' || typeof password !== 'string') {
        return Promise.reject(new TypeError('authfetch: login({ username, password }) needs two strings'));
      }
      return run((c) => c.login(username, password));
    },
    logout: () => out(false),
    logoutEverywhere: () => out(true),
    ready: () => (inBrowser() ? run((c) => c.ready()) : Promise.resolve(false)),
    isAuthenticated: () => (client ? client.isAuthenticated() : false),
    // Decoded in Rust (base64url, UTF-8, JSON.parse): display only, never trusted or verified.
    claims: () => (client ? client.claims() : null),
    expiresIn: () => (client ? client.expiresIn() : undefined),
    onAuthStateChange: (cb) => subscribe(events, cb),
    onRequest: (cb) => subscribe(traces, cb),
  };
  api.fetch = api.authFetch;
  return {
    api,
    started: () => starting !== undefined,
    setOptions(next) { options = next; },
  };
}

/**
 * A separate client with its own session, e.g. for a second API with its own auth server.
 * Nothing happens until its first use.
 */
export function createAuthClient(options) {
  if (options !== undefined && (options === null || typeof options !== 'object')) {
    throw new AuthFetchError('ERR_INVALID_CONFIG', 'options');
  }
  return makeInstance(options).api;
}

const main = makeInstance(undefined);

/** Sets the default client's options. Call it before the first use of any other function. */
export function configure(options) {
  if (options === null || typeof options !== 'object') throw new AuthFetchError('ERR_INVALID_CONFIG', 'options');
  if (main.started()) throw new AuthFetchError('ERR_ALREADY_STARTED');
  main.setOptions(options);
}

// The default client's functions. None of them uses `this`, so they can be passed around.
// authFetch: `fetch` with the access token: same arguments, same `Response`; refresh and one
//   retry on 401. login({username, password}); logout() (every tab of this browser);
//   logoutEverywhere() (every device); ready() → whether a session exists after the start-up
//   refresh; isAuthenticated(), claims(), expiresIn() (synchronous; signed out before the first
//   use); onAuthStateChange(cb) and onRequest(cb) → unsubscribe. See index.d.ts.
export const {
  authFetch, login, logout, logoutEverywhere, ready, isAuthenticated, claims, expiresIn,
  onAuthStateChange, onRequest,
} = main.api;
// "Sign in with …" (OpenID Connect, server-side): plain navigation, see provider.js. The DPoP
// entry binds the session it starts to a new key, made first.
export const loginWithProvider = makeLoginWithProvider(AuthFetchError, AUTHFETCH_DPOP
  ? () => loadWasm().then(() => glue.dpopNewKey()).catch((cause) => {
    throw cause instanceof AuthFetchError ? cause : new AuthFetchError('ERR_UNSUPPORTED', cause);
  })
  : undefined);
