// End-to-end tests: the real authfetch-server on a free loopback port, driven through Debian's
// Chromium (/usr/bin/chromium). Playwright never downloads a browser here.
import { defineConfig } from '@playwright/test';

export const CHROMIUM_ARGS = [
  // Chromium's own background connections are refused by this machine's closed network;
  // without these flags it retries them many at a time.
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export default defineConfig({
  testDir: 'tests/e2e',
  testMatch: /.*\.spec\.mjs$/,
  outputDir: 'test-results',
  // Two cores: one worker keeps the concurrency tests honest (no second worker stealing the CPU
  // the 100-call bursts need) and the run deterministic.
  workers: 1,
  fullyParallel: false,
  forbidOnly: !!process.env.CI,
  retries: 0,
  timeout: 60_000,
  expect: { timeout: 10_000 },
  reporter: [['list']],
  use: {
    browserName: 'chromium',
    headless: true,
    launchOptions: {
      executablePath: process.env.AUTHFETCH_CHROMIUM || '/usr/bin/chromium',
      args: CHROMIUM_ARGS,
    },
    trace: 'off',
    screenshot: 'only-on-failure',
  },
});
