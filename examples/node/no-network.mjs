// Preloaded with `node --import`: any network access during the import of authfetch is recorded
// and fails the run. (fetch, and the sockets under http/https/net/tls.)
import net from 'node:net';
import tls from 'node:tls';
import http from 'node:http';
import https from 'node:https';
import dns from 'node:dns';

globalThis.__networkAttempts = [];
const trap = (what, original) => function trapped(...args) {
  globalThis.__networkAttempts.push(what);
  if (original) throw new Error(`network access during import: ${what}`);
  return undefined;
};
globalThis.fetch = trap('fetch', true);
net.connect = net.createConnection = trap('net.connect', true);
net.Socket.prototype.connect = trap('net.Socket.connect', true);
tls.connect = trap('tls.connect', true);
http.request = http.get = trap('http.request', true);
https.request = https.get = trap('https.request', true);
dns.lookup = trap('dns.lookup', true);
