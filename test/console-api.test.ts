/**
 * The console's server side (src/console/routes.ts, auth.ts, static.ts,
 * mask.ts), driven through ConsoleApp.handle with ConsoleRequest objects:
 * sign-in, sessions, CSRF and the same-origin rule, masking by role, the
 * list query, the live stream, recordings converted to PCM16 (ranges too),
 * the security headers and the hashed assets. The store is a real
 * SqliteCallStore in a temp file; the console's search/in-progress/stats
 * reads are a small fake over it (another module implements them).
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ConsoleReply, ConsoleRequest, LiveCall, BinaryResponse } from '../src/call/ports.js';
import type { CallListView, CallView, LiveView, Me } from '../src/console/api.js';
import { createConsole, SECURITY_HEADERS, type ConsoleDeps } from '../src/console/routes.js';
import { maskNumber, showNumber } from '../src/console/mask.js';
import { ulawToPcm16 } from '../src/dsp/index.js';
import { loadConfig } from '../src/config.js';
import { silentLogger } from '../src/log.js';
import { createRecordingWriter } from '../src/recording/container.js';
import { createDirStorage } from '../src/recording/dir-storage.js';
import type { RecordingStorage } from '../src/recording/types.js';
import { DecryptError, keyring } from '../src/store/crypto.js';
import { PostgresStoreError } from '../src/store/postgres-error.js';
import { createStoreRecorder } from '../src/store/recorder.js';
import { SqliteCallStore } from '../src/store/sqlite.js';
import type { CallFilter, CallStats, CallStore, SearchOptions } from '../src/store/types.js';

const ADMIN_TOKEN = 'admin-token-0123456789';
const VIEWER_TOKEN = 'viewer-token-9876543210';
const HOST = 'console.example.test';
const FROM = '+15550100123';
const TO = '+15550100999';
const MASKED_FROM = '+1 555 ••• ••23';
const SID1 = 'CA11111111111111111111111111111111';
const SID2 = 'CA22222222222222222222222222222222';
const SID3 = 'CA33333333333333333333333333333333';
const SESSION_MS = 8 * 3_600_000;
const T0 = Date.parse('2026-12-06T12:00:00.000Z');

let dir: string;
let store: SqliteCallStore;
let storage: RecordingStorage;
let webRoot: string;
let clock: number;
const recKey = randomBytes(32);
const recRing = keyring(recKey);
/** The recording's µ-law bytes (interleaved caller|heard): every code, several chunks' worth. */
const AUDIO = Uint8Array.from({ length: 150_000 }, (_, i) => (i * 7 + (i >> 9)) & 0xff);
const REC_OBJECT = '2026/12/06/CA11111111111111111111111111111111.cbrec';

const searches: { filter: CallFilter; opts: SearchOptions | undefined }[] = [];
const statsAsked: { since: Date; bucketMs: number }[] = [];

/** The real store for what it has (get, listPage), a fake for the console's new reads. */
function consoleStore(real: SqliteCallStore): CallStore {
  return {
    get: (sid: string) => real.get(sid),
    async searchCalls(filter: CallFilter, opts?: SearchOptions) {
      searches.push({ filter, opts });
      const all = real.listPage({ limit: 1000 }).calls.filter((c) => (filter.agent ? c.agent === filter.agent : true));
      const offset = opts?.offset ?? 0;
      const limit = opts?.limit ?? 50;
      return { calls: all.slice(offset, offset + limit), hasMore: all.length > offset + limit };
    },
    async callsInProgress(limit: number) {
      return real.listPage({ limit: 1000 }).calls.filter((c) => c.state === 'in_progress').slice(0, limit);
    },
    async stats(since: Date, bucketMs: number): Promise<CallStats> {
      statsAsked.push({ since, bucketMs });
      return { bucketMs, buckets: [{ t: since.toISOString(), started: 2, ended: 1, failed: 0, turnP50Ms: 640, turnP95Ms: 900 }], inProgress: 1 };
    },
  } as unknown as CallStore;
}

const liveCalls: LiveCall[] = [
  { callSid: SID2, from: FROM, agent: 'front-desk', startedAt: new Date(T0 - 30_000).toISOString(), durationMs: 30_000, speaking: 'caller', turns: 3, lastTurnMs: 710, model: 'up', audioMode: 'transcode' },
];

function deps(over: Partial<ConsoleDeps> = {}): ConsoleDeps {
  return {
    store: consoleStore(store),
    live: () => liveCalls,
    modelHealth: () => ({ reachable: true, lastError: null }),
    instanceId: 'i-1',
    tokens: [
      { name: 'admin', role: 'admin', token: ADMIN_TOKEN },
      { name: 'viewer', role: 'read', token: VIEWER_TOKEN },
    ],
    sessionMs: SESSION_MS,
    secret: Buffer.from('admission-secret-for-tests-0123456789'),
    recordings: { storage, keys: recRing },
    webRoot,
    log: silentLogger,
    now: () => clock,
    ...over,
  };
}

