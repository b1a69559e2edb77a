// The authfetch demo: a plain ES module, no bundler, served under a strict CSP (no inline script
// or style, so every visual state is a class or the `hidden` attribute, set from here).
//
// It uses only the package's public API — the same calls an app would make. The access token is
// never visible here: `claims()` gives its public claims for display, `expiresIn()` the countdown.
// All text from the network goes through `textContent`, never `innerHTML`.
import {
  authFetch,
  login,
  logout,
  logoutEverywhere,
  ready,
  isAuthenticated,
  claims,
  expiresIn,
  onAuthStateChange,
  onRequest,
  loginWithProvider,
} from '/pkg/index.js';

const $ = (id) => document.getElementById(id);
const MAX_LOG = 60;

/** Creates an element with optional class and text, and appends children. */
function el(tag, className, text, ...children) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const child of children) if (child) node.append(child);
  return node;
}

const clock = () => new Date().toLocaleTimeString([], { hour12: false });

function errorText(err) {
  if (err && typeof err === 'object' && err.code) return `${err.code}: ${err.message}`;
  return String(err && err.message ? err.message : err);
}

// ---------------------------------------------------------------------------------------------
// Signed-in state

const state = { lastClaims: null, username: null };

/** Renders the panel for the current state of the module (called on every auth event). */
function render(phase) {
  const signedIn = phase === 'loading' ? false : isAuthenticated();
  const pill = $('state-pill');
  pill.classList.remove('pill-loading', 'pill-in', 'pill-out');
  if (phase === 'loading') {
    pill.classList.add('pill-loading');
    pill.textContent = 'starting…';
  } else if (signedIn) {
    pill.classList.add('pill-in');
    pill.textContent = 'signed in';
  } else {
    pill.classList.add('pill-out');
    pill.textContent = 'signed out';
  }
  $('signin-card').hidden = phase === 'loading' || signedIn;
  $('session-card').hidden = !signedIn;
  document.body.classList.toggle('is-signed-in', signedIn);
  if (signedIn) renderClaims(claims());
  else {
    state.lastClaims = null;
    state.username = null;
    $('response').hidden = true;
  }
  renderTheft();
}

const CLAIM_NOTES = {
  sub: 'subject: the user id',
  iss: 'issuer',
  aud: 'audience',
  iat: 'issued at',
  exp: 'expires at',
  nbf: 'not before',
  jti: 'token id (for revocation)',
  fam: 'session family',
  sid: 'session id',
};

function renderClaims(c) {
  state.lastClaims = c;
  const dl = $('claims');
  dl.replaceChildren();
  if (!c) return;
  const who = state.username || c.username || c.name || c.preferred_username;
  $('who').textContent = who || c.sub;
  if (!who) learnUsername();
  for (const [key, value] of Object.entries(c)) {
    let shown = typeof value === 'object' ? JSON.stringify(value) : String(value);
    if ((key === 'iat' || key === 'exp' || key === 'nbf') && typeof value === 'number') {
      shown = `${value} · ${new Date(value * 1000).toLocaleTimeString([], { hour12: false })}`;
    }
    const dt = el('dt', null, key);
    if (CLAIM_NOTES[key]) dt.title = CLAIM_NOTES[key];
    dl.append(dt, el('dd', null, shown));
  }
}

/** Another tab signed in, or the page was reloaded: ask the API who we are (one ordinary call). */
let learning = null;
function learnUsername() {
  if (learning) return;
  learning = authFetch('/api/me')
    .then((res) => (res.ok ? res.json() : null))
    .then((me) => {
      if (me && me.username && isAuthenticated()) {
        state.username = me.username;
        $('who').textContent = me.username;
      }
    })
    .catch(() => {})
    .finally(() => { learning = null; });
}

/** The countdown: polled, because it is a clock, not an event. */
function tick() {
  const ms = isAuthenticated() ? expiresIn() : null;
  const out = $('countdown');
  const bar = $('ttl-bar');
  if (ms === null || ms === undefined) {
    out.textContent = '–';
    bar.value = 0;
    return;
  }
  const c = state.lastClaims;
  const lifetime = c && c.exp && c.iat ? (c.exp - c.iat) * 1000 : 20_000;
  out.textContent = `${(Math.max(0, ms) / 1000).toFixed(1)} s`;
  out.classList.toggle('soon', ms < Math.min(5000, lifetime / 4));
  bar.max = lifetime;
  bar.value = Math.max(0, Math.min(lifetime, ms));
  // Claims change on every refresh (new iat/exp/jti); keep the panel current.
  const now = claims();
  if (now && c && now.jti !== c.jti) renderClaims(now);
}

