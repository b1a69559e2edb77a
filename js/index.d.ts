// Types of the `authfetch` package (hand-written; checked by `tsc --strict` against
// js/types-check.ts in scripts/build-pkg.sh, and the code union against the Rust error table by
// `cargo test`).

/** Stable machine-readable codes of {@link AuthFetchError}. */
export type AuthFetchErrorCode = 'ERR_INVALID_CREDENTIALS' | 'ERR_SESSION_EXPIRED' | 'ERR_SIGNED_OUT' | 'ERR_REFRESH_FAILED' | 'ERR_REFRESH_BACKOFF' | 'ERR_NETWORK' | 'ERR_RATE_LIMITED' | 'ERR_INVALID_RESPONSE' | 'ERR_ORIGIN_REFUSED' | 'ERR_DPOP_REQUIRED' | 'ERR_INVALID_CONFIG' | 'ERR_ALREADY_STARTED' | 'ERR_UNSUPPORTED';

/**
 * Every auth failure is one of these: a real `Error` with `name === 'AuthFetchError'` and a
 * stable `code`. Network failures and aborts of your own request are passed through unchanged
 * (a `TypeError` / `AbortError`), exactly as `fetch` rejects.
 *
 * When the WebAssembly module (`authfetch_bg.wasm`, next to `index.js`) cannot be loaded, the
 * first use rejects with a message naming its URL and what went wrong: `ERR_NETWORK` when it
 * could not be fetched, `ERR_INVALID_RESPONSE` for an HTTP error status or a response that is
 * not WebAssembly (the message gives the status and the content-type, e.g. an HTML page served
 * in its place), `ERR_UNSUPPORTED` when the browser refuses to compile it (a CSP without
 * `'wasm-unsafe-eval'`). The next call tries to load it again.
 */
export declare class AuthFetchError extends Error {
  constructor(code: AuthFetchErrorCode, cause?: unknown);
  readonly name: 'AuthFetchError';
  readonly code: AuthFetchErrorCode;
  /** The underlying failure (e.g. the `TypeError` of an unreachable auth server), if any. */
  readonly cause?: unknown;
}

/** Options of a client. Every field is optional; the defaults suit an app served by its API. */
export interface AuthFetchOptions {
  /** Where the auth endpoints live (`/auth/login`, …). Default: the page's origin. */
  baseUrl?: string | URL;
  /** Override a single endpoint (absolute, or relative to the page). */
  loginUrl?: string | URL;
  refreshUrl?: string | URL;
  logoutUrl?: string | URL;
  logoutAllUrl?: string | URL;
  /**
   * Where the bearer may be sent: `scheme://host[:port]`, optionally with a path prefix
   * (`https://api.example.com/v1`). Exact match, deny by default. Default: the page's origin.
   * The auth endpoints never receive the bearer (login, refresh, logout and logout-everywhere
   * send the refresh cookie and the CSRF header only), nor does anything under `/auth/` on
   * their origin, even when that origin is allowed.
   */
  allowedOrigins?: ReadonlyArray<string | URL>;
  /** Refresh this many seconds before the token expires (capped at half its lifetime). Default 30; 0 = only on demand. */
  refreshAheadSeconds?: number;
  /** The CSRF header sent on every auth request. Default `x-authfetch: 1`. */
  csrfHeader?: { name: string; value: string };
  /**
   * Coordinate with the other tabs of this browser. Default true. Tabs never share a token: each
   * gets its own from the server, and refreshes, logins and logouts of all tabs take turns under
   * a Web Lock so that the rotating cookie is never raced. A login or logout in one tab makes the
   * others check with the server (a payload-free `BroadcastChannel` hint, never believed on its
   * own), so they follow within about a second. See docs/TABS.md.
   */
  crossTab?: boolean;
  /** How long to wait for another tab's refresh, login or logout before going ahead anyway (ms). Default 5000. */
  lockTimeoutMs?: number;
}

/** Credentials for {@link login}. */
export interface Credentials {
  username: string;
  password: string;
}

/** The auth-state event types. */
export type AuthStateType = 'signed_in' | 'refreshed' | 'signed_out' | 'session_expired' | 'refresh_failed';

/** Delivered to {@link onAuthStateChange} listeners. */
export interface AuthStateEvent {
  type: AuthStateType;
}

/**
 * One step of an authFetch call: a status (`'401'`, `'200'`), or `'waited'` (for a refresh
 * before sending), `'refreshed'`, `'retried'`, `'no-bearer'` (sent without the token).
 */
export type RequestStep = 'waited' | 'refreshed' | 'retried' | 'no-bearer' | `${number}`;

/** Delivered to {@link onRequest} listeners once per authFetch call. Never contains the token. */
export interface RequestTrace {
  method: string;
  /** The absolute URL. */
  url: string;
  steps: RequestStep[];
  /** The final status, or `null` when no response arrived (network error, abort, auth failure). */
  status: number | null;
  /** Whether the request carried the bearer. */
  bearer: boolean;
}

