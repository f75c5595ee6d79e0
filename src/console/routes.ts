/**
 * Everything under /console (ConsoleApp): the page and its assets
 * (static.ts), sign-in and sessions (auth.ts) and the JSON API of api.ts.
 *
 * - No console token configured: every /console path is 404.
 * - Every answer carries SECURITY_HEADERS (CSP, nosniff, no referrer).
 * - Without a session the page is served (it shows the sign-in form); every
 *   /console/api/* route but the session routes is 401.
 * - POST/DELETE need a same-origin request (403) and, with a session, the
 *   CSRF header (403); sign-in needs the same-origin check only and is
 *   limited per client address (burst 5, then 5 a minute: 429 + Retry-After;
 *   every attempt counts, right or wrong).
 * - A `read` viewer never receives a full number: live calls, list rows and
 *   the record's from/to are masked (mask.ts), and so is either number where
 *   it appears in a tool call's args or output. Transcript lines are sent as
 *   recorded (they hold no number fields).
 * - Live (SSE): event `live` at once and every LIVE_EVERY_MS: this
 *   instance's calls (local) and the store's calls in progress not among them
 *   (local: false). The store does not say which instance serves those:
 *   their `instance` is '' and speaking/turns/model are unknown (sent as
 *   'none', 0 and 'up'; the page reads `local: false`). The stream ends when
 *   the session expires or is signed out here.
 * - Recording: the sealed µ-law file converted on the fly to a PCM16 stereo
 *   8 kHz WAV (44-byte header, two bytes out per byte in); a range is served
 *   by converting only the source bytes it covers. A request from byte 0
 *   first checks every chunk, so a tampered file is a 500 before any audio.
 * - Store errors: DecryptError → 500, retryable PostgresStoreError → 503.
 * - Nothing of a call's content or number is logged.
 */
import type { ConsoleApp, ConsoleReply, ConsoleRequest, LiveCall, BinaryResponse } from '../call/ports.js';
import type { Logger } from '../log.js';
import { findRecording, parseRange } from '../admin/recording-api.js';
import { openRecording, type RecordingReader } from '../recording/container.js';
import { RecordingCorrupt, RecordingNotFound, type Keyring, type RecordingStorage } from '../recording/types.js';
import { addressKey, RateLimiter } from '../server/rate-limit.js';
import { DecryptError } from '../store/crypto.js';
import { PostgresStoreError } from '../store/postgres-error.js';
import { parseSince } from '../store/since.js';
import type { CallFilter, CallRecord, CallSort, CallStore, CallSummary, SearchOptions } from '../store/types.js';
import type { CallListView, CallSummaryView, CallView, LiveCallView, LiveView, Role, StatsView } from './api.js';
import { createSessions, CSRF_HEADER, sameOrigin, type ConsoleToken, type Session } from './auth.js';
import { maskNumber, showNumber } from './mask.js';
import { createStaticSite } from './static.js';

export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy':
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self' blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
};

/** The seed's voice-to-voice budget, ms (CallView.budgetMs). */
export const VOICE_BUDGET_MS = 1200;
export const LIVE_EVERY_MS = 1000;
/** Calls of other instances in the live view, at most. */
export const LIVE_REMOTE_MAX = 200;
export const STATS_WINDOW_MS = 3_600_000;
export const STATS_BUCKET_MS = 300_000;
/** Sign-in attempts per client address: a burst of 5, then 5 a minute. */
export const SIGN_IN_BURST = 5;
export const SIGN_IN_PER_MINUTE = 5;
/** Largest answer to an open-ended range of the converted WAV, bytes. */
export const MAX_RANGE_BYTES = 4 * 1024 * 1024;
/** The PCM16 WAV header: RIFF, a 16-byte fmt chunk, data. */
export const PCM_WAV_HEADER_BYTES = 44;
/** Source bytes checked per read when a request starts at byte 0 (bounds memory). */
const VERIFY_STEP_BYTES = 1024 * 1024;
const DEFAULT_LIMIT = 50;
const MAX_LIMIT = 200;
const MAX_PAGE = 1_000_000;
const MAX_FILTER_CHARS = 200;

