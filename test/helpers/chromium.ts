/**
 * Debian's Chromium (/usr/bin/chromium) for browser tests, driven with
 * puppeteer-core: never a downloaded browser. chromiumStatus() says whether
 * it is there and whether its absence is a failure (CALLBRIDGE_REQUIRE_CHROMIUM=1,
 * CI) or a reason to skip; launchChromium() starts a headless instance on a
 * fresh, temporary profile that close() removes.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import puppeteer, { type Browser } from 'puppeteer-core';

export const CHROMIUM_PATH = '/usr/bin/chromium';

export interface ChromiumStatus {
  available: boolean;
  /** CALLBRIDGE_REQUIRE_CHROMIUM=1: a missing browser fails instead of skipping. */
  required: boolean;
  /** Why it cannot run, in a sentence (empty when available). */
  reason: string;
}

export function chromiumStatus(): ChromiumStatus {
  const available = existsSync(CHROMIUM_PATH);
  return {
    available,
    required: process.env.CALLBRIDGE_REQUIRE_CHROMIUM === '1',
    reason: available ? '' : `${CHROMIUM_PATH} is missing: install Debian's chromium (apt-get install -y chromium)`,
  };
}

export interface LaunchedChromium {
  browser: Browser;
  close(): Promise<void>;
}

export async function launchChromium(): Promise<LaunchedChromium> {
  const profile = mkdtempSync(join(tmpdir(), 'callbridge-chromium-'));
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM_PATH,
    headless: true,
    userDataDir: profile,
    args: [
      '--headless=new',
      '--no-sandbox',
      '--disable-gpu',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  return {
    browser,
    async close() {
      try {
        await browser.close();
      } finally {
        rmSync(profile, { recursive: true, force: true });
      }
    },
  };
}
