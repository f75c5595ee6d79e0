/**
 * The fuzzer (`npm run fuzz -- --seed N --messages M [--mode transcode|passthrough] [--provider realtime|live]`):
 * hostile traffic against the real server, on loopback, while one real call
 * runs beside it.
 *
 * Provider (PROVIDER): `realtime` (default) runs against the Realtime
 * stand-in and mutates the recorded Realtime server events; `live` runs the
 * same rig with PROVIDER=live against the GPT-Live stand-in
 * (src/sim/live-server.ts) and mutates GPT-Live server events built from the
 * Live shapes (liveServerEventBases), judged by parseLiveServerEvent and the
 * Live sessions' `malformed` counters. A victim's injection starts once its
 * handshake is over (session.updated; Live: session.started). A well-formed
 * Live `session.closed` is drawn but withheld (it ends the session by
 * protocol, and the exact rule needs the victims' connections open); the
 * report counts them.
 *
 * What runs, all in this process:
 *   - the real server (startCallbridge: real edge, relay, wasm transcoder,
 *     SQLite store in a temporary directory), unsigned (ALLOW_UNSIGNED=true);
 *   - the model stand-in (src/sim/model-server.ts; Live: live-server.ts), reached through a small
 *     WebSocket proxy of ours; the proxy passes the real call's model
 *     connection (the first one) through untouched and injects mutated server
 *     events into every other connection ("victim" calls);
 *   - one real call (src/sim/caller.ts), scripted like the demo's;
 *   - hostile Twilio Media Stream sockets: short-lived unadmitted ones (no
 *     valid start) and a few admitted "victim" calls (webhook + valid start)
 *     kept open for the whole run, all sending mutated messages from a seeded
 *     PRNG (same seed, same messages).
 *
 * Pass/fail (exit 0/1 from the runner), checked at the end:
 *   - nothing crashed: no uncaught exception or unhandled rejection in the
 *     process, no exception caught around a call-layer handler
 *     (`callbridge_handler_errors_total` stays 0), the server still answers;
 *   - the real call's audio is intact: every turn answered, every stand-in
 *     response for it completed, the caller heard all the audio the model
 *     sent (frames lost 0), no clears, no protocol violations, its record
 *     ends `caller_hangup` with 0 protocol errors;
 *   - memory stays flat: RSS sampled every RSS_SAMPLE_MS; growth from the end
 *     of the warm-up (the first WARMUP_SHARE of messages) to the highest later
 *     sample ≤ rssLimitMiB (RSS is the whole process: server, stand-in,
 *     proxy and fuzzer);
 *   - every rejected message is counted. Accounting rule (exact):
 *       Twilio side: the increase of `callbridge_twilio_protocol_errors_total`
 *       (all reasons) equals the number of messages the fuzzer sent that the
 *       server must count — a frame that is binary, too large (edge limit) or
 *       not UTF-8; a text that is not a valid Media Streams message; a valid
 *       media/mark/dtmf/stop before a start; a valid one with another stream's
 *       SID; a second start; a start with an unsupported media format. A
 *       message's class comes from how it was built (the mutation, checked
 *       against PROTOCOLS.md's shapes) and, for mutations whose outcome
 *       depends on validation details, from the parser itself; the two must
 *       agree wherever the mutation decides. Valid starts without the stream's
 *       token are refused with close 1008 and are not a protocol error: they
 *       are counted by the fuzzer from the close code it sees. Keypad floods
 *       on a victim end with '#' every 31 digits, so the call's 32-digit
 *       buffer never overflows (`dtmf_overflow` depends on timing).
 *       A victim call the server ends mid-run makes its messages uncertain
 *       (0..sent), as does a hostile socket the server closes unasked; the
 *       report says how many, and the test requires none.
 *       Model side: the sum of the provider sessions' `malformed` counters
 *       equals the number of injected server events the client must reject
 *       (binary frames; texts parseServerEvent, for Live parseLiveServerEvent,
 *       rejects). Exact while every victim model connection stays open to
 *       the end; when one closes early,
 *       events written to it just before its close may not be read, and the
 *       rule becomes: rejected-on-connections-open-at-the-end ≤ counted ≤
 *       rejected-in-all (the report says which rule applied).
 *     Messages are only sent on sockets the fuzzer keeps open (or closes
 *     itself, after which the server has read everything sent before); a
 *     message that makes the server close a socket is the last one sent on it.
 *
 * Bounded: `messages` in total (Twilio and model side), `maxSeconds` overall;
 * the traffic is spread over `spreadMs` (default 20 s, about the real call's
 * length) unless that is 0. The frames are a function of the seed; their
 * interleaving with the server's own timers is not, so counts vary a little
 * between runs of one seed while the rule holds in each.
 */
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import WebSocket from 'ws';
import { loadConfig } from '../config.js';
import { silentLogger, type Logger } from '../log.js';
import { liveProviderFromConfig, openAIProviderFromConfig, startCallbridge, type Callbridge } from '../main.js';
import type { ModelProvider, ModelSession, ModelSessionOptions } from '../call/voice-model.js';
import type { OpenAIRealtimeSession } from '../realtime/openai-provider.js';
import type { LiveSession } from '../live/live-provider.js';
import { ReachabilityTracker } from '../call/reachability.js';
import { parseServerEvent } from '../realtime/protocol.js';
import { parseLiveServerEvent } from '../live/protocol.js';
import { MAX_WS_MESSAGE_BYTES, type EdgeChoice } from '../server/app.js';
import { MAX_MEDIA_PAYLOAD_CHARS, parseTwilioMessage } from '../twilio/media-stream.js';
import { placeCall, type CallResult, type Utterance } from './caller.js';
import { startModelStandIn, type StandInSession } from './model-server.js';
import { startLiveStandIn, type LiveStandInSession } from './live-server.js';
import { FRAME_MS } from '../dsp/format.js';
import { WsProxy, type ProxiedPair } from './ws-proxy.js';

export interface FuzzOptions {
  seed: number;
  /** Hostile messages in total: Twilio stream messages plus injected model events. */
  messages: number;
  mode?: 'transcode' | 'passthrough';
  edge?: EdgeChoice;
  /**
   * The voice-model provider under fire (PROVIDER): `realtime` (default)
   * against the Realtime stand-in, or `live` against the GPT-Live stand-in
   * (src/sim/live-server.ts), its server events mutated from the Live shapes.
   */
  provider?: FuzzProvider;
  /** The whole run must end within this (s); past it the run stops and fails. */
  maxSeconds?: number;
  /** Allowed RSS growth after the warm-up, MiB. */
  rssLimitMiB?: number;
  /** Admitted victim calls kept open for the run. */
  victims?: number;
  /** Concurrent unadmitted hostile sockets. */
  workers?: number;
  /** Share of messages injected as model server events (0..1). */
  modelShare?: number;
  /**
   * Hostile traffic is spread over at least this long (ms), so the real call
   * (about 20 s) is under fire throughout; a run that cannot keep the pace
   * goes as fast as it can. 0 = as fast as possible.
   */
  spreadMs?: number;
  /** Progress lines (none by default). */
  progress?: (line: string) => void;
  /** Server log (default silent). */
  log?: Logger;
}

export type FuzzProvider = 'realtime' | 'live';

export interface FuzzReport {
  ok: boolean;
  failures: string[];
  seed: number;
  provider: FuzzProvider;
  mode: string;
  edge: string;
  elapsedS: number;
  /** Hostile messages per second over the hostile phase. */
  messagesPerS: number;
  twilio: {
    sent: number;
    /** By how each message was built. */
    byKind: Record<string, number>;
    expectedCounted: number;
    counted: number;
    countedByReason: Record<string, number>;
    refusedStarts: number;
    socketsOpened: number;
    socketsClosedByServer: number;
    /** Victim calls the server ended mid-run (their messages become uncertain). */
    victimsClosedByServer: number;
    uncertain: number;
  };
  model: {
    injected: number;
    byKind: Record<string, number>;
    expectedRejected: number;
    /** Well-formed session-ending events drawn and not sent (Live `session.closed`: it ends the victim's session by protocol). */
    withheld: number;
    rejectedOnOpenConnections: number;
    counted: number;
    unhandled: number;
    victimConnections: number;
    closedEarly: number;
    rule: 'exact' | 'range';
  };
  realCall: {
    callSid: string;
    turnsAnswered: number;
    turns: number;
    heardMs: number;
    sentMs: number;
    framesLost: number;
    responses: string[];
    protocolViolations: string[];
    clears: number;
    endReason: string | null;
    recordProtocolErrors: number | null;
  } | null;
  rss: { warmupMiB: number; maxAfterWarmupMiB: number; growthMiB: number; samples: number };
  /**
   * The live JS heap (heapUsed right after a full collection) when the
   * warm-up ends and after the run, to tell a leak from V8 sizing its heap up
   * (which RSS alone cannot); the heap reserved and the memory outside it
   * (Buffers, wasm) at the end.
   */
  heap: { liveAtWarmupMiB: number; liveAtEndMiB: number; totalMiB: number; externalMiB: number };
  handlerErrors: number;
  crashes: string[];
  disagreements: string[];
}

const RSS_SAMPLE_MS = 250;
/**
 * Most the live heap may grow from the warm-up to the end (seen: 400k
 * messages, seed 11, 27.4 → 21.5 MiB; nothing the relay keeps per message
 * or per socket should survive the sockets).
 */
const LIVE_HEAP_LIMIT_MIB = 16;
const WARMUP_SHARE = 0.2;
const MIB = 1024 * 1024;

// ── Seeded PRNG (mulberry32): same seed, same run ─────────────────────────

export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  hex(n: number): string {
    let s = '';
    for (let i = 0; i < n; i++) s += '0123456789abcdef'[this.int(16)];
    return s;
  }
  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }
}

// ── Twilio message mutations ──────────────────────────────────────────────

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type Obj = { [k: string]: Json };

/**
 * One hostile frame. `expect`: what the mutation itself decides —
 * `parses` (a valid Media Streams message), `rejected` (not one: counted as
 * malformed), `oracle` (depends on validation details: the parser decides),
 * `binary` (counted), `terminal_oversize` / `terminal_utf8` (the edge closes
 * the socket and counts it).
 */
