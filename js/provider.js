// loginWithProvider: "Sign in with …" through an OpenID Connect provider configured on the
// authfetch server. Plain navigation: the server runs the whole flow (PKCE, state, nonce, the
// code exchange, the ID-token checks) and the browser only ever receives the server's own
// refresh cookie. When the provider sends the browser back, the page loads again and the usual
// start-up refresh (`ready()`) finds the new session. The DPoP entry first makes the session's
// key and names its thumbprint (`dpop_jkt`, RFC 9449 §10): the redirect cannot carry a proof.
//
// index.js passes its AuthFetchError in (no import back into index.js: no module cycle). Kept
// small on purpose: it ships in the package's one bundle, under the size budget, and the server
// checks the return path again anyway (its rule is the one that counts).

/**
 * Builds `loginWithProvider(name, { returnTo })`: leaves the page for the server's
 * `/auth/oidc/{name}/start`. `returnTo` (default: the current page) must be on this page's
 * origin; it is sent as a path. Throws `ERR_INVALID_CONFIG` for a bad name or another origin;
 * otherwise resolves once the navigation has started. `newKey` (the DPoP entry): makes the key
 * and resolves its thumbprint, sent as `dpop_jkt`.
 */
export const makeLoginWithProvider = (AuthFetchError, newKey) => (name, { returnTo } = {}) => {
  const loc = location;
  const back = new URL(returnTo ?? loc.href, loc.href);
  // Provider names are what the server accepts: a path segment with nothing to escape.
  if (!/^[a-z\d_-]{1,32}$/.test(name) || back.origin != loc.origin) throw new AuthFetchError('ERR_INVALID_CONFIG');
  const go = (more = '') => loc.assign(`/auth/oidc/${name}/start?return_to=${
    encodeURIComponent(back.pathname + back.search + back.hash)}${more}`);
  // AUTHFETCH_DPOP: an esbuild define, true in the DPoP entry only (the other branch is dropped).
  return AUTHFETCH_DPOP ? newKey().then((jkt) => go(`&dpop_jkt=${jkt}`)) : Promise.resolve(go());
};
