import { defineConfig } from 'vite';

export default defineConfig({
  // The dev server's dependency pre-bundling would move the package's JS away from its .wasm
  // file; excluding it keeps `new URL('…_bg.wasm', import.meta.url)` pointing at the real file.
  optimizeDeps: { exclude: ['authfetch'] },
  build: { target: 'es2022' },
});
