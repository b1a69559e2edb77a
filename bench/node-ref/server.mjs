// The reference peer: a Node.js refresh-token server written the way the common tutorials do
// it — node:http, `jose` for ES256 access tokens, SQLite (better-sqlite3) for the refresh tokens,
// one process — implementing the same wire contract as authfetch-server for the three routes the
// benchmark loads:
//
//   POST /auth/login    {username,password} → {access_token,token_type,expires_in} + Set-Cookie
//   POST /auth/refresh  cookie only → rotates the cookie (old one marked used; a reuse revokes the
//                       family) and returns a new access token
//   GET  /api/me        Authorization: Bearer <ES256 JWT> → {"sub": …}
//
// Both auth POSTs require `x-authfetch: 1`, like authfetch-server. Passwords are hashed with
// scrypt (node's built-in; tutorials use bcrypt): login is not part of the comparison.
//
//   node bench/node-ref/server.mjs --listen 127.0.0.1:0 --data-dir DIR
import http from 'node:http';
import crypto from 'node:crypto';
import path from 'node:path';
import fs from 'node:fs';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import { SignJWT, jwtVerify, generateKeyPair } from 'jose';

const scrypt = promisify(crypto.scrypt);
const args = process.argv.slice(2);
const opt = (k, d) => { const i = args.indexOf(k); return i >= 0 ? args[i + 1] : d; };
const [host, port] = opt('--listen', '127.0.0.1:0').split(':');
const dataDir = opt('--data-dir', '.');
fs.mkdirSync(dataDir, { recursive: true });

const COOKIE = '__Host-authfetch_rt';
const ACCESS_TTL = 15 * 60;
const REFRESH_TTL = 30 * 24 * 3600;
const ISSUER = 'node-ref';

const db = new Database(path.join(dataDir, 'node-ref.db'));
db.pragma('journal_mode = WAL');
db.pragma('synchronous = NORMAL');
db.exec(`
  CREATE TABLE IF NOT EXISTS users (name TEXT PRIMARY KEY, salt BLOB NOT NULL, hash BLOB NOT NULL);
  CREATE TABLE IF NOT EXISTS refresh_tokens (
    hash TEXT PRIMARY KEY, family TEXT NOT NULL, username TEXT NOT NULL,
    expires_at INTEGER NOT NULL, used INTEGER NOT NULL DEFAULT 0);
  CREATE INDEX IF NOT EXISTS refresh_family ON refresh_tokens(family);
`);
const qUser = db.prepare('SELECT salt, hash FROM users WHERE name = ?');
const qAddUser = db.prepare('INSERT OR REPLACE INTO users (name, salt, hash) VALUES (?, ?, ?)');
const qGet = db.prepare('SELECT family, username, expires_at, used FROM refresh_tokens WHERE hash = ?');
const qUse = db.prepare('UPDATE refresh_tokens SET used = 1 WHERE hash = ? AND used = 0');
const qIns = db.prepare('INSERT INTO refresh_tokens (hash, family, username, expires_at) VALUES (?, ?, ?, ?)');
const qRevoke = db.prepare('DELETE FROM refresh_tokens WHERE family = ?');

async function hashPw(pw, salt) { return scrypt(pw, salt, 32); }
for (const [u, p] of [['alice', 'alice-password'], ['bob', 'bob-password']]) {
  const salt = crypto.randomBytes(16);
  qAddUser.run(u, salt, await hashPw(p, salt));
}

const { privateKey, publicKey } = await generateKeyPair('ES256');
const sha = (s) => crypto.createHash('sha256').update(s).digest('base64url');
const now = () => Math.floor(Date.now() / 1000);

function issueAccess(sub) {
  return new SignJWT({}).setProtectedHeader({ alg: 'ES256', typ: 'at+jwt' })
    .setSubject(sub).setIssuer(ISSUER).setIssuedAt().setExpirationTime(now() + ACCESS_TTL)
    .setJti(crypto.randomUUID()).sign(privateKey);
}

// Rotation in one transaction: mark the presented token used, store its successor.
const rotate = db.transaction((oldHash) => {
  const row = qGet.get(oldHash);
  if (!row || row.expires_at < now()) return { err: 'invalid_grant' };
  if (row.used || qUse.run(oldHash).changes !== 1) { qRevoke.run(row.family); return { err: 'invalid_grant' }; }
  const next = crypto.randomBytes(32).toString('base64url');
  qIns.run(sha(next), row.family, row.username, now() + REFRESH_TTL);
  return { next, username: row.username };
});

function cookieHeader(v) {
  return `${COOKIE}=${v}; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=${REFRESH_TTL}`;
}
function readCookie(req) {
  const c = req.headers.cookie || '';
  for (const part of c.split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === COOKIE) return v.join('=');
  }
  return null;
}
function send(res, status, body, extra = {}) {
  const s = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store',
    'content-length': Buffer.byteLength(s), ...extra });
  res.end(s);
}
const err = (res, status, code) => send(res, status, { error: code, error_description: code });
function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = []; let n = 0;
    req.on('data', (c) => { n += c.length; if (n > 4096) reject(new Error('too large')); else chunks.push(c); });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

const server = http.createServer(async (req, res) => {
  try {
    const url = req.url;
    if (req.method === 'POST' && url === '/auth/refresh') {
      if (req.headers['x-authfetch'] !== '1') return err(res, 400, 'invalid_request');
      req.resume();
      const rt = readCookie(req);
      if (!rt) return err(res, 401, 'invalid_grant');
      const r = rotate(sha(rt));
      if (r.err) return err(res, 401, r.err);
      const access = await issueAccess(r.username);
      return send(res, 200, { access_token: access, token_type: 'Bearer', expires_in: ACCESS_TTL },
        { 'set-cookie': cookieHeader(r.next) });
    }
    if (req.method === 'GET' && url === '/api/me') {
      const h = req.headers.authorization || '';
      if (!h.startsWith('Bearer ')) return err(res, 401, 'invalid_token');
      try {
        const { payload } = await jwtVerify(h.slice(7), publicKey, { issuer: ISSUER, typ: 'at+jwt', algorithms: ['ES256'] });
        return send(res, 200, { sub: payload.sub });
      } catch { return err(res, 401, 'invalid_token'); }
    }
    if (req.method === 'POST' && url === '/auth/login') {
      if (req.headers['x-authfetch'] !== '1') return err(res, 400, 'invalid_request');
      const { username, password } = JSON.parse(await readBody(req));
      const u = qUser.get(String(username));
      if (!u || !crypto.timingSafeEqual(await hashPw(String(password), u.salt), u.hash)) {
        return err(res, 401, 'invalid_grant');
      }
      const rt = crypto.randomBytes(32).toString('base64url');
      qIns.run(sha(rt), crypto.randomUUID(), u.name ?? String(username), now() + REFRESH_TTL);
      const access = await issueAccess(String(username));
      return send(res, 200, { access_token: access, token_type: 'Bearer', expires_in: ACCESS_TTL },
        { 'set-cookie': cookieHeader(rt) });
    }
    return err(res, 404, 'invalid_request');
  } catch (e) {
    return err(res, 500, 'server_error');
  }
});
server.keepAliveTimeout = 60_000;
server.listen(Number(port), host, () => {
  const a = server.address();
  console.log(`node-ref listening on http://${a.address}:${a.port}`);
});
for (const s of ['SIGINT', 'SIGTERM']) process.on(s, () => { server.close(); db.close(); process.exit(0); });