export interface TwilioFrame {
  kind: string;
  data: string | Buffer;
  binary: boolean;
  expect: 'parses' | 'rejected' | 'oracle' | 'binary' | 'terminal_oversize' | 'terminal_utf8';
}

/** Required fields of each Twilio → server message (PROTOCOLS.md); everything but `start.customParameters`. */
const OPTIONAL_PATHS = new Set(['start.customParameters']);
/** Fields whose wire type is a number-like string (Twilio sends numbers as strings). */
const NUMBER_LIKE = new Set(['sequenceNumber', 'media.chunk', 'media.timestamp']);
const INJECTION = 'x","type":"session.update';

export interface StreamIds {
  streamSid: string;
  callSid: string;
  accountSid: string;
  token?: string;
}

export function sid(rng: Rng, prefix: 'MZ' | 'CA' | 'AC'): string {
  return prefix + rng.hex(32);
}

/** A valid message of each Twilio → server kind, per PROTOCOLS.md. */
export function baseTwilioMessage(rng: Rng, event: string, ids: StreamIds, seq: number): Obj {
  const common = { sequenceNumber: String(seq), streamSid: ids.streamSid };
  switch (event) {
    case 'connected':
      return { event: 'connected', protocol: 'Call', version: '1.0.0' };
    case 'start':
      return {
        event: 'start',
        ...common,
        start: {
          accountSid: ids.accountSid,
          streamSid: ids.streamSid,
          callSid: ids.callSid,
          tracks: ['inbound'],
          customParameters: ids.token ? { token: ids.token } : { k: 'v' },
          mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 },
        },
      };
    case 'media':
      return {
        event: 'media',
        ...common,
        media: { track: 'inbound', chunk: String(seq), timestamp: String(seq * FRAME_MS), payload: rng.bytes(160).toString('base64') },
      };
    case 'dtmf':
      return { event: 'dtmf', ...common, dtmf: { track: 'inbound_track', digit: rng.pick(['0', '5', '9', '*', '#', 'A', 'D']) } };
    case 'mark':
      return { event: 'mark', ...common, mark: { name: `m${rng.int(1000)}` } };
    case 'stop':
      return { event: 'stop', ...common, stop: { accountSid: ids.accountSid, callSid: ids.callSid } };
    default:
      throw new Error(`no base message for ${event}`);
  }
}

function paths(o: Obj, prefix = ''): string[] {
  const out: string[] = [];
  for (const [k, v] of Object.entries(o)) {
    const p = prefix ? `${prefix}.${k}` : k;
    out.push(p);
    if (v !== null && typeof v === 'object' && !Array.isArray(v) && p !== 'start.customParameters') out.push(...paths(v, p));
  }
  return out;
}

function getParent(o: Obj, path: string): [Obj, string] {
  const parts = path.split('.');
  let cur: Obj = o;
  for (const p of parts.slice(0, -1)) cur = cur[p] as Obj;
  return [cur, parts.at(-1)!];
}

/** A value of a type the field can never take (and never lenient-parsed). */
function wrongType(rng: Rng, current: Json, path: string): Json {
  if (typeof current === 'string') {
    if (NUMBER_LIKE.has(path)) return rng.pick<Json>([null, true, [], {}, -1, 1.5, '-3', '1e3', '0x10', '']);
    return rng.pick<Json>([null, false, 42, [], {}]);
  }
  if (typeof current === 'number') return rng.pick<Json>([null, true, String(current), [], {}, -1, 0.5]);
  if (Array.isArray(current)) return rng.pick<Json>([null, 'inbound', 1, {}, [1]]);
  return rng.pick<Json>([null, 'x', 3, [], true]);
}

function shuffleKeys(v: Json, rng: Rng): Json {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return v;
  const keys = Object.keys(v);
  for (let i = keys.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [keys[i], keys[j]] = [keys[j]!, keys[i]!];
  }
  const out: Obj = {};
  for (const k of keys) out[k] = shuffleKeys(v[k]!, rng);
  return out;
}

const TWILIO_EVENTS = ['connected', 'start', 'media', 'media', 'media', 'dtmf', 'mark', 'mark', 'stop'];

/**
 * One mutated Twilio frame. `ids` are the socket's own SIDs (a victim's
 * real ones; made-up ones on an unadmitted socket). `allowTerminal`: frames
 * that make the edge close the socket may be produced.
 */
export function mutateTwilio(rng: Rng, ids: StreamIds, seq: number, allowTerminal: boolean): TwilioFrame {
  const r = rng.next();
  if (allowTerminal && r < 0.004) {
    // A frame over the edge's limit: the socket is closed.
    const n = MAX_WS_MESSAGE_BYTES + 1 + rng.int(rng.chance(0.2) ? 4 * MIB : 4096);
    return { kind: 'huge_frame', data: `{"event":"media","pad":"${'A'.repeat(n)}"}`, binary: false, expect: 'terminal_oversize' };
  }
  if (allowTerminal && r < 0.008) {
    const bytes = Buffer.concat([Buffer.from('{"event":"media","x":"'), Buffer.from([0xc3, 0x28, 0xff, 0xfe]), Buffer.from('"}')]);
    return { kind: 'invalid_utf8', data: bytes, binary: false, expect: 'terminal_utf8' };
  }
  if (r < 0.03) return { kind: 'binary', data: rng.bytes(rng.range(0, 400)), binary: true, expect: 'binary' };
  if (r < 0.05) {
    return { kind: 'not_json', data: rng.pick(['', 'null', '[]', '42', '"media"', 'hello', '{', '{"event":']), binary: false, expect: 'rejected' };
  }

  const event = rng.pick(TWILIO_EVENTS);
  const msg = baseTwilioMessage(rng, event, ids, seq);
  const op = rng.pick([
    'identity', 'identity', 'reorder', 'whitespace', 'drop', 'drop', 'retype', 'retype', 'dup_same', 'dup_bad',
    'truncate', 'unknown_event', 'no_event', 'bad_base64', 'injection', 'oversize_payload', 'bad_sid', 'other_sid',
    'bad_digit', 'wrong_format',
  ] as const);
  let expect: TwilioFrame['expect'] = 'parses';
  let text: string | undefined;
  const ps = paths(msg).filter((p) => p !== 'event');
  switch (op) {
    case 'identity':
      break;
    case 'reorder':
      return { kind: `${event}:reorder`, data: JSON.stringify(shuffleKeys(msg, rng)), binary: false, expect: 'parses' };
    case 'whitespace':
      return { kind: `${event}:whitespace`, data: JSON.stringify(msg, null, rng.range(1, 3)), binary: false, expect: 'parses' };
    case 'drop': {
      if (ps.length === 0) break;
      const p = rng.pick(ps);
      const [parent, key] = getParent(msg, p);
      delete parent[key];
      expect = OPTIONAL_PATHS.has(p) || p.startsWith('start.customParameters.') ? 'parses' : 'rejected';
      return { kind: `${event}:drop`, data: JSON.stringify(msg), binary: false, expect };
    }
    case 'retype': {
      if (ps.length === 0) break;
      const p = rng.pick(ps);
      const [parent, key] = getParent(msg, p);
      parent[key] = wrongType(rng, parent[key]!, p);
      // customParameters: an object of strings; a wrong-typed value or a non-object is invalid.
      return { kind: `${event}:retype`, data: JSON.stringify(msg), binary: false, expect: 'rejected' };
    }
    case 'dup_same': {
      const body = JSON.stringify(msg);
      const first = Object.keys(msg)[0]!;
      return { kind: `${event}:dup_same`, data: `{${JSON.stringify(first)}:${JSON.stringify(msg[first])},${body.slice(1)}`, binary: false, expect: 'parses' };
    }
    case 'dup_bad': {
      const body = JSON.stringify(msg);
      const key = event === 'connected' ? 'protocol' : rng.pick(['sequenceNumber', 'streamSid', 'event']);
      const bad = key === 'sequenceNumber' ? '"x"' : key === 'streamSid' ? '"MZ1"' : key === 'protocol' ? '7' : '"nope"';
      return { kind: `${event}:dup_bad`, data: `${body.slice(0, -1)},${JSON.stringify(key)}:${bad}}`, binary: false, expect: 'rejected' };
    }
    case 'truncate': {
      const body = JSON.stringify(msg);
      return { kind: `${event}:truncate`, data: body.slice(0, rng.int(body.length)), binary: false, expect: 'rejected' };
    }
    case 'unknown_event':
      msg.event = rng.pick(['clear', 'Media', 'media ', 'hangup', 'x'.repeat(rng.range(1, 100))]);
      expect = 'rejected';
      break;
    case 'no_event':
      if (rng.chance(0.5)) delete msg.event;
      else msg.event = rng.pick<Json>([null, 1, {}, ['media']]);
      expect = 'rejected';
      break;
    case 'bad_base64':
    case 'injection':
    case 'oversize_payload': {
      const m = baseTwilioMessage(rng, 'media', ids, seq);
      const media = m.media as Obj;
      media.payload =
        op === 'injection'
          ? INJECTION
          : op === 'oversize_payload'
            ? rng.bytes(Math.ceil(((MAX_MEDIA_PAYLOAD_CHARS + 4 + rng.int(4000)) * 3) / 4)).toString('base64')
            : rng.pick(['', 'A', 'AAA', 'AA=A', '====', '!!!!', 'AAAA AAAA', 'AAAA\nAAAA', '-_-_', 'AAAAA===', `${media.payload as string}"`]);
      return { kind: `media:${op}`, data: JSON.stringify(m), binary: false, expect: 'rejected' };
    }
    case 'bad_sid': {
      const sidPaths = ps.filter((p) => /(streamSid|callSid|accountSid)$/.test(p));
      if (sidPaths.length === 0) break;
      const p = rng.pick(sidPaths);
      const [parent, key] = getParent(msg, p);
      const v = parent[key] as string;
      parent[key] = rng.pick([v.slice(0, -1), `${v}0`, `XX${v.slice(2)}`, v.slice(0, 2) + 'g'.repeat(32), v.toLowerCase(), `${v.slice(0, 33)}"`]);
      if (parent[key] === v) break;
      return { kind: `${event}:bad_sid`, data: JSON.stringify(msg), binary: false, expect: 'rejected' };
    }
    case 'other_sid':
      if ('streamSid' in msg) msg.streamSid = sid(rng, 'MZ');
      break;
    case 'bad_digit': {
      const m = baseTwilioMessage(rng, 'dtmf', ids, seq);
      (m.dtmf as Obj).digit = rng.pick(['', '12', 'E', 'a', ' ', '\u0000', '١', '**']);
      return { kind: 'dtmf:bad_digit', data: JSON.stringify(m), binary: false, expect: 'rejected' };
    }
    case 'wrong_format': {
      if (event !== 'start') break;
      const f = (msg.start as Obj).mediaFormat as Obj;
      const which = rng.int(3);
      if (which === 0) f.encoding = rng.pick(['audio/x-alaw', 'audio/l16', '']);
      else if (which === 1) f.sampleRate = rng.pick([16000, 44100, 1]);
      else f.channels = 2;
      // A well-formed start in a format callbridge does not take: parses; the call decides.
      return { kind: 'start:wrong_format', data: JSON.stringify(msg), binary: false, expect: 'parses' };
    }
  }
  text ??= JSON.stringify(msg);
  return { kind: `${event}:${op}`, data: text, binary: false, expect };
}