// ---------------------------------------------------------------------------------------------
// Logs

function pushLog(list, emptyNote, item) {
  list.prepend(item);
  while (list.children.length > MAX_LOG) list.lastElementChild.remove();
  emptyNote.hidden = true;
}

function stepClass(step) {
  const s = String(step);
  if (/^2\d\d$/.test(s)) return 'step step-ok';
  if (/^(401|403)$/.test(s)) return 'step step-warn';
  if (/^[45]\d\d$/.test(s)) return 'step step-bad';
  if (/fail|error|expired|signed_out/.test(s)) return 'step step-bad';
  return 'step step-info';
}

function logRequest(trace) {
  let path = trace.url;
  try {
    const u = new URL(trace.url, location.href);
    path = u.origin === location.origin ? u.pathname + u.search : u.href;
  } catch { /* keep it as given */ }
  const steps = el('span', 'steps');
  const list = Array.isArray(trace.steps) && trace.steps.length ? trace.steps : [String(trace.status ?? '?')];
  list.forEach((step, i) => {
    if (i > 0) steps.append(el('span', 'arrow', '→'));
    steps.append(el('span', stepClass(step), step));
  });
  const item = el(
    'li',
    'log-item',
    null,
    el('span', 'time', clock()),
    el('span', 'method', trace.method || 'GET'),
    el('span', 'url', path),
    // A token bound to the page's key (`cnf.jkt`) went as `Authorization: DPoP` with a proof.
    trace.bearer ? el('span', 'badge', claims()?.cnf?.jkt ? 'DPoP' : 'bearer')
      : el('span', 'badge badge-muted', 'no bearer'),
    steps,
  );
  item.dataset.steps = list.join(' ');
  pushLog($('request-log'), $('request-empty'), item);
}

const EVENT_TEXT = {
  signed_in: 'Signed in: a new session (refresh-token family) started.',
  refreshed: 'Silent refresh: new access token; the refresh cookie rotated.',
  signed_out: 'Signed out: the token is gone from memory, in every tab.',
  session_expired: 'Session ended by the server (expired or revoked): signed out.',
  refresh_failed: 'A refresh failed (network?): still holding the session, will retry.',
};

function logEvent(event) {
  const type = event && event.type ? event.type : String(event);
  const text = EVENT_TEXT[type] || '';
  const item = el(
    'li',
    `log-item event-${type}`,
    null,
    el('span', 'time', clock()),
    el('span', `event-type ${stepClass(type)}`, type),
    el('span', 'event-text', text),
  );
  item.dataset.type = type;
  pushLog($('event-log'), $('event-empty'), item);
}

// ---------------------------------------------------------------------------------------------
// Calls

async function showResponse(label, promise) {
  const box = $('response');
  const status = $('response-status');
  try {
    const res = await promise;
    const text = await res.text();
    let body = text;
    try { body = JSON.stringify(JSON.parse(text), null, 2); } catch { /* not JSON */ }
    status.textContent = `${res.status} ${res.statusText}`.trim();
    status.className = res.ok ? 'status status-ok' : 'status status-bad';
    $('response-body').textContent = body || '(empty body)';
  } catch (err) {
    status.textContent = 'rejected';
    status.className = 'status status-bad';
    $('response-body').textContent = errorText(err);
  }
  $('response-url').textContent = label;
  box.hidden = false;
}