function req(method: string, path: string, opts: { query?: string; headers?: Record<string, string>; body?: unknown; client?: string } = {}): ConsoleRequest {
  return {
    method,
    path,
    query: new URLSearchParams(opts.query ?? ''),
    headers: { host: HOST, ...opts.headers },
    body: opts.body === undefined ? null : Buffer.from(typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body)),
    client: opts.client ?? '203.0.113.7',
  };
}

const bin = (r: ConsoleReply): BinaryResponse => {
  if ('stream' in r) throw new Error('expected a plain reply, got a stream');
  return r;
};
const bodyJson = <T = Record<string, unknown>>(r: ConsoleReply): T => JSON.parse(String(bin(r).body)) as T;
const bodyText = (r: ConsoleReply): string => {
  const b = bin(r).body;
  return typeof b === 'string' ? b : Buffer.from(b).toString('utf8');
};

interface Signed {
  cookie: string;
  me: Me;
  setCookie: string;
}

async function signIn(app: ReturnType<typeof createConsole>, token = ADMIN_TOKEN): Promise<Signed> {
  const r = await app.handle(req('POST', '/console/api/session', { body: { token }, headers: { origin: `https://${HOST}`, 'sec-fetch-site': 'same-origin' } }));
  expect(r.status).toBe(200);
  const setCookie = r.headers['set-cookie']!;
  return { setCookie, cookie: setCookie.split(';')[0]!, me: bodyJson<Me>(r) };
}

const get = (app: ReturnType<typeof createConsole>, s: Signed | undefined, path: string, query = '', headers: Record<string, string> = {}) =>
  app.handle(req('GET', path, { query, headers: { ...(s ? { cookie: s.cookie } : {}), ...headers } }));

/** Open the live stream; resolves the first event and gives controls over the next ticks. */
function openLive(reply: ConsoleReply) {
  if (!('stream' in reply)) throw new Error(`expected a stream, got ${reply.status}`);
  const chunks: string[] = [];
  let ended = false;
  const waiters: (() => void)[] = [];
  const stop = reply.stream.open(
    (chunk) => {
      chunks.push(chunk);
      waiters.splice(0).forEach((w) => w());
      return true;
    },
    () => {
      ended = true;
    },
  );
  const next = (n: number) =>
    new Promise<void>((resolve) => {
      const check = () => (chunks.length >= n ? resolve() : waiters.push(check));
      check();
    });
  return { chunks, stop, next, ended: () => ended };
}
const liveData = (chunk: string): LiveView => {
  const m = /^event: live\ndata: (.*)\n\n$/s.exec(chunk);
  if (!m) throw new Error(`not a live event: ${chunk}`);
  return JSON.parse(m[1]!) as LiveView;
};

beforeEach(async () => {
  clock = T0;
  searches.length = 0;
  statsAsked.length = 0;
  dir = mkdtempSync(join(tmpdir(), 'callbridge-console-'));
  webRoot = join(dir, 'web');
  mkdirSync(join(webRoot, 'lib'), { recursive: true });
  writeFileSync(join(webRoot, 'index.html'), '<!doctype html><link rel="stylesheet" href="./style.css"><script type="module" src="./app.js"></script><p>./not-a-url</p>');
  writeFileSync(join(webRoot, 'app.js'), "import './lib/view.js';\n");
  writeFileSync(join(webRoot, 'lib', 'view.js'), 'export const x = 1;\n');
  writeFileSync(join(webRoot, 'style.css'), 'body { margin: 0 }\n');
  storage = createDirStorage(join(dir, 'rec'));

  store = new SqliteCallStore({ path: join(dir, 'c.db'), prices: loadConfig({}).prices, log: silentLogger });
  const r1 = createStoreRecorder(store, SID1, { From: FROM, To: TO }, { agent: 'front-desk', direction: 'inbound' });
  r1.started({ callSid: SID1, streamSid: 'MZ1', audioMode: 'transcode', startedAt: new Date(T0 - 600_000) });
  r1.transcript({ atMs: 5, speaker: 'caller', text: 'hello, I would like to check my coverage' });
  r1.toolCall({ callId: 'c1', name: 'lookup_member', args: JSON.stringify({ phone: FROM }), ok: true, output: `found ${FROM}`, record: { phone: FROM }, startedAtMs: 900, durationMs: 40 });
  r1.turnLatency({ turn: 1, latencyMs: 820 });
  r1.ended({ endedAt: new Date(T0 - 540_000), reason: 'caller_hangup', relay: { inbound: { p50Ms: 1, p99Ms: 2 }, outbound: { p50Ms: 1, p99Ms: 2 } }, protocolErrors: 0 });
  const w = createRecordingWriter(await storage.create(REC_OBJECT), recRing.current!, { callSid: SID1 });
  await w.write(AUDIO);
  const { bytes } = await w.finish();
  r1.recording({ status: 'complete', object: REC_OBJECT, storage: 'dir', keyId: recRing.current!.kid, durationMs: AUDIO.length / 16, bytes });
  const r2 = createStoreRecorder(store, SID2, { From: FROM, To: TO }, { agent: 'front-desk', direction: 'inbound' });
  r2.started({ callSid: SID2, streamSid: 'MZ2', audioMode: 'transcode', startedAt: new Date(T0 - 30_000) });
  const r3 = createStoreRecorder(store, SID3, { From: '+442079460958', To: TO }, { agent: 'billing', direction: 'inbound' });
  r3.started({ callSid: SID3, streamSid: 'MZ3', audioMode: 'transcode', startedAt: new Date(T0 - 10_000) });
});