/** A burst is a flood (one valid mark or keypad message after another) this often. */
const FLOOD_SHARE = 0.15;

/** One frame of a burst: a flood's next valid message, or a mutated one. */
function burstFrame(rng: Rng, ids: StreamIds, seq: number, allowTerminal: boolean, flood: 'mark' | 'dtmf' | undefined): TwilioFrame {
  if (!flood) return mutateTwilio(rng, ids, seq, allowTerminal);
  return { kind: `${flood}:flood`, data: JSON.stringify(baseTwilioMessage(rng, flood, ids, seq)), binary: false, expect: 'parses' };
}

/**
 * What the server must do with a frame on a socket in `state`: count it
 * (`counted`), take it (`ok`), or close the socket after it (`close_*`).
 * Returns the mutation/parser disagreement too, if any.
 */
export function classifyTwilio(
  f: TwilioFrame,
  state: { admitted: boolean; streamSid: string },
): { verdict: 'counted' | 'ok' | 'close_counted' | 'close_refused' | 'close_format' | 'end_call'; disagreement?: string; digit?: string } {
  if (f.expect === 'binary') return { verdict: 'counted' };
  if (f.expect === 'terminal_oversize' || f.expect === 'terminal_utf8') return { verdict: 'close_counted' };
  const text = f.data as string;
  const parsed = parseTwilioMessage(text);
  let disagreement: string | undefined;
  if (f.expect === 'rejected' && parsed.ok) disagreement = `${f.kind}: the parser took a message the protocol forbids: ${text.slice(0, 160)}`;
  if (f.expect === 'parses' && !parsed.ok) disagreement = `${f.kind}: the parser refused a valid message (${parsed.error}): ${text.slice(0, 160)}`;
  if (!parsed.ok) return { verdict: 'counted', disagreement };
  const m = parsed.msg;
  if (m.event === 'connected') return { verdict: 'ok', disagreement };
  if (m.event === 'start') {
    if (state.admitted) return { verdict: 'counted', disagreement };
    const fmt = m.start.mediaFormat;
    if (fmt.encoding !== 'audio/x-mulaw' || fmt.sampleRate !== 8000 || fmt.channels !== 1) return { verdict: 'close_format', disagreement };
    return { verdict: 'close_refused', disagreement };
  }
  if (!state.admitted || m.streamSid !== state.streamSid) return { verdict: 'counted', disagreement };
  if (m.event === 'stop') return { verdict: 'end_call', disagreement };
  return { verdict: 'ok', disagreement, digit: m.event === 'dtmf' ? m.dtmf.digit : undefined };
}

// ── Model server event mutations ──────────────────────────────────────────

export interface ModelFrame {
  kind: string;
  data: string | Buffer;
  binary: boolean;
  /** The mutation alone makes it malformed (the parser must agree). */
  certainlyMalformed: boolean;
}

/** Server events to mutate: the recorded GA fixtures, found from this module up to the repository root. */
export function loadServerEventFixtures(): Obj[] {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const p = join(dir, 'test/fixtures/realtime/server-events.jsonl');
    if (existsSync(p)) {
      return readFileSync(p, 'utf8')
        .split('\n')
        .filter((l) => l.trim())
        .map((l) => JSON.parse(l) as Obj);
    }
    dir = dirname(dir);
  }
  throw new Error('test/fixtures/realtime/server-events.jsonl not found above this module');
}

/** Event types a victim's session must not receive whole and valid: they would close or re-key it (a handshake event mid-call is fine to mutate). */
const VALID_REPLAY_SKIP = new Set<string>([]);

export function mutateModelEvent(rng: Rng, bases: readonly Obj[]): ModelFrame {
  const r = rng.next();
  if (r < 0.03) return { kind: 'binary', data: rng.bytes(rng.range(1, 300)), binary: true, certainlyMalformed: true };
  const base = structuredClone(rng.pick(bases));
  if (r < 0.06) return { kind: 'not_object', data: rng.pick(['null', '[]', '[{"type":"error"}]', '7', '"response.done"', 'true']), binary: false, certainlyMalformed: true };
  if (r < 0.1) {
    const body = JSON.stringify(base);
    return { kind: 'truncate', data: body.slice(0, rng.int(body.length)), binary: false, certainlyMalformed: true };
  }
  if (r < 0.14) {
    if (rng.chance(0.5)) delete base.type;
    else base.type = rng.pick<Json>([null, 3, '', {}, ['error']]);
    return { kind: 'no_type', data: JSON.stringify(base), binary: false, certainlyMalformed: true };
  }
  if (r < 0.2) {
    base.type = rng.pick(['response.output_audio.deltas', 'fuzz.unknown', 'Error', 'session.deleted', `x.${rng.hex(6)}`]);
    return { kind: 'unknown_type', data: JSON.stringify(base), binary: false, certainlyMalformed: false };
  }
  if (r < 0.3 && !VALID_REPLAY_SKIP.has(String(base.type))) {
    return { kind: `valid:${String(base.type)}`, data: JSON.stringify(base), binary: false, certainlyMalformed: false };
  }
  // A known type with one field dropped, retyped, or its audio replaced by bad base64: the parser decides.
  const ps = paths(base).filter((p) => p !== 'type');
  if (ps.length === 0) return { kind: `valid:${String(base.type)}`, data: JSON.stringify(base), binary: false, certainlyMalformed: false };
  const p = rng.pick(ps);
  const [parent, key] = getParent(base, p);
  const op = rng.pick(['drop', 'retype', 'retype', 'huge_string', 'bad_audio']);
  if (op === 'drop') delete parent[key];
  else if (op === 'retype') parent[key] = wrongType(rng, parent[key]!, p);
  // Large but plausible: callbridge keeps a call's transcript for replay (call/history.ts), so a
  // victim call that lives the whole run holds every such string until it ends.
  else if (op === 'huge_string') parent[key] = 'Z'.repeat(rng.range(1000, 32_000));
  else parent[key] = rng.pick([INJECTION, '!!!', 'A', '']);
  return { kind: `${String(base.type)}:${op}`, data: JSON.stringify(base), binary: false, certainlyMalformed: false };
}

/** Whether the provider must count this injected frame as malformed, and a disagreement if the mutation already decided otherwise. */
export function classifyModel(f: ModelFrame): { rejected: boolean; unknown: boolean; disagreement?: string } {
  if (f.binary) return { rejected: true, unknown: false };
  const parsed = parseServerEvent(f.data as string);
  const disagreement = f.certainlyMalformed && parsed.ok ? `${f.kind}: the provider's parser took it: ${(f.data as string).slice(0, 160)}` : undefined;
  return { rejected: !parsed.ok, unknown: parsed.ok && parsed.event.type === 'unhandled', disagreement };
}

// ── GPT-Live server event mutations (provider `live`) ─────────────────────

/**
 * One valid event of every GPT-Live server type, from the shapes in
 * docs/live-protocol.md (the `openai` package's `resources/live` types):
 * the session lifecycle, audio and timed transcript deltas, the context
 * acknowledgments, delegation and its nested Responses stream (a function
 * call in all its steps, a text answer, each way a response ends), usage,
 * close, error and info. There are no recorded Live fixtures; these are the
 * bases the mutations start from.
 */
