// Benchmark 3 against the real authfetch-server on loopback (bench/browser/browser.mjs starts it
// with a short --access-ttl and serves this page): N concurrent authFetch calls while the held
// access token has expired → how many refreshes reach the server (its own /debug/stats counter)
// and how much later the N calls complete than the same N calls with a valid token.
import { configure, login, authFetch } from '/pkg/index.js';

// Refresh only on demand, so that the token really is expired when the N calls start.
configure({ refreshAheadSeconds: 0 });

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// The page's own fetch (not authFetch): the server's audit counters.
const refreshCount = async () => (await (await fetch('/debug/stats')).json()).refresh;
const call = () => authFetch('/api/me').then(async (r) => { await r.arrayBuffer(); return r.status; }, () => 0);

window.__bench = {
  login: () => login({ username: 'alice', password: 'alice-password' }),
  async round(N, ttlMs) {
    // A fresh token (refreshes first if the last one is about to lapse), then N calls with it.
    const r0 = await refreshCount();
    await call();
    const r1 = await refreshCount();
    let t0 = performance.now();
    let st = await Promise.all(Array.from({ length: N }, call));
    const baseMs = performance.now() - t0;
    const r2 = await refreshCount();
    const okBase = st.filter((x) => x === 200).length;
    // Let it expire, then the same N calls.
    await sleep(ttlMs + 400);
    const r3 = await refreshCount();
    t0 = performance.now();
    st = await Promise.all(Array.from({ length: N }, call));
    const expMs = performance.now() - t0;
    const r4 = await refreshCount();
    return {
      N, baseMs, expMs, addedMs: expMs - baseMs, refreshes: r4 - r3, refreshesDuringBase: r2 - r1,
      warmupRefreshes: r1 - r0, ok: st.filter((x) => x === 200).length, okBase,
    };
  },
};
window.__ready = true;