afterEach(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('mask.ts', () => {
  it('keeps the country code, up to three digits after it and the last two; hides at least four', () => {
    expect(maskNumber('+15550100123')).toBe(MASKED_FROM);
    expect(maskNumber('+442079460958')).toBe('+44 207 ••• ••58');
    expect(maskNumber('+351912345678')).toBe('+351 912 ••• •78');
    expect(maskNumber('+4930123456')).toBe('+49 30 ••• •56');
    expect(maskNumber('+4412345678')).toBe('+44 12 ••• •78');
    expect(maskNumber('+12345678')).toBe('+1 2 ••• •78');
    expect(maskNumber('anonymous')).toBe('anonymous');
    expect(maskNumber('sip:alice@example.com')).toBe('•••');
    expect(maskNumber('client:alice')).toBe('•••');
    expect(showNumber(FROM, 'admin')).toBe(FROM);
    expect(showNumber(FROM, 'read')).toBe(MASKED_FROM);
    expect(showNumber(null, 'read')).toBeNull();
  });
});

describe('console: sign-in and sessions', () => {
  it('no console token: every /console path is 404', async () => {
    const app = createConsole(deps({ tokens: [] }));
    for (const path of ['/console', '/console/', '/console/api/me', '/console/api/calls', '/console/assets/abc/app.js']) {
      expect((await app.handle(req('GET', path))).status, path).toBe(404);
    }
    expect((await app.handle(req('POST', '/console/api/session', { body: { token: ADMIN_TOKEN } }))).status).toBe(404);
  });

  it('signs in with a right token: Me, and a cookie HttpOnly, Secure, SameSite=Strict, Path=/console, Max-Age of the session', async () => {
    const app = createConsole(deps());
    const s = await signIn(app);
    expect(s.me).toMatchObject({ user: 'admin', role: 'admin', expiresAt: new Date(T0 + SESSION_MS).toISOString() });
    expect(s.me.csrf).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const attrs = s.setCookie.split(';').map((a) => a.trim());
    expect(attrs[0]).toMatch(/^cb_console=[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}$/);
    expect(attrs.slice(1).sort()).toEqual(['HttpOnly', `Max-Age=${SESSION_MS / 1000}`, 'Path=/console', 'SameSite=Strict', 'Secure'].sort());
    const me = await get(app, s, '/console/api/me');
    expect(me.status).toBe(200);
    expect(bodyJson(me)).toEqual(s.me);
    const viewer = await signIn(app, VIEWER_TOKEN);
    expect(viewer.me).toMatchObject({ user: 'viewer', role: 'read' });
    expect(viewer.me.csrf).not.toBe(s.me.csrf);
  });

  it('a wrong token is 401, a body without one 400; neither sets a cookie', async () => {
    const app = createConsole(deps());
    for (const [body, status] of [[{ token: 'nope' }, 401], [{ token: `${ADMIN_TOKEN}x` }, 401], [{ token: '' }, 400], ['not json', 400], [{}, 400]] as const) {
      const r = await app.handle(req('POST', '/console/api/session', { body, client: `198.51.100.${status}${JSON.stringify(body).length}` }));
      expect(r.status, JSON.stringify(body)).toBe(status);
      expect(r.headers['set-cookie']).toBeUndefined();
    }
  });

  it('rate-limits sign-in per client: 5 attempts, then 429 with Retry-After (even for the right token); another client is unaffected; it refills', async () => {
    const app = createConsole(deps());
    const attempt = (token: string, client = '192.0.2.1') => app.handle(req('POST', '/console/api/session', { body: { token }, client }));
    for (let i = 0; i < 4; i++) expect((await attempt('wrong')).status).toBe(401);
    expect((await attempt(ADMIN_TOKEN)).status).toBe(200); // right ones count too
    const refused = await attempt(ADMIN_TOKEN);
    expect(refused.status).toBe(429);
    expect(Number(refused.headers['retry-after'])).toBeGreaterThan(0);
    expect((await attempt(ADMIN_TOKEN, '192.0.2.2')).status).toBe(200);
    clock += 12_000; // 5 a minute: one attempt back every 12 s
    expect((await attempt(ADMIN_TOKEN)).status).toBe(200);
    expect((await attempt(ADMIN_TOKEN)).status).toBe(429);
  });

  it('signs out: 204, the cookie cleared (Max-Age=0), and that cookie is 401 afterwards', async () => {
    const app = createConsole(deps());
    const s = await signIn(app);
    const out = await app.handle(req('DELETE', '/console/api/session', { headers: { cookie: s.cookie, 'x-console-csrf': s.me.csrf } }));
    expect(out.status).toBe(204);
    expect(out.headers['set-cookie']).toMatch(/^cb_console=; /);
    expect(out.headers['set-cookie']).toContain('Max-Age=0');
    expect(out.headers['set-cookie']).toContain('Path=/console');
    expect((await get(app, s, '/console/api/me')).status).toBe(401);
    expect((await get(app, s, '/console/api/calls')).status).toBe(401);
  });

  it('every API route is 401 without a session, with a forged or altered cookie, and once the session expired', async () => {
    const app = createConsole(deps());
    const s = await signIn(app);
    const routes = ['/console/api/me', '/console/api/live', '/console/api/stats', '/console/api/calls', `/console/api/calls/${SID1}`, `/console/api/calls/${SID1}/recording`, '/console/api/nothing'];
    const [payload, mac] = s.cookie.slice('cb_console='.length).split('.') as [string, string];
    const forged = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(payload, 'base64url').toString()), r: 'admin', n: 'mallory' })).toString('base64url');
    for (const path of routes) {
      expect((await get(app, undefined, path)).status, path).toBe(401);
      expect((await get(app, undefined, path, '', { cookie: `cb_console=${forged}.${mac}` })).status, path).toBe(401);
      expect((await get(app, undefined, path, '', { cookie: `cb_console=${payload}.${mac.slice(0, -2)}AA` })).status, path).toBe(401);
    }
    // A cookie signed under another ADMISSION_SECRET is not accepted.
    const other = createConsole(deps({ secret: Buffer.from('another-secret') }));
    expect((await get(other, s, '/console/api/me')).status).toBe(401);
    expect((await get(app, s, '/console/api/me')).status).toBe(200);
    clock += SESSION_MS;
    for (const path of routes) expect((await get(app, s, path)).status, path).toBe(401);
  });

  it('the page is served without a session (it shows the sign-in form)', async () => {
    const app = createConsole(deps());
    const page = await get(app, undefined, '/console');
    expect(page.status).toBe(200);
    expect(bin(page).type).toContain('text/html');
  });
});