export function liveServerEventBases(): Obj[] {
  const session: Obj = {
    id: 'sess_live1',
    expires_at: 1_800_000_000,
    model: 'gpt-live-1.1',
    status: 'active',
    audio: { format: { type: 'audio/pcmu', rate: 8000 }, output: { voice: 'marin' } },
    delegation: { type: 'responses', responses: { model: 'gpt-5-mini', tools: [] } },
    input: [],
    instructions: 'Be brief.',
  };
  const audio = Buffer.alloc(480, 0x7f).toString('base64');
  const call: Obj = { type: 'function_call', id: 'fc_1', call_id: 'call_live1', name: 'check_eligibility', arguments: '{"member_id":"A123"}', status: 'completed' };
  const message: Obj = { type: 'message', id: 'msg_1', role: 'assistant', status: 'completed', content: [{ type: 'output_text', text: 'You are covered.', annotations: [] }] };
  const nested = (event: Obj): Obj => ({ type: 'response.event', event_id: 'event_9', delegation_id: 'dlg_1', event: { sequence_number: 3, ...event } });
  const usage: Obj = { input_tokens: 520, output_tokens: 12, total_tokens: 532 };
  return [
    { type: 'session.started', event_id: 'event_1', session, client_event_id: 'evt_c1' },
    { type: 'session.updated', event_id: 'event_2', session },
    { type: 'session.output_audio.delta', event_id: 'event_3', delta: audio },
    { type: 'session.output_audio.delta', event_id: 'event_3', delta: audio },
    { type: 'session.output_transcript.delta', event_id: 'event_4', delta: ' Hello', start_ms: 1200, end_ms: 1460 },
    { type: 'session.output_transcript.delta', event_id: 'event_4', delta: ' there', start_ms: 1460, end_ms: 1700 },
    { type: 'session.input_transcript.delta', event_id: 'event_5', delta: 'Can you', start_ms: 3000, end_ms: 3500 },
    { type: 'session.input_audio.muted', event_id: 'event_6' },
    { type: 'session.input_audio.unmuted', event_id: 'event_6' },
    { type: 'session.instructions.appended', event_id: 'event_7', start_ms: 4000, end_ms: 4000 },
    { type: 'session.thinking.appended', event_id: 'event_7', start_ms: 4000, end_ms: 4010 },
    { type: 'session.commentary.appended', event_id: 'event_7', start_ms: 4010, end_ms: 4010 },
    { type: 'session.delegation.created', event_id: 'event_8', delegation: { id: 'dlg_1', type: 'delegation', target: 'responses', response_id: 'resp_b1' }, offset_ms: 4100 },
    nested({ type: 'response.created', response: { id: 'resp_b1', object: 'response', status: 'in_progress', output: [] } }),
    nested({ type: 'response.output_item.added', response_id: 'resp_b1', output_index: 0, item: { ...call, arguments: '', status: 'in_progress' } }),
    nested({ type: 'response.function_call_arguments.delta', item_id: 'fc_1', output_index: 0, delta: '{"member_id":' }),
    nested({ type: 'response.function_call_arguments.done', item_id: 'fc_1', output_index: 0, name: 'check_eligibility', arguments: '{"member_id":"A123"}' }),
    nested({ type: 'response.output_item.done', response_id: 'resp_b1', output_index: 0, item: call }),
    nested({ type: 'response.output_item.done', response_id: 'resp_b2', output_index: 0, item: message }),
    nested({ type: 'response.output_text.delta', item_id: 'msg_1', output_index: 0, content_index: 0, delta: 'You are' }),
    nested({ type: 'response.done', response: { id: 'resp_b1', object: 'response', status: 'completed', output: [call], usage } }),
    nested({ type: 'response.completed', response: { id: 'resp_b2', status: 'completed', usage } }),
    nested({ type: 'response.failed', response: { id: 'resp_b3', status: 'failed', error: { code: 'server_error', message: 'backend failed' } } }),
    nested({ type: 'response.incomplete', response: { id: 'resp_b4', status: 'incomplete', usage: null } }),
    { type: 'session.usage.updated', event_id: 'event_10', usage: { seconds: 12.5 }, context_window: { usage_ratio: 0.1 } },
    { type: 'session.closed', event_id: 'event_11', reason: 'close_requested', session, usage: { seconds: 30 } },
    { type: 'error', event_id: 'event_12', error: { type: 'invalid_request_error', code: 'unknown_call_id', message: 'No such call.', param: null, client_event_id: 'evt_c9' } },
    { type: 'info', event_id: 'event_13', code: 'notice', message: 'Just so you know.' },
  ];
}

/** Values of the wrong kind or at the edges for a number field (ms, seconds, token counts): some refused, some taken. */
const ODD_NUMBERS: Json[] = [1e300, Number.MAX_SAFE_INTEGER, 2 ** 31, 0, 0.0001, 1.5, -1, -1e300, '12', null, true];
/** Odd strings for a string field: empty, control characters, a lone surrogate, an escape-heavy or long one. */
const ODD_STRINGS: Json[] = ['', '\u0000', '\ud800', '"}{', '\\', '🙂'.repeat(50), 'x'.repeat(70_000), INJECTION];

/**
 * One mutated GPT-Live server frame. Certainly malformed (the parser must
 * refuse): binary, not a JSON object, invalid JSON, no/empty/non-string
 * `type`. Otherwise the parser decides: an unknown type, a valid event, or
 * a known one (nested Responses events included) with a field dropped,
 * retyped, made huge or odd, a nested event replaced, or its audio made bad.
 */
export function mutateLiveEvent(rng: Rng, bases: readonly Obj[]): ModelFrame {
  const r = rng.next();
  if (r < 0.03) return { kind: 'binary', data: rng.bytes(rng.range(1, 300)), binary: true, certainlyMalformed: true };
  const base = structuredClone(rng.pick(bases));
  if (r < 0.06) {
    return { kind: 'not_object', data: rng.pick(['null', '[]', '[{"type":"error"}]', '7', '"session.closed"', 'true', '""']), binary: false, certainlyMalformed: true };
  }
  if (r < 0.09) {
    const body = JSON.stringify(base);
    return { kind: 'truncate', data: body.slice(0, rng.int(body.length)), binary: false, certainlyMalformed: true };
  }
  if (r < 0.11) {
    const body = JSON.stringify(base);
    const bad = rng.pick([`${body}}`, `${body.slice(0, -1)},}`, body.replace(':', '='), `{'type':'error'}`, body.replace(/"/g, "'"), `${body}${body}`]);
    return { kind: 'invalid_json', data: bad, binary: false, certainlyMalformed: true };
  }
  if (r < 0.14) {
    if (rng.chance(0.5)) delete base.type;
    else base.type = rng.pick<Json>([null, 3, '', {}, ['error'], true]);
    return { kind: 'no_type', data: JSON.stringify(base), binary: false, certainlyMalformed: true };
  }
  if (r < 0.19) {
    base.type = rng.pick(['session.output_audio.deltas', 'session.Started', 'fuzz.unknown', 'Error', 'response.events', ' error', `x.${rng.hex(6)}`]);
    return { kind: 'unknown_type', data: JSON.stringify(base), binary: false, certainlyMalformed: false };
  }
  if (r < 0.22 && base.type === 'response.event') {
    // A nested event of another shape: unknown, missing or wrong-typed type, or not an object.
    const ev = base.event as Obj;
    const op = rng.int(3);
    if (op === 0) ev.type = rng.pick<Json>(['response.audio.delta', `response.${rng.hex(4)}`, '', 7, null]);
    else if (op === 1) delete ev.type;
    else base.event = rng.pick<Json>([null, 'response.done', [], 42]);
    return { kind: 'response.event:nested', data: JSON.stringify(base), binary: false, certainlyMalformed: false };
  }
  if (r < 0.32) return { kind: `valid:${String(base.type)}`, data: JSON.stringify(base), binary: false, certainlyMalformed: false };
  const ps = paths(base).filter((p) => p !== 'type');
  if (ps.length === 0) return { kind: `valid:${String(base.type)}`, data: JSON.stringify(base), binary: false, certainlyMalformed: false };
  const p = rng.pick(ps);
  const [parent, key] = getParent(base, p);
  const cur = parent[key]!;
  const op = rng.pick(['drop', 'retype', 'retype', 'odd', 'odd', 'huge_string', 'bad_audio']);
  if (op === 'drop') delete parent[key];
  else if (op === 'retype') parent[key] = wrongType(rng, cur, p);
  else if (op === 'odd') parent[key] = typeof cur === 'number' ? rng.pick(ODD_NUMBERS) : typeof cur === 'string' ? rng.pick(ODD_STRINGS) : rng.pick<Json>([...ODD_NUMBERS.slice(0, 3), '', [], {}]);
  // Large but plausible (the call keeps transcript text for a replay while the victim lives).
  else if (op === 'huge_string') parent[key] = 'Z'.repeat(rng.range(1000, 32_000));
  else {
    // Audio or argument text that is not what it says: bad base64, JSON-breaking, empty.
    const field = base.type === 'session.output_audio.delta' ? 'delta' : key;
    const target = base.type === 'session.output_audio.delta' ? base : parent;
    target[field] = rng.pick([INJECTION, '!!!', 'A', '', 'AA=A', '====']);
  }
  return { kind: `${String(base.type)}:${op}`, data: JSON.stringify(base), binary: false, certainlyMalformed: false };
}

/**
 * What the Live provider must do with an injected frame: count it as
 * malformed (`rejected`: binary, or refused by parseLiveServerEvent),
 * count it as unhandled (`unknown`), or end the session (`closes`: a
 * well-formed `session.closed`, which the injector withholds: it ends the
 * victim's model session by protocol, and the rule needs its connection
 * open). A disagreement if the mutation already decided it is malformed.
 */
export function classifyLiveEvent(f: ModelFrame): { rejected: boolean; unknown: boolean; closes: boolean; disagreement?: string } {
  if (f.binary) return { rejected: true, unknown: false, closes: false };
  const parsed = parseLiveServerEvent(f.data as string);
  const disagreement = f.certainlyMalformed && parsed.ok ? `${f.kind}: the Live provider's parser took it: ${(f.data as string).slice(0, 160)}` : undefined;
  return {
    rejected: !parsed.ok,
    unknown: parsed.ok && parsed.event.type === 'unhandled',
    closes: parsed.ok && parsed.event.type === 'session.closed',
    disagreement,
  };
}

/** How one provider's server events are made and judged: the bases, the mutator, the classifier, and the event that ends a connection's handshake. */
interface ModelWire {
  bases: Obj[];
  mutate(rng: Rng, bases: readonly Obj[]): ModelFrame;
  classify(f: ModelFrame): { rejected: boolean; unknown: boolean; closes: boolean; disagreement?: string };
  /** A server text containing this ends the handshake (injection may start). */
  handshakeDone: string;
}

function modelWire(provider: FuzzProvider): ModelWire {
  switch (provider) {
    case 'realtime':
      return { bases: loadServerEventFixtures(), mutate: mutateModelEvent, classify: (f) => ({ ...classifyModel(f), closes: false }), handshakeDone: '"session.updated"' };
    case 'live':
      return { bases: liveServerEventBases(), mutate: mutateLiveEvent, classify: classifyLiveEvent, handshakeDone: '"session.started"' };
    default: {
      const never: never = provider;
      throw new Error(`unknown provider ${String(never)}`);
    }
  }
}

// ── The model proxy: passes the real call through, fuzzes the others ─────

interface ProxyConn extends ProxiedPair {
  n: number;
  /** The handshake's last event (session.updated; Live: session.started) has gone to the client. */
  configured: boolean;
  closed: boolean;
  injected: number;
  rejected: number;
}

interface ModelProxy {
  url: string;
  conns: ProxyConn[];
  close(): Promise<void>;
}

/** The loopback proxy (sim/ws-proxy.ts) in front of the stand-in, marking each connection once its handshake is over (`handshakeDone` seen) and once it ends. */
async function startModelProxy(upstreamUrl: string, handshakeDone: string): Promise<ModelProxy> {
  let n = 0;
  const proxy = await WsProxy.start<ProxyConn>({
    upstreamUrl: (requestUrl) => `${upstreamUrl}${new URL(requestUrl, 'http://x').search}`,
    connection: (pair) => ({ ...pair, n: n++, configured: false, closed: false, injected: 0, rejected: 0 }),
    fromUpstream: (c, data, binary) => {
      if (!c.configured && !binary && data.toString().includes(handshakeDone)) c.configured = true;
    },
    ended: (c) => (c.closed = true),
    unsendableClose: 1011,
    maxPayload: 16 * MIB,
  });
  return { url: `${proxy.origin}/v1`, conns: proxy.conns, close: () => proxy.close() };
}

/** The counters both providers' sessions keep that the model side is judged by. */
type SessionCounters = Pick<OpenAIRealtimeSession['counters'] & LiveSession['counters'], 'malformed' | 'unhandled'>;

/**
 * The provider as main.ts builds it (OpenAIRealtimeProvider or
 * LiveProvider), remembering each session's counters so they can be read
 * (only the counters: holding thousands of sessions would make the harness,
 * not the relay, grow).
 */
class CountingProvider implements ModelProvider {
  readonly name: string;
  readonly sessions: { counters: SessionCounters }[] = [];
  constructor(private readonly inner: ModelProvider) {
    this.name = inner.name;
  }
  async connect(opts: ModelSessionOptions, signal?: AbortSignal): Promise<ModelSession> {
    const s = await this.inner.connect(opts, signal);
    this.sessions.push({ counters: (s as OpenAIRealtimeSession | LiveSession).counters });
    return s;
  }
}

/** heapUsed right after a full garbage collection: the live heap (the fuzzer alone asks V8 for `gc`). */
function liveHeapBytes(): number {
  const g = globalThis as { gc?: () => void };
  if (!g.gc) {
    setFlagsFromString('--expose-gc');
    g.gc = runInNewContext('gc') as () => void;
  }
  g.gc!();
  return process.memoryUsage().heapUsed;
}

// ── The run ───────────────────────────────────────────────────────────────

const REAL_CALL_UTTERANCES: Utterance[] = [{ durationMs: 1400 }, { durationMs: 1200 }, { durationMs: 1500 }, { durationMs: 1100 }];

function metricSum(text: string, name: string): { total: number; byLabel: Record<string, number> } {
  const byLabel: Record<string, number> = {};
  let total = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-z_]+)(\{[^}]*\})? ([0-9.e+-]+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const v = Number(m[3]);
    total += v;
    byLabel[m[2] ?? ''] = v;
  }
  return { total, byLabel };
}

