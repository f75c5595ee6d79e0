/**
 * The console page (src/console/web/) in Debian's Chromium, against a fake of
 * the console API (src/console/api.ts) served the way the real server serves
 * the page: index.html at /console/ with its `./` URLs rewritten to
 * /console/assets/<hash>/, uPlot from node_modules/uplot/dist, and the
 * console's CSP on every answer. The fake keeps a session cookie, checks the
 * CSRF header and same-origin on state changes, pushes the live view over SSE
 * (a call appears, then leaves), records each list query, and serves a small
 * PCM16 stereo WAV as one call's recording.
 * Any console error the page causes, any uncaught error and any CSP violation
 * fails the test (the 401s the sign-in flow asks for are the only exceptions).
 * Screenshots of the live view and a call (light and dark) go to test-artifacts/.
 * Without /usr/bin/chromium the file is skipped, saying why, unless
 * CALLBRIDGE_REQUIRE_CHROMIUM=1 (CI), where that is a failure.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { dirname, extname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import type { Page } from 'puppeteer-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { CallListView, CallSummaryView, CallView, LiveCallView, LiveView, Me, StatsView } from '../src/console/api.js';
import { chromiumStatus, launchChromium, type LaunchedChromium } from './helpers/chromium.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const WEB = join(ROOT, 'src/console/web');
const ARTIFACTS = join(ROOT, 'test-artifacts');
const UPLOT_DIST = dirname(createRequire(import.meta.url).resolve('uplot'));
const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self' blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";
const WEIGHT_LIMIT_BYTES = 150 * 1024;

const TOKEN = 'console-test-token';
const ME: Me = { user: 'admin', role: 'admin', csrf: 'csrf-' + randomBytes(8).toString('hex'), expiresAt: new Date(Date.now() + 8 * 3600_000).toISOString() };
const RECORDED = 'CA11111111111111111111111111111111';
const UNRECORDED = 'CA22222222222222222222222222222222';
const LIVE_SID = 'CA33333333333333333333333333333333';
const RECORDING_MS = 4000;

// ── the files the server serves ─────────────────────────────────────────
function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? walk(p) : [p];
  });
}
const files = new Map<string, Buffer>();
for (const p of walk(WEB)) files.set(relative(WEB, p).split('\\').join('/'), readFileSync(p));
files.set('vendor/uPlot.esm.js', readFileSync(join(UPLOT_DIST, 'uPlot.esm.js')));
files.set('vendor/uPlot.min.css', readFileSync(join(UPLOT_DIST, 'uPlot.min.css')));
const hash = (() => {
  const h = createHash('sha256');
  for (const [name, body] of [...files].sort(([a], [b]) => a.localeCompare(b))) h.update(name).update(body);
  return h.digest('hex').slice(0, 12);
})();
const ASSETS = `/console/assets/${hash}/`;
const indexHtml = files.get('index.html')!.toString('utf8').replace(/((?:src|href)=")\.\//g, `$1${ASSETS}`);
const TYPES: Record<string, string> = { '.js': 'text/javascript', '.css': 'text/css', '.html': 'text/html; charset=utf-8', '.svg': 'image/svg+xml' };

// ── fixtures ─────────────────────────────────────────────────────────────
function callRecord(callSid: string, recorded: boolean): CallView {
  const startedAt = new Date(Date.now() - 3600_000).toISOString();
  return {
    budgetMs: 1200,
    recording: recorded,
    call: {
      callSid, streamSid: 'MZ1', from: '+15551230023', to: '+15559870000', startedAt, answeredAt: startedAt,
      endedAt: new Date(Date.parse(startedAt) + 6000).toISOString(), durationMs: 6000, status: 'completed', statusEvents: [],
      endReason: 'caller_hung_up', outcome: 'resolved', audioMode: 'pcm16-24k', model: 'gpt-realtime', agent: 'front-desk',
      direction: 'inbound', transfer: null, state: 'ended',
      transcript: [
        { atMs: 200, speaker: 'assistant', text: 'Hello, how can I help?' },
        { atMs: 1500, speaker: 'caller', text: 'I would like to book a table.' },
        { atMs: 2500, speaker: 'assistant', text: 'Sure, for how many', interrupted: true },
        { atMs: 3000, speaker: 'caller', text: 'Four people tonight.' },
        { atMs: 3400, speaker: 'dtmf', text: '4' },
        { atMs: 3600, speaker: 'assistant', text: 'Booked for four at eight.' },
      ],
      toolCalls: [{ callId: 't1', name: 'book_table', args: '{"people":4}', ok: true, output: '{"ok":true}', record: null, startedAtMs: 3100, durationMs: 420 }],
      turnLatencies: [
        { turn: 1, latencyMs: 700, parts: { callerEndMs: 2300, speechStoppedMs: 2450, firstDeltaMs: 2900, firstFrameMs: 3150, heardMs: 3300 } },
        { turn: 2, latencyMs: 1500, parts: { callerEndMs: 3200, speechStoppedMs: 3300, firstDeltaMs: 4500, firstFrameMs: 4800, heardMs: 4950 } },
        { turn: 3, latencyMs: 650 },
      ],
      events: [{ atMs: 2600, type: 'model_reconnected', detail: 'after 1 attempt' }, { atMs: 5900, type: 'hang_up' }],
      relay: { inbound: { p50Ms: 0.4, p99Ms: 1.2 }, outbound: { p50Ms: 0.5, p99Ms: 2.1 } },
      recording: recorded ? { status: 'complete', object: `2026/01/01/${callSid}.cbrec`, storage: 'dir', keyId: 'k1', durationMs: RECORDING_MS, bytes: 64000 } : null,
      protocolErrors: 0,
      usage: { inputTextTokens: 120, inputAudioTokens: 900, inputCachedTokens: 40, outputTextTokens: 80, outputAudioTokens: 1500 },
      estimatedCostUsd: 0.0421,
    },
  };
}
const CALLS = new Map([[RECORDED, callRecord(RECORDED, true)], [UNRECORDED, callRecord(UNRECORDED, false)]]);

function summary(v: CallView): CallSummaryView {
  const c = v.call as Record<string, any>;
  return { callSid: c.callSid, from: c.from, to: c.to, startedAt: c.startedAt, durationMs: c.durationMs, state: c.state, status: c.status,
    outcome: c.outcome, endReason: c.endReason, agent: c.agent, direction: c.direction, estimatedCostUsd: c.estimatedCostUsd };
}

function stats(): StatsView {
  const bucketMs = 300_000;
  const start = Math.floor(Date.now() / bucketMs) * bucketMs - 11 * bucketMs;
  return {
    bucketMs,
    inProgress: 1,
    buckets: Array.from({ length: 12 }, (_, i) => ({
      t: new Date(start + i * bucketMs).toISOString(), started: (i * 3) % 7, ended: (i * 2) % 5, failed: i % 4 === 0 ? 1 : 0,
      turnP50Ms: i === 3 ? null : 600 + i * 10, turnP95Ms: i === 3 ? null : 1100 + i * 25,
    })),
  };
}

/** PCM16 stereo 8 kHz: a 300 Hz tone on the caller's channel, 500 Hz on the heard one, each in turn. */
function wav(ms: number): Buffer {
  const rate = 8000;
  const frames = (rate * ms) / 1000;
  const b = Buffer.alloc(44 + frames * 4);
  b.write('RIFF', 0); b.writeUInt32LE(36 + frames * 4, 4); b.write('WAVE', 8);
  b.write('fmt ', 12); b.writeUInt32LE(16, 16); b.writeUInt16LE(1, 20); b.writeUInt16LE(2, 22);
  b.writeUInt32LE(rate, 24); b.writeUInt32LE(rate * 4, 28); b.writeUInt16LE(4, 32); b.writeUInt16LE(16, 34);
  b.write('data', 36); b.writeUInt32LE(frames * 4, 40);
  for (let i = 0; i < frames; i++) {
    const t = i / rate;
    const callerOn = Math.floor(t * 2) % 2 === 0;
    b.writeInt16LE(callerOn ? Math.round(12000 * Math.sin(2 * Math.PI * 300 * t)) : 0, 44 + i * 4);
    b.writeInt16LE(callerOn ? 0 : Math.round(9000 * Math.sin(2 * Math.PI * 500 * t)), 46 + i * 4);
  }
  return b;
}
const WAV = wav(RECORDING_MS);

