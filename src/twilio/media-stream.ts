/**
 * Twilio Media Streams (bidirectional `<Connect><Stream>`) wire protocol:
 * types plus pure parse/build functions. No sockets, no timers, no I/O.
 *
 * Contract:
 * - `parseTwilioMessage` never throws. Anything that is not one of the six
 *   Twilio → server messages with the fields callbridge relies on comes back
 *   as `{ ok: false, error }`.
 * - Number-like fields arrive as strings (`"sequenceNumber":"4"`); the parsed
 *   value carries them as numbers (non-negative integers, else rejected).
 * - Audio payloads stay base64 strings (µ-law 8 kHz mono): the relay forwards
 *   them and decodes only when it has to transform the audio. A payload is
 *   accepted only as canonical-alphabet base64 (`A–Z a–z 0–9 + /`, `=` padding
 *   at the end only, length a non-zero multiple of 4, at most
 *   MAX_MEDIA_PAYLOAD_CHARS): in passthrough it is embedded in the model event
 *   as it arrived, so anything else (`x","type":"session.update`) would be
 *   JSON injection.
 * - SIDs are checked against Twilio's shape (two-letter prefix + 32 hex
 *   digits: `MZ…` stream, `CA…` call, `AC…` account) before they reach logs,
 *   records or the model; DTMF digits are one of `0-9 * # A-D`.
 * - `media` and `mark` (≈ 50/s each way per call) take a fast path that reads
 *   the fields straight from the text without JSON.parse. It accepts only the
 *   plain shape (any field order, no whitespace, no escapes, no duplicate or
 *   extra keys, every value valid) and otherwise defers to the full parser, so
 *   its answer is always exactly the full parser's.
 * - Builders return the JSON text of a server → Twilio message. They run
 *   ~50×/s per call, so they are template strings; `streamSid` and mark names
 *   go through JSON.stringify, the payload does not: base64
 *   (`A–Z a–z 0–9 + / =`) contains no character that JSON needs escaped.
 *   Callers MUST pass real base64 there.
 */

/** Largest text frame accepted (a 20 ms media frame is ~300 bytes; starts carry custom parameters). */
export const MAX_MESSAGE_CHARS = 64 * 1024;

/**
 * Largest media payload accepted, in base64 chars: 12 KiB of µ-law = 1.5 s at
 * 8 kHz. Twilio sends 20 ms frames (216 chars); this bounds what one hostile
 * message can make the relay hold or forward.
 */
export const MAX_MEDIA_PAYLOAD_CHARS = 16 * 1024;