/** A client socket and the close code it ends with (resolves once closed, either side). */
interface Client {
  ws: WebSocket;
  closed: Promise<number>;
  closedYet: boolean;
}

function waitClose(c: Client, ms: number): Promise<number | 'timeout'> {
  return Promise.race([c.closed, sleep(ms).then(() => 'timeout' as const)]);
}

function openWs(url: string): Promise<Client> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { maxPayload: 16 * MIB });
    const c: Client = { ws, closed: new Promise<number>((r) => ws.once('close', (code) => ((c.closedYet = true), r(code)))), closedYet: false };
    ws.on('error', () => {});
    ws.once('open', () => resolve(c));
    ws.once('unexpected-response', (_req, r) => reject(new Error(`upgrade answered ${r.statusCode}`)));
    ws.once('error', reject);
  });
}

/** Count a frame under its mutation (the part of its kind after the message type). */
function tally(into: Record<string, number>, kind: string): void {
  const k = kind.split(':').at(-1)!;
  into[k] = (into[k] ?? 0) + 1;
}

const tick = () => new Promise<void>((r) => setImmediate(r));
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function drained(ws: WebSocket): Promise<void> {
  while (ws.readyState === WebSocket.OPEN && ws.bufferedAmount > 256 * 1024) await sleep(2);
}

/** What the Twilio side sent and must see counted, as the run goes. */
interface TwilioTally {
  sent: number;
  byKind: Record<string, number>;
  expectedCounted: number;
  refusedStarts: number;
  socketsOpened: number;
  socketsClosedByServer: number;
  uncertain: number;
}

/** What was injected on the model side and must be rejected. */
interface ModelTally {
  injected: number;
  byKind: Record<string, number>;
  expectedRejected: number;
  unknown: number;
  withheld: number;
}

/** What every phase of one run shares: its options, PRNG, time bound, tallies and findings. */
interface Run {
  opts: FuzzOptions;
  rng: Rng;
  deadline: number;
  twilioTarget: number;
  modelTarget: number;
  provider: FuzzProvider;
  wire: ModelWire;
  tw: TwilioTally;
  md: ModelTally;
  failures: string[];
  disagreements: string[];
  /** When the hostile phase started and ended (performance.now() ms; 0 until then). */
  hostile: { start: number; end: number };
}

const timeUp = (run: Run): boolean => performance.now() > run.deadline;

/** Keep a mutation/parser disagreement (the first 50). */
function note(run: Run, d: string | undefined): void {
  if (d && run.disagreements.length < 50) run.disagreements.push(d);
}

/** The model stand-in as the run uses it: closed at the end; what it sent the real call (its first session). */
interface StandIn {
  close(): Promise<void>;
  /** The real call's responses as the stand-in ended them, and the audio it sent them (ms). */
  realCallAudio(): { responses: string[]; sentMs: number };
}

/** The server, the stand-in and the proxy between them, as far as they started. */
interface Rig {
  standIn?: StandIn;
  proxy?: ModelProxy;
  app?: Callbridge;
}

/** Everything up: the rig, with the provider whose counters the model side is judged by. */
interface Up {
  standIn: StandIn;
  proxy: ModelProxy;
  app: Callbridge;
  provider: CountingProvider;
  baseUrl: string;
  wsUrl: string;
}

/** Start the stand-in, the proxy and the real server (unsigned, its SQLite in `dir`), noting each in `rig` for the clean-up. */
async function startRig(run: Run, dir: string, rig: Rig): Promise<Up> {
  // Only the real call's session is read afterwards: the hostile ones are not kept (the heap figures are then the relay's).
  const standIn = (rig.standIn = await startStandIn(run.provider));
  const proxy = (rig.proxy = await startModelProxy(standIn.url, run.wire.handshakeDone));
  const config = loadConfig({
    PROVIDER: run.provider,
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: 'silent',
    ALLOW_UNSIGNED: 'true',
    OPENAI_BASE_URL: proxy.url,
    OPENAI_API_KEY: 'fuzz-key',
    AUDIO_MODE: run.opts.mode ?? 'transcode',
    CALLBRIDGE_DB: join(dir, 'calls.db'),
    RATE_LIMIT_BURST: '1000000',
    RATE_LIMIT_PER_SECOND: '1000000',
    VAD_SILENCE_DURATION_MS: '300',
  });
  const log = run.opts.log ?? silentLogger;
  const reachability = new ReachabilityTracker();
  const provider = new CountingProvider(run.provider === 'live' ? liveProviderFromConfig(config, log, reachability) : openAIProviderFromConfig(config, log, reachability));
  const app = (rig.app = await startCallbridge(config, log, { provider, edge: run.opts.edge }));
  return { standIn, proxy, app, provider, baseUrl: `http://127.0.0.1:${app.port}`, wsUrl: `ws://127.0.0.1:${app.port}/voice/stream` };
}

/** The provider's stand-in, keeping the record of its first session only (the real call's). */
async function startStandIn(provider: FuzzProvider): Promise<StandIn & { url: string }> {
  switch (provider) {
    case 'realtime': {
      const s = await startModelStandIn({ audioSpeedup: 4, responseDelayMs: 50, transcriptDelayMs: 100, recordSessions: 1 });
      const first = (): StandInSession | undefined => s.sessions[0];
      return {
        url: s.url,
        close: () => s.close(),
        realCallAudio: () => {
          const responses = first()?.responses ?? [];
          return { responses: responses.map((r) => r.status), sentMs: responses.reduce((n, r) => n + r.audioMsSent, 0) };
        },
      };
    }
    case 'live': {
      const s = await startLiveStandIn({ audioSpeedup: 4, responseDelayMs: 50, recordSessions: 1 });
      const first = (): LiveStandInSession | undefined => s.sessions[0];
      return {
        url: s.url,
        close: () => s.close(),
        // Live has no response status: an utterance is `completed` when all its audio went out, `yielded` when the model stopped for the caller.
        realCallAudio: () => {
          const spoken = first()?.spoken ?? [];
          return { responses: spoken.map((u) => (u.yielded ? 'yielded' : u.audioMs < u.fullMs ? 'cut' : 'completed')), sentMs: spoken.reduce((n, u) => n + u.audioMs, 0) };
        },
      };
    }
    default: {
      const never: never = provider;
      throw new Error(`unknown provider ${String(never)}`);
    }
  }
}

/** Close what started; a failure to close the server is a finding. */
async function closeRig(rig: Rig, failures: string[]): Promise<void> {
  await rig.app?.close().catch((e: unknown) => failures.push(`server close failed: ${String(e)}`));
  await rig.proxy?.close().catch(() => {});
  await rig.standIn?.close().catch(() => {});
}

/** The server's counters the verdict compares: Twilio protocol errors (by reason) and handler errors. */
interface ServerCounts {
  protocolErrors: { total: number; byLabel: Record<string, number> };
  handlerErrors: number;
}