// ── the fake console server ──────────────────────────────────────────────
interface Fake {
  server: Server;
  origin: string;
  live: LiveCallView[];
  listQueries: string[];
  signOuts: { csrf: string | undefined }[];
  sessionAttempts: number;
  /** Answer the next sign-in with 429 and this Retry-After (s). */
  rateLimitNext: number | null;
  sse: Set<ServerResponse>;
}

function startFake(): Promise<Fake> {
  const sessions = new Set<string>();
  const fake: Fake = { server: null as unknown as Server, origin: '', live: [], listQueries: [], signOuts: [], sessionAttempts: 0, rateLimitNext: null, sse: new Set() };
  const send = (res: ServerResponse, status: number, body?: unknown, headers: Record<string, string> = {}) => {
    const text = body === undefined ? '' : JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', ...headers });
    res.end(text);
  };
  const session = (req: IncomingMessage) => {
    const m = /(?:^|;\s*)cb_console=([^;]+)/.exec(req.headers.cookie ?? '');
    return m && sessions.has(m[1]) ? m[1] : null;
  };
  const sameOrigin = (req: IncomingMessage) => req.headers.origin === fake.origin || req.headers['sec-fetch-site'] === 'same-origin';
  const liveView = (): LiveView => ({ at: new Date().toISOString(), instance: 'test-1', calls: fake.live, model: { reachable: true, lastError: null } });

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    res.setHeader('content-security-policy', CSP);
    res.setHeader('x-content-type-options', 'nosniff');
    res.setHeader('referrer-policy', 'no-referrer');
    const url = new URL(req.url ?? '/', fake.origin);
    const path = url.pathname;
    if (req.method === 'GET' && (path === '/console' || path === '/console/')) {
      res.writeHead(200, { 'content-type': TYPES['.html'], 'cache-control': 'no-store' });
      res.end(indexHtml);
      return;
    }
    if (req.method === 'GET' && path.startsWith('/console/assets/')) {
      const rest = path.slice('/console/assets/'.length);
      const slash = rest.indexOf('/');
      const file = files.get(rest.slice(slash + 1));
      if (rest.slice(0, slash) !== hash || !file || rest.includes('..')) return send(res, 404, { error: 'not found' });
      res.writeHead(200, { 'content-type': TYPES[extname(path)] ?? 'application/octet-stream', 'cache-control': 'public, max-age=31536000, immutable' });
      res.end(file);
      return;
    }
    if (!path.startsWith('/console/api/')) return send(res, 404, { error: 'not found' });
    const route = path.slice('/console/api'.length);
    if (route === '/session' && req.method === 'POST') {
      if (!sameOrigin(req)) return send(res, 403, { error: 'cross-site' });
      let raw = '';
      for await (const chunk of req) raw += chunk;
      fake.sessionAttempts++;
      if (fake.rateLimitNext !== null) {
        const wait = fake.rateLimitNext;
        fake.rateLimitNext = null;
        return send(res, 429, { error: 'too many attempts' }, { 'retry-after': String(wait) });
      }
      const token = (JSON.parse(raw || '{}') as { token?: string }).token;
      if (token !== TOKEN) return send(res, 401, { error: 'wrong token' });
      const id = randomBytes(16).toString('hex');
      sessions.add(id);
      return send(res, 200, ME, { 'set-cookie': `cb_console=${id}; HttpOnly; Secure; SameSite=Strict; Path=/console` });
    }
    const sid = session(req);
    if (!sid) return send(res, 401, { error: 'sign in' });
    if (req.method === 'DELETE' || req.method === 'POST') {
      const csrf = req.headers['x-console-csrf'] as string | undefined;
      if (route === '/session' && req.method === 'DELETE') fake.signOuts.push({ csrf });
      if (!sameOrigin(req) || csrf !== ME.csrf) return send(res, 403, { error: 'csrf' });
      if (route === '/session') {
        sessions.delete(sid);
        return send(res, 204, undefined, { 'set-cookie': 'cb_console=; Max-Age=0; Path=/console' });
      }
      return send(res, 404, { error: 'not found' });
    }
    if (route === '/me') return send(res, 200, ME);
    if (route === '/stats') return send(res, 200, stats());
    if (route === '/live') {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store' });
      const push = () => res.write(`event: live\ndata: ${JSON.stringify(liveView())}\n\n`);
      push();
      const timer = setInterval(push, 200);
      fake.sse.add(res);
      res.on('close', () => { clearInterval(timer); fake.sse.delete(res); });
      return;
    }
    if (route === '/calls') {
      fake.listQueries.push(url.search);
      const page = Number(url.searchParams.get('page') ?? '1');
      const view: CallListView = { calls: [...CALLS.values()].map(summary), page, limit: 50, hasMore: page < 3 };
      return send(res, 200, view);
    }
    const rec = /^\/calls\/([A-Za-z0-9]+)\/recording$/.exec(route);
    if (rec) {
      if (!CALLS.get(rec[1])?.recording) return send(res, 404, { error: 'no recording' });
      res.writeHead(200, { 'content-type': 'audio/wav', 'content-length': String(WAV.length), 'cache-control': 'no-store' });
      res.end(WAV);
      return;
    }
    const one = /^\/calls\/([A-Za-z0-9]+)$/.exec(route);
    if (one) {
      const v = CALLS.get(one[1]);
      return v ? send(res, 200, v) : send(res, 404, { error: 'no such call' });
    }
    return send(res, 404, { error: 'not found' });
  };

  fake.server = createServer((req, res) => {
    handle(req, res).catch((err) => {
      if (!res.headersSent) send(res, 500, { error: String(err) });
      else res.destroy();
    });
  });
  return new Promise((done) => {
    fake.server.listen(0, '127.0.0.1', () => {
      fake.origin = `http://127.0.0.1:${(fake.server.address() as AddressInfo).port}`;
      done(fake);
    });
  });
}

