// Server-side rendering imports the same modules as the browser. Importing authfetch in Node must
// not crash and must not touch the network: the module loads its WebAssembly lazily, on first use
// in a browser. (Run with `npm start`, which preloads no-network.mjs to prove it.)
import * as authfetch from 'authfetch';

const exported = Object.keys(authfetch).sort();
const report = {
  node: process.version,
  exports: exported,
  functions: exported.filter((k) => typeof authfetch[k] === 'function'),
  networkAttempts: globalThis.__networkAttempts ?? null,
};
console.log(JSON.stringify(report));