async function scrapeCounts(up: Up): Promise<ServerCounts> {
  const text = await (await fetch(`${up.baseUrl}/metrics`)).text();
  return { protocolErrors: metricSum(text, 'callbridge_twilio_protocol_errors_total'), handlerErrors: metricSum(text, 'callbridge_handler_errors_total').total };
}

/** An admitted victim call. `expected`: what the server must count of what was sent to it (`sent`); if the server closes it, only 0..sent is known. */
interface Victim { c: Client; ws: WebSocket; ids: StreamIds; seq: number; sent: number; expected: number; digits: number }

/** Victim calls: admitted (webhook, then a start with the token), kept open for the run. */
async function openVictims(run: Run, up: Up): Promise<Victim[]> {
  const { rng, tw } = run;
  const victims: Victim[] = [];
  for (let i = 0; i < (run.opts.victims ?? 3); i++) {
    const callSid = sid(rng, 'CA');
    const form = { CallSid: callSid, AccountSid: sid(rng, 'AC'), From: `+1555011${String(i).padStart(4, '0')}`, To: '+15550100999', CallStatus: 'ringing', Direction: 'inbound' };
    const res = await fetch(`${up.baseUrl}/voice/incoming`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(form).toString() });
    const twiml = await res.text();
    const token = /<Parameter\b[^>]*name="token"[^>]*value="([^"]*)"/.exec(twiml)?.[1];
    if (res.status !== 200 || !token) throw new Error(`victim webhook answered ${res.status}: ${twiml.slice(0, 200)}`);
    const c = await openWs(up.wsUrl);
    const ws = c.ws;
    tw.socketsOpened++;
    const ids: StreamIds = { streamSid: sid(rng, 'MZ'), callSid, accountSid: form.AccountSid, token };
    const v: Victim = { c, ws, ids, seq: 1, sent: 0, expected: 0, digits: 0 };
    ws.send(JSON.stringify(baseTwilioMessage(rng, 'connected', ids, 0)));
    ws.send(JSON.stringify(baseTwilioMessage(rng, 'start', ids, v.seq++)));
    victims.push(v);
  }
  return victims;
}

/**
 * RSS every RSS_SAMPLE_MS and the live heap: the baseline is the first
 * sample once the warm-up share is sent; growth is measured from it.
 */
class MemoryWatch {
  warmup = 0;
  maxAfter = 0;
  samples = 0;
  liveAtWarmup = 0;
  liveAtEnd = 0;
  endMemory = process.memoryUsage();
  private timer: NodeJS.Timeout | undefined;

  start(run: Run): void {
    this.timer = setInterval(() => {
      const r = process.memoryUsage().rss;
      this.samples++;
      if (run.tw.sent + run.md.injected < run.opts.messages * WARMUP_SHARE) return;
      if (this.warmup === 0) {
        this.warmup = r;
        this.liveAtWarmup = liveHeapBytes();
      }
      else this.maxAfter = Math.max(this.maxAfter, r);
    }, RSS_SAMPLE_MS);
    this.timer.unref();
  }

  /** What is live once the hostile traffic is over and the real call ended, the server still up: what it kept. */
  atEnd(): void {
    this.liveAtEnd = liveHeapBytes();
    this.endMemory = process.memoryUsage();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }
}

/** One burst on a victim: never a terminal frame, never a valid stop on its own stream. */
async function victimBurst(run: Run, v: Victim, n: number): Promise<void> {
  const { rng, tw } = run;
  const flood = rng.chance(FLOOD_SHARE) ? rng.pick(['mark', 'dtmf'] as const) : undefined;
  for (let i = 0; i < n && tw.sent < run.twilioTarget; i++) {
    const f = burstFrame(rng, v.ids, v.seq++, false, flood);
    const c = classifyTwilio(f, { admitted: true, streamSid: v.ids.streamSid });
    note(run, c.disagreement);
    if (c.verdict === 'end_call' || c.verdict.startsWith('close')) continue;
    if (v.ws.readyState !== WebSocket.OPEN) return;
    v.ws.send(f.data, { binary: f.binary });
    tw.sent++;
    v.sent++;
    tally(tw.byKind, f.kind);
    if (c.verdict === 'counted') v.expected++;
    if (c.digit !== undefined) {
      // The call holds at most 32 keypad digits until '#' or a pause (then counts dtmf_overflow, which
      // depends on timing): a '#' after every 31 keeps the count exact while floods still arrive.
      v.digits = c.digit === '#' ? 0 : v.digits + 1;
      if (v.digits >= 31) {
        v.ws.send(JSON.stringify({ event: 'dtmf', sequenceNumber: String(v.seq++), streamSid: v.ids.streamSid, dtmf: { track: 'inbound_track', digit: '#' } }));
        tw.sent++;
        v.sent++;
        tally(tw.byKind, 'dtmf:flush');
        v.digits = 0;
      }
    }
  }
  await drained(v.ws);
}

/** A short-lived unadmitted socket: a burst, then a terminal frame or our own close. */
async function hostileSocket(run: Run, wsUrl: string): Promise<void> {
  const { rng, tw, failures } = run;
  const ids: StreamIds = { streamSid: sid(rng, 'MZ'), callSid: sid(rng, 'CA'), accountSid: sid(rng, 'AC') };
  const client = await openWs(wsUrl);
  const ws = client.ws;
  tw.socketsOpened++;
  const burst = rng.range(5, 300);
  const flood = rng.chance(FLOOD_SHARE) ? rng.pick(['mark', 'dtmf'] as const) : undefined;
  let terminal: string | undefined;
  let pendingCounted = 0;
  for (let i = 0; i < burst && tw.sent < run.twilioTarget && !client.closedYet; i++) {
    const f = burstFrame(rng, ids, i + 1, true, flood);
    const c = classifyTwilio(f, { admitted: false, streamSid: ids.streamSid });
    note(run, c.disagreement);
    ws.send(f.data, { binary: f.binary });
    tw.sent++;
    tally(tw.byKind, f.kind);
    if (c.verdict === 'counted') pendingCounted++;
    if (c.verdict === 'close_counted' || c.verdict === 'close_format') pendingCounted++;
    if (c.verdict.startsWith('close')) {
      terminal = c.verdict;
      break;
    }
    if (i % 32 === 31) await drained(ws);
  }
  if (client.closedYet && !terminal) {
    // Closed under us: what it had read is unknown.
    tw.uncertain += pendingCounted;
    tw.socketsClosedByServer++;
    return;
  }
  tw.expectedCounted += pendingCounted;
  if (terminal) {
    const code = await waitClose(client, 5000);
    if (code === 'timeout') {
      failures.push(`the server did not close a stream after ${terminal}`);
      ws.terminate();
    } else {
      tw.socketsClosedByServer++;
      if (terminal === 'close_refused') {
        if (code === 1008) tw.refusedStarts++;
        else failures.push(`a start without the stream's token was closed with ${code}, not 1008`);
      }
    }
  } else {
    ws.close(1000);
    await waitClose(client, 5000);
  }
}

/** Twilio traffic from one worker: bursts on victims and short-lived hostile sockets, at the run's pace. */
async function twilioWorker(run: Run, wsUrl: string, victims: Victim[], paced: () => Promise<void>): Promise<void> {
  const { rng } = run;
  while (run.tw.sent < run.twilioTarget && !timeUp(run)) {
    if (rng.chance(0.25) && victims.length > 0) {
      const v = rng.pick(victims);
      if (v.ws.readyState === WebSocket.OPEN) await victimBurst(run, v, rng.range(10, 200));
    } else {
      try {
        await hostileSocket(run, wsUrl);
      } catch (err) {
        run.failures.push(`a hostile stream could not open: ${err instanceof Error ? err.message : String(err)}`);
        return;
      }
    }
    await paced();
    await tick();
  }
}

/** Mutated server events into the victims' model connections (never the real call's, the proxy's first). */
async function modelInjector(run: Run, proxy: ModelProxy, paced: () => Promise<void>): Promise<void> {
  const { rng, md } = run;
  while (md.injected < run.modelTarget && !timeUp(run)) {
    const targets = proxy.conns.filter((c) => c.n > 0 && c.configured && !c.closed && c.client.readyState === WebSocket.OPEN);
    if (targets.length === 0) {
      await sleep(10);
      continue;
    }
    const c = rng.pick(targets);
    const n = Math.min(rng.range(1, 50), run.modelTarget - md.injected);
    for (let i = 0; i < n; i++) {
      const f = run.wire.mutate(rng, run.wire.bases);
      const k = run.wire.classify(f);
      note(run, k.disagreement);
      if (k.closes) {
        // A well-formed session end ends the victim's session by protocol: not sent (the count stays exact).
        md.withheld++;
        continue;
      }
      c.client.send(f.data, { binary: f.binary });
      c.injected++;
      md.injected++;
      tally(md.byKind, f.kind.startsWith('valid:') ? 'valid' : f.kind);
      if (k.rejected) {
        c.rejected++;
        md.expectedRejected++;
      }
      if (k.unknown) md.unknown++;
    }
    while (c.client.readyState === WebSocket.OPEN && c.client.bufferedAmount > 256 * 1024) await sleep(2);
    await paced();
    await tick();
  }
}

/** The hostile phase: `workers` Twilio workers and the model injector, spread over `spreadMs`, with progress lines. */
async function sendHostileTraffic(run: Run, up: Up, victims: Victim[], progress: (line: string) => void): Promise<void> {
  const { opts, tw, md } = run;
  const hostileStart = (run.hostile.start = performance.now());
  const spreadMs = opts.spreadMs ?? 20_000;
  /** Wait while the traffic is ahead of its pace (messages sent vs the share of spreadMs elapsed). */
  const paced = async (): Promise<void> => {
    while (spreadMs > 0 && !timeUp(run) && tw.sent + md.injected > (opts.messages * (performance.now() - hostileStart)) / spreadMs) await sleep(5);
  };

  let lastProgress = performance.now();
  const progressTimer = setInterval(() => {
    const now = performance.now();
    if (now - lastProgress < 2000) return;
    lastProgress = now;
    progress(`  ${tw.sent + md.injected}/${opts.messages} messages, ${((now - hostileStart) / 1000).toFixed(1)} s, RSS ${(process.memoryUsage().rss / MIB).toFixed(0)} MiB`);
  }, 500);
  progressTimer.unref();

  await Promise.all([...Array.from({ length: opts.workers ?? 6 }, () => twilioWorker(run, up.wsUrl, victims, paced)), modelInjector(run, up.proxy, paced)]);
  run.hostile.end = performance.now();
  clearInterval(progressTimer);
  if (timeUp(run)) run.failures.push(`the run passed its time bound (${opts.maxSeconds ?? 600} s) before sending every message`);
}

