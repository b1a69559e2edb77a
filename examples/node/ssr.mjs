// Server-side rendering imports the same modules as the browser. Importing authfetch in Node must
// not crash and must not touch the network: the module loads its WebAssembly lazily, on first use
// in a browser. (Run with `npm start`, which preloads no-network.mjs to prove it.) Calling it here
// is harmless too: the getters say "signed out", ready() resolves false, and the calls that would
// need a browser reject with ERR_UNSUPPORTED.
import * as authfetch from 'authfetch';

const exported = Object.keys(authfetch).sort();
const outcome = (promise) => promise.then(
  (value) => ({ resolved: value ?? null }),
  (err) => ({ rejected: err && err.name, code: err && err.code }),
);

const report = {
  node: process.version,
  exports: exported,
  functions: exported.filter((k) => typeof authfetch[k] === 'function'),
  isAuthenticated: authfetch.isAuthenticated(),
  claims: authfetch.claims(),
  expiresIn: authfetch.expiresIn() ?? null,
  ready: await outcome(authfetch.ready()),
  authFetch: await outcome(authfetch.authFetch('/api/me')),
  login: await outcome(authfetch.login({ username: 'alice', password: 'alice-password' })),
  networkAttempts: globalThis.__networkAttempts ?? null,
};
console.log(JSON.stringify(report));