/** Twilio SIDs: two capital letters then 32 hex digits (Twilio docs, "What is a String Identifier (SID)?"). */
export const STREAM_SID_RE = /^MZ[0-9a-fA-F]{32}$/;
export const CALL_SID_RE = /^CA[0-9a-fA-F]{32}$/;
export const ACCOUNT_SID_RE = /^AC[0-9a-fA-F]{32}$/;
/** One DTMF key: 0-9, *, #, A-D. */
export const DTMF_DIGIT_RE = /^[0-9*#A-D]$/;
/** Standard-alphabet base64 with at most two `=` at the end (the length is checked apart: a multiple of 4). */
const BASE64_RE = /^[A-Za-z0-9+/]*={0,2}$/;

/** Whether `s` is a media payload callbridge accepts: non-empty base64 of at most MAX_MEDIA_PAYLOAD_CHARS chars. */
export function isMediaPayload(s: string): boolean {
  const n = s.length;
  return n > 0 && n <= MAX_MEDIA_PAYLOAD_CHARS && (n & 3) === 0 && BASE64_RE.test(s);
}

export interface ConnectedMessage {
  event: 'connected';
  protocol: string;
  version: string;
}

export interface MediaFormat {
  encoding: string;
  sampleRate: number;
  channels: number;
}

export interface StartMessage {
  event: 'start';
  sequenceNumber: number;
  streamSid: string;
  start: {
    accountSid: string;
    streamSid: string;
    callSid: string;
    tracks: string[];
    customParameters: Record<string, string>;
    mediaFormat: MediaFormat;
  };
}

export interface MediaMessage {
  event: 'media';
  sequenceNumber: number;
  streamSid: string;
  media: {
    track: string;
    /** Starts at 1, one per frame from Twilio. */
    chunk: number;
    /** ms since the stream started. */
    timestamp: number;
    /** base64 µ-law 8 kHz; not decoded here. */
    payload: string;
  };
}

export interface DtmfMessage {
  event: 'dtmf';
  sequenceNumber: number;
  streamSid: string;
  dtmf: { track: string; digit: string };
}

export interface MarkMessage {
  event: 'mark';
  sequenceNumber: number;
  streamSid: string;
  mark: { name: string };
}

export interface StopMessage {
  event: 'stop';
  sequenceNumber: number;
  streamSid: string;
  stop: { accountSid: string; callSid: string };
}

export type TwilioMessage =
  | ConnectedMessage
  | StartMessage
  | MediaMessage
  | DtmfMessage
  | MarkMessage
  | StopMessage;

export type TwilioEventName = TwilioMessage['event'];

export type ParseResult = { ok: true; msg: TwilioMessage } | { ok: false; error: string };

type Obj = Record<string, unknown>;

/** Thrown only inside this module to unwind a failed validation; never escapes. */
class Invalid extends Error {}

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function obj(o: Obj, key: string, where: string): Obj {
  const v = o[key];
  if (!isObj(v)) throw new Invalid(`${where}${key}: expected an object`);
  return v;
}

function str(o: Obj, key: string, where: string): string {
  const v = o[key];
  if (typeof v !== 'string') throw new Invalid(`${where}${key}: expected a string`);
  return v;
}

/** A wire number: a string of decimal digits (Twilio's form) or, leniently, a non-negative integer. */
function num(o: Obj, key: string, where: string): number {
  const v = o[key];
  if (typeof v === 'string' && /^\d{1,15}$/.test(v)) return Number(v);
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return v;
  throw new Invalid(`${where}${key}: expected a non-negative integer string`);
}

function sid(o: Obj, key: string, where: string, re: RegExp, what: string): string {
  const v = str(o, key, where);
  if (!re.test(v)) throw new Invalid(`${where}${key}: expected a Twilio ${what} SID (${re.source.slice(1, 3)} + 32 hex digits)`);
  return v;
}

const streamSid = (o: Obj, where: string): string => sid(o, 'streamSid', where, STREAM_SID_RE, 'stream');
const callSid = (o: Obj, where: string): string => sid(o, 'callSid', where, CALL_SID_RE, 'call');
const accountSid = (o: Obj, where: string): string => sid(o, 'accountSid', where, ACCOUNT_SID_RE, 'account');

function payload(o: Obj, where: string): string {
  const v = str(o, 'payload', where);
  if (!isMediaPayload(v)) {
    throw new Invalid(
      v.length > MAX_MEDIA_PAYLOAD_CHARS
        ? `${where}payload: longer than ${MAX_MEDIA_PAYLOAD_CHARS} chars`
        : `${where}payload: expected non-empty base64`,
    );
  }
  return v;
}

function dtmfDigit(o: Obj, where: string): string {
  const v = str(o, 'digit', where);
  if (!DTMF_DIGIT_RE.test(v)) throw new Invalid(`${where}digit: expected one of 0-9 * # A-D`);
  return v;
}

function strRecord(o: Obj, key: string, where: string): Record<string, string> {
  const v = o[key];
  if (v === undefined) return {};
  if (!isObj(v)) throw new Invalid(`${where}${key}: expected an object`);
  const out: Record<string, string> = Object.create(null) as Record<string, string>;
  for (const [k, val] of Object.entries(v)) {
    if (typeof val !== 'string') throw new Invalid(`${where}${key}.${k}: expected a string`);
    out[k] = val;
  }
  return out;
}

function parseStart(m: Obj): StartMessage {
  const s = obj(m, 'start', '');
  const tracks = s.tracks;
  if (!Array.isArray(tracks) || !tracks.every((t) => typeof t === 'string')) {
    throw new Invalid('start.tracks: expected an array of strings');
  }
  const f = obj(s, 'mediaFormat', 'start.');
  const sampleRate = f.sampleRate;
  const channels = f.channels;
  if (typeof sampleRate !== 'number' || !Number.isInteger(sampleRate) || sampleRate <= 0) {
    throw new Invalid('start.mediaFormat.sampleRate: expected a positive integer');
  }
  if (typeof channels !== 'number' || !Number.isInteger(channels) || channels <= 0) {
    throw new Invalid('start.mediaFormat.channels: expected a positive integer');
  }
  return {
    event: 'start',
    sequenceNumber: num(m, 'sequenceNumber', ''),
    streamSid: streamSid(m, ''),
    start: {
      accountSid: accountSid(s, 'start.'),
      streamSid: streamSid(s, 'start.'),
      callSid: callSid(s, 'start.'),
      tracks: tracks as string[],
      customParameters: strRecord(s, 'customParameters', 'start.'),
      mediaFormat: { encoding: str(f, 'encoding', 'start.mediaFormat.'), sampleRate, channels },
    },
  };
}

function parseMedia(m: Obj): MediaMessage {
  const media = obj(m, 'media', '');
  return {
    event: 'media',
    sequenceNumber: num(m, 'sequenceNumber', ''),
    streamSid: streamSid(m, ''),
    media: {
      track: str(media, 'track', 'media.'),
      chunk: num(media, 'chunk', 'media.'),
      timestamp: num(media, 'timestamp', 'media.'),
      payload: payload(media, 'media.'),
    },
  };
}

function parseDtmf(m: Obj): DtmfMessage {
  const d = obj(m, 'dtmf', '');
  return {
    event: 'dtmf',
    sequenceNumber: num(m, 'sequenceNumber', ''),
    streamSid: streamSid(m, ''),
    dtmf: { track: str(d, 'track', 'dtmf.'), digit: dtmfDigit(d, 'dtmf.') },
  };
}

function parseMark(m: Obj): MarkMessage {
  const mk = obj(m, 'mark', '');
  return {
    event: 'mark',
    sequenceNumber: num(m, 'sequenceNumber', ''),
    streamSid: streamSid(m, ''),
    mark: { name: str(mk, 'name', 'mark.') },
  };
}

function parseStop(m: Obj): StopMessage {
  const s = obj(m, 'stop', '');
  return {
    event: 'stop',
    sequenceNumber: num(m, 'sequenceNumber', ''),
    streamSid: streamSid(m, ''),
    stop: { accountSid: accountSid(s, 'stop.'), callSid: callSid(s, 'stop.') },
  };
}

function parseConnected(m: Obj): ConnectedMessage {
  return { event: 'connected', protocol: str(m, 'protocol', ''), version: str(m, 'version', '') };
}

/**
 * Parse one Twilio → server text frame. Never throws. `knownSid`: a stream SID
 * that already passed validation (the call's own, from its `start`), so a
 * media or mark frame naming it is not matched against STREAM_SID_RE again;
 * the result is the same with or without it.
 */
export function parseTwilioMessage(text: string, knownSid = ''): ParseResult {
  if (typeof text !== 'string') return { ok: false, error: 'not a text frame' };
  if (text.length > MAX_MESSAGE_CHARS) return { ok: false, error: `message too large (${text.length} chars)` };
  return fastScan.run(text, knownSid) ?? parseFull(text);
}

/**
 * The full parser (JSON.parse + validation): decides every message the fast
 * path defers. Exported for the equivalence tests and the bench; callers use
 * parseTwilioMessage.
 */
export function parseTwilioMessageFull(text: string): ParseResult {
  if (typeof text !== 'string') return { ok: false, error: 'not a text frame' };
  if (text.length > MAX_MESSAGE_CHARS) return { ok: false, error: `message too large (${text.length} chars)` };
  return parseFull(text);
}

function parseFull(text: string): ParseResult {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return { ok: false, error: 'invalid JSON' };
  }
  if (!isObj(raw)) return { ok: false, error: 'not a JSON object' };
  try {
    switch (raw.event) {
      case 'connected': return { ok: true, msg: parseConnected(raw) };
      case 'start': return { ok: true, msg: parseStart(raw) };
      case 'media': return { ok: true, msg: parseMedia(raw) };
      case 'dtmf': return { ok: true, msg: parseDtmf(raw) };
      case 'mark': return { ok: true, msg: parseMark(raw) };
      case 'stop': return { ok: true, msg: parseStop(raw) };
      default:
        return { ok: false, error: typeof raw.event === 'string' ? `unknown event: ${raw.event.slice(0, 40)}` : 'missing event' };
    }
  } catch (e) {
    if (e instanceof Invalid) return { ok: false, error: `${String(raw.event)}: ${e.message}` };
    return { ok: false, error: 'invalid message' };
  }
}


