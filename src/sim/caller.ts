/**
 * A simulated Twilio caller: speaks the Media Streams protocol to our relay
 * the way Twilio does (PROTOCOLS.md), independently of src/twilio.
 *
 * `placeCall` POSTs a signed /voice/incoming and opens the stream named in
 * the TwiML; `streamCall` opens a stream someone else's TwiML named (the
 * call flow of twilio-call.ts, which follows every verb). Either way: a
 * signed upgrade, connected/start, then one 20 ms µ-law frame every 20 ms of
 * real time (silence between utterances, as Twilio streams continuously),
 * received audio played at 8000 bytes/s, each mark echoed once the audio
 * before it has played, `clear` honoured (buffer dropped, pending marks
 * echoed at once), and what a caller would measure: what was heard and
 * when, pacing, and per-turn latency.
 *
 * The 20 ms clock is kept against the wall clock from stream start. A stall
 * of this process is not paid back as a burst: a frame whose time passed by
 * more than LATE_FRAMES frames is skipped (its audio is lost, as on a bad
 * line; `framesSkippedLate` counts them), while playout, which is the
 * phone's and never stalls, still advances over the skipped time.
 */
import { randomBytes } from 'node:crypto';
import twilio from 'twilio';
import WebSocket from 'ws';
import { rmsDbfs, speechLike, ulawDecode, ulawEncode } from './audio.js';
import { FRAME_BYTES, FRAME_MS } from '../dsp/format.js';

export interface Utterance {
  audio?: Int16Array;
  durationMs?: number;
  waitForReply?: boolean;
  pauseMs?: number;
  bargeInAfterMs?: number;
}

export interface CallerOptions {
  baseUrl: string;
  publicUrl?: string;
  authToken?: string;
  callSid?: string;
  from?: string;
  to?: string;
  utterances: Utterance[];
  /** Digits sent one per 20 ms tick, either once utterance `afterUtterance` (0-based) has been said or at `atMs` after stream start. */
  dtmf?: ({ afterUtterance: number; digits: string } | { atMs: number; digits: string })[];
  /** Keep every played frame (µ-law bytes + when it played) in `result.heard`. Off by default (memory, in the bench). */
  recordHeard?: boolean;
  /** Keep every frame sent (µ-law bytes + its media timestamp) in `result.sent`. Off by default. */
  recordSent?: boolean;
  /** Once every utterance is said: hang up this long after the assistant has gone quiet (its voice again restarts the wait). Default 1500. */
  hangupAfterMs?: number;
  maxCallMs?: number;
  /** Send `start` this long after `connected`, ms (Twilio sends them back to back): what a relay does with model audio that comes first. Default 0. */
  startAfterMs?: number;
}

export interface CallResult {
  callSid: string;
  streamSid: string;
  twiml: string;
  customParameters: Record<string, string>;
  accountSid: string;
  closeCode: number | undefined;
  /** Who ended the stream: the caller (sent `stop`, hung up) or the server (closed the socket). */
  endedBy: 'caller' | 'server';
  /** Frames not sent because this process stalled past their time by more than LATE_FRAMES frames. */
  framesSkippedLate: number;
  /** Stream open → closed, ms. */
  durationMs: number;
  framesReceived: number;
  heardMs: number;
  /** performance.now() when the stream opened: every `atMs` in this result counts from it. */
  startedAtPerfMs: number;
  playback: { startMs: number; endMs: number }[];
  clears: { atMs: number; playedMsOfRunBeforeClear: number }[];
  bargeIns: { speechStartMs: number; clearAtMs?: number }[];
  marksEchoed: number;
  maxBufferedMs: number;
  turnLatenciesMs: number[];
  protocolViolations: string[];
  frameSizes: Record<number, number>;
  /**
   * With `recordHeard`: each played frame (≤ 160 µ-law bytes) and the ms since stream start it played at
   * (`atMs`: this simulator's 20 ms playout tick; `continuousAtMs`: where it falls on a phone that plays what
   * arrives at once and without gaps, as Twilio does — the tick trails it by up to a frame plus timer jitter).
   */
  heard?: { atMs: number; continuousAtMs: number; bytes: Uint8Array }[];
  /** With `recordSent`: each frame sent (160 µ-law bytes) and its media timestamp (ms since stream start). */
  sent?: { atMs: number; bytes: Uint8Array }[];
}

