// webpack 5 resolves 'authfetch' from node_modules and emits its .wasm as an asset
// (wasm-bindgen's `new URL('…_bg.wasm', import.meta.url)`): no loader or experiment needed.
import { authFetch, login, ready } from 'authfetch';

const out = document.getElementById('out');
const form = document.getElementById('login');

// A session cookie from an earlier visit? (Rejects only when authfetch cannot start at all,
// e.g. ERR_UNSUPPORTED when the CSP forbids WebAssembly.)
ready().then(
  (signedIn) => { if (signedIn) showMe(); },
  (err) => { out.textContent = `authfetch could not start: ${err.code ?? err}`; },
);

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  const data = new FormData(form);
  try {
    await login({ username: data.get('username'), password: data.get('password') });
    await showMe();
  } catch (err) {
    out.textContent = `sign-in failed: ${err.code ?? err}`;
  }
});

async function showMe() {
  const res = await authFetch('/api/me'); // a real Response, like fetch
  out.textContent = `${res.status} ${JSON.stringify(await res.json())}`;
}