// ── Fast path: media and mark straight from the text ─────────────────────
//
// Accepts exactly this subset of JSON: one object without whitespace whose
// keys are a subset of {event, sequenceNumber, streamSid, media|mark}, each at
// most once, `media`/`mark` an object of {track, chunk, timestamp, payload} /
// {name}, every value a string without escapes. Everything else (other
// events, numbers, whitespace, escapes, duplicate or unknown keys, missing or
// invalid fields) returns undefined and the full parser decides, so the two
// can never disagree. Key order is free.

const QUOTE = 0x22;
const COMMA = 0x2c;
const COLON = 0x3a;
const LBRACE = 0x7b;
const RBRACE = 0x7d;
const BACKSLASH = 0x5c;

const F_EVENT = 1;
const F_SEQ = 2;
const F_SID = 4;
const F_MEDIA = 8;
const F_MARK = 16;
const F_TRACK = 32;
const F_CHUNK = 64;
const F_TS = 128;
const F_PAYLOAD = 256;
const F_NAME = 512;
const MEDIA_FIELDS = F_EVENT | F_SEQ | F_SID | F_MEDIA | F_TRACK | F_CHUNK | F_TS | F_PAYLOAD;
const MARK_FIELDS = F_EVENT | F_SEQ | F_SID | F_MARK | F_NAME;