describe('console: CSRF and the same-origin rule', () => {
  it('POST/DELETE with a session need the CSRF header: missing or wrong → 403', async () => {
    const app = createConsole(deps());
    const s = await signIn(app);
    const viewer = await signIn(app, VIEWER_TOKEN);
    const del = (csrf?: string) => app.handle(req('DELETE', '/console/api/session', { headers: { cookie: s.cookie, ...(csrf === undefined ? {} : { 'x-console-csrf': csrf }) } }));
    expect((await del()).status).toBe(403);
    expect((await del('')).status).toBe(403);
    expect((await del(viewer.me.csrf)).status).toBe(403); // another session's token
    expect((await del(`${s.me.csrf}x`)).status).toBe(403);
    expect((await get(app, s, '/console/api/me')).status).toBe(200); // still signed in
    const post = (csrf?: string) => app.handle(req('POST', '/console/api/calls', { body: {}, headers: { cookie: s.cookie, ...(csrf ? { 'x-console-csrf': csrf } : {}) } }));
    expect((await post()).status).toBe(403);
    expect((await post(s.me.csrf)).status).toBe(405); // past the checks: no route takes a POST there
    expect((await del(s.me.csrf)).status).toBe(204);
  });

  it('cross-site state changes are 403: Origin of another host, Origin null, Sec-Fetch-Site other than same-origin', async () => {
    const app = createConsole(deps());
    const s = await signIn(app);
    const signInFrom = (headers: Record<string, string>) => app.handle(req('POST', '/console/api/session', { body: { token: ADMIN_TOKEN }, headers, client: `10.0.0.${Object.keys(headers).length + JSON.stringify(headers).length % 200}` }));
    expect((await signInFrom({ origin: 'https://evil.example' })).status).toBe(403);
    expect((await signInFrom({ origin: 'null' })).status).toBe(403);
    expect((await signInFrom({ 'sec-fetch-site': 'cross-site' })).status).toBe(403);
    expect((await signInFrom({ 'sec-fetch-site': 'same-site' })).status).toBe(403);
    expect((await signInFrom({ origin: `https://${HOST}`, 'sec-fetch-site': 'same-origin' })).status).toBe(200);
    expect((await signInFrom({})).status).toBe(200); // neither header (an old browser, curl): allowed
    const out = (headers: Record<string, string>) => app.handle(req('DELETE', '/console/api/session', { headers: { cookie: s.cookie, 'x-console-csrf': s.me.csrf, ...headers } }));
    expect((await out({ origin: `https://${HOST}.evil.example` })).status).toBe(403);
    expect((await out({ 'sec-fetch-site': 'cross-site' })).status).toBe(403);
    expect((await get(app, s, '/console/api/me')).status).toBe(200);
    expect((await out({ origin: `https://${HOST}` })).status).toBe(204);
  });
});

