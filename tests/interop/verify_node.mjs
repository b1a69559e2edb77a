// Verifies an authfetch access token through the server's JWKS with the two Node libraries the
// seeds name: `jose` (createRemoteJWKSet + jwtVerify) and `jsonwebtoken` + `jwks-rsa` (the
// Express-era pair). Each function resolves to the verified payload or throws the library's
// own error; interop.spec.mjs asserts both ways.
import { createRemoteJWKSet, jwtVerify } from 'jose';
import jsonwebtoken from 'jsonwebtoken';
import jwksRsa from 'jwks-rsa';

export const ISSUER = 'authfetch';

/** `jose`: the JWKS is fetched and cached by createRemoteJWKSet; ES256 only. */
export async function withJose(jwksUrl, token, audience) {
  const jwks = createRemoteJWKSet(new URL(jwksUrl));
  const { payload } = await jwtVerify(token, jwks, { issuer: ISSUER, audience, algorithms: ['ES256'] });
  return payload;
}

/** `jsonwebtoken` with the key `jwks-rsa` picks from the JWKS by the token's `kid`. */
export async function withJsonwebtoken(jwksUrl, token, audience) {
  const client = jwksRsa({ jwksUri: jwksUrl, cache: false });
  const getKey = (header, cb) => {
    client.getSigningKey(header.kid).then((k) => cb(null, k.getPublicKey()), cb);
  };
  return new Promise((resolve, reject) => {
    jsonwebtoken.verify(token, getKey, { issuer: ISSUER, audience, algorithms: ['ES256'] }, (err, payload) => (err ? reject(err) : resolve(payload)));
  });
}

/** RFC 7662 from Node: POST token=… with the resource server's secret as a bearer. */
export async function introspect(url, secret, token) {
  const r = await fetch(url, {
    method: 'POST',
    headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ token, token_type_hint: 'access_token' }),
  });
  if (r.status !== 200) throw new Error(`introspection: HTTP ${r.status}`);
  return r.json();
}

/** The token with one byte of its signature flipped (decoded, XORed, re-encoded). */
export function flipSignatureByte(token) {
  const [h, p, s] = token.split('.');
  const sig = Buffer.from(s, 'base64url');
  sig[10] ^= 0x01;
  return `${h}.${p}.${sig.toString('base64url')}`;
}