const EV_MEDIA = 1;
const EV_MARK = 2;

/** One message's scan state; a single instance is reused (the scan is synchronous and never re-entered). */
class FastScan {
  text = '';
  /** Index just past the value read by the last read call. */
  cursor = 0;
  /** F_* flags of the keys seen so far (a key seen twice defers). */
  seen = 0;
  event = 0;
  seq = 0;
  chunk = 0;
  ts = 0;
  sid = '';
  track = '';
  payload = '';
  name = '';
  /** A stream SID known to be valid (the caller's own, from its `start`): a message naming it skips STREAM_SID_RE. */
  knownSid = '';

  run(text: string, knownSid = ''): ParseResult | undefined {
    this.knownSid = knownSid;
    const n = text.length;
    if (text.charCodeAt(0) !== LBRACE || text.charCodeAt(n - 1) !== RBRACE) return undefined;
    this.text = text;
    this.seen = 0;
    this.event = 0;
    let p = 1;
    for (;;) {
      const kl = this.keyLength(p);
      if (kl < 0) return undefined;
      const k = p + 1;
      const v = p + kl + 3;
      if (kl === 5 && text.startsWith('event', k)) {
        if (!this.take(F_EVENT)) return undefined;
        if (text.startsWith('"media"', v)) {
          this.event = EV_MEDIA;
          this.cursor = v + 7;
        } else if (text.startsWith('"mark"', v)) {
          this.event = EV_MARK;
          this.cursor = v + 6;
        } else return undefined;
      } else if (kl === 14 && text.startsWith('sequenceNumber', k)) {
        if (!this.take(F_SEQ) || (this.seq = this.readDigits(v)) < 0) return undefined;
      } else if (kl === 9 && text.startsWith('streamSid', k)) {
        if (!this.take(F_SID) || (this.sid = this.readRaw(v)) === '') return undefined;
      } else if (kl === 5 && text.startsWith('media', k)) {
        if (!this.take(F_MEDIA) || !this.readNested(v, F_MEDIA)) return undefined;
      } else if (kl === 4 && text.startsWith('mark', k)) {
        if (!this.take(F_MARK) || !this.readNested(v, F_MARK)) return undefined;
      } else return undefined;
      const c = text.charCodeAt(this.cursor);
      if (c === RBRACE) {
        if (this.cursor !== n - 1) return undefined;
        break;
      }
      if (c !== COMMA) return undefined;
      p = this.cursor + 1;
    }
    if (this.event === EV_MEDIA) {
      if (this.seen !== MEDIA_FIELDS || !this.validSid() || !isMediaPayload(this.payload)) return undefined;
      return {
        ok: true,
        msg: {
          event: 'media',
          sequenceNumber: this.seq,
          streamSid: this.sid,
          media: { track: this.track, chunk: this.chunk, timestamp: this.ts, payload: this.payload },
        },
      };
    }
    if (this.event === EV_MARK && this.seen === MARK_FIELDS && this.validSid()) {
      return { ok: true, msg: { event: 'mark', sequenceNumber: this.seq, streamSid: this.sid, mark: { name: this.name } } };
    }
    return undefined;
  }

  private validSid(): boolean {
    return (this.knownSid !== '' && this.sid === this.knownSid) || STREAM_SID_RE.test(this.sid);
  }