/** The public claims of the access token (decoded, not verified: for display only). */
export interface Claims {
  sub?: string;
  exp?: number;
  iat?: number;
  [claim: string]: unknown;
}

/** Removes the listener it was returned for. */
export type Unsubscribe = () => void;

/** A client: the same functions as the package's top level, for its own session. */
export interface AuthClient {
  authFetch(input: RequestInfo | URL, init?: RequestInit): Promise<Response>;
  /** Alias of {@link AuthClient.authFetch}. */
  fetch(input: RequestInfo | URL, init?: RequestInit): Promise<Response>;
  login(credentials: Credentials): Promise<void>;
  logout(): Promise<void>;
  logoutEverywhere(): Promise<void>;
  /** See {@link ready}. */
  ready(): Promise<boolean>;
  isAuthenticated(): boolean;
  claims(): Claims | null;
  expiresIn(): number | undefined;
  onAuthStateChange(listener: (event: AuthStateEvent) => void): Unsubscribe;
  onRequest(listener: (trace: RequestTrace) => void): Unsubscribe;
}

/**
 * `fetch` with the access token: the same arguments and the same `Response` for any status.
 * The bearer is added only for allowed origins, never to an auth endpoint (and never over an
 * `Authorization` header you set yourself, which is sent as given); on a 401 that answered it,
 * the token is refreshed once (shared by all concurrent calls) and the request replayed once. Rejects on
 * network failure and abort like `fetch`, and with an {@link AuthFetchError} for auth failures.
 */
export declare function authFetch(input: RequestInfo | URL, init?: RequestInit): Promise<Response>;
/**
 * Signs in (a new session: calls waiting for a token proceed with the new one). A refresh
 * already sent (e.g. the start-up one) is allowed to answer first, so its cookie cannot
 * overwrite the new session's (other tabs' too: the login takes the same cross-tab lock); one
 * that had not been sent yet is dropped once the login succeeds. Rejects with
 * `ERR_INVALID_CREDENTIALS`, `ERR_RATE_LIMITED`, `ERR_NETWORK`, …
 */
export declare function login(credentials: Credentials): Promise<void>;
/**
 * Signs out in every tab and tells the server (with the refresh cookie; no bearer). Queued calls
 * reject with `ERR_SIGNED_OUT`. The local sign-out happens even when telling the server fails
 * (then it rejects, e.g. with `ERR_NETWORK`).
 */
export declare function logout(): Promise<void>;
/** Signs out and revokes every session of the user on every device (cookie only; no bearer). */
export declare function logoutEverywhere(): Promise<void>;
/**
 * Resolves once the start-up refresh answered: `true` if a session exists, `false` if not (no
 * or an expired cookie, or a refresh that failed: none of these rejects). `false` outside a
 * browser. Rejects only when the client cannot start at all: the WebAssembly module could not
 * be loaded (`ERR_NETWORK`, `ERR_INVALID_RESPONSE`, `ERR_UNSUPPORTED`; see
 * {@link AuthFetchError}) or the options are invalid (`ERR_INVALID_CONFIG`).
 */
export declare function ready(): Promise<boolean>;
/** Whether a session is held (synchronous; `false` before the first use). */
export declare function isAuthenticated(): boolean;
/** The token's public claims, or `null`. */
export declare function claims(): Claims | null;
/** Milliseconds until the token expires (monotonic clock), or `undefined`. */
export declare function expiresIn(): number | undefined;
/** Subscribes to auth-state events. */
export declare function onAuthStateChange(listener: (event: AuthStateEvent) => void): Unsubscribe;
/** Subscribes to per-call traces. */
export declare function onRequest(listener: (trace: RequestTrace) => void): Unsubscribe;
/** Sets the default client's options; throws `ERR_ALREADY_STARTED` after its first use. */
export declare function configure(options: AuthFetchOptions): void;
/** A separate client with its own session and options. */
export declare function createAuthClient(options?: AuthFetchOptions): AuthClient;
/**
 * "Sign in with …": navigates to the server's `/auth/oidc/{name}/start`. The server runs the
 * OpenID Connect flow and sends the browser back to `returnTo` (default: this page; it must be on
 * this origin) with a session, which {@link ready} then finds. Throws `ERR_INVALID_CONFIG` for a
 * bad name or a `returnTo` on another origin, `ERR_UNSUPPORTED` outside a browser page. Resolves
 * once the navigation has started; from `authfetch/dpop` it first makes the session's DPoP key
 * (rejects with `ERR_UNSUPPORTED` when the browser cannot keep one, and stays on the page).
 */
export declare function loginWithProvider(name: string, options?: { returnTo?: string | URL }): Promise<void>;