/** The real call finishes on its own script, within the time bound. */
async function finishRealCall(run: Run, realPromise: Promise<CallResult>): Promise<CallResult | undefined> {
  try {
    const result = await Promise.race([realPromise, sleep(Math.max(1, run.deadline - performance.now())).then(() => undefined)]);
    if (!result) run.failures.push('the real call did not finish within the time bound');
    return result;
  } catch (err) {
    run.failures.push(`the real call failed: ${err instanceof Error ? err.message : String(err)}`);
    return undefined;
  }
}

/** The model side as the provider counted it, against what the proxy injected. */
interface ModelCount {
  counted: number;
  unhandled: number;
  victimConnections: number;
  closedEarly: number;
  rejectedOnOpenConnections: number;
}

/** Let the provider read what was injected, then count. */
async function countModelSide(run: Run, up: Up): Promise<ModelCount> {
  const counted = () => up.provider.sessions.reduce((s, x) => s + x.counters.malformed, 0);
  for (let i = 0; i < 200 && counted() < run.md.expectedRejected; i++) await sleep(10);
  await sleep(100);
  const victimModel = up.proxy.conns.filter((c) => c.n > 0);
  return {
    counted: counted(),
    unhandled: up.provider.sessions.reduce((s, x) => s + x.counters.unhandled, 0),
    victimConnections: victimModel.length,
    closedEarly: victimModel.filter((c) => c.closed).length,
    rejectedOnOpenConnections: victimModel.filter((c) => !c.closed).reduce((s, c) => s + c.rejected, 0),
  };
}

/** Hang up the victims still open (their messages then count exactly); returns how many the server had ended mid-run. */
async function closeVictims(run: Run, victims: Victim[]): Promise<number> {
  const { tw } = run;
  let closedByServer = 0;
  for (const v of victims) {
    if (v.c.closedYet) {
      closedByServer++;
      tw.socketsClosedByServer++;
      tw.uncertain += v.sent;
    } else {
      tw.expectedCounted += v.expected;
      v.ws.close(1000);
    }
  }
  await Promise.all(victims.map((v) => waitClose(v.c, 5000)));
  await sleep(100);
  return closedByServer;
}

/** The Twilio side as the server counted it since `before`, by reason; and the handler errors. */
interface TwilioCount {
  counted: number;
  byReason: Record<string, number>;
  handlerErrors: number;
}

async function countTwilioSide(up: Up, before: ServerCounts): Promise<TwilioCount> {
  const after = await scrapeCounts(up);
  const byReason: Record<string, number> = {};
  for (const [k, v] of Object.entries(after.protocolErrors.byLabel)) {
    const d = v - (before.protocolErrors.byLabel[k] ?? 0);
    if (d) byReason[k.replace(/^\{reason="(.*)"\}$/, '$1')] = d;
  }
  return { counted: after.protocolErrors.total - before.protocolErrors.total, byReason, handlerErrors: after.handlerErrors - before.handlerErrors };
}

async function checkHealth(run: Run, up: Up): Promise<void> {
  const health = await fetch(`${up.baseUrl}/voice/health`);
  await health.arrayBuffer();
  if (health.status !== 200) run.failures.push(`/voice/health answered ${health.status} after the run`);
}

/** What the real call heard against what the stand-in sent it, and how its record ends. */
async function summariseRealCall(up: Up, result: CallResult): Promise<NonNullable<FuzzReport['realCall']>> {
  // Awaited: a store's reads and flush may be asynchronous (the CallStore contract allows it).
  await up.app.store.flush();
  const { responses, sentMs } = up.standIn.realCallAudio();
  const record = await up.app.store.get(result.callSid);
  const framesLost = Math.max(0, Math.floor((sentMs - result.heardMs) / FRAME_MS));
  return {
    callSid: result.callSid,
    turnsAnswered: result.turnLatenciesMs.length,
    turns: REAL_CALL_UTTERANCES.length,
    heardMs: result.heardMs,
    sentMs,
    framesLost,
    responses,
    protocolViolations: result.protocolViolations,
    clears: result.clears.length,
    endReason: record?.endReason ?? null,
    recordProtocolErrors: record?.protocolErrors ?? null,
  };
}

/** What the run measured, for the verdict and the report (zeros where a phase did not get that far). */
interface Measured {
  edge: string;
  crashes: string[];
  twilio: TwilioCount;
  victimsClosedByServer: number;
  model: ModelCount;
  realCall: FuzzReport['realCall'];
  mem: MemoryWatch;
}

/** The pass/fail rules of the file head, in order; each broken one is a failure. Returns the model side's rule and the memory figures. */
function judge(run: Run, m: Measured): { rule: 'exact' | 'range'; growthMiB: number; heap: FuzzReport['heap'] } {
  const { failures, tw, md } = run;
  for (const c of m.crashes) failures.push(`uncaught in the process: ${c}`);
  if (m.twilio.handlerErrors > 0) failures.push(`${m.twilio.handlerErrors} exceptions caught around call-layer handlers (callbridge_handler_errors_total)`);
  for (const d of run.disagreements) failures.push(`protocol disagreement: ${d}`);
  const countedTwilio = m.twilio.counted;
  if (tw.uncertain === 0) {
    if (countedTwilio !== tw.expectedCounted) failures.push(`Twilio protocol errors counted ${countedTwilio}, expected exactly ${tw.expectedCounted}`);
  } else if (countedTwilio < tw.expectedCounted || countedTwilio > tw.expectedCounted + tw.uncertain) {
    failures.push(`Twilio protocol errors counted ${countedTwilio}, expected ${tw.expectedCounted}..${tw.expectedCounted + tw.uncertain}`);
  }
  const { counted: countedModel, rejectedOnOpenConnections: rejectedOnOpen } = m.model;
  const rule: 'exact' | 'range' = m.model.closedEarly === 0 ? 'exact' : 'range';
  if (rule === 'exact' && countedModel !== md.expectedRejected) failures.push(`malformed model events counted ${countedModel}, expected exactly ${md.expectedRejected}`);
  if (rule === 'range' && (countedModel < rejectedOnOpen || countedModel > md.expectedRejected)) {
    failures.push(`malformed model events counted ${countedModel}, expected ${rejectedOnOpen}..${md.expectedRejected}`);
  }
  if (md.injected > 0 && m.model.victimConnections === 0) failures.push('no victim model connection to inject into');
  const realCall = m.realCall;
  if (realCall) {
    if (realCall.turnsAnswered !== realCall.turns) failures.push(`the real call had ${realCall.turnsAnswered} of ${realCall.turns} turns answered`);
    if (realCall.responses.some((s) => s !== 'completed')) failures.push(`the real call's responses ended ${realCall.responses.join(', ')}`);
    if (realCall.framesLost > 0) failures.push(`the real call lost ${realCall.framesLost} frames (heard ${realCall.heardMs} ms of ${realCall.sentMs.toFixed(0)} ms sent)`);
    if (realCall.protocolViolations.length > 0) failures.push(`the real call saw protocol violations: ${realCall.protocolViolations.slice(0, 5).join('; ')}`);
    if (realCall.clears > 0) failures.push(`the real call's playback was cleared ${realCall.clears} times`);
    if (realCall.endReason !== 'caller_hangup') failures.push(`the real call's record ends ${realCall.endReason}`);
    if (realCall.recordProtocolErrors !== 0) failures.push(`the real call's record has ${realCall.recordProtocolErrors} protocol errors`);
  } else if (!failures.some((f) => f.includes('real call'))) failures.push('the real call left no result');
  const { mem } = m;
  const growthMiB = mem.maxAfter > 0 && mem.warmup > 0 ? (mem.maxAfter - mem.warmup) / MIB : 0;
  const heap = { liveAtWarmupMiB: mem.liveAtWarmup / MIB, liveAtEndMiB: mem.liveAtEnd / MIB, totalMiB: mem.endMemory.heapTotal / MIB, externalMiB: mem.endMemory.external / MIB };
  if (mem.warmup === 0 || mem.maxAfter === 0) failures.push('RSS was not sampled after the warm-up (the run was too short to measure)');
  if (growthMiB > (run.opts.rssLimitMiB ?? 64)) failures.push(`RSS grew ${growthMiB.toFixed(1)} MiB after the warm-up (limit ${run.opts.rssLimitMiB ?? 64})`);
  const liveGrowthMiB = (mem.liveAtEnd - mem.liveAtWarmup) / MIB;
  if (mem.liveAtEnd > 0 && mem.liveAtWarmup > 0 && liveGrowthMiB > LIVE_HEAP_LIMIT_MIB) {
    failures.push(`the live JS heap grew ${liveGrowthMiB.toFixed(1)} MiB from the warm-up to the end of the run (limit ${LIVE_HEAP_LIMIT_MIB}): something keeps what it was sent`);
  }
  return { rule, growthMiB, heap };
}

/**
 * One run, in its phases: start the rig; the real call; the victims; the
 * hostile traffic under the memory watch; the real call's end; the counts
 * (model side, victims, Twilio side, health, the real call's record); the
 * clean-up; the verdict.
 */