describe('console: what each role sees', () => {
  it('a read viewer never receives the full number (list, one call, its tool calls, live); the transcript is as recorded', async () => {
    const app = createConsole(deps());
    const viewer = await signIn(app, VIEWER_TOKEN);
    const list = await get(app, viewer, '/console/api/calls');
    const call = await get(app, viewer, `/console/api/calls/${SID1}`);
    expect(list.status).toBe(200);
    expect(call.status).toBe(200);
    for (const r of [list, call]) {
      expect(bodyText(r)).not.toContain('5550100123');
      expect(bodyText(r)).not.toContain('5550100999');
      expect(bodyText(r)).not.toContain('2079460958');
      expect(bodyText(r)).toContain(MASKED_FROM);
    }
    const view = bodyJson<CallView>(call);
    expect(view.call).toMatchObject({ callSid: SID1, from: MASKED_FROM, to: '+1 555 ••• ••99' });
    expect(view.call.transcript).toEqual([{ atMs: 5, speaker: 'caller', text: 'hello, I would like to check my coverage' }]);
    expect((view.call.toolCalls as { args: string }[])[0]!.args).toContain(MASKED_FROM);
    const live = openLive(await get(app, viewer, '/console/api/live'));
    await live.next(1);
    live.stop();
    expect(live.chunks[0]).not.toContain('5550100123');
    expect(liveData(live.chunks[0]!).calls.map((c) => c.from)).toEqual([MASKED_FROM, '+44 207 ••• ••58']);
  });

  it('admin sees numbers in full', async () => {
    const app = createConsole(deps());
    const admin = await signIn(app);
    const list = bodyJson<CallListView>(await get(app, admin, '/console/api/calls'));
    expect(list.calls.find((c) => c.callSid === SID1)).toMatchObject({ from: FROM, to: TO, agent: 'front-desk', state: 'completed' });
    const view = bodyJson<CallView>(await get(app, admin, `/console/api/calls/${SID1}`));
    expect(view).toMatchObject({ call: { from: FROM, to: TO }, budgetMs: 1200, recording: true });
    expect((view.call.toolCalls as { args: string }[])[0]!.args).toContain(FROM);
    const live = openLive(await get(app, admin, '/console/api/live'));
    await live.next(1);
    live.stop();
    expect(liveData(live.chunks[0]!).calls[0]!.from).toBe(FROM);
  });
});

