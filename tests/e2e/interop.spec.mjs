// Other languages verify authfetch's tokens (tests/interop/): Node `jose`, Node `jsonwebtoken`
// + `jwks-rsa`, and Python PyJWT's PyJWKClient each verify an issued access token through the
// server's JWKS, and each rejects it with one flipped signature byte, with the wrong audience,
// and once it has expired. In the opaque mode a Node and a Python resource server use the
// RFC 7662 introspection endpoint. No browser: these are server-to-server checks, run here so
// that they are part of `npm test`.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, expect } from '@playwright/test';
import { startServer, ROOT } from './fixtures.mjs';
import { withJose, withJsonwebtoken, introspect, flipSignatureByte } from '../interop/verify_node.mjs';

const AUD = 'authfetch-api';
const SECRET = 'interop-resource-server-secret-0123456789';

async function login(server) {
  const r = await fetch(`${server.url}/auth/login`, {
    method: 'POST',
    headers: { 'x-authfetch': '1', 'content-type': 'application/json' },
    body: JSON.stringify({ username: 'alice', password: 'alice-password' }),
  });
  expect(r.status).toBe(200);
  const cookie = r.headers.getSetCookie().find((c) => c.startsWith('__Host-authfetch_rt='));
  return { token: (await r.json()).access_token, cookie: cookie.split(';')[0] };
}

function python(script, args, env = {}) {
  const r = spawnSync('python3', [join(ROOT, 'tests', 'interop', script), ...args], {
    encoding: 'utf8', env: { ...process.env, ...env }, timeout: 20_000,
  });
  if (r.error) throw r.error;
  return { code: r.status, out: r.stdout.trim(), err: r.stderr.trim() };
}

const pyjwt = (jwks, token, aud) => python('verify_pyjwt.py', [jwks, token, aud]);

test('jose, jsonwebtoken + jwks-rsa and PyJWT verify an access token and reject an altered, mis-addressed or expired one', async () => {
  // 15-second tokens, and a fresh one for each check: on a loaded machine one Python start-up
  // takes a second or more, and a check must not see an expired token by accident. The first
  // token waits for its expiry while the others are checked.
  const server = await startServer(['--access-ttl', '15s', '--demo', '--access-tokens', 'checked']);
  try {
    const jwks = `${server.url}/.well-known/jwks.json`;
    const { token: first } = await login(server);

    // Valid: all three accept it, and agree on the subject.
    let { token } = await login(server);
    const a = await withJose(jwks, token, AUD);
    const b = await withJsonwebtoken(jwks, token, AUD);
    const c = pyjwt(jwks, token, AUD);
    expect(a.iss).toBe('authfetch');
    expect(b.sub).toBe(a.sub);
    expect(c).toMatchObject({ code: 0, out: `ok ${a.sub}` });

    // One flipped signature byte.
    ({ token } = await login(server));
    const flipped = flipSignatureByte(token);
    expect(flipped).not.toBe(token);
    await expect(withJose(jwks, flipped, AUD)).rejects.toMatchObject({ code: 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED' });
    await expect(withJsonwebtoken(jwks, flipped, AUD)).rejects.toMatchObject({ name: 'JsonWebTokenError', message: 'invalid signature' });
    expect(pyjwt(jwks, flipped, AUD)).toMatchObject({ code: 1, out: 'rejected InvalidSignatureError' });

    // Wrong audience.
    ({ token } = await login(server));
    await expect(withJose(jwks, token, 'another-api')).rejects.toMatchObject({ code: 'ERR_JWT_CLAIM_VALIDATION_FAILED', claim: 'aud' });
    await expect(withJsonwebtoken(jwks, token, 'another-api')).rejects.toMatchObject({ message: expect.stringContaining('jwt audience invalid') });
    expect(pyjwt(jwks, token, 'another-api')).toMatchObject({ code: 1, out: 'rejected InvalidAudienceError' });

    // Expired: the first token, once past its exp (whole seconds).
    const exp = JSON.parse(Buffer.from(first.split('.')[1], 'base64url')).exp * 1000;
    await new Promise((r) => setTimeout(r, Math.max(0, exp - Date.now()) + 1100));
    await expect(withJose(jwks, first, AUD)).rejects.toMatchObject({ code: 'ERR_JWT_EXPIRED' });
    await expect(withJsonwebtoken(jwks, first, AUD)).rejects.toMatchObject({ name: 'TokenExpiredError' });
    expect(pyjwt(jwks, first, AUD)).toMatchObject({ code: 1, out: 'rejected ExpiredSignatureError' });
  } finally {
    await server.stop();
  }
});

test('opaque mode: a Node and a Python resource server introspect tokens (RFC 7662)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'authfetch-interop-'));
  const secretFile = join(dir, 'introspection-secret');
  writeFileSync(secretFile, `${SECRET}\n`, { mode: 0o600 });
  const server = await startServer(['--demo', '--access-tokens', 'opaque', '--introspection-secret-file', secretFile]);
  try {
    const url = `${server.url}/oauth/introspect`;
    const { token, cookie } = await login(server);
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);

    const node = await introspect(url, SECRET, token);
    expect(node).toMatchObject({ active: true, iss: 'authfetch', aud: [AUD], token_type: 'Bearer' });
    const py = python('introspect.py', [url, token], { AUTHFETCH_INTROSPECTION_SECRET: SECRET });
    expect(py.code).toBe(0);
    expect(JSON.parse(py.out)).toMatchObject({ active: true, sub: node.sub });

    // A wrong secret is an HTTP error, never an answer.
    await expect(introspect(url, `${SECRET}x`, token)).rejects.toThrow('HTTP 401');
    expect(python('introspect.py', [url, token], { AUTHFETCH_INTROSPECTION_SECRET: 'wrong' })).toMatchObject({ code: 2, out: '{"http_status": 401}' });

    // One altered character, and after logout: {"active": false}, nothing else.
    const altered = (token[5] === 'A' ? 'B' : 'A');
    const other = token.slice(0, 5) + altered + token.slice(6);
    expect(await introspect(url, SECRET, other)).toEqual({ active: false });
    const logout = await fetch(`${server.url}/auth/logout`, { method: 'POST', headers: { 'x-authfetch': '1', cookie } });
    expect(logout.status).toBe(204);
    expect(await introspect(url, SECRET, token)).toEqual({ active: false });
    const pyAfter = python('introspect.py', [url, token], { AUTHFETCH_INTROSPECTION_SECRET: SECRET });
    expect(pyAfter).toMatchObject({ code: 1, out: '{"active": false}' });
  } finally {
    await server.stop();
  }
});