const SILENCE = 0xff;
/** A played frame louder than this counts as the assistant speaking. */
const VOICE_DBFS = -50;
/** With no reply this long after an utterance, the caller goes on anyway. */
const REPLY_GIVE_UP_MS = 5000;
/** A frame this many frame times late is still sent (a late timer); later than that it is skipped. */
const LATE_FRAMES = 2;

const hex = (n: number) => randomBytes(n).toString('hex');

/** Sign a Twilio webhook the way Twilio does (the twilio package's own code). */
export function twilioSignature(authToken: string, url: string, params: Record<string, string>): string {
  return twilio.getExpectedTwilioSignature(authToken, url, params);
}

/** POST a signed call status callback, as Twilio does. */
export async function postStatusCallback(opts: {
  baseUrl: string;
  publicUrl?: string;
  authToken?: string;
  params: Record<string, string>;
}): Promise<number> {
  const url = `${opts.publicUrl ?? opts.baseUrl}/voice/status`;
  const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded' };
  if (opts.authToken) headers['x-twilio-signature'] = twilioSignature(opts.authToken, url, opts.params);
  const res = await fetch(`${opts.baseUrl}/voice/status`, { method: 'POST', headers, body: new URLSearchParams(opts.params).toString() });
  await res.arrayBuffer();
  return res.status;
}

export interface StatusSequenceOptions {
  baseUrl: string;
  publicUrl?: string;
  authToken?: string;
  callSid: string;
  accountSid?: string;
  from?: string;
  to?: string;
  /** CallStatus values in the order Twilio produced them (SequenceNumber 0, 1, …). */
  statuses?: string[];
  /** Duration (s) put on the terminal callback as CallDuration. */
  durationS?: number;
  /** Order to POST them in: as produced, reversed, or a permutation of indexes (repeat an index for a duplicate). */
  order?: 'in-order' | 'reversed' | number[];
}

/** POSTs a call's status callbacks (signed, SequenceNumber from 0), optionally out of order or duplicated; returns each HTTP status. */
export async function postStatusSequence(opts: StatusSequenceOptions): Promise<{ sequenceNumber: number; callStatus: string; httpStatus: number }[]> {
  const statuses = opts.statuses ?? ['initiated', 'ringing', 'in-progress', 'completed'];
  const terminal = new Set(['completed', 'busy', 'failed', 'no-answer', 'canceled']);
  const idx =
    opts.order === 'reversed' ? statuses.map((_, i) => statuses.length - 1 - i) : Array.isArray(opts.order) ? opts.order : statuses.map((_, i) => i);
  const out: { sequenceNumber: number; callStatus: string; httpStatus: number }[] = [];
  for (const i of idx) {
    const callStatus = statuses[i];
    if (callStatus === undefined) throw new Error(`status index ${i} out of range`);
    const params: Record<string, string> = {
      CallSid: opts.callSid,
      AccountSid: opts.accountSid ?? 'AC00000000000000000000000000000000',
      From: opts.from ?? '+15550100001',
      To: opts.to ?? '+15550100999',
      CallStatus: callStatus,
      Direction: 'inbound',
      Timestamp: new Date().toUTCString(),
      SequenceNumber: String(i),
    };
    if (terminal.has(callStatus)) params.CallDuration = String(opts.durationS ?? 0);
    const httpStatus = await postStatusCallback({ baseUrl: opts.baseUrl, publicUrl: opts.publicUrl, authToken: opts.authToken, params });
    out.push({ sequenceNumber: i, callStatus, httpStatus });
  }
  return out;
}

/** Where a stream goes, from the TwiML that named it. */
export interface StreamTarget {
  /** The TwiML document that named the stream (kept in the result). */
  twiml: string;
  /** `<Stream url>` as written (wss://, the public URL the upgrade is signed over). */
  streamUrl: string;
  /** `<Parameter>`s, sent in `start.customParameters`. */
  customParameters: Record<string, string>;
  callSid: string;
  accountSid: string;
}

