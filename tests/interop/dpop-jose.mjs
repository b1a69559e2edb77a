// Independent DPoP proofs for the Rust verifier's interop test (server/tests/dpop.rs,
// `interop_jose_proofs_are_accepted_and_thumbprints_agree`): made with panva's `jose` (a
// devDependency of the workspace) and WebCrypto, never with our code.
//
//   node tests/interop/dpop-jose.mjs <htu> <access-token> <nonce>
//
// Prints a JSON array of cases: { name, alg, htm, htu, token, nonce, proof, jkt }, where `jkt`
// is `jose.calculateJwkThumbprint` of the header's jwk. `token`/`nonce` are null when the case
// does not use them.
import * as jose from 'jose';
import { randomUUID, webcrypto } from 'node:crypto';

const [htu, token, nonce] = process.argv.slice(2);
if (!htu || !token || !nonce) {
  console.error('usage: dpop-jose.mjs <htu> <access-token> <nonce>');
  process.exit(2);
}

const ath = async (t) =>
  jose.base64url.encode(new Uint8Array(await webcrypto.subtle.digest('SHA-256', new TextEncoder().encode(t))));

async function proof(privateKey, jwk, alg, claims) {
  return new jose.SignJWT({ jti: randomUUID(), ...claims })
    .setProtectedHeader({ alg, typ: 'dpop+jwt', jwk })
    .setIssuedAt()
    .sign(privateKey);
}

const cases = [];
async function add(name, alg, keys, jwk, htm, withToken, withNonce) {
  const claims = { htm, htu };
  if (withToken) claims.ath = await ath(token);
  if (withNonce) claims.nonce = nonce;
  cases.push({
    name,
    alg,
    htm,
    htu,
    token: withToken ? token : null,
    nonce: withNonce ? nonce : null,
    proof: await proof(keys.privateKey, jwk, alg, claims),
    jkt: await jose.calculateJwkThumbprint(jwk, 'sha256'),
  });
}

// jose's own key pair and public JWK export (kty, crv, x, y only).
const es = await jose.generateKeyPair('ES256');
const esJwk = await jose.exportJWK(es.publicKey);
await add('jose_es256_refresh', 'ES256', es, esJwk, 'POST', false, false);
await add('jose_es256_resource_with_ath_and_nonce', 'ES256', es, esJwk, 'GET', true, true);

// What the browser client does: a WebCrypto key pair whose private key is not extractable; the
// public JWK as WebCrypto exports it carries `ext` and `key_ops`, which a verifier must ignore.
const wc = await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign', 'verify']);
const wcJwk = await webcrypto.subtle.exportKey('jwk', wc.publicKey);
await add('webcrypto_non_extractable_es256', 'ES256', wc, wcJwk, 'GET', true, true);

// Ed25519 under the JWS name our verifier accepts when EdDSA is enabled.
const ed = await jose.generateKeyPair('EdDSA', { crv: 'Ed25519' });
const edJwk = await jose.exportJWK(ed.publicKey);
await add('jose_eddsa_refresh', 'EdDSA', ed, edJwk, 'POST', false, false);
// The fully-specified algorithm name (RFC 9864) that panva/dpop sends for Ed25519 keys.
await add('jose_ed25519_fully_specified', 'Ed25519', ed, edJwk, 'GET', true, true);

process.stdout.write(JSON.stringify(cases));
