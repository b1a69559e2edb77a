import { defineConfig } from 'vite';

// In development, the dev server forwards the auth and API routes to your authfetch-server, so
// that the page, the refresh cookie and the API share one origin (start the server with
// --allowed-origin http://localhost:5173, the dev server's origin).
const server = process.env.AUTHFETCH_SERVER || 'http://127.0.0.1:8080';

export default defineConfig({
  // The dev server's dependency pre-bundling would move the package's JS away from its .wasm
  // file; excluding it keeps `new URL('…_bg.wasm', import.meta.url)` pointing at the real file.
  optimizeDeps: { exclude: ['authfetch'] },
  // No server.fs.allow: an installed package is a copy inside node_modules, which Vite serves.
  server: { proxy: { '/auth': server, '/api': server } },
  build: { target: 'es2022' },
});
