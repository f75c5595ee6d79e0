/**
 * The console end to end, on each edge: the real callbridge (ADMIN_TOKEN and a
 * read-only CONSOLE_TOKENS viewer, RECORDING=on, signed Twilio webhooks), the
 * model stand-in scripting a call with a long reply and a check_eligibility
 * tool call, a simulated caller through the real relay, and the page in
 * Debian's Chromium at http://127.0.0.1:<port>/console.
 *
 * What it holds the real server to:
 * - without a session: only the sign-in form; every /console/api/ route is
 *   401; a cross-site sign-in is 403; the page carries the CSP and its HTML
 *   has no inline script and no style attribute;
 * - a wrong token is refused on the page; admin signs in; a call appears in
 *   the live table while it runs and leaves when it ends; its page shows the
 *   transcript, the tool call, the latency split and a player on a blob: URL;
 *   the list filters; sign-out brings the form back and kills the cookie;
 * - a read viewer (its own browser context, signed in throughout) never gets
 *   the caller's full number: not in the page's HTML, not in the JSON of the
 *   list, the call or the live stream; admin does get it;
 * - sign-in is limited per client address: 5 attempts, then 429.
 * Any page error, unexpected console error or CSP violation fails the test.
 * Screenshots: test-artifacts/console-live-<edge>.png, console-call-<edge>.png.
 * Without /usr/bin/chromium the file is skipped, saying why, unless
 * CALLBRIDGE_REQUIRE_CHROMIUM=1 (CI), where that is a failure.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BrowserContext, Page } from 'puppeteer-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CallListView, CallView, LiveView, Me, StatsView } from '../src/console/api.js';
import { SECURITY_HEADERS, SIGN_IN_BURST } from '../src/console/routes.js';
import { availableEdges } from '../src/server/app.js';
import { placeCall, type CallResult } from '../src/sim/caller.js';
import type { Scenario } from '../src/sim/scenarios.js';
import { chromiumStatus, launchChromium, type LaunchedChromium } from './helpers/chromium.js';
import { useCallbridge } from './helpers/e2e.js';
import { until } from './helpers/until.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const ARTIFACTS = join(ROOT, 'test-artifacts');

const AUTH = 'console-e2e-twilio-auth-token';
const PUBLIC = 'https://console.e2e.invalid';
const RECORDING_KEY = '3c'.repeat(32);
const ADMIN = 'console-e2e-admin-token-0123456789';
const VIEWER = 'console-e2e-viewer-token-0123456789';
/** The caller's number, and how a read viewer sees it (mask.ts). */
const FROM = '+15550104242';
const FROM_MASKED = '+1 555 ••• ••42';
const TO = '+15550100999';
const API_ROUTES = ['me', 'live', 'stats', 'calls', 'calls/:sid', 'calls/:sid/recording'] as const;

const SCENARIO: Scenario = {
  greeting: 'Thanks for calling. How can I help?',
  turns: [
    {
      callerTranscript: 'I would like to know what my plan covers.',
      reply: 'Of course. Your plan covers visits to your doctor, hospital stays, prescriptions and most tests, and I can check the details for you once I have your member ID and date of birth.',
    },
    {
      callerTranscript: 'It is M B 1 2 3 4 5 6, born March fifth, 1980.',
      tool: {
        name: 'check_eligibility',
        arguments: { member_id: 'M B 1 2 3 4 5 6', date_of_birth: 'March fifth, 1980' },
        reply: (output) => {
          const o = JSON.parse(output) as { status?: string; plan?: string; error?: string };
          return o.error ? `Sorry, ${o.error}.` : `You are ${o.status ?? 'checked'}${o.plan ? ` on the ${o.plan} plan` : ''}.`;
        },
      },
    },
    { callerTranscript: "That's all, thanks.", reply: 'Goodbye!' },
  ],
};

const callbridge = useCallbridge('console-e2e');