/** Waits until fn() is true (polling), failing with `what` after timeoutMs. */
async function until(fn: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!fn()) {
    if (Date.now() > end) throw new Error(`timed out waiting: ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

const status = chromiumStatus();
if (!status.available && !status.required) console.warn(`console browser test skipped: ${status.reason}; set CALLBRIDGE_REQUIRE_CHROMIUM=1 to make this a failure`);

describe('console page in Chromium', () => {
  it.runIf(status.required && !status.available)('has Debian\'s chromium (CALLBRIDGE_REQUIRE_CHROMIUM=1)', () => {
    expect.fail(status.reason);
  });

  describe.runIf(status.available)(`against a fake console API`, () => {
    let fake: Fake;
    let chromium: LaunchedChromium;
    let page: Page;
    const problems: string[] = [];

    beforeAll(async () => {
      fake = await startFake();
      chromium = await launchChromium();
      page = await chromium.browser.newPage();
      await page.setViewport({ width: 1200, height: 900 });
      await page.exposeFunction('__cspViolation', (what: string) => problems.push(`CSP violation: ${what}`));
      await page.evaluateOnNewDocument(() => {
        document.addEventListener('securitypolicyviolation', (e) => {
          (window as unknown as { __cspViolation(s: string): void }).__cspViolation(`${e.violatedDirective} ${e.blockedURI}`);
        });
      });
      page.on('pageerror', (err) => problems.push(`page error: ${err instanceof Error ? err.message : String(err)}`));
      page.on('console', (msg) => {
        const text = msg.text();
        const at = msg.location().url ?? '';
        // The 401s the flow itself asks for (no session yet, a wrong token, after sign-out) are the browser's network log, not the page's.
        const expected401 = /status of (401|429)/.test(text) && /\/console\/api\/(me|session)$/.test(at);
        if ((msg.type() === 'error' || msg.type() === 'warn') && !expected401) problems.push(`console ${msg.type()}: ${text} (${at})`);
        if (msg.type() === 'log' || msg.type() === 'info' || msg.type() === 'debug') problems.push(`the page wrote to the console: ${text}`);
      });
      mkdirSync(ARTIFACTS, { recursive: true });
    }, 60_000);

    afterEach(() => {
      const seen = problems.splice(0);
      expect(seen, seen.join('\n')).toEqual([]);
    });

    afterAll(async () => {
      for (const res of fake?.sse ?? []) res.destroy();
      await chromium?.close();
      await new Promise((r) => fake?.server.close(r));
    });

    it('weighs at most 150 KB gzip, every served file', () => {
      let total = 0;
      for (const body of files.values()) total += gzipSync(body, { level: 9 }).length;
      expect(total).toBeGreaterThan(0);
      expect(total).toBeLessThanOrEqual(WEIGHT_LIMIT_BYTES);
    });

    it('refuses a wrong token, then signs in', async () => {
      await page.goto(`${fake.origin}/console/`, { waitUntil: 'load' });
      await page.waitForSelector('form.signin input#token');
      await page.type('#token', 'not-the-token');
      await page.click('form.signin button[type=submit]');
      await page.waitForFunction(() => document.querySelector('#signin-error')?.textContent === 'Wrong token.');
      // Too many attempts: the wait is said, and the button waits with it.
      fake.rateLimitNext = 1;
      await page.click('form.signin button[type=submit]');
      await page.waitForFunction(() => document.querySelector('#signin-error')?.textContent === 'Too many attempts. Try again in 1 s.');
      expect(await page.$eval('form.signin button[type=submit]', (el) => (el as HTMLButtonElement).disabled)).toBe(true);
      await page.waitForFunction(() => !(document.querySelector('form.signin button[type=submit]') as HTMLButtonElement).disabled, { timeout: 5000 });
      await page.$eval('#token', (el) => { (el as HTMLInputElement).value = ''; });
      await page.type('#token', TOKEN);
      await page.click('form.signin button[type=submit]');
      await page.waitForSelector('header#top .user');
      expect(await page.$eval('header#top', (el) => el.textContent)).toContain('admin');
      expect(fake.sessionAttempts).toBe(3);
      // Nothing of the session or a call lands in storage.
      expect(await page.evaluate(() => localStorage.length + sessionStorage.length)).toBe(0);
    });

    it('shows a live call that appears and then leaves, and the hour\'s chart', async () => {
      await page.waitForSelector('table.live-calls');
      const live: LiveCallView = {
        callSid: LIVE_SID, from: '+1 555 ••• ••23', agent: 'front-desk', startedAt: new Date(Date.now() - 65_000).toISOString(), durationMs: 65_000,
        speaking: 'caller', turns: 4, lastTurnMs: 840, model: 'up', audioMode: 'pcm16-24k', instance: 'test-1', local: true,
      };
      fake.live = [live];
      await page.waitForSelector(`tr[data-call="${LIVE_SID}"]`);
      const row = await page.$eval(`tr[data-call="${LIVE_SID}"]`, (el) => el.textContent ?? '');
      for (const part of ['+1 555 ••• ••23', 'front-desk', '840 ms', 'caller', 'up', 'test-1']) expect(row).toContain(part);
      expect(await page.$eval('.counts', (el) => el.textContent)).toContain('1 call in progress');
      await page.waitForSelector('.chart .uplot canvas');
      await page.screenshot({ path: join(ARTIFACTS, 'console-live.png'), fullPage: true });
      fake.live = [];
      await page.waitForSelector(`tr[data-call="${LIVE_SID}"]`, { hidden: true });
      expect(await page.$eval('.counts', (el) => el.textContent)).toContain('0 calls in progress');
    });

    it('sends the filters, sort and page in the list request and keeps them in the hash', async () => {
      await page.click('header#top a[href="#/calls"]');
      await page.waitForSelector('table.calls tbody a');
      await until(() => fake.listQueries.length === 1, 'the first list request');
      expect(fake.listQueries[0]).toBe('');
      await page.select('#f-since', '24h');
      await page.type('#f-outcome', 'resolved');
      await page.type('#f-agent', 'front-desk');
      await page.type('#f-minLatencyMs', '900');
      await page.click('form.filters button[type=submit]');
      await until(() => fake.listQueries.length === 2, 'the filtered list request');
      const q = new URLSearchParams(fake.listQueries[1]);
      expect(Object.fromEntries(q)).toEqual({ since: '24h', outcome: 'resolved', agent: 'front-desk', minLatencyMs: '900' });
      expect(await page.evaluate(() => location.hash)).toBe('#/calls?since=24h&outcome=resolved&agent=front-desk&minLatencyMs=900');
      await page.waitForSelector('table.calls thead a.sort');
      await page.evaluate(() => {
        const link = [...document.querySelectorAll('table.calls thead a.sort')].find((a) => a.textContent?.startsWith('Duration'));
        (link as HTMLAnchorElement).click();
      });
      await until(() => fake.listQueries.length === 3, 'the sorted list request');
      expect(new URLSearchParams(fake.listQueries[2]).get('sort')).toBe('duration');
      expect(new URLSearchParams(fake.listQueries[2]).get('dir')).toBe('desc');
      expect(new URLSearchParams(fake.listQueries[2]).get('agent')).toBe('front-desk');
      await page.waitForSelector('nav.pager a[rel=next]');
      await page.click('nav.pager a[rel=next]');
      await until(() => fake.listQueries.length === 4, 'the next page request');
      expect(new URLSearchParams(fake.listQueries[3]).get('page')).toBe('2');
      expect(await page.evaluate(() => location.hash)).toContain('page=2');
      // The filters survive a reload (they live in the hash).
      await page.reload({ waitUntil: 'load' });
      await until(() => fake.listQueries.length === 5, 'the list request after a reload');
      expect(new URLSearchParams(fake.listQueries[4]).get('minLatencyMs')).toBe('900');
      expect(await page.$eval('#f-agent', (el) => (el as HTMLInputElement).value)).toBe('front-desk');
    });

    it('opens a call: turns, tool calls, the latency split, and the recording player', async () => {
      await page.waitForSelector(`table.calls a[href="#/calls/${RECORDED}"]`);
      await page.click(`table.calls a[href="#/calls/${RECORDED}"]`);
      await page.waitForSelector('ol.transcript li');
      expect(await page.$$eval('ol.transcript li', (els) => els.length)).toBe(6);
      expect(await page.$$eval('.timeline .bar-caller', (els) => els.length)).toBe(2);
      expect(await page.$$eval('.timeline .bar-assistant', (els) => els.length)).toBe(3);
      expect(await page.$$eval('.timeline .bar.barge', (els) => els.length)).toBe(1);
      expect(await page.$$eval('.timeline .bar-event', (els) => els.length)).toBe(2);
      expect(await page.$$eval('.timeline .bar-dtmf', (els) => els.length)).toBe(1);
      expect(await page.$eval('.timeline .bar-tool', (el) => el.getAttribute('title'))).toContain('book_table, 420 ms, ok');
      expect(await page.$eval('table.tools', (el) => el.textContent)).toContain('book_table');
      // Latency: turns 1 and 2 split into four parts each, turn 3 (no parts) as its total; turn 2 is over the 1.2 s budget.
      const turns = await page.$$eval('ol.latency li', (els) => els.map((li) => ({
        segs: [...li.querySelectorAll('.seg')].map((s) => s.className.replace('seg ', '')),
        total: li.querySelector('.turn-total')?.textContent ?? '',
        over: li.classList.contains('over'),
        budget: !!li.querySelector('.budget'),
      })));
      expect(turns).toEqual([
        { segs: ['p-vad', 'p-model', 'p-relay', 'p-heard'], total: '1000 ms', over: false, budget: true },
        { segs: ['p-vad', 'p-model', 'p-relay', 'p-heard'], total: '1750 ms (over budget)', over: true, budget: true },
        { segs: ['p-total'], total: '650 ms', over: false, budget: true },
      ]);
      expect(await page.$eval('main', (el) => el.textContent)).toContain('$0.0421');
      expect(await page.$eval('main', (el) => el.textContent)).toContain('0.4 ms');
      // The player: decoded, both channels drawn, an <audio> on a blob: URL.
      await page.waitForSelector('.player:not([hidden])');
      expect(await page.$eval('audio', (el) => (el as HTMLAudioElement).src)).toMatch(/^blob:/);
      const inked = await page.$eval('canvas.wave', (el) => {
        const c = el as HTMLCanvasElement;
        const d = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
        const half = (from: number, to: number) => { let n = 0; for (let y = from; y < to; y++) for (let x = 0; x < c.width; x++) if (d[(y * c.width + x) * 4 + 3] > 0) n++; return n; };
        const mid = Math.floor(c.height / 2);
        return { top: half(0, mid - 2), bottom: half(mid + 2, c.height) };
      });
      expect(inked.top).toBeGreaterThan(100);
      expect(inked.bottom).toBeGreaterThan(100);
      // Clicking a transcript line seeks the recording there; the playhead follows.
      await page.click('ol.transcript li:nth-child(4) button.at');
      await page.waitForFunction(() => Math.abs((document.querySelector('audio') as HTMLAudioElement).currentTime - 3) < 0.3);
      await page.waitForFunction(() => parseFloat((document.querySelector('.wave-head') as HTMLElement).style.left) > 50);
      await page.$eval('audio', (el) => (el as HTMLAudioElement).pause());
      await page.screenshot({ path: join(ARTIFACTS, 'console-call.png'), fullPage: true });
      await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: 'dark' }]);
      expect(await page.$eval('body', (el) => getComputedStyle(el).backgroundColor)).toBe('rgb(20, 23, 28)');
      await page.screenshot({ path: join(ARTIFACTS, 'console-call-dark.png'), fullPage: true });
      await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: 'light' }]);
    });

    it('opens a call without a recording: no player', async () => {
      await page.evaluate((sid) => { location.hash = `#/calls/${sid}`; }, UNRECORDED);
      await page.waitForFunction((sid) => document.querySelector('main h1')?.textContent?.includes(sid) && !!document.querySelector('ol.transcript'), {}, UNRECORDED);
      expect(await page.$('audio')).toBeNull();
      expect(await page.$('canvas.wave')).toBeNull();
      expect(await page.$eval('.player-box', (el) => el.textContent)).toContain('This call was not recorded.');
      expect(await page.$$eval('ol.latency li', (els) => els.length)).toBe(3);
    });

    it('signs out with the CSRF header', async () => {
      await page.click('header#top button.signout');
      await page.waitForSelector('form.signin input#token');
      expect(fake.signOuts).toEqual([{ csrf: ME.csrf }]);
      expect(await page.$('header#top .user')).toBeNull();
      // The session is gone: a reload shows the sign-in form again.
      await page.reload({ waitUntil: 'load' });
      await page.waitForSelector('form.signin input#token');
    });
  });
});
