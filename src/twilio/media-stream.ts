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
 *   them and decodes only when it has to transform the audio.
 * - Builders return the JSON text of a server → Twilio message. They run
 *   ~50×/s per call, so they are template strings; `streamSid` and mark names
 *   go through JSON.stringify, the payload does not: base64
 *   (`A–Z a–z 0–9 + / =`) contains no character that JSON needs escaped.
 *   Callers MUST pass real base64 there.
 */

/** Largest text frame accepted (a 20 ms media frame is ~300 bytes; starts carry custom parameters). */
export const MAX_MESSAGE_CHARS = 64 * 1024;

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
    streamSid: str(m, 'streamSid', ''),
    start: {
      accountSid: str(s, 'accountSid', 'start.'),
      streamSid: str(s, 'streamSid', 'start.'),
      callSid: str(s, 'callSid', 'start.'),
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
    streamSid: str(m, 'streamSid', ''),
    media: {
      track: str(media, 'track', 'media.'),
      chunk: num(media, 'chunk', 'media.'),
      timestamp: num(media, 'timestamp', 'media.'),
      payload: str(media, 'payload', 'media.'),
    },
  };
}

function parseDtmf(m: Obj): DtmfMessage {
  const d = obj(m, 'dtmf', '');
  return {
    event: 'dtmf',
    sequenceNumber: num(m, 'sequenceNumber', ''),
    streamSid: str(m, 'streamSid', ''),
    dtmf: { track: str(d, 'track', 'dtmf.'), digit: str(d, 'digit', 'dtmf.') },
  };
}

function parseMark(m: Obj): MarkMessage {
  const mk = obj(m, 'mark', '');
  return {
    event: 'mark',
    sequenceNumber: num(m, 'sequenceNumber', ''),
    streamSid: str(m, 'streamSid', ''),
    mark: { name: str(mk, 'name', 'mark.') },
  };
}

function parseStop(m: Obj): StopMessage {
  const s = obj(m, 'stop', '');
  return {
    event: 'stop',
    sequenceNumber: num(m, 'sequenceNumber', ''),
    streamSid: str(m, 'streamSid', ''),
    stop: { accountSid: str(s, 'accountSid', 'stop.'), callSid: str(s, 'callSid', 'stop.') },
  };
}

function parseConnected(m: Obj): ConnectedMessage {
  return { event: 'connected', protocol: str(m, 'protocol', ''), version: str(m, 'version', '') };
}

/** Parse one Twilio → server text frame. Never throws. */
export function parseTwilioMessage(text: string): ParseResult {
  if (typeof text !== 'string') return { ok: false, error: 'not a text frame' };
  if (text.length > MAX_MESSAGE_CHARS) return { ok: false, error: `message too large (${text.length} chars)` };
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