describe('console: the API', () => {
  it('the calls list: query mapped to searchCalls (filter, sort, dir, limit, offset from the page)', async () => {
    const app = createConsole(deps());
    const s = await signIn(app);
    const r = await get(app, s, '/console/api/calls', 'since=2h&until=2026-12-06T11:59:00Z&outcome=eligible&endReason=caller_hangup&agent=front-desk&tool=lookup_member&minLatencyMs=900&sort=duration&dir=asc&page=3&limit=20');
    expect(r.status).toBe(200);
    expect(searches.at(-1)).toEqual({
      filter: {
        since: new Date(T0 - 2 * 3_600_000),
        until: new Date('2026-12-06T11:59:00Z'),
        outcome: 'eligible',
        endReason: 'caller_hangup',
        agent: 'front-desk',
        tool: 'lookup_member',
        minTurnLatencyMs: 900,
      },
      opts: { sort: 'duration', dir: 'asc', limit: 20, offset: 40 },
    });
    expect(bodyJson(r)).toMatchObject({ page: 3, limit: 20, hasMore: false, calls: [] });
    const first = bodyJson<CallListView>(await get(app, s, '/console/api/calls', 'limit=2&agent=&sort='));
    expect(searches.at(-1)).toEqual({ filter: {}, opts: { sort: 'started', dir: 'desc', limit: 2, offset: 0 } });
    expect(first).toMatchObject({ page: 1, limit: 2, hasMore: true });
    expect(first.calls).toHaveLength(2);
    expect(Object.keys(first.calls[0]!).sort()).toEqual(['agent', 'callSid', 'direction', 'durationMs', 'endReason', 'estimatedCostUsd', 'from', 'outcome', 'startedAt', 'state', 'status', 'to'].sort());
  });

  it('the calls list: a bad value is 400 naming the parameter', async () => {
    const app = createConsole(deps());
    const s = await signIn(app);
    const bad: [string, string][] = [
      ['since=yesterday', 'since'],
      ['until=12/06/2026', 'until'],
      ['sort=name', 'sort'],
      ['dir=up', 'dir'],
      ['page=0', 'page'],
      ['page=-1', 'page'],
      ['page=1.5', 'page'],
      ['limit=0', 'limit'],
      ['limit=201', 'limit'],
      ['limit=ten', 'limit'],
      ['minLatencyMs=-5', 'minLatencyMs'],
      [`agent=${'a'.repeat(201)}`, 'agent'],
    ];
    const before = searches.length;
    for (const [query, param] of bad) {
      const r = await get(app, s, '/console/api/calls', query);
      expect(r.status, query).toBe(400);
      expect(bodyJson<{ error: string }>(r).error.startsWith(`${param}:`), query).toBe(true);
    }
    expect(searches.length).toBe(before); // the store was not asked
  });

  it('one call: 404 for an unknown SID; recording false when recordings are not configured here', async () => {
    const app = createConsole(deps({ recordings: undefined }));
    const s = await signIn(app);
    expect((await get(app, s, '/console/api/calls/CAnope')).status).toBe(404);
    expect(bodyJson<CallView>(await get(app, s, `/console/api/calls/${SID1}`)).recording).toBe(false);
    expect(bodyJson<CallView>(await get(app, s, `/console/api/calls/${SID2}`)).recording).toBe(false);
    expect((await get(app, s, `/console/api/calls/${SID1}/recording`)).status).toBe(404);
  });

  it('stats: the last hour in 5-minute buckets', async () => {
    const app = createConsole(deps());
    const s = await signIn(app);
    const r = await get(app, s, '/console/api/stats');
    expect(r.status).toBe(200);
    expect(statsAsked).toEqual([{ since: new Date(T0 - 3_600_000), bucketMs: 300_000 }]);
    expect(bodyJson(r)).toEqual({ bucketMs: 300_000, buckets: [{ t: new Date(T0 - 3_600_000).toISOString(), started: 2, ended: 1, failed: 0, turnP50Ms: 640, turnP95Ms: 900 }], inProgress: 1 });
  });

  it('store errors: DecryptError 500, a retryable PostgresStoreError 503', async () => {
    const failing = (err: Error) => ({ get: async () => { throw err; }, searchCalls: async () => { throw err; }, stats: async () => { throw err; } }) as unknown as CallStore;
    const dec = createConsole(deps({ store: failing(new DecryptError('a sealed field does not open with TRANSCRIPT_KEY')) }));
    const s1 = await signIn(dec);
    expect((await get(dec, s1, `/console/api/calls/${SID1}`)).status).toBe(500);
    const pg = createConsole(deps({ store: failing(new PostgresStoreError('call store: read failed: connect ECONNREFUSED', true)) }));
    const s2 = await signIn(pg);
    for (const path of [`/console/api/calls/${SID1}`, '/console/api/calls', '/console/api/stats']) {
      const r = await get(pg, s2, path);
      expect(r.status, path).toBe(503);
      expect(bodyJson(r)).toMatchObject({ retryable: true });
    }
    const bug = createConsole(deps({ store: failing(new Error('bug')) }));
    const s3 = await signIn(bug);
    expect((await get(bug, s3, '/console/api/calls')).status).toBe(500); // answered, not thrown
  });
});

describe('console: the live stream', () => {
  it('sends `live` at once and on every tick: this instance\'s calls (local) and the store\'s others (local: false, instance \'\'); stops when closed', async () => {
    const ticks: (() => void)[] = [];
    let cancelled = 0;
    const app = createConsole(deps({ every: (fn, ms) => { expect(ms).toBe(1000); ticks.push(fn); return () => { cancelled++; }; } }));
    const s = await signIn(app);
    const reply = await get(app, s, '/console/api/live');
    expect(reply.status).toBe(200);
    expect(reply.headers['content-type']).toBe('text/event-stream');
    const live = openLive(reply);
    await live.next(1);
    const first = liveData(live.chunks[0]!);
    expect(first).toMatchObject({ at: new Date(T0).toISOString(), instance: 'i-1', model: { reachable: true, lastError: null } });
    expect(first.calls).toEqual([
      { ...liveCalls[0], instance: 'i-1', local: true },
      { callSid: SID3, from: '+442079460958', agent: 'billing', startedAt: new Date(T0 - 10_000).toISOString(), durationMs: 10_000, speaking: 'none', turns: 0, lastTurnMs: null, model: 'up', audioMode: '', instance: '', local: false },
    ]);
    clock += 1000;
    ticks[0]!();
    await live.next(2);
    expect(liveData(live.chunks[1]!).at).toBe(new Date(T0 + 1000).toISOString());
    live.stop();
    expect(cancelled).toBe(1);
    ticks[0]!(); // a late tick after close sends nothing
    await new Promise((r) => setImmediate(r));
    expect(live.chunks).toHaveLength(2);
    expect(live.ended()).toBe(false);
  });

  it('ends the stream when the session is signed out or expires', async () => {
    const ticks: (() => void)[] = [];
    const app = createConsole(deps({ every: (fn) => { ticks.push(fn); return () => {}; } }));
    const s = await signIn(app);
    const live = openLive(await get(app, s, '/console/api/live'));
    await live.next(1);
    await app.handle(req('DELETE', '/console/api/session', { headers: { cookie: s.cookie, 'x-console-csrf': s.me.csrf } }));
    ticks[0]!();
    expect(live.ended()).toBe(true);
    const s2 = await signIn(app);
    const live2 = openLive(await get(app, s2, '/console/api/live'));
    await live2.next(1);
    clock += SESSION_MS;
    ticks[1]!();
    expect(live2.ended()).toBe(true);
    expect(live2.chunks).toHaveLength(1);
  });
});