function wireCalls() {
  $('get-me').addEventListener('click', () => showResponse('GET /api/me', authFetch('/api/me')));
  $('get-forbidden').addEventListener('click', () =>
    showResponse('GET /api/forbidden', authFetch('/api/forbidden')));
  $('echo-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const body = $('echo-body').value;
    let type = 'text/plain;charset=utf-8';
    try { JSON.parse(body); type = 'application/json'; } catch { /* send as text */ }
    showResponse('POST /api/echo', authFetch('/api/echo', { method: 'POST', headers: { 'content-type': type }, body }));
  });

  for (const button of document.querySelectorAll('[data-fill]')) {
    button.addEventListener('click', () => {
      const name = button.dataset.fill;
      $('username').value = name;
      $('password').value = `${name}-password`;
      $('login-button').focus();
    });
  }

  $('login-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const error = $('login-error');
    const button = $('login-button');
    error.hidden = true;
    button.disabled = true;
    try {
      const username = $('username').value.trim();
      state.username = username; // known already: the signed_in event needs no /api/me to name the user
      await login({ username, password: $('password').value });
      state.username = username;
      $('password').value = '';
      render('ready');
      $('who').textContent = username;
    } catch (err) {
      if (!isAuthenticated()) state.username = null;
      error.textContent = err && err.code === 'ERR_INVALID_CREDENTIALS'
        ? 'Wrong username or password.'
        : `Sign-in failed — ${errorText(err)}`;
      error.hidden = false;
    } finally {
      button.disabled = false;
    }
  });

  $('logout-button').addEventListener('click', () => logout().catch((err) => logEvent({ type: errorText(err) })));
  $('logout-all-button').addEventListener('click', () =>
    logoutEverywhere().catch((err) => logEvent({ type: errorText(err) })));

  $('clear-requests').addEventListener('click', () => {
    $('request-log').replaceChildren();
    $('request-empty').hidden = false;
  });
  $('clear-events').addEventListener('click', () => {
    $('event-log').replaceChildren();
    $('event-empty').hidden = false;
  });
}

// ---------------------------------------------------------------------------------------------
// Stolen refresh token. Done honestly: the page cannot read the HttpOnly cookie (that is the
// point), so the person plays the thief with DevTools and curl, and this card only follows the
// story from the page's side — it watches the auth events for the rotation and, after the
// replay, for the server revoking the session.

const COPIED_PLACEHOLDER = 'PASTE_THE_COPIED_VALUE';
const DEMO_GRACE_S = 15; // authfetch-server's default --grace, which `npm run demo` uses
const theft = { startedAt: 0, rotatedAt: 0, revoked: false };

function theftStatus(text, tone = 'info') {
  const p = $('theft-status');
  p.textContent = text;
  p.className = `theft-status theft-${tone}`;
}

function theftStep(id, done, current, note) {
  const li = $(`theft-step-${id}`);
  li.classList.toggle('is-done', done);
  li.classList.toggle('is-current', current);
  if (note !== undefined) {
    const n = $(`theft-note-${id}`);
    if (n) n.textContent = note;
  }
}

function renderTheft() {
  const signedIn = isAuthenticated();
  // A DPoP-bound session (its token carries `cnf.jkt`): a copied cookie is refused outright, so
  // the reuse walk-through does not apply; the card says what happens instead.
  const bound = signedIn && Boolean(claims()?.cnf?.jkt);
  $('theft-dpop').hidden = !bound;
  $('theft-steps').hidden = bound;
  $('theft-try').hidden = bound;
  $('theft-status').hidden = bound;
  const { revoked } = theft;
  const started = theft.startedAt > 0;
  const rotated = theft.rotatedAt > 0;
  const since = rotated ? (Date.now() - theft.rotatedAt) / 1000 : 0;
  const pastGrace = rotated && (revoked || since >= DEMO_GRACE_S);
  $('theft-start').disabled = !signedIn || (started && !revoked);
  theftStep('copy', started, signedIn && !started);
  theftStep('rotate', rotated, started && !rotated && !revoked,
    rotated ? `✓ Rotated at ${new Date(theft.rotatedAt).toLocaleTimeString([], { hour12: false })}: your copy is now an old token.`
      : started && !revoked ? 'Waiting for a refresh…' : '');
  theftStep('grace', pastGrace, rotated && !pastGrace,
    !rotated || revoked ? '' : pastGrace ? `✓ ${Math.floor(since)} s since the rotation.`
      : `${Math.floor(since)} s since the rotation…`);
  theftStep('replay', revoked, pastGrace && !revoked);
  theftStep('result', revoked, false,
    revoked ? '✓ The server revoked the session: signed out here and in every other tab.' : '');
}

function theftEvent(type) {
  if (!theft.startedAt || theft.revoked) return;
  if (type === 'refreshed' && !theft.rotatedAt) {
    theft.rotatedAt = Date.now();
    theftStatus('The cookie rotated. Wait out the grace window, then run the curl command below.', 'info');
  } else if (type === 'session_expired') {
    theft.revoked = true;
    theftStatus('Reuse detected: an old refresh token came back, so the server revoked the whole session. '
      + 'The thief\'s copy is worthless, and so is every token of this session.', 'bad');
  } else if (type === 'signed_out') {
    theft.startedAt = 0;
    theft.rotatedAt = 0;
    theftStatus('You signed out, which also revoked the session: the copy is worthless now. Sign in to try again.', 'info');
  }
  renderTheft();
}

