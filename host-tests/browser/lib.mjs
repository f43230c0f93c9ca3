// Shared launch helper for tally's browser tests and benchmarks: Debian's Chromium,
// headless, driven by playwright-core (never a downloaded browser).
import { chromium } from 'playwright-core';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

/** Launches Chromium with a fresh profile; returns { context, page, requests, consoleLines, userDataDir }.
 *  `requests` collects every URL the page asked for, for the offline/privacy check. */
export async function launch({ downloads = false } = {}) {
  const userDataDir = mkdtempSync(join(tmpdir(), 'tally-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: CHROMIUM_ARGS,
    acceptDownloads: downloads,
    viewport: { width: 1366, height: 900 },
  });
  const page = context.pages()[0] ?? await context.newPage();
  const requests = [];
  context.on('request', (r) => requests.push(r.url()));
  const consoleLines = [];
  page.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => consoleLines.push(`pageerror: ${e.message}`));
  return { context, page, requests, consoleLines, userDataDir };
}

/** Fails the script with a message (exit code 1) after printing what the page logged. */
export function fail(message, consoleLines = []) {
  console.error(`FAIL: ${message}`);
  for (const line of consoleLines) console.error(`  page ${line}`);
  process.exit(1);
}