describe('console: recordings (PCM16 stereo WAV, converted on the fly)', () => {
  const expectedWav = (): Buffer => {
    const pcm = ulawToPcm16(AUDIO);
    const data = Buffer.alloc(pcm.length * 2);
    pcm.forEach((v, i) => data.writeInt16LE(v, i * 2));
    const h = Buffer.alloc(44);
    h.write('RIFF', 0, 'latin1');
    h.writeUInt32LE(36 + data.length, 4);
    h.write('WAVEfmt ', 8, 'latin1');
    h.writeUInt32LE(16, 16);
    h.writeUInt16LE(1, 20);
    h.writeUInt16LE(2, 22);
    h.writeUInt32LE(8000, 24);
    h.writeUInt32LE(32000, 28);
    h.writeUInt16LE(4, 32);
    h.writeUInt16LE(16, 34);
    h.write('data', 36, 'latin1');
    h.writeUInt32LE(data.length, 40);
    return Buffer.concat([h, data]);
  };

  it('the whole file: a 44-byte PCM header and every µ-law byte as the G.711 sample, no-store', async () => {
    const app = createConsole(deps());
    const s = await signIn(app, VIEWER_TOKEN);
    const r = bin(await get(app, s, `/console/api/calls/${SID1}/recording`));
    expect(r.status).toBe(200);
    expect(r.type).toBe('audio/wav');
    expect(r.headers['cache-control']).toBe('no-store');
    expect(r.headers['accept-ranges']).toBe('bytes');
    const want = expectedWav();
    expect(r.body.length).toBe(44 + 2 * AUDIO.length);
    expect(Buffer.from(r.body).equals(want)).toBe(true);
  });

  it('ranges on the converted bytes, odd edges and chunk boundaries included; 416 past the end', async () => {
    const app = createConsole(deps());
    const s = await signIn(app);
    const want = expectedWav();
    const size = want.length;
    const cases: [string, number, number][] = [
      ['bytes=0-43', 0, 44],
      ['bytes=10-100', 10, 101],
      ['bytes=45-46', 45, 47],
      ['bytes=131115-131116', 131_115, 131_117], // around source byte 65 535 | 65 536 (a chunk boundary)
      ['bytes=200001-', 200_001, size],
      ['bytes=-3', size - 3, size],
      [`bytes=${size - 1}-${size + 50}`, size - 1, size],
    ];
    for (const [range, start, end] of cases) {
      const r = bin(await get(app, s, `/console/api/calls/${SID1}/recording`, '', { range }));
      expect(r.status, range).toBe(206);
      expect(r.headers['content-range'], range).toBe(`bytes ${start}-${end - 1}/${size}`);
      expect(Buffer.from(r.body).equals(want.subarray(start, end)), range).toBe(true);
    }
    const past = bin(await get(app, s, `/console/api/calls/${SID1}/recording`, '', { range: `bytes=${size}-` }));
    expect(past.status).toBe(416);
    expect(past.headers['content-range']).toBe(`bytes */${size}`);
  });

  it('a tampered file is a 500 before any audio', async () => {
    const path = join(dir, 'rec', ...REC_OBJECT.split('/'));
    const bytes = readFileSync(path);
    bytes[40 + 65_536 + 28 + 100]! ^= 0x01; // inside the second chunk: open() checks only the last
    writeFileSync(path, bytes);
    const app = createConsole(deps());
    const s = await signIn(app);
    const r = bin(await get(app, s, `/console/api/calls/${SID1}/recording`));
    expect(r.status).toBe(500);
    expect(r.type).toBe('application/json');
    expect(bodyText(r)).toMatch(/does not authenticate/);
    expect((await get(app, s, `/console/api/calls/${SID1}/recording`, '', { range: 'bytes=0-99' })).status).toBe(500);
  });

  it('404 for a call without a recording', async () => {
    const app = createConsole(deps());
    const s = await signIn(app);
    expect((await get(app, s, `/console/api/calls/${SID2}/recording`)).status).toBe(404);
    expect((await get(app, s, '/console/api/calls/CAnope/recording')).status).toBe(404);
  });
});

