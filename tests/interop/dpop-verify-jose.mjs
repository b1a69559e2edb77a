// A Node API's check of a DPoP-bound authfetch access token, written with panva's `jose` only
// (never our code): what the README shows a Node service doing. Run by server/tests/dpop.rs
// (`interop_a_node_jose_verifier_accepts_a_bound_token_with_its_proof_only`).
//
//   node tests/interop/dpop-verify-jose.mjs <jwks.json file> <method> <url> <authorization> [<dpop proof>]
//
// Prints {"ok":true,"sub":…} or {"ok":false,"reason":…}; exits 0 either way (2 on bad usage).
import * as jose from 'jose';
import { readFileSync } from 'node:fs';
import { webcrypto } from 'node:crypto';

export async function verifyDpopRequest({ jwks, method, url, authorization, proof, seen }) {
  const [scheme, token] = (authorization ?? '').split(' ');
  if (scheme?.toLowerCase() !== 'dpop' || !token) return { ok: false, reason: 'not DPoP' };
  const { payload } = await jose.jwtVerify(token, jwks, {
    issuer: 'authfetch', audience: 'authfetch-api', typ: 'at+jwt', algorithms: ['ES256', 'EdDSA'],
  });
  const jkt = payload.cnf?.jkt;
  if (typeof jkt !== 'string') return { ok: false, reason: 'token not bound' };
  if (!proof) return { ok: false, reason: 'proof missing' };
  // The proof is verified with the key it embeds (RFC 9449 §4.3), then tied to the token's key.
  const p = await jose.jwtVerify(proof, jose.EmbeddedJWK, { typ: 'dpop+jwt', algorithms: ['ES256'], maxTokenAge: '60s', clockTolerance: 60 });
  if (await jose.calculateJwkThumbprint(p.protectedHeader.jwk) !== jkt) return { ok: false, reason: 'other key' };
  const htu = new URL(url); htu.search = ''; htu.hash = '';
  if (p.payload.htm !== method || p.payload.htu !== htu.href) return { ok: false, reason: 'other request' };
  const ath = jose.base64url.encode(new Uint8Array(await webcrypto.subtle.digest('SHA-256', new TextEncoder().encode(token))));
  if (p.payload.ath !== ath) return { ok: false, reason: 'other token' };
  // A real service remembers jtis for the iat window (shared store with several instances).
  if (seen) { if (seen.has(p.payload.jti)) return { ok: false, reason: 'replayed' }; seen.add(p.payload.jti); }
  return { ok: true, sub: payload.sub };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [jwksFile, method, url, authorization, proof] = process.argv.slice(2);
  if (!jwksFile || !method || !url || !authorization) {
    console.error('usage: dpop-verify-jose.mjs <jwks.json> <method> <url> <authorization> [<proof>]');
    process.exit(2);
  }
  const jwks = jose.createLocalJWKSet(JSON.parse(readFileSync(jwksFile, 'utf8')));
  const out = await verifyDpopRequest({ jwks, method, url, authorization, proof }).catch((e) => ({ ok: false, reason: e.code ?? String(e) }));
  console.log(JSON.stringify(out));
}