function env(recordingDir: string): Record<string, string> {
  return {
    PUBLIC_URL: PUBLIC,
    TWILIO_AUTH_TOKEN: AUTH,
    ADMIN_TOKEN: ADMIN,
    CONSOLE_TOKENS: `viewer:read:${VIEWER}`,
    RECORDING: 'on',
    RECORDING_KEY,
    RECORDING_DIR: recordingDir,
  };
}

/** The page's listeners: page errors, CSP violations and console errors fail the test; `problems` collects them. */
async function watch(page: Page, problems: string[], who: string): Promise<void> {
  await page.setViewport({ width: 1200, height: 900 });
  await page.exposeFunction('__cspViolation', (what: string) => problems.push(`${who}: CSP violation: ${what}`));
  await page.evaluateOnNewDocument(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      (window as unknown as { __cspViolation(s: string): void }).__cspViolation(`${e.violatedDirective} ${e.blockedURI}`);
    });
  });
  page.on('pageerror', (err) => problems.push(`${who}: page error: ${err instanceof Error ? err.message : String(err)}`));
  page.on('console', (msg) => {
    const text = msg.text();
    const at = msg.location().url ?? '';
    // The 401s the flow asks for (no session yet, a wrong token) are the browser's network log, not the page's.
    const expected401 = /status of 401/.test(text) && /\/console\/api\/(me|session)$/.test(at);
    if ((msg.type() === 'error' || msg.type() === 'warn') && !expected401) problems.push(`${who}: console ${msg.type()}: ${text} (${at})`);
    if (msg.type() === 'log' || msg.type() === 'info' || msg.type() === 'debug') problems.push(`${who}: the page wrote to the console: ${text}`);
  });
}

/** Signs in through the page's form (the page is on the sign-in form). */
async function signInOnPage(page: Page, token: string): Promise<void> {
  await page.waitForSelector('form.signin input#token');
  await page.$eval('#token', (el) => { (el as HTMLInputElement).value = ''; });
  await page.type('#token', token);
  await page.click('form.signin button[type=submit]');
}

/** `cb_console=<value>` of a browser context, for the test's own fetches. */
async function sessionCookie(context: BrowserContext): Promise<string> {
  const c = (await context.cookies()).find((k) => k.name === 'cb_console');
  if (!c) throw new Error('no cb_console cookie in the browser context');
  return `cb_console=${c.value}`;
}

/** Reads an SSE answer until stopped: every byte of it as text. */
function readStream(url: string, cookie: string): { text: () => string; events: () => LiveView[]; stop: () => Promise<void>; opened: Promise<number>; ended: () => boolean } {
  const aborter = new AbortController();
  let buf = '';
  let ended = false;
  let statusOf: (n: number) => void = () => {};
  const opened = new Promise<number>((r) => (statusOf = r));
  const done = (async () => {
    try {
      const res = await fetch(url, { headers: { cookie, accept: 'text/event-stream' }, signal: aborter.signal });
      statusOf(res.status);
      const decoder = new TextDecoder();
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) buf += decoder.decode(chunk, { stream: true });
    } catch (err) {
      if (!aborter.signal.aborted) throw err;
    } finally {
      ended = true;
    }
  })();
  return {
    opened,
    ended: () => ended,
    text: () => buf,
    events: () => [...buf.matchAll(/^event: live\ndata: (.*)$/gm)].map((m) => JSON.parse(m[1]!) as LiveView),
    async stop() {
      aborter.abort();
      await done;
    },
  };
}

const status = chromiumStatus();
if (!status.available && !status.required) console.warn(`console e2e browser test skipped: ${status.reason}; set CALLBRIDGE_REQUIRE_CHROMIUM=1 to make this a failure`);