/** The first `<Stream url>` of a TwiML document and its `<Parameter>`s, unescaped; undefined when it has none. */
export function streamOfTwiml(twiml: string): { streamUrl: string; customParameters: Record<string, string> } | undefined {
  const streamUrl = /<Stream\b[^>]*\burl="([^"]+)"/.exec(twiml)?.[1];
  if (!streamUrl) return undefined;
  const customParameters: Record<string, string> = {};
  for (const m of twiml.matchAll(/<Parameter\b([^>]*)\/?>/g)) {
    const name = /\bname="([^"]*)"/.exec(m[1]!)?.[1];
    const value = /\bvalue="([^"]*)"/.exec(m[1]!)?.[1];
    if (name !== undefined) customParameters[xmlUnescape(name)] = xmlUnescape(value ?? '');
  }
  return { streamUrl: xmlUnescape(streamUrl), customParameters };
}

/** A whole inbound call: signed /voice/incoming, then the stream its TwiML names. Throws when the webhook is not answered 200 with a stream. */
export async function placeCall(opts: CallerOptions): Promise<CallResult> {
  const callSid = opts.callSid ?? `CA${hex(16)}`;
  const accountSid = `AC${hex(16)}`;
  const publicUrl = opts.publicUrl ?? opts.baseUrl;
  const form: Record<string, string> = {
    CallSid: callSid,
    AccountSid: accountSid,
    From: opts.from ?? '+15550100001',
    To: opts.to ?? '+15550100999',
    CallStatus: 'ringing',
    Direction: 'inbound',
    ApiVersion: '2010-04-01',
  };
  const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded' };
  if (opts.authToken) headers['x-twilio-signature'] = twilioSignature(opts.authToken, `${publicUrl}/voice/incoming`, form);
  const res = await fetch(`${opts.baseUrl}/voice/incoming`, { method: 'POST', headers, body: new URLSearchParams(form).toString() });
  const twiml = await res.text();
  if (res.status !== 200) throw new Error(`/voice/incoming answered ${res.status}`);
  const stream = streamOfTwiml(twiml);
  if (!stream) throw new Error(`TwiML has no <Stream url>: ${twiml.slice(0, 200)}`);
  return streamCall(opts, { twiml, callSid, accountSid, ...stream });
}

/**
 * One stream of a call: opens `target.streamUrl` (reached at `opts.baseUrl`'s
 * host, the upgrade signed over the wss URL as written) and plays the caller
 * until either side ends it. Throws when the upgrade is refused.
 */
export async function streamCall(opts: CallerOptions, target: StreamTarget): Promise<CallResult> {
  const streamSid = `MZ${hex(16)}`;
  const wssUrl = target.streamUrl;
  const parsed = new URL(wssUrl);
  const base = new URL(opts.baseUrl);
  const wsUrl = `${base.protocol === 'https:' ? 'wss' : 'ws'}://${base.host}${parsed.pathname}${parsed.search}`;
  const wsHeaders: Record<string, string> = {};
  if (opts.authToken) wsHeaders['x-twilio-signature'] = twilioSignature(opts.authToken, wssUrl, {});
  const ws = new WebSocket(wsUrl, { headers: wsHeaders });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('unexpected-response', (_req, r) => reject(new Error(`stream upgrade answered ${r.statusCode}`)));
    ws.once('error', reject);
  });
  const { twiml, customParameters, callSid, accountSid } = target;
  return new CallRun(ws, opts, { callSid, accountSid, streamSid, twiml, customParameters }).run();
}