export interface ConsoleDeps {
  store: CallStore;
  /** This instance's calls in progress (VoiceApp.liveCalls). */
  live(): LiveCall[];
  modelHealth(): { reachable: boolean | null; lastError: string | null };
  instanceId: string;
  /** ADMIN_TOKEN (admin) and CONSOLE_TOKENS; empty = the console answers 404. */
  tokens: ConsoleToken[];
  sessionMs: number;
  /** ADMISSION_SECRET's bytes: the session key is derived from it (auth.ts). */
  secret: Buffer;
  /** Recording storage and RECORDING_KEY(_OLD); absent = no call has a playable recording here. */
  recordings?: { storage: RecordingStorage; keys: Keyring };
  /** The built page (src/console/web/). */
  webRoot: string;
  log: Logger;
  /** Epoch ms. */
  now?: () => number;
  /** Timers for the live stream (Node's by default). */
  every?: (fn: () => void, ms: number) => () => void;
}

type Reply = BinaryResponse;

const json = (status: number, body: unknown, headers: Record<string, string> = {}): Reply => ({
  status,
  headers: { 'cache-control': 'no-store', ...headers },
  type: 'application/json',
  body: body === undefined ? '' : JSON.stringify(body),
});
const text = (status: number, body: string): Reply => ({ status, headers: { 'cache-control': 'no-store' }, type: 'text/plain; charset=utf-8', body });

class BadQuery extends Error {}

const nodeEvery = (fn: () => void, ms: number): (() => void) => {
  const t = setInterval(fn, ms);
  t.unref?.();
  return () => clearInterval(t);
};

