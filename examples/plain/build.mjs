// "Build" for a page without a bundler: copy the page and the installed package into dist/.
// The package is plain ES modules plus a .wasm file located relative to its own URL, so any
// static file server can serve it as it is.
import { cpSync, mkdirSync, realpathSync, rmSync } from 'node:fs';

rmSync('dist', { recursive: true, force: true });
mkdirSync('dist/vendor', { recursive: true });
cpSync('index.html', 'dist/index.html');
cpSync('app.js', 'dist/app.js');
cpSync(realpathSync('node_modules/authfetch'), 'dist/vendor/authfetch', { recursive: true, dereference: true });
console.log('built dist/ (page + vendor/authfetch/)');
