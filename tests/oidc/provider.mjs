// A real OpenID Provider on loopback, for the end-to-end tests and the demo: panva's
// `oidc-provider` (a certified implementation) with its development interactions, which accept
// any login name and password (the name becomes the `sub`) and then ask for consent.
//
// As a module: `startProvider({ port, clientId, clientSecret, redirectUris })` → { issuer, stop }.
// As a command (scripts/demo.sh):
//   node tests/oidc/provider.mjs --port 9010 --client-id demo --client-secret-file F --redirect-uri URI
// prints `oidc-provider listening on http://127.0.0.1:PORT` once it accepts connections.
//
// Every start signs with a NEW key (RSA, random `kid`): restarting the provider on the same port
// is how the tests rotate the provider's keys between two logins.
import Provider from 'oidc-provider';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** A fresh RSA signing key as a private JWK with a random `kid`. */
export function newSigningKey() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid: randomBytes(8).toString('hex'), use: 'sig', alg: 'RS256' };
}

/**
 * Starts the provider on 127.0.0.1:`port` (0: a free port).
 * @returns {Promise<{issuer: string, port: number, kid: string, stop: () => Promise<void>}>}
 */
export async function startProvider({ port = 0, clientId, clientSecret, redirectUris, key = newSigningKey() }) {
  // The issuer must be known before listening: bind first, then build the provider on that port.
  const { createServer } = await import('node:http');
  let handler = (_req, res) => { res.statusCode = 503; res.end(); };
  const server = createServer((req, res) => handler(req, res));
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  const bound = server.address().port;
  const issuer = `http://127.0.0.1:${bound}`;
  const provider = new Provider(issuer, {
    clients: [{
      client_id: clientId,
      client_secret: clientSecret,
      redirect_uris: redirectUris,
      response_types: ['code'],
      grant_types: ['authorization_code'],
      token_endpoint_auth_method: 'client_secret_basic',
    }],
    // PKCE required for every client (the default already allows only S256).
    pkce: { required: () => true },
    jwks: { keys: [key] },
    cookies: { keys: [randomBytes(32).toString('hex')] },
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['preferred_username', 'name'] },
    async findAccount(_ctx, id) {
      return {
        accountId: id,
        async claims() {
          return { sub: id, email: `${id}@example.test`, email_verified: true, preferred_username: id, name: id };
        },
      };
    },
  });
  handler = provider.callback();
  return {
    issuer,
    port: bound,
    kid: key.kid,
    async stop() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

// Command-line use (the demo).
if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const arg = (name, fallback) => {
    const i = process.argv.indexOf(`--${name}`);
    return i > 0 ? process.argv[i + 1] : fallback;
  };
  const secretFile = arg('client-secret-file');
  if (!secretFile || !arg('redirect-uri') || !arg('client-id')) {
    console.error('usage: provider.mjs --port N --client-id ID --client-secret-file FILE --redirect-uri URI');
    process.exit(2);
  }
  const p = await startProvider({
    port: Number(arg('port', '0')),
    clientId: arg('client-id'),
    clientSecret: readFileSync(secretFile, 'utf8').trim(),
    redirectUris: [arg('redirect-uri')],
  });
  console.log(`oidc-provider listening on ${p.issuer}`);
  const stop = () => p.stop().then(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