function wireTheft() {
  const curl = [
    `curl -i -X POST ${location.origin}/auth/refresh \\`,
    "  -H 'x-authfetch: 1' \\",
    `  -H 'cookie: __Host-authfetch_rt=${COPIED_PLACEHOLDER}'`,
  ].join('\n');
  $('curl-snippet').textContent = curl;
  $('curl-snippet-dpop').textContent = curl;
  $('theft-start').addEventListener('click', () => {
    theft.startedAt = Date.now();
    theft.rotatedAt = 0;
    theft.revoked = false;
    theftStatus('Now keep using the app (GET /api/me) until the event log shows "refreshed".', 'info');
    renderTheft();
  });
  setInterval(() => { if (theft.rotatedAt && !theft.revoked) renderTheft(); }, 500);
  renderTheft();
}

// ---------------------------------------------------------------------------------------------
// Server counters (demo server only: GET /debug/stats). Plain fetch: it carries no credentials.

const STAT_LABELS = {
  login: 'logins',
  refresh: 'refreshes',
  refresh_grace: 'grace-window refreshes',
  reuse_detected: 'reuse detected',
  refresh_failed: 'refreshes refused',
  logout: 'logouts',
  logout_all: 'logouts everywhere',
};

async function pollStats() {
  if (document.visibilityState !== 'visible') return true;
  try {
    const res = await fetch('/debug/stats', { cache: 'no-store' });
    if (!res.ok) return false;
    const stats = await res.json();
    const dl = $('stats');
    dl.replaceChildren();
    for (const [key, value] of Object.entries(stats)) {
      const wrap = el('div', `stat${key === 'reuse_detected' && value > 0 ? ' stat-alarm' : ''}`);
      wrap.append(el('dt', null, STAT_LABELS[key] || key), el('dd', null, value));
      wrap.dataset.stat = key;
      dl.append(wrap);
    }
    $('stats-card').hidden = false;
    return true;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// "Sign in with …": a button per OpenID provider configured on the server (none: no buttons).

async function wireProviders() {
  let list = [];
  try {
    const res = await fetch('/auth/oidc/providers');
    if (res.ok) list = await res.json();
  } catch {
    return; // an older server without the route: the password form is all there is
  }
  const box = $('provider-buttons');
  for (const p of Array.isArray(list) ? list : []) {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'btn';
    b.textContent = `Sign in with ${p.label}`;
    b.addEventListener('click', () => loginWithProvider(p.name, { returnTo: '/' }));
    box.append(b);
  }
  $('provider-signin').hidden = box.childElementCount === 0;
}

// ---------------------------------------------------------------------------------------------
// Start-up

/** authfetch could not start (most likely: a CSP without 'wasm-unsafe-eval'). Say so plainly. */
function showFatal(err) {
  const box = $('fatal');
  box.textContent = err && err.code === 'ERR_UNSUPPORTED'
    ? 'authfetch could not start (ERR_UNSUPPORTED): this browser refused to compile its WebAssembly module. '
      + "The page's Content-Security-Policy must allow it with script-src 'self' 'wasm-unsafe-eval'."
    : `authfetch could not start — ${errorText(err)}`;
  box.setAttribute('role', 'alert');
  box.hidden = false;
}

async function main() {
  render('loading');
  onRequest(logRequest);
  onAuthStateChange((event) => {
    logEvent(event);
    render('ready');
    theftEvent(event && event.type);
  });
  wireCalls();
  wireTheft();
  wireProviders();

  let signedIn = false;
  try {
    signedIn = await ready(); // the start-up silent refresh: is there a session cookie?
  } catch (err) {
    showFatal(err);
  }
  render('ready');
  if (!signedIn) $('username').focus();
  document.body.dataset.ready = 'true';

  setInterval(tick, 100);
  tick();
  if (await pollStats()) {
    setInterval(pollStats, 1000);
  }
}

main().catch((err) => {
  const pill = $('state-pill');
  pill.className = 'pill pill-out';
  pill.textContent = `error: ${errorText(err)}`;
});
