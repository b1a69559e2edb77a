// Compiled (never run) by `tsc -p js/tsconfig.json` in scripts/build-pkg.sh: every documented use
// of the public API must type-check under `strict`, and the misuses marked below must not.
import {
  authFetch, login, logout, logoutEverywhere, ready, isAuthenticated, claims, expiresIn,
  onAuthStateChange, onRequest, configure, createAuthClient, AuthFetchError,
  type AuthFetchErrorCode, type AuthFetchOptions, type AuthClient, type AuthStateEvent,
  type RequestTrace, type Claims, type Unsubscribe,
} from './index.js';

export async function usage(): Promise<void> {
  const options: AuthFetchOptions = {
    baseUrl: 'https://auth.example.com',
    allowedOrigins: ['https://api.example.com/v1', new URL('https://api2.example.com')],
    refreshAheadSeconds: 30,
    csrfHeader: { name: 'x-authfetch', value: '1' },
    crossTab: true,
    lockTimeoutMs: 5000,
  };
  configure(options);
  const signedIn: boolean = await ready();
  await login({ username: 'alice', password: 'alice-password' });
  const res: Response = await authFetch('/api/me');
  await authFetch(new Request('/api/echo', { method: 'POST', body: new FormData() }));
  await authFetch(new URL('https://api.example.com/v1/x'), { signal: AbortSignal.timeout(1000) });
  const json: unknown = await res.json();
  const auth: boolean = isAuthenticated();
  const c: Claims | null = claims();
  const sub: string | undefined = c?.sub;
  const custom: unknown = c?.['role'];
  const ms: number | undefined = expiresIn();
  const off: Unsubscribe = onAuthStateChange((e: AuthStateEvent) => {
    if (e.type === 'session_expired' || e.type === 'refresh_failed') return;
  });
  off();
  onRequest((t: RequestTrace) => {
    const parts: string[] = [t.method, t.url, ...t.steps, String(t.status), String(t.bearer)];
    void parts;
  })();
  try {
    await logout();
    await logoutEverywhere();
  } catch (err) {
    if (err instanceof AuthFetchError) {
      const code: AuthFetchErrorCode = err.code;
      const name: 'AuthFetchError' = err.name;
      const e: Error = err;
      void code; void name; void e; void err.cause;
    }
  }
  const other: AuthClient = createAuthClient({ baseUrl: 'https://other.example.com' });
  await other.fetch('/x');
  await other.authFetch('/x');
  const err = new AuthFetchError('ERR_SIGNED_OUT');
  void [signedIn, json, auth, sub, custom, ms, err, createAuthClient()];

  // @ts-expect-error: codes are a closed union
  const bad: AuthFetchErrorCode = 'ERR_SOMETHING';
  // @ts-expect-error: login takes an object
  await login('alice', 'pw');
  // @ts-expect-error: unknown option
  configure({ allowedOrigin: 'x' });
  void bad;
}