describe('console: page, assets and headers', () => {
  it('index.html names its assets under /console/assets/<hash>/, no-store; assets are immutable, typed; a wrong hash or `..` is 404', async () => {
    const app = createConsole(deps());
    const page = bin(await get(app, undefined, '/console/'));
    expect(page.headers['cache-control']).toBe('no-store');
    const html = bodyText(page);
    const hash = /\/console\/assets\/([0-9a-f]+)\/app\.js/.exec(html)?.[1];
    expect(hash).toMatch(/^[0-9a-f]{12}$/);
    expect(html).toContain(`href="/console/assets/${hash}/style.css"`);
    expect(html).toContain('<p>./not-a-url</p>');
    expect(bodyText(await get(app, undefined, '/console'))).toBe(html);

    const js = bin(await get(app, undefined, `/console/assets/${hash}/app.js`));
    expect(js.status).toBe(200);
    expect(js.type).toBe('text/javascript; charset=utf-8');
    expect(js.headers['cache-control']).toBe('public, max-age=31536000, immutable');
    expect(bodyText(js)).toBe("import './lib/view.js';\n");
    expect(bin(await get(app, undefined, `/console/assets/${hash}/lib/view.js`)).status).toBe(200);
    expect(bin(await get(app, undefined, `/console/assets/${hash}/style.css`)).type).toBe('text/css; charset=utf-8');

    for (const path of [
      '/console/assets/000000000000/app.js',
      `/console/assets/${hash}/missing.js`,
      `/console/assets/${hash}/../index.html`,
      `/console/assets/${hash}/lib/../app.js`,
      `/console/assets/${hash}/%2e%2e/index.html`,
      `/console/assets/${hash}/lib%2f..%2f..%2fweb/app.js`,
      `/console/assets/${hash}/lib\\view.js`,
      '/console/other',
    ]) {
      const r = bin(await get(app, undefined, path));
      expect(r.status, path).toBe(404);
      expect(r.headers['cache-control'], path).not.toContain('immutable');
    }

    // Any change to the files names a new hash.
    writeFileSync(join(webRoot, 'lib', 'view.js'), 'export const x = 2;\n');
    const rebuilt = createConsole(deps());
    const html2 = bodyText(await get(rebuilt, undefined, '/console'));
    const hash2 = /\/console\/assets\/([0-9a-f]+)\/app\.js/.exec(html2)?.[1];
    expect(hash2).toMatch(/^[0-9a-f]{12}$/);
    expect(hash2).not.toBe(hash);
    expect(bin(await get(rebuilt, undefined, `/console/assets/${hash}/app.js`)).status).toBe(404);
  });

  it('every answer carries the CSP, nosniff and no-referrer', async () => {
    const app = createConsole(deps());
    const s = await signIn(app);
    const html = bodyText(await get(app, undefined, '/console'));
    const hash = /\/console\/assets\/([0-9a-f]+)\//.exec(html)![1]!;
    const replies: [string, ConsoleReply][] = [
      ['page', await get(app, undefined, '/console')],
      ['asset', await get(app, undefined, `/console/assets/${hash}/app.js`)],
      ['asset 404', await get(app, undefined, '/console/assets/nope/app.js')],
      ['405', await app.handle(req('PUT', '/console'))],
      ['401', await get(app, undefined, '/console/api/me')],
      ['me', await get(app, s, '/console/api/me')],
      ['list', await get(app, s, '/console/api/calls')],
      ['400', await get(app, s, '/console/api/calls', 'limit=x')],
      ['call', await get(app, s, `/console/api/calls/${SID1}`)],
      ['recording', await get(app, s, `/console/api/calls/${SID1}/recording`, '', { range: 'bytes=0-10' })],
      ['stats', await get(app, s, '/console/api/stats')],
      ['live', await get(app, s, '/console/api/live')],
      ['sign-in', await app.handle(req('POST', '/console/api/session', { body: { token: 'x' } }))],
      ['403', await app.handle(req('DELETE', '/console/api/session', { headers: { cookie: s.cookie } }))],
      ['no tokens', await createConsole(deps({ tokens: [] })).handle(req('GET', '/console'))],
    ];
    for (const [name, r] of replies) {
      for (const [h, v] of Object.entries(SECURITY_HEADERS)) expect(r.headers[h], `${name}: ${h}`).toBe(v);
    }
    expect(SECURITY_HEADERS['content-security-policy']).toBe(
      "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self' blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    );
  });
});