export function createConsole(deps: ConsoleDeps): ConsoleApp {
  const now = deps.now ?? Date.now;
  const every = deps.every ?? nodeEvery;
  const enabled = deps.tokens.length > 0;
  const sessions = createSessions({ tokens: deps.tokens, secret: deps.secret, sessionMs: deps.sessionMs, now });
  const site = enabled ? createStaticSite(deps.webRoot, deps.log) : undefined;
  const signIns = new RateLimiter(SIGN_IN_BURST, SIGN_IN_PER_MINUTE / 60, now);
  const retryAfterS = String(Math.ceil(60 / SIGN_IN_PER_MINUTE));

  const withSecurity = (reply: ConsoleReply): ConsoleReply => ({ ...reply, headers: { ...reply.headers, ...SECURITY_HEADERS } });

  async function handle(req: ConsoleRequest): Promise<ConsoleReply> {
    if (!enabled || !site) return withSecurity(text(404, 'not found'));
    try {
      if (req.path === '/console/api' || req.path.startsWith('/console/api/')) return withSecurity(await api(req));
      if (req.method !== 'GET' && req.method !== 'HEAD') return withSecurity({ ...text(405, 'method not allowed'), headers: { 'cache-control': 'no-store', allow: 'GET, HEAD' } });
      return withSecurity(site.get(req.path) ?? text(404, 'not found'));
    } catch (err) {
      deps.log.error({ err: err instanceof Error ? err.name : 'unknown', route: routeName(req.path) }, 'console: a request failed');
      return withSecurity(json(500, { error: 'internal error' }));
    }
  }

  async function api(req: ConsoleRequest): Promise<ConsoleReply> {
    const changes = req.method !== 'GET' && req.method !== 'HEAD';
    if (req.path === '/console/api/session') {
      if (req.method === 'POST') return signIn(req);
      if (req.method === 'DELETE') {
        if (!sameOrigin(req.headers)) return json(403, { error: 'cross-site request refused' });
        const session = sessions.read(req.headers.cookie);
        if (session && !sessions.csrfOk(session, req.headers[CSRF_HEADER])) return json(403, { error: `missing or wrong ${CSRF_HEADER} header` });
        return { status: 204, headers: { 'cache-control': 'no-store', 'set-cookie': sessions.revoke(session) }, type: 'text/plain', body: '' };
      }
      return json(405, { error: 'method not allowed' }, { allow: 'POST, DELETE' });
    }
    const session = sessions.read(req.headers.cookie);
    if (!session) return json(401, { error: 'sign in first' });
    if (changes) {
      if (!sameOrigin(req.headers)) return json(403, { error: 'cross-site request refused' });
      if (!sessions.csrfOk(session, req.headers[CSRF_HEADER])) return json(403, { error: `missing or wrong ${CSRF_HEADER} header` });
      return json(405, { error: 'method not allowed' }, { allow: 'GET' });
    }
    try {
      return await route(req, session);
    } catch (err) {
      if (err instanceof BadQuery) return json(400, { error: err.message });
      if (err instanceof DecryptError) return json(500, { error: err.message });
      if (err instanceof RecordingCorrupt) return json(500, { error: err.message });
      if (err instanceof RecordingNotFound) return json(404, { error: 'the recording file is missing from storage (deleted, or another storage)' });
      if (err instanceof PostgresStoreError && err.retryable) return json(503, { error: 'call store unavailable, try again', retryable: true });
      throw err;
    }
  }

  function signIn(req: ConsoleRequest): Reply {
    // Every attempt counts, whatever it carries: the limit is on trying, not on failing.
    if (!signIns.allow(addressKey(req.client))) return json(429, { error: 'too many sign-in attempts; wait a minute' }, { 'retry-after': retryAfterS });
    if (!sameOrigin(req.headers)) return json(403, { error: 'cross-site request refused' });
    let token: unknown;
    try {
      token = (JSON.parse(req.body?.toString('utf8') ?? '') as { token?: unknown })?.token;
    } catch {
      return json(400, { error: 'the body must be JSON: {"token": "…"}' });
    }
    if (typeof token !== 'string' || token === '') return json(400, { error: 'the body must be JSON: {"token": "…"}' });
    const who = sessions.checkToken(token);
    if (!who) {
      deps.log.info({ client: req.client }, 'console: sign-in refused (wrong token)');
      return json(401, { error: 'wrong token' });
    }
    const { setCookie, me } = sessions.issue(who);
    deps.log.info({ user: who.name, role: who.role }, 'console: signed in');
    return json(200, me, { 'set-cookie': setCookie });
  }

  async function route(req: ConsoleRequest, session: Session): Promise<ConsoleReply> {
    const p = req.path.replace(/\/+$/, '');
    if (p === '/console/api/me') return json(200, sessions.me(session));
    if (p === '/console/api/live') return liveStream(session);
    if (p === '/console/api/stats') return json(200, await stats());
    if (p === '/console/api/calls') return json(200, await listCalls(req.query, session.role));
    const m = /^\/console\/api\/calls\/([^/]+)(\/recording)?$/.exec(p);
    if (m) {
      let sid: string;
      try {
        sid = decodeURIComponent(m[1]!);
      } catch {
        return json(400, { error: 'malformed call id' });
      }
      return m[2] ? recording(sid, req.headers.range) : oneCall(sid, session.role);
    }
    return json(404, { error: 'no such route' });
  }

  // ── live ──────────────────────────────────────────────────────────────

  async function liveView(role: Role): Promise<LiveView> {
    const at = now();
    const local: LiveCallView[] = deps.live().map((c) => ({ ...c, from: showNumber(c.from, role), instance: deps.instanceId, local: true }));
    const known = new Set(local.map((c) => c.callSid));
    let remote: LiveCallView[] = [];
    try {
      remote = (await deps.store.callsInProgress(LIVE_REMOTE_MAX)).filter((c) => !known.has(c.callSid)).map((c) => remoteLive(c, role, at));
    } catch (err) {
      deps.log.warn({ err: err instanceof Error ? err.name : 'unknown' }, 'console: the store did not answer for calls in progress; the live view shows this instance only');
    }
    return { at: new Date(at).toISOString(), instance: deps.instanceId, calls: [...local, ...remote], model: deps.modelHealth() };
  }

  function liveStream(session: Session): ConsoleReply {
    return {
      status: 200,
      headers: { 'content-type': 'text/event-stream', 'cache-control': 'no-store', 'x-accel-buffering': 'no' },
      stream: {
        open(send, end) {
          let stopped = false;
          let busy = false;
          const tick = (): void => {
            if (stopped) return;
            if (!sessions.alive(session)) {
              stop();
              end();
              return;
            }
            if (busy) return; // a slow store: skip a beat rather than pile up reads
            busy = true;
            liveView(session.role).then(
              (view) => {
                busy = false;
                if (!stopped) send(`event: live\ndata: ${JSON.stringify(view)}\n\n`);
              },
              (err: unknown) => {
                busy = false;
                deps.log.warn({ err: err instanceof Error ? err.name : 'unknown' }, 'console: a live update failed');
              },
            );
          };
          const cancel = every(tick, LIVE_EVERY_MS);
          const stop = (): void => {
            if (stopped) return;
            stopped = true;
            cancel();
          };
          tick();
          return stop;
        },
      },
    };
  }

  // ── stats, list, one call ─────────────────────────────────────────────

  async function stats(): Promise<StatsView> {
    const s = await deps.store.stats(new Date(now() - STATS_WINDOW_MS), STATS_BUCKET_MS);
    return { bucketMs: s.bucketMs, buckets: s.buckets, inProgress: s.inProgress };
  }

  async function listCalls(query: URLSearchParams, role: Role): Promise<CallListView> {
    const { filter, options, page, limit } = parseListQuery(query, now());
    const result = await deps.store.searchCalls(filter, options);
    return { calls: result.calls.map((c) => summaryView(c, role)), page, limit, hasMore: result.hasMore };
  }

  async function oneCall(sid: string, role: Role): Promise<Reply> {
    const record = await deps.store.get(sid);
    if (!record) return json(404, { error: 'no such call' });
    const view: CallView = {
      call: recordView(record, role),
      budgetMs: VOICE_BUDGET_MS,
      recording: Boolean(record.recording?.object && deps.recordings && record.recording.status !== 'opted_out'),
    };
    return json(200, view);
  }

  // ── recording ─────────────────────────────────────────────────────────

  async function recording(sid: string, rangeHeader: string | undefined): Promise<Reply> {
    const record = await deps.store.get(sid);
    if (!record) return json(404, { error: 'no such call' });
    const found = findRecording(record.recording, deps.recordings?.storage);
    if ('error' in found) return json(found.status, { error: found.error });
    const reader = await openRecording(found.storage, found.object, deps.recordings!.keys);
    const sourceHeader = reader.wavBytes - reader.audioBytes - (reader.audioBytes & 1);
    const sourceAudio = reader.audioBytes - (reader.audioBytes & 1); // whole stereo frames only
    const size = PCM_WAV_HEADER_BYTES + 2 * sourceAudio;
    const range = parseRange(rangeHeader, size, MAX_RANGE_BYTES);
    const headers: Record<string, string> = {
      'cache-control': 'no-store',
      'accept-ranges': 'bytes',
      'content-disposition': `inline; filename="${sid.replace(/[^A-Za-z0-9_-]/g, '')}.wav"`,
    };
    if (range === 'unsatisfiable') return { status: 416, headers: { ...headers, 'content-range': `bytes */${size}` }, type: 'application/json', body: JSON.stringify({ error: `range not satisfiable (the recording is ${size} bytes)` }) };
    const { start, end } = range ?? { start: 0, end: size };
    // A player's first request starts at 0: every chunk is checked then, so a tampered
    // recording is refused before any of it plays, not part-way through.
    if (start === 0) await verifyAll(reader, sourceHeader);
    const body = await pcmWavBytes(reader, sourceHeader, sourceAudio, start, end);
    if (range) headers['content-range'] = `bytes ${start}-${end - 1}/${size}`;
    return { status: range ? 206 : 200, headers, type: 'audio/wav', body };
  }

  return { handle };
}

