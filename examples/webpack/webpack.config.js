import HtmlWebpackPlugin from 'html-webpack-plugin';
import { fileURLToPath } from 'node:url';

export default {
  mode: 'production',
  entry: './src/main.js',
  output: {
    path: fileURLToPath(new URL('dist', import.meta.url)),
    filename: '[name].[contenthash].js',
    // authfetch's .wasm becomes an asset/resource: a file with a hashed name next to the bundle.
    assetModuleFilename: '[name].[contenthash][ext]',
    clean: true,
  },
  // Injects <script defer src="main.….js"> into the page: an external script, allowed by a strict CSP.
  plugins: [new HtmlWebpackPlugin({ template: 'index.html' })],
  performance: { hints: false },
};