  /** The fields of the nested `media` or `mark` object whose `{` is at p; false = defer. */
  private readNested(p: number, kind: number): boolean {
    const text = this.text;
    if (text.charCodeAt(p) !== LBRACE) return false;
    p++;
    for (;;) {
      const kl = this.keyLength(p);
      if (kl < 0) return false;
      const k = p + 1;
      const v = p + kl + 3;
      if (kind === F_MEDIA) {
        if (kl === 7 && text.startsWith('payload', k)) {
          if (!this.take(F_PAYLOAD) || (this.payload = this.readRaw(v)) === '') return false;
        } else if (kl === 5 && text.startsWith('track', k)) {
          if (!this.take(F_TRACK) || !this.readPlain(v)) return false;
          this.track = this.name;
        } else if (kl === 5 && text.startsWith('chunk', k)) {
          if (!this.take(F_CHUNK) || (this.chunk = this.readDigits(v)) < 0) return false;
        } else if (kl === 9 && text.startsWith('timestamp', k)) {
          if (!this.take(F_TS) || (this.ts = this.readDigits(v)) < 0) return false;
        } else return false;
      } else if (kl === 4 && text.startsWith('name', k)) {
        if (!this.take(F_NAME) || !this.readPlain(v)) return false;
      } else return false;
      const c = text.charCodeAt(this.cursor);
      if (c === RBRACE) {
        this.cursor++;
        return true;
      }
      if (c !== COMMA) return false;
      p = this.cursor + 1;
    }
  }

  private take(flag: number): boolean {
    if (this.seen & flag) return false;
    this.seen |= flag;
    return true;
  }

  /** `"key":` at p: the key's length if well-formed, else -1 (the value starts at p + length + 3). */
  private keyLength(p: number): number {
    const text = this.text;
    if (text.charCodeAt(p) !== QUOTE) return -1;
    const end = text.indexOf('"', p + 1);
    if (end < 0 || text.charCodeAt(end + 1) !== COLON) return -1;
    return end - p - 1;
  }

  /**
   * A string value sliced as is: '' if absent or empty (never valid where this is used). Escapes are NOT
   * interpreted: only for values a validating regex vets afterwards (none accepts a backslash).
   */
  private readRaw(q: number): string {
    const text = this.text;
    if (text.charCodeAt(q) !== QUOTE) return '';
    const end = text.indexOf('"', q + 1);
    if (end < 0) return '';
    this.cursor = end + 1;
    return text.slice(q + 1, end);
  }

  /** A string with no escapes and no control characters (so JSON.parse would return the slice) into `name`. */
  private readPlain(q: number): boolean {
    const text = this.text;
    if (text.charCodeAt(q) !== QUOTE) return false;
    const end = text.indexOf('"', q + 1);
    if (end < 0) return false;
    for (let i = q + 1; i < end; i++) {
      const c = text.charCodeAt(i);
      if (c === BACKSLASH || c < 0x20) return false;
    }
    this.cursor = end + 1;
    this.name = text.slice(q + 1, end);
    return true;
  }

  /** A wire number "<1–15 decimal digits>" (the full parser's rule); -1 if the value is anything else. */
  private readDigits(q: number): number {
    const text = this.text;
    if (text.charCodeAt(q) !== QUOTE) return -1;
    let v = 0;
    let i = q + 1;
    for (; i - q <= 15; i++) {
      const d = text.charCodeAt(i) - 0x30;
      if (d < 0 || d > 9) break;
      v = v * 10 + d;
    }
    if (i === q + 1 || text.charCodeAt(i) !== QUOTE) return -1;
    this.cursor = i + 1;
    return v;
  }
}

const fastScan = new FastScan();

/**
 * The fast path alone: a parsed media or mark message, or undefined to let the
 * full parser decide. Exported for the equivalence tests and the bench;
 * callers use parseTwilioMessage (which checks type and size first).
 */
export function parseMediaOrMarkFast(text: string): ParseResult | undefined {
  return fastScan.run(text);
}

/** Server → Twilio: a piece of µ-law 8 kHz audio. `payloadB64` MUST be base64 (inserted unescaped). */
export function mediaMessage(streamSid: string, payloadB64: string): string {
  return `{"event":"media","streamSid":${JSON.stringify(streamSid)},"media":{"payload":"${payloadB64}"}}`;
}

/** Server → Twilio: a mark Twilio echoes once the audio queued before it has played (or on clear). */
export function markMessage(streamSid: string, name: string): string {
  return `{"event":"mark","streamSid":${JSON.stringify(streamSid)},"mark":{"name":${JSON.stringify(name)}}}`;
}

/** Server → Twilio: drop all buffered outbound audio (barge-in); pending marks are echoed. */
export function clearMessage(streamSid: string): string {
  return `{"event":"clear","streamSid":${JSON.stringify(streamSid)}}`;
}