/** Reads (and so authenticates) every chunk of the recording, a step at a time. */
async function verifyAll(reader: RecordingReader, sourceHeader: number): Promise<void> {
  for (let at = 0; at < reader.audioBytes; at += VERIFY_STEP_BYTES) {
    await reader.read(sourceHeader + at, sourceHeader + Math.min(reader.audioBytes, at + VERIFY_STEP_BYTES));
  }
}

/** Bytes [start, end) of the PCM16 WAV of `sourceAudio` µ-law bytes, converting only the source bytes they cover. */
async function pcmWavBytes(reader: RecordingReader, sourceHeader: number, sourceAudio: number, start: number, end: number): Promise<Uint8Array> {
  const out = Buffer.alloc(end - start);
  const header = pcm16StereoWavHeader(2 * sourceAudio);
  if (start < PCM_WAV_HEADER_BYTES) header.copy(out, 0, start, Math.min(end, PCM_WAV_HEADER_BYTES));
  const d0 = Math.max(start, PCM_WAV_HEADER_BYTES) - PCM_WAV_HEADER_BYTES;
  const d1 = end - PCM_WAV_HEADER_BYTES;
  if (d1 <= d0) return out;
  // Converted byte k comes from source byte floor(k / 2) (its low byte when k is even, high when odd).
  const s0 = Math.floor(d0 / 2);
  const s1 = Math.ceil(d1 / 2);
  const source = await reader.read(sourceHeader + s0, sourceHeader + s1);
  const outAt = PCM_WAV_HEADER_BYTES + d0 - start; // where converted byte d0 lands in `out`
  for (let k = d0; k < d1; k++) {
    const sample = ULAW_TO_PCM16[source[(k >> 1) - s0]!]!;
    out[outAt + k - d0] = k & 1 ? (sample >> 8) & 0xff : sample & 0xff;
  }
  return out;
}