export async function runFuzz(opts: FuzzOptions): Promise<FuzzReport> {
  const rng = new Rng(opts.seed);
  const mode = opts.mode ?? 'transcode';
  const provider = opts.provider ?? 'realtime';
  const progress = opts.progress ?? (() => {});
  const crashes: string[] = [];
  const onCrash = (err: unknown) => crashes.push(err instanceof Error ? `${err.name}: ${err.message}` : String(err));
  process.on('uncaughtException', onCrash);
  process.on('unhandledRejection', onCrash);

  const dir = mkdtempSync(join(tmpdir(), 'callbridge-fuzz-'));
  const t0 = performance.now();
  const modelTarget = Math.round(opts.messages * (opts.modelShare ?? 0.25));
  const run: Run = {
    opts,
    rng,
    deadline: t0 + (opts.maxSeconds ?? 600) * 1000,
    twilioTarget: opts.messages - modelTarget,
    modelTarget,
    provider,
    wire: modelWire(provider),
    tw: { sent: 0, byKind: {}, expectedCounted: 0, refusedStarts: 0, socketsOpened: 0, socketsClosedByServer: 0, uncertain: 0 },
    md: { injected: 0, byKind: {}, expectedRejected: 0, unknown: 0, withheld: 0 },
    failures: [],
    disagreements: [],
    hostile: { start: 0, end: 0 },
  };
  const rig: Rig = {};
  const m: Measured = {
    edge: '',
    crashes,
    twilio: { counted: 0, byReason: {}, handlerErrors: 0 },
    victimsClosedByServer: 0,
    model: { counted: 0, unhandled: 0, victimConnections: 0, closedEarly: 0, rejectedOnOpenConnections: 0 },
    realCall: null,
    mem: new MemoryWatch(),
  };

  try {
    const up = await startRig(run, dir, rig);
    m.edge = up.app.edge;
    const before = await scrapeCounts(up);
    progress(`fuzz: seed ${opts.seed}, ${opts.messages} messages (${run.twilioTarget} Twilio, ${modelTarget} model), provider ${provider}, ${mode}, edge ${m.edge}`);

    // The real call first: its model connection is the proxy's first, passed through untouched.
    const realPromise: Promise<CallResult> = placeCall({ baseUrl: up.baseUrl, from: '+15550109999', to: '+15550100999', utterances: REAL_CALL_UTTERANCES, hangupAfterMs: 1500 });
    realPromise.catch(() => {});
    while (up.proxy.conns.length === 0 && performance.now() < run.deadline) await sleep(5);

    const victims = await openVictims(run, up);
    m.mem.start(run);
    await sendHostileTraffic(run, up, victims, progress);
    const result = await finishRealCall(run, realPromise);

    m.model = await countModelSide(run, up);
    m.victimsClosedByServer = await closeVictims(run, victims);
    m.twilio = await countTwilioSide(up, before);
    await checkHealth(run, up);
    if (result) m.realCall = await summariseRealCall(up, result);
    m.mem.atEnd();
  } catch (err) {
    run.failures.push(`the run failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
  } finally {
    m.mem.stop();
    await closeRig(rig, run.failures);
    rmSync(dir, { recursive: true, force: true });
    // Late errors from closing sockets still count as crashes.
    await sleep(50);
    process.off('uncaughtException', onCrash);
    process.off('unhandledRejection', onCrash);
  }

  const { rule, growthMiB, heap } = judge(run, m);
  const { tw, md, failures } = run;
  const { mem } = m;
  const hostileS = Math.max(0.001, (run.hostile.end - run.hostile.start) / 1000);
  return {
    ok: failures.length === 0,
    failures,
    seed: opts.seed,
    provider,
    mode,
    edge: m.edge,
    elapsedS: (performance.now() - t0) / 1000,
    messagesPerS: (tw.sent + md.injected) / hostileS,
    twilio: { ...tw, counted: m.twilio.counted, countedByReason: m.twilio.byReason, victimsClosedByServer: m.victimsClosedByServer },
    model: {
      injected: md.injected,
      byKind: md.byKind,
      expectedRejected: md.expectedRejected,
      withheld: md.withheld,
      rejectedOnOpenConnections: m.model.rejectedOnOpenConnections,
      counted: m.model.counted,
      unhandled: m.model.unhandled,
      victimConnections: m.model.victimConnections,
      closedEarly: m.model.closedEarly,
      rule,
    },
    realCall: m.realCall,
    rss: { warmupMiB: mem.warmup / MIB, maxAfterWarmupMiB: mem.maxAfter / MIB, growthMiB, samples: mem.samples },
    heap,
    handlerErrors: m.twilio.handlerErrors,
    crashes,
    disagreements: run.disagreements,
  };
}

export function formatFuzzReport(r: FuzzReport): string {
  const l: string[] = [];
  l.push(`fuzz ${r.ok ? 'PASSED' : 'FAILED'}: seed ${r.seed}, provider ${r.provider}, ${r.mode}, edge ${r.edge}, ${r.elapsedS.toFixed(1)} s`);
  l.push(`  hostile messages: ${r.twilio.sent + r.model.injected} at ${r.messagesPerS.toFixed(0)}/s`);
  l.push(
    `  Twilio: ${r.twilio.sent} sent on ${r.twilio.socketsOpened} sockets; protocol errors counted ${r.twilio.counted}, expected ${r.twilio.expectedCounted}` +
      `${r.twilio.uncertain ? ` (+ up to ${r.twilio.uncertain} uncertain)` : ' (exact)'}; refused starts (close 1008) ${r.twilio.refusedStarts}; sockets closed by the server ${r.twilio.socketsClosedByServer}`,
  );
  l.push(`    counted by reason: ${Object.entries(r.twilio.countedByReason).map(([k, v]) => `${k} ${v}`).join(', ') || '-'}`);
  l.push(`    sent by mutation: ${Object.entries(r.twilio.byKind).sort().map(([k, v]) => `${k} ${v}`).join(', ')}`);
  l.push(
    `  model: ${r.model.injected} events injected into ${r.model.victimConnections} victim connections (${r.model.closedEarly} closed early); malformed counted ${r.model.counted}, expected ${r.model.rule === 'exact' ? r.model.expectedRejected : `${r.model.rejectedOnOpenConnections}..${r.model.expectedRejected}`} (${r.model.rule}); well-formed but unknown: ${r.model.unhandled} (incl. the stand-in's own)${r.model.withheld ? `; well-formed session ends withheld ${r.model.withheld}` : ''}`,
  );
  l.push(`    sent by mutation: ${Object.entries(r.model.byKind).sort().map(([k, v]) => `${k} ${v}`).join(', ')}`);
  if (r.realCall) {
    const c = r.realCall;
    l.push(
      `  real call ${c.callSid}: ${c.turnsAnswered}/${c.turns} turns answered; heard ${c.heardMs} ms of ${c.sentMs.toFixed(0)} ms sent (frames lost ${c.framesLost}); responses ${c.responses.join(',')}; clears ${c.clears}; violations ${c.protocolViolations.length}; ended ${c.endReason}; record protocol errors ${c.recordProtocolErrors}`,
    );
  }
  l.push(`  RSS: ${r.rss.warmupMiB.toFixed(0)} MiB after warm-up, max ${r.rss.maxAfterWarmupMiB.toFixed(0)} MiB later: growth ${r.rss.growthMiB.toFixed(1)} MiB (${r.rss.samples} samples)`);
  l.push(
    `  JS heap: live ${r.heap.liveAtWarmupMiB.toFixed(1)} MiB after warm-up, ${r.heap.liveAtEndMiB.toFixed(1)} MiB after the run (after a full collection); reserved ${r.heap.totalMiB.toFixed(0)} MiB; outside the heap ${r.heap.externalMiB.toFixed(0)} MiB`,
  );
  l.push(`  handler errors ${r.handlerErrors}; uncaught ${r.crashes.length}`);
  for (const f of r.failures) l.push(`  FAIL: ${f}`);
  return `${l.join('\n')}\n`;
}

const USAGE = 'usage: npm run fuzz -- [--seed N] [--messages N] [--provider realtime|live] [--mode transcode|passthrough] [--edge uws|node] [--max-seconds S] [--spread-ms MS (0 = full speed)]\n';

/** The runner's entry: parse arguments, run, print the summary; 0 = every assertion held, 1 = one failed, 2 = bad usage. */
export async function fuzzCli(argv: string[], out: (s: string) => void = (s) => process.stdout.write(s)): Promise<number> {
  const o: FuzzOptions = { seed: 1, messages: 100_000 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[i + 1];
    if (a === '--seed') o.seed = Number(v);
    else if (a === '--messages') o.messages = Number(v);
    else if (a === '--mode') o.mode = v as FuzzOptions['mode'];
    else if (a === '--provider') o.provider = v as FuzzProvider;
    else if (a === '--edge') o.edge = v as EdgeChoice;
    else if (a === '--max-seconds') o.maxSeconds = Number(v);
    else if (a === '--spread-ms') o.spreadMs = Number(v);
    else {
      out(`fuzz: unknown option ${a}\n${USAGE}`);
      return 2;
    }
    i++;
  }
  if (!Number.isInteger(o.seed) || o.seed < 0) return void out(`fuzz: --seed takes a non-negative whole number\n${USAGE}`), 2;
  if (!Number.isInteger(o.messages) || o.messages < 100 || o.messages > 10_000_000) return void out(`fuzz: --messages takes a whole number from 100 to 10000000\n${USAGE}`), 2;
  if (o.mode !== undefined && o.mode !== 'transcode' && o.mode !== 'passthrough') return void out(`fuzz: --mode is transcode or passthrough\n${USAGE}`), 2;
  if (o.provider !== undefined && o.provider !== 'realtime' && o.provider !== 'live') return void out(`fuzz: --provider is realtime or live\n${USAGE}`), 2;
  if (o.spreadMs !== undefined && !(Number.isInteger(o.spreadMs) && o.spreadMs >= 0)) return void out(`fuzz: --spread-ms takes a whole number of ms\n${USAGE}`), 2;
  if (o.maxSeconds !== undefined && !(o.maxSeconds > 0)) return void out(`fuzz: --max-seconds takes a positive number\n${USAGE}`), 2;
  o.progress = (line) => out(`${line}\n`);
  const report = await runFuzz(o);
  out(formatFuzzReport(report));
  return report.ok ? 0 : 1;
}