function xmlUnescape(s: string): string {
  return s.replace(/&quot;/g, '"').replace(/&apos;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
}

interface Ids {
  callSid: string;
  accountSid: string;
  streamSid: string;
  twiml: string;
  customParameters: Record<string, string>;
}

class CallRun {
  private seq = 0;
  private chunk = 0;
  private t0 = 0;
  // Playout: received audio waits here and plays at 8000 bytes/s.
  private queue: Buffer[] = [];
  /** When each queued buffer's first byte plays on a phone that plays continuously (arrival, or the end of what came before). */
  private queueAtMs: number[] = [];
  /** When everything queued so far ends, played continuously. */
  private continuousEndMs = 0;
  private queuedBytes = 0;
  private receivedBytes = 0;
  private playedBytes = 0;
  private pendingMarks: { name: string; atByte: number }[] = [];
  private runStartMs: number | undefined;
  private runPlayedMs = 0;
  private lastPlayedAtMs = -Infinity;
  // Caller speech.
  private utteranceIdx = 0;
  private speaking: Uint8Array | null = null;
  private speakPos = 0;
  private lastUtteranceEndMs = 0;
  private playedSinceUtterance = false;
  private firstPlayAfterUtteranceMs: number | undefined;
  private awaitingTurnFromMs: number | undefined;
  private dtmfQueue: string[] = [];
  private readonly timedDtmfSent = new Set<object>();
  private done = false;
  private hungUp = false;
  private stopAtMs: number | undefined;
  private readonly result: CallResult;

  constructor(private readonly ws: WebSocket, private readonly opts: CallerOptions, private readonly ids: Ids) {
    this.result = {
      callSid: ids.callSid,
      streamSid: ids.streamSid,
      twiml: ids.twiml,
      customParameters: ids.customParameters,
      accountSid: ids.accountSid,
      closeCode: undefined,
      endedBy: 'server',
      framesSkippedLate: 0,
      durationMs: 0,
      framesReceived: 0,
      heardMs: 0,
      startedAtPerfMs: 0,
      playback: [],
      clears: [],
      bargeIns: [],
      marksEchoed: 0,
      maxBufferedMs: 0,
      turnLatenciesMs: [],
      protocolViolations: [],
      frameSizes: {},
      heard: opts.recordHeard ? [] : undefined,
      sent: opts.recordSent ? [] : undefined,
    };
  }

  run(): Promise<CallResult> {
    return new Promise((resolve) => {
      this.ws.on('message', (data, isBinary) => this.onMessage(data as Buffer, isBinary));
      this.ws.on('close', (code) => {
        this.result.closeCode = code;
        this.result.endedBy = this.hungUp ? 'caller' : 'server';
        this.result.durationMs = Math.round(this.nowMs());
        this.done = true;
        this.closeRun();
        resolve(this.result);
      });
      this.ws.on('error', () => {});
      this.t0 = performance.now();
      this.result.startedAtPerfMs = this.t0;
      this.sendJson({ event: 'connected', protocol: 'Call', version: '1.0.0' });
      const startAfterMs = this.opts.startAfterMs ?? 0;
      if (startAfterMs > 0) setTimeout(() => this.start(), startAfterMs);
      else this.start();
    });
  }

  /** `start`, then the 20 ms clock from now (the call's time 0). */
  private start(): void {
    if (this.done) return;
    this.t0 = performance.now();
    this.result.startedAtPerfMs = this.t0;
    this.sendJson({
      event: 'start',
      sequenceNumber: String(++this.seq),
      streamSid: this.ids.streamSid,
      start: {
        accountSid: this.ids.accountSid,
        streamSid: this.ids.streamSid,
        callSid: this.ids.callSid,
        tracks: ['inbound'],
        customParameters: this.ids.customParameters,
        mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 },
      },
    });
    this.tick(0);
  }

  private nowMs(): number {
    return performance.now() - this.t0;
  }

  /**
   * The 20 ms clock: frame `n` is due at n × FRAME_MS after t0 (so it never
   * drifts). Each tick sends one frame and plays one; frames due more than
   * LATE_FRAMES frames ago are skipped, not sent in a burst, and their
   * playout time is still played.
   */
  private tick(n: number): void {
    if (this.done) return;
    const now = this.nowMs();
    const due = Math.floor(now / FRAME_MS);
    if (due - n > LATE_FRAMES) {
      for (; n < due; n++) {
        this.speak(n * FRAME_MS, false);
        this.play(now);
      }
    }
    this.speak(now, true);
    this.play(now);
    if (this.stopAtMs !== undefined && now >= this.stopAtMs) return this.hangUp();
    if (now > (this.opts.maxCallMs ?? 60_000)) return this.hangUp();
    const next = (n + 1) * FRAME_MS;
    setTimeout(() => this.tick(n + 1), Math.max(0, next - this.nowMs()));
  }

  private hangUp(): void {
    if (this.done) return;
    this.done = true;
    this.hungUp = true;
    this.sendJson({ event: 'stop', sequenceNumber: String(++this.seq), streamSid: this.ids.streamSid, stop: { accountSid: this.ids.accountSid, callSid: this.ids.callSid } });
    this.ws.close(1000, 'caller hung up');
  }

  /** One frame of the caller's side at `now`; `send` false: its time passed while this process stalled, so it is lost (digits wait for the next sent frame). */
  private speak(now: number, send: boolean): void {
    for (const d of this.opts.dtmf ?? []) {
      if ('atMs' in d && !this.timedDtmfSent.has(d) && now >= d.atMs) {
        this.timedDtmfSent.add(d);
        this.dtmfQueue.push(...d.digits.split(''));
      }
    }
    if (send && this.dtmfQueue.length > 0) {
      const digit = this.dtmfQueue.shift()!;
      this.sendJson({ event: 'dtmf', sequenceNumber: String(++this.seq), streamSid: this.ids.streamSid, dtmf: { track: 'inbound_track', digit } });
    }
    if (!this.speaking) this.maybeStartUtterance(now);
    let frame: Uint8Array;
    if (this.speaking) {
      frame = new Uint8Array(FRAME_BYTES).fill(SILENCE);
      frame.set(this.speaking.subarray(this.speakPos, this.speakPos + FRAME_BYTES));
      this.speakPos += FRAME_BYTES;
      if (this.speakPos >= this.speaking.length) this.endUtterance(now);
    } else {
      frame = new Uint8Array(FRAME_BYTES).fill(SILENCE);
    }
    if (!send) {
      this.result.framesSkippedLate++;
      return;
    }
    this.chunk++;
    this.result.sent?.push({ atMs: Math.round(now), bytes: frame });
    this.sendJson({
      event: 'media',
      sequenceNumber: String(++this.seq),
      streamSid: this.ids.streamSid,
      media: { track: 'inbound', chunk: String(this.chunk), timestamp: String(Math.round(now)), payload: Buffer.from(frame).toString('base64') },
    });
  }

  private maybeStartUtterance(now: number): void {
    const u = this.opts.utterances[this.utteranceIdx];
    const sinceEnd = now - this.lastUtteranceEndMs;
    if (!u) {
      // All said: hang up once the last reply has played (or never came).
      if (this.stopAtMs === undefined && this.replyFinished(now, 0)) this.stopAtMs = now + (this.opts.hangupAfterMs ?? 1500);
      return;
    }
    let go: boolean;
    if (u.bargeInAfterMs !== undefined) {
      go = this.firstPlayAfterUtteranceMs !== undefined && now - this.firstPlayAfterUtteranceMs >= u.bargeInAfterMs;
      if (!go && sinceEnd > REPLY_GIVE_UP_MS * 2) go = true;
    } else if (u.waitForReply === false) {
      go = sinceEnd >= (u.pauseMs ?? 400);
    } else {
      go = this.replyFinished(now, u.pauseMs ?? 400);
    }
    if (!go) return;
    const pcm = u.audio ?? speechLike(u.durationMs ?? 1200, 8000, 7 + this.utteranceIdx);
    this.speaking = ulawEncode(pcm);
    this.speakPos = 0;
    if (u.bargeInAfterMs !== undefined) this.result.bargeIns.push({ speechStartMs: now });
  }

  /** The assistant answered the last utterance and has been quiet for pauseMs (or never answered). */
  private replyFinished(now: number, pauseMs: number): boolean {
    const quiet = this.queuedBytes === 0 && now - this.lastPlayedAtMs >= pauseMs;
    if (!quiet) return false;
    return this.playedSinceUtterance || now - this.lastUtteranceEndMs >= REPLY_GIVE_UP_MS;
  }

  private endUtterance(now: number): void {
    this.speaking = null;
    this.lastUtteranceEndMs = now;
    this.awaitingTurnFromMs = now;
    this.playedSinceUtterance = false;
    this.firstPlayAfterUtteranceMs = undefined;
    for (const d of this.opts.dtmf ?? []) if ('afterUtterance' in d && d.afterUtterance === this.utteranceIdx) this.dtmfQueue.push(...d.digits.split(''));
    this.utteranceIdx++;
  }

  private play(now: number): void {
    if (this.queuedBytes < FRAME_BYTES && this.queuedBytes === 0) {
      this.closeRun();
      return;
    }
    const continuousAtMs = this.queueAtMs[0] ?? now;
    const frame = this.take(Math.min(FRAME_BYTES, this.queuedBytes));
    this.playedBytes += frame.length;
    this.result.heard?.push({ atMs: now, continuousAtMs, bytes: frame });
    const ms = frame.length / 8;
    this.result.heardMs += ms;
    if (this.runStartMs === undefined) {
      this.runStartMs = now;
      this.runPlayedMs = 0;
    }
    this.runPlayedMs += ms;
    this.lastPlayedAtMs = now;
    if (rmsDbfs(ulawDecode(frame)) > VOICE_DBFS) {
      this.playedSinceUtterance = true;
      if (this.firstPlayAfterUtteranceMs === undefined && this.utteranceIdx > 0) this.firstPlayAfterUtteranceMs = now;
      // The assistant speaks again after a gap (a stall that emptied this buffer, or the answer after a
      // tool round): the hang-up waits for the next quiet, as a caller would, instead of cutting it off.
      this.stopAtMs = undefined;
    }
    // Echo every mark whose audio has now played.
    while (this.pendingMarks.length > 0 && this.pendingMarks[0]!.atByte <= this.playedBytes) this.echoMark(this.pendingMarks.shift()!.name);
  }

  private closeRun(): void {
    if (this.runStartMs === undefined) return;
    this.result.playback.push({ startMs: Math.round(this.runStartMs), endMs: Math.round(this.runStartMs + this.runPlayedMs) });
    this.runStartMs = undefined;
  }

  private take(n: number): Buffer {
    const out = Buffer.alloc(n);
    let off = 0;
    while (off < n) {
      const head = this.queue[0]!;
      const k = Math.min(head.length, n - off);
      head.copy(out, off, 0, k);
      off += k;
      if (k === head.length) {
        this.queue.shift();
        this.queueAtMs.shift();
      } else {
        this.queue[0] = head.subarray(k);
        this.queueAtMs[0]! += k / 8;
      }
    }
    this.queuedBytes -= n;
    return out;
  }

  private echoMark(name: string): void {
    this.result.marksEchoed++;
    this.sendJson({ event: 'mark', sequenceNumber: String(++this.seq), streamSid: this.ids.streamSid, mark: { name } });
  }

  private onMessage(data: Buffer, isBinary: boolean): void {
    const v = this.result.protocolViolations;
    if (isBinary) return void v.push('binary frame');
    let msg: any;
    try {
      msg = JSON.parse(data.toString('utf8'));
    } catch {
      return void v.push('non-JSON text frame');
    }
    if (msg?.streamSid !== this.ids.streamSid) v.push(`wrong or missing streamSid on ${String(msg?.event)}`);
    const now = this.nowMs();
    switch (msg?.event) {
      case 'media': {
        const payload = msg.media?.payload;
        if (typeof payload !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(payload) || payload.length % 4 !== 0) {
          return void v.push('media payload is not base64');
        }
        const bytes = Buffer.from(payload, 'base64');
        this.result.framesReceived++;
        this.result.frameSizes[bytes.length] = (this.result.frameSizes[bytes.length] ?? 0) + 1;
        this.queue.push(bytes);
        const at = Math.max(now, this.continuousEndMs);
        this.queueAtMs.push(at);
        this.continuousEndMs = at + bytes.length / 8;
        this.queuedBytes += bytes.length;
        this.receivedBytes += bytes.length;
        this.result.maxBufferedMs = Math.max(this.result.maxBufferedMs, this.queuedBytes / 8);
        if (this.awaitingTurnFromMs !== undefined && rmsDbfs(ulawDecode(bytes)) > VOICE_DBFS) {
          this.result.turnLatenciesMs.push(now - this.awaitingTurnFromMs);
          this.awaitingTurnFromMs = undefined;
        }
        return;
      }
      case 'mark': {
        const name = msg.mark?.name;
        if (typeof name !== 'string') return void v.push('mark without a name');
        if (this.queuedBytes === 0) this.echoMark(name);
        else this.pendingMarks.push({ name, atByte: this.receivedBytes });
        return;
      }
      case 'clear': {
        this.result.clears.push({ atMs: Math.round(now), playedMsOfRunBeforeClear: this.runStartMs === undefined ? 0 : this.runPlayedMs });
        const barge = this.result.bargeIns.find((b) => b.clearAtMs === undefined && b.speechStartMs <= now);
        if (barge) barge.clearAtMs = Math.round(now);
        this.queue = [];
        this.queueAtMs = [];
        this.continuousEndMs = now;
        this.queuedBytes = 0;
        this.closeRun();
        for (const m of this.pendingMarks.splice(0)) this.echoMark(m.name);
        return;
      }
      default:
        v.push(`unknown event ${String(msg?.event)}`);
    }
  }

  private sendJson(msg: unknown): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(msg));
  }
}