/** The 44-byte header of a PCM16 stereo 8 kHz WAV holding `dataBytes`. */
export function pcm16StereoWavHeader(dataBytes: number): Buffer {
  const h = Buffer.alloc(PCM_WAV_HEADER_BYTES);
  const u32 = (n: number): number => (n > 0xffffffff ? 0xffffffff : n);
  h.write('RIFF', 0, 'latin1');
  h.writeUInt32LE(u32(36 + dataBytes), 4);
  h.write('WAVE', 8, 'latin1');
  h.write('fmt ', 12, 'latin1');
  h.writeUInt32LE(16, 16);
  h.writeUInt16LE(1, 20); // PCM
  h.writeUInt16LE(2, 22); // channels: caller, heard
  h.writeUInt32LE(8000, 24); // Hz
  h.writeUInt32LE(32000, 28); // bytes per second
  h.writeUInt16LE(4, 32); // block align
  h.writeUInt16LE(16, 34); // bits per sample
  h.write('data', 36, 'latin1');
  h.writeUInt32LE(u32(dataBytes), 40);
  return h;
}

/** G.711 µ-law → linear PCM16 (ITU-T G.191 expansion), all 256 codes. */
const ULAW_TO_PCM16 = Int16Array.from({ length: 256 }, (_, code) => {
  const u = ~code & 0xff;
  const t = (((u & 0x0f) << 3) + 0x84) << ((u & 0x70) >> 4);
  return u & 0x80 ? 0x84 - t : t - 0x84;
});

// ── views and query parsing (pure) ──────────────────────────────────────

function remoteLive(c: CallSummary, role: Role, at: number): LiveCallView {
  const started = c.startedAt ? Date.parse(c.startedAt) : NaN;
  return {
    callSid: c.callSid,
    from: showNumber(c.from, role),
    agent: c.agent ?? '',
    startedAt: c.startedAt ?? '',
    durationMs: Number.isFinite(started) ? Math.max(0, at - started) : 0,
    speaking: 'none',
    turns: 0,
    lastTurnMs: null,
    model: 'up',
    audioMode: '',
    instance: '',
    local: false,
  };
}

export function summaryView(c: CallSummary, role: Role): CallSummaryView {
  return {
    callSid: c.callSid,
    from: showNumber(c.from, role),
    to: showNumber(c.to, role),
    startedAt: c.startedAt,
    durationMs: c.durationMs,
    state: c.state,
    status: c.status,
    outcome: c.outcome,
    endReason: c.endReason,
    agent: c.agent,
    direction: c.direction,
    estimatedCostUsd: c.estimatedCostUsd,
  };
}