describe('the console end to end in Chromium', () => {
  it.runIf(status.required && !status.available)('has Debian\'s chromium (CALLBRIDGE_REQUIRE_CHROMIUM=1)', () => {
    expect.fail(status.reason);
  });

  describe.runIf(status.available).each(availableEdges())('against the real callbridge (%s edge)', (edge) => {
    let chromium: LaunchedChromium;

    beforeAll(async () => {
      chromium = await launchChromium();
      mkdirSync(ARTIFACTS, { recursive: true });
    }, 60_000);

    afterAll(async () => {
      await chromium?.close();
    });

    it('sign-in, a live call, its page with the recording, filters, sign-out, and a viewer who never sees the full number', async () => {
      const recordingDir = mkdtempSync(join(tmpdir(), 'callbridge-console-rec-'));
      const { app, baseUrl } = await callbridge({ edge, model: { scenario: SCENARIO }, env: env(recordingDir) });
      expect(app.server.edge.kind).toBe(edge);
      const consoleUrl = `${baseUrl}/console`;
      const api = (route: string) => `${baseUrl}/console/api/${route}`;
      const callSid = `CA${randomBytes(16).toString('hex')}`;
      const problems: string[] = [];
      const contexts: BrowserContext[] = [];
      const streams: { stop: () => Promise<void> }[] = [];
      try {
        // ── without a session ──────────────────────────────────────────────
        const routeUrl = (r: (typeof API_ROUTES)[number]) => api(r.replace(':sid', callSid));
        for (const r of API_ROUTES) {
          const res = await fetch(routeUrl(r));
          await res.arrayBuffer();
          expect(res.status, `GET /console/api/${r} without a cookie`).toBe(401);
        }
        const crossSite = await fetch(api('session'), {
          method: 'POST',
          headers: { 'content-type': 'application/json', origin: 'https://evil.example', 'sec-fetch-site': 'cross-site' },
          body: JSON.stringify({ token: ADMIN }),
        });
        expect(crossSite.status).toBe(403);
        expect(crossSite.headers.get('set-cookie')).toBeNull();
        await crossSite.arrayBuffer();

        const served = await fetch(consoleUrl);
        expect(served.status).toBe(200);
        expect(served.headers.get('content-security-policy')).toBe(SECURITY_HEADERS['content-security-policy']);
        const html = await served.text();
        const scripts = [...html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/gi)];
        expect(scripts.length).toBeGreaterThan(0);
        for (const [, attrs, body] of scripts) {
          expect(attrs, 'every <script> has a src').toMatch(/\bsrc\s*=/i);
          expect(body!.trim(), 'no inline script').toBe('');
        }
        expect(html).not.toMatch(/\sstyle\s*=/i);
        expect(html).not.toMatch(/\son[a-z]+\s*=/i); // no inline handlers either

        const admin = await chromium.browser.createBrowserContext();
        contexts.push(admin);
        const page = await admin.newPage();
        await watch(page, problems, 'admin page');
        const answer = await page.goto(consoleUrl, { waitUntil: 'load' });
        expect(answer?.status()).toBe(200);
        expect(answer?.headers()['content-security-policy']).toBe(SECURITY_HEADERS['content-security-policy']);
        await page.waitForSelector('form.signin input#token');
        expect(await page.$eval('header#top', (el) => (el as HTMLElement).hidden)).toBe(true);
        expect(await page.$$eval('main > *', (els) => els.map((e) => e.tagName.toLowerCase() + '.' + e.className))).toEqual(['form.signin']);
        expect(await page.$('table')).toBeNull();

        // ── a wrong token, then admin ──────────────────────────────────────
        await signInOnPage(page, 'not-the-admin-token-at-all');
        await page.waitForFunction(() => document.querySelector('#signin-error')?.textContent === 'Wrong token.');
        expect(await page.$('header#top .user')).toBeNull();
        await signInOnPage(page, ADMIN);
        await page.waitForSelector('header#top .user');
        expect(await page.$eval('header#top', (el) => el.textContent)).toContain('admin');
        await page.waitForSelector('table.live-calls');
        const adminCookie = await sessionCookie(admin);

        // ── the viewer, in its own context, signed in throughout ──────────
        const viewer = await chromium.browser.createBrowserContext();
        contexts.push(viewer);
        const vpage = await viewer.newPage();
        await watch(vpage, problems, 'viewer page');
        await vpage.goto(consoleUrl, { waitUntil: 'load' });
        await signInOnPage(vpage, VIEWER);
        await vpage.waitForSelector('header#top .role-read');
        await vpage.waitForSelector('table.live-calls');
        const viewerCookie = await sessionCookie(viewer);
        const viewerMe = (await (await fetch(api('me'), { headers: { cookie: viewerCookie } })).json()) as Me;
        expect(viewerMe).toMatchObject({ user: 'viewer', role: 'read' });
        const viewerLive = readStream(api('live'), viewerCookie);
        streams.push(viewerLive);
        expect(await viewerLive.opened).toBe(200);

        // ── a call while the live view is open ─────────────────────────────
        let ended = false;
        const call: Promise<CallResult> = placeCall({
          baseUrl,
          publicUrl: PUBLIC,
          authToken: AUTH,
          callSid,
          from: FROM,
          to: TO,
          utterances: [{ durationMs: 900 }, { durationMs: 900 }, { durationMs: 800 }],
          hangupAfterMs: 800,
        }).finally(() => void (ended = true));
        const row = `tr[data-call="${callSid}"]`;
        await page.waitForSelector(row, { timeout: 15_000 });
        await vpage.waitForSelector(row, { timeout: 5_000 });
        expect(ended, 'the call was still running when the live table showed it').toBe(false);
        const adminRow = await page.$eval(row, (el) => el.textContent ?? '');
        expect(adminRow).toContain(callSid);
        expect(adminRow).toContain(FROM);
        await page.screenshot({ path: join(ARTIFACTS, `console-live-${edge}.png`), fullPage: true });
        const viewerRow = await vpage.$eval(row, (el) => el.textContent ?? '');
        expect(viewerRow).toContain(FROM_MASKED);
        expect(viewerRow).not.toContain(FROM);
        expect(await vpage.content()).not.toContain(FROM);
        const statsLive = (await (await fetch(api('stats'), { headers: { cookie: adminCookie } })).json()) as StatsView;
        expect(statsLive.inProgress, 'the hour\'s figures count the call in progress').toBe(1);

        const result = await call;
        expect(result.callSid).toBe(callSid);
        expect(result.protocolViolations).toEqual([]);
        await page.waitForSelector(row, { hidden: true, timeout: 10_000 });
        await vpage.waitForSelector(row, { hidden: true, timeout: 10_000 });
        await viewerLive.stop();
        const seenLive = viewerLive.events().flatMap((v) => v.calls).filter((c) => c.callSid === callSid);
        expect(seenLive.length, 'the viewer\'s live stream showed the call').toBeGreaterThan(0);
        for (const c of seenLive) expect(c.from).toBe(FROM_MASKED);
        expect(viewerLive.text()).not.toContain(FROM);

        // ── the call's page, from the list ────────────────────────────────
        await until(async () => (await app.store.get(callSid))?.recording != null, { what: 'the recording outcome in the record', timeoutMs: 10_000 });
        await app.store.flush();
        const record = (await app.store.get(callSid))!;
        expect(record.recording).toMatchObject({ status: 'complete' });
        expect(record.toolCalls.map((t) => t.name)).toContain('check_eligibility');
        expect(record.turnLatencies.length).toBeGreaterThan(0);
        const statsAfter = (await (await fetch(api('stats'), { headers: { cookie: adminCookie } })).json()) as StatsView;
        expect(statsAfter.inProgress).toBe(0);
        expect(statsAfter.buckets.reduce((n, b) => n + b.started, 0), 'the hour\'s figures count the call').toBe(1);
        expect(statsAfter.buckets.reduce((n, b) => n + b.ended, 0)).toBe(1);

        await page.click('header#top a[href="#/calls"]');
        const link = `table.calls tbody a[href="#/calls/${callSid}"]`;
        await page.waitForSelector(link);
        await page.click(link);
        await page.waitForSelector('ol.transcript li');
        expect(await page.$eval('main h1', (el) => el.textContent)).toContain(callSid);
        const lines = await page.$$eval('ol.transcript li .words', (els) => els.map((e) => e.textContent ?? ''));
        expect(lines).toEqual(record.transcript.map((t) => t.text));
        expect(lines.join(' ')).toContain('Your plan covers visits');
        expect(lines.join(' ')).toMatch(/You are eligible/);
        const tools = await page.$eval('table.tools', (el) => el.textContent ?? '');
        expect(tools).toContain('check_eligibility');
        expect(tools).toContain('M B 1 2 3 4 5 6');
        // The latency split: one bar per measured turn, split into its parts where the record has them.
        const turns = await page.$$eval('ol.latency li', (els) => els.map((li) => [...li.querySelectorAll('.seg')].map((s) => s.className.replace('seg ', ''))));
        expect(turns).toHaveLength(record.turnLatencies.length);
        const withParts = record.turnLatencies.filter((t) => t.parts).length;
        expect(withParts, 'the real relay records the parts of a turn').toBeGreaterThan(0);
        expect(turns.filter((segs) => segs.includes('p-vad') && segs.includes('p-heard')).length).toBe(withParts);
        // The player: an <audio> on a blob: URL once the WAV is fetched and decoded.
        await page.waitForSelector('.player:not([hidden])', { timeout: 10_000 });
        expect(await page.$eval('.player audio', (el) => (el as HTMLAudioElement).src)).toMatch(/^blob:/);
        await page.screenshot({ path: join(ARTIFACTS, `console-call-${edge}.png`), fullPage: true });

        // ── filters ────────────────────────────────────────────────────────
        await page.click('main a[href="#/calls"]');
        await page.waitForSelector(link);
        const rows = () => page.$$eval('table.calls tbody a', (els) => els.map((a) => a.textContent));
        expect(await rows()).toEqual([callSid]);
        await page.type('#f-agent', 'no-such-agent');
        await page.click('form.filters button[type=submit]');
        await page.waitForFunction(() => document.querySelector('table.calls tbody')?.textContent === 'No calls match.');
        expect(await rows()).toEqual([]);
        expect(await page.evaluate(() => location.hash)).toBe('#/calls?agent=no-such-agent');
        await page.$eval('#f-agent', (el) => { (el as HTMLInputElement).value = ''; });
        await page.type('#f-endReason', record.endReason!);
        await page.click('form.filters button[type=submit]');
        await page.waitForSelector(link);
        expect(await rows()).toEqual([callSid]);
        await page.$eval('#f-endReason', (el) => { (el as HTMLInputElement).value = ''; });
        await page.type('#f-tool', 'check_eligibility');
        await page.click('form.filters button[type=submit]');
        await page.waitForFunction(() => location.hash === '#/calls?tool=check_eligibility');
        await page.waitForSelector(link);

        // ── admin sees the number; the viewer never does ───────────────────
        const adminCall = await (await fetch(api(`calls/${callSid}`), { headers: { cookie: adminCookie } })).text();
        expect((JSON.parse(adminCall) as CallView).call.from).toBe(FROM);
        const viewerList = await (await fetch(api('calls'), { headers: { cookie: viewerCookie } })).text();
        expect((JSON.parse(viewerList) as CallListView).calls.map((c) => [c.callSid, c.from])).toEqual([[callSid, FROM_MASKED]]);
        expect(viewerList).not.toContain(FROM);
        const viewerCall = await (await fetch(api(`calls/${callSid}`), { headers: { cookie: viewerCookie } })).text();
        expect((JSON.parse(viewerCall) as CallView).call.from).toBe(FROM_MASKED);
        expect(viewerCall).not.toContain(FROM);
        expect(viewerCall).not.toContain(TO);
        expect(viewerList).not.toContain(TO);
        await vpage.click('header#top a[href="#/calls"]');
        await vpage.waitForSelector(link);
        expect(await vpage.$eval('table.calls tbody', (el) => el.textContent)).toContain(FROM_MASKED);
        expect(await vpage.content()).not.toContain(FROM);
        await vpage.click(link);
        await vpage.waitForSelector('ol.transcript li');
        await vpage.waitForSelector('.player:not([hidden])', { timeout: 10_000 });
        expect(await vpage.$eval('main', (el) => el.textContent)).toContain(FROM_MASKED);
        expect(await vpage.content()).not.toContain(FROM);

        // ── sign out ───────────────────────────────────────────────────────
        const adminLive = readStream(api('live'), adminCookie);
        streams.push(adminLive);
        expect(await adminLive.opened).toBe(200);
        await until(() => adminLive.events().length > 0, { what: 'the admin\'s live stream' });
        expect(adminLive.ended()).toBe(false);
        await page.click('header#top button.signout');
        await page.waitForSelector('form.signin input#token');
        expect(await page.$('header#top .user')).toBeNull();
        expect(await page.$('table')).toBeNull();
        const after = await fetch(api('me'), { headers: { cookie: adminCookie } });
        expect(after.status).toBe(401);
        await after.arrayBuffer();
        // A stream opened with the signed-out session ends (routes.ts: on sign-out here).
        await until(() => adminLive.ended(), { what: 'the signed-out session\'s live stream to end', timeoutMs: 5000 });
        await page.reload({ waitUntil: 'load' });
        await page.waitForSelector('form.signin input#token');
        // The viewer's session is its own: still signed in.
        expect((await fetch(api('me'), { headers: { cookie: viewerCookie } })).status).toBe(200);

        // Every route is 401 without a cookie, now with a call and a recording behind them too.
        for (const r of API_ROUTES) {
          const res = await fetch(routeUrl(r));
          await res.arrayBuffer();
          expect(res.status, `GET /console/api/${r} without a cookie`).toBe(401);
        }
        expect(problems, problems.join('\n')).toEqual([]);
      } finally {
        for (const s of streams) await s.stop().catch(() => {});
        for (const c of contexts) await c.close().catch(() => {});
      }
    }, 120_000);

    // A second callbridge: its limiter has seen no attempt, so the count is exact. On the first one the browser
    // has already signed in (wrong token, admin, viewer), and the bucket refills one attempt every 12 s over
    // the call, so "5 then 429" would depend on how long the call took; and limiting there could block the
    // page's own sign-in.
    it(`sign-in is limited per client address: ${SIGN_IN_BURST} attempts, then 429 with Retry-After`, async () => {
      const recordingDir = mkdtempSync(join(tmpdir(), 'callbridge-console-rec-'));
      const { baseUrl } = await callbridge({ edge, env: env(recordingDir) });
      const signIn = async (token: string) => {
        const res = await fetch(`${baseUrl}/console/api/session`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', origin: baseUrl, 'sec-fetch-site': 'same-origin' },
          body: JSON.stringify({ token }),
        });
        await res.arrayBuffer();
        return res;
      };
      for (let i = 0; i < SIGN_IN_BURST; i++) expect((await signIn(`wrong-token-${i}-0123456789`)).status).toBe(401);
      const limited = await signIn('wrong-token-again-0123456789');
      expect(limited.status).toBe(429);
      expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0);
      // Every attempt counts: the right token waits too.
      const right = await signIn(ADMIN);
      expect(right.status).toBe(429);
      expect(right.headers.get('set-cookie')).toBeNull();
    });
  });
});