/** The record with from/to shown as `role` allows; for `read`, either number is masked where a tool call's args or output repeat it. */
export function recordView(record: CallRecord, role: Role): CallView['call'] {
  const view = { ...record, from: showNumber(record.from, role), to: showNumber(record.to, role) };
  if (role === 'admin') return view;
  const numbers = [record.from, record.to].filter((n): n is string => typeof n === 'string' && /\d{4}/.test(n));
  if (numbers.length === 0) return view;
  const scrub = (s: string): string => numbers.reduce((acc, n) => acc.split(n).join(maskNumber(n)), s);
  view.toolCalls = record.toolCalls.map((t) => ({
    ...t,
    args: scrub(t.args),
    output: scrub(t.output),
    record: t.record === undefined ? undefined : (JSON.parse(scrub(JSON.stringify(t.record) ?? 'null')) as unknown),
  }));
  return view;
}

const SORTS: readonly CallSort[] = ['started', 'duration', 'cost'];

/** GET /console/api/calls's query → the store's filter and page; a bad value throws BadQuery naming the parameter. */
export function parseListQuery(q: URLSearchParams, nowMs: number): { filter: CallFilter; options: SearchOptions; page: number; limit: number } {
  const get = (name: string): string | undefined => {
    const v = q.get(name);
    return v === null || v.trim() === '' ? undefined : v.trim();
  };
  const time = (name: string): Date | undefined => {
    const v = get(name);
    if (v === undefined) return undefined;
    const d = parseSince(v, nowMs);
    if (!d) throw new BadQuery(`${name}: expected an ISO time (2026-12-06T10:00Z) or an age (30m, 2h, 7d), got ${JSON.stringify(v.slice(0, 40))}`);
    return d;
  };
  const word = (name: string): string | undefined => {
    const v = get(name);
    if (v !== undefined && v.length > MAX_FILTER_CHARS) throw new BadQuery(`${name}: at most ${MAX_FILTER_CHARS} characters`);
    return v;
  };
  const int = (name: string, min: number, max: number): number | undefined => {
    const v = get(name);
    if (v === undefined) return undefined;
    if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) throw new BadQuery(`${name}: expected a whole number from ${min} to ${max}, got ${JSON.stringify(v.slice(0, 40))}`);
    return Number(v);
  };
  const filter: CallFilter = {};
  const since = time('since');
  const until = time('until');
  if (since) filter.since = since;
  if (until) filter.until = until;
  for (const [param, field] of [['outcome', 'outcome'], ['endReason', 'endReason'], ['agent', 'agent'], ['tool', 'tool']] as const) {
    const v = word(param);
    if (v !== undefined) filter[field] = v;
  }
  const minLatency = int('minLatencyMs', 0, 3_600_000);
  if (minLatency !== undefined) filter.minTurnLatencyMs = minLatency;
  const sort = get('sort');
  if (sort !== undefined && !SORTS.includes(sort as CallSort)) throw new BadQuery(`sort: expected started, duration or cost, got ${JSON.stringify(sort.slice(0, 40))}`);
  const dir = get('dir');
  if (dir !== undefined && dir !== 'asc' && dir !== 'desc') throw new BadQuery(`dir: expected asc or desc, got ${JSON.stringify(dir.slice(0, 40))}`);
  const page = int('page', 1, MAX_PAGE) ?? 1;
  const limit = int('limit', 1, MAX_LIMIT) ?? DEFAULT_LIMIT;
  const options: SearchOptions = { sort: (sort as CallSort | undefined) ?? 'started', dir: (dir as 'asc' | 'desc' | undefined) ?? 'desc', limit, offset: (page - 1) * limit };
  return { filter, options, page, limit };
}

/** A route's shape for logs (no call SID, which would tie a log line to a call). */
function routeName(path: string): string {
  return path.replace(/^\/console\/api\/calls\/[^/]+/, '/console/api/calls/:sid').replace(/^\/console\/assets\/.*/, '/console/assets/…');
}
