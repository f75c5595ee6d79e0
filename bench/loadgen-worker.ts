/**
 * One load-generator worker process (bench/loadgen.ts forks it): runs its
 * share of the simulated callers from one timer and reports their outcomes.
 *
 * Cost per frame, by design: one string template (the media message with a
 * base64 payload encoded once per process), one Buffer, one socket write; no
 * timer per call (the process timer fires every 20 ÷ phases ms and drives the
 * calls of that phase); received audio is counted, not copied (its voice is
 * read only while a caller waits for the greeting or a reply).
 */
import { randomBytes } from 'node:crypto';
import { realpathSync } from 'node:fs';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { rmsDbfs, speechLike, ulawDecode, ulawEncode } from '../src/sim/audio.js';
import { streamOfTwiml, twilioSignature } from '../src/sim/caller.js';
import { base64Bytes, clientFrame, clientTextFrame, mediaText, phaseOffsetMs, readServerFrame, TICK_MS, type WorkerDone, type WorkerJob } from './loadgen.js';
import type { CallOutcome } from './suites/relay.js';

const FRAME_BYTES = 160;
/** A played frame louder than this counts as the assistant speaking (src/sim/caller.ts). */
const VOICE_DBFS = -50;
/** With no reply this long after an utterance, the caller goes on anyway (src/sim/caller.ts). */
const REPLY_GIVE_UP_MS = 5000;
/** Pause after a reply before the next utterance (src/sim/caller.ts default). */
const PAUSE_MS = 400;
/** A frame this many frame times late is still sent; later, skipped (src/sim/caller.ts). */
const LATE_FRAMES = 2;

const counts = { callerSent: 0, callerMediaSent: 0, callerReceived: 0 };
let skippedLate = 0;
const now = (): number => performance.timeOrigin + performance.now();
const hex = (n: number) => randomBytes(n).toString('hex');

/** Base64 of every 20 ms frame of an utterance (µ-law), encoded once; the silence frame likewise. */
const SILENCE_B64 = Buffer.alloc(FRAME_BYTES, 0xff).toString('base64');
const utteranceCache = new Map<string, string[]>();
function utteranceFrames(durationMs: number, idx: number): string[] {
  const k = `${durationMs}/${idx}`;
  let frames = utteranceCache.get(k);
  if (!frames) {
    // The same audio src/sim/caller.ts says (seed 7 + utterance index).
    const ulaw = ulawEncode(speechLike(durationMs, 8000, 7 + idx));
    frames = [];
    for (let off = 0; off < ulaw.length; off += FRAME_BYTES) {
      const f = Buffer.alloc(FRAME_BYTES, 0xff);
      f.set(ulaw.subarray(off, off + FRAME_BYTES));
      frames.push(f.toString('base64'));
    }
    utteranceCache.set(k, frames);
  }
  return frames;
}

/** One simulated caller: `tick` sends and plays what is due; it hangs up `hangupAfterMs` after the assistant went quiet, once every utterance is said. Exported for its tests. */
export class LeanCall {
  t0 = 0;
  n = 0;
  seq = 0;
  chunk = 0;
  done = false;
  hungUp = false;
  private speaking: string[] | null = null;
  private speakPos = 0;
  private utteranceIdx = 0;
  private lastUtteranceEndMs = 0;
  private playedSinceUtterance = false;
  /** A voiced buffer has been queued since the last utterance: no need to read the voice of later ones. */
  private voicedQueued = false;
  private awaitingTurnFromMs: number | undefined;
  private stopAtMs: number | undefined;
  private queue: { bytes: number; voiced: boolean }[] = [];
  private queuedBytes = 0;
  private receivedBytes = 0;
  private playedBytes = 0;
  private lastPlayedAtMs = -Infinity;
  private pendingMarks: { name: string; atByte: number }[] = [];
  private rx: Buffer = Buffer.alloc(0);
  readonly out: CallOutcome = { durationMs: 0, protocolViolations: [], turnLatenciesMs: [], frameSizes: {} };
  private resolveDone!: () => void;
  readonly finished = new Promise<void>((r) => (this.resolveDone = r));

  constructor(
    private readonly sock: net.Socket,
    private readonly ids: { streamSid: string; callSid: string; accountSid: string; customParameters: Record<string, string> },
    private readonly utterances: number[],
    private readonly hangupAfterMs: number,
    private readonly maxCallMs: number,
  ) {}

  /** The stream is open (upgrade done; `rest` = bytes after the 101 response): connected + start, frames from `t0`. */
  begin(t0: number, rest: Buffer): void {
    this.t0 = t0;
    this.sock.on('data', (d: Buffer) => this.onData(d));
    this.sock.on('close', () => this.end());
    this.sock.on('error', () => {});
    this.sendText(JSON.stringify({ event: 'connected', protocol: 'Call', version: '1.0.0' }));
    this.sendText(
      JSON.stringify({
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
      }),
    );
    if (rest.length) this.onData(rest);
  }

  /** The phase timer fired at `at` (wall ms): send and play the frames due. */
  tick(at: number): void {
    if (this.done) return;
    const t = at - this.t0;
    const due = Math.floor((t + 1) / TICK_MS);
    if (due < this.n) return;
    // Every frame due is sent (a late tick sends the few it owes at once), except those more than
    // LATE_FRAMES frames late: skipped and counted, as src/sim/caller.ts does. One played frame each.
    for (; this.n <= due; this.n++) {
      this.speak(this.n * TICK_MS, due - this.n <= LATE_FRAMES);
      this.play(this.n * TICK_MS);
    }
    if ((this.stopAtMs !== undefined && t >= this.stopAtMs) || t > this.maxCallMs) this.hangUp();
  }

  private sendText(s: string): void {
    if (this.sock.destroyed || this.sock.writableEnded) return;
    counts.callerSent++;
    this.sock.write(clientTextFrame(s));
  }

  private speak(t: number, send: boolean): void {
    if (!this.speaking) this.maybeStartUtterance(t);
    let b64 = SILENCE_B64;
    if (this.speaking) {
      b64 = this.speaking[this.speakPos++]!;
      if (this.speakPos >= this.speaking.length) this.endUtterance(t);
    }
    if (!send) {
      skippedLate++;
      return;
    }
    this.chunk++;
    counts.callerMediaSent++;
    this.sendText(mediaText(this.ids.streamSid, ++this.seq, this.chunk, Math.round(t), b64));
  }

  private maybeStartUtterance(t: number): void {
    const d = this.utterances[this.utteranceIdx];
    if (d === undefined) {
      if (this.stopAtMs === undefined && this.replyFinished(t, 0)) this.stopAtMs = t + this.hangupAfterMs;
      return;
    }
    if (!this.replyFinished(t, PAUSE_MS)) return;
    this.speaking = utteranceFrames(d, this.utteranceIdx);
    this.speakPos = 0;
  }

  private replyFinished(t: number, pauseMs: number): boolean {
    if (!(this.queuedBytes === 0 && t - this.lastPlayedAtMs >= pauseMs)) return false;
    return this.playedSinceUtterance || t - this.lastUtteranceEndMs >= REPLY_GIVE_UP_MS;
  }

  private endUtterance(t: number): void {
    this.speaking = null;
    this.lastUtteranceEndMs = t;
    this.awaitingTurnFromMs = t;
    this.playedSinceUtterance = false;
    this.voicedQueued = false;
    this.utteranceIdx++;
  }

  private play(t: number): void {
    if (this.queuedBytes === 0) return;
    let n = Math.min(FRAME_BYTES, this.queuedBytes);
    this.queuedBytes -= n;
    this.playedBytes += n;
    this.lastPlayedAtMs = t;
    // The assistant speaks again after its audio ran out for a moment (a late tick that played
    // what it owed at once, or a stall): the hang-up waits for the next quiet, as src/sim/caller.ts
    // does, instead of cutting the answer off and counting its rest as lost by the relay.
    this.stopAtMs = undefined;
    while (n > 0) {
      const head = this.queue[0]!;
      if (head.voiced) this.playedSinceUtterance = true;
      const k = Math.min(head.bytes, n);
      head.bytes -= k;
      n -= k;
      if (head.bytes === 0) this.queue.shift();
    }
    while (this.pendingMarks.length > 0 && this.pendingMarks[0]!.atByte <= this.playedBytes) this.echoMark(this.pendingMarks.shift()!.name);
  }

  private echoMark(name: string): void {
    this.sendText(JSON.stringify({ event: 'mark', sequenceNumber: String(++this.seq), streamSid: this.ids.streamSid, mark: { name } }));
  }

  private hangUp(): void {
    if (this.done) return;
    this.hungUp = true;
    this.sendText(JSON.stringify({ event: 'stop', sequenceNumber: String(++this.seq), streamSid: this.ids.streamSid, stop: { accountSid: this.ids.accountSid, callSid: this.ids.callSid } }));
    const code = Buffer.alloc(2);
    code.writeUInt16BE(1000);
    if (!this.sock.destroyed) this.sock.write(clientFrame(0x8, code));
    this.done = true;
    this.out.durationMs = Math.round(now() - this.t0);
    // The server answers the close frame and closes the TCP connection; give it a moment, then cut.
    setTimeout(() => this.sock.destroy(), 2000).unref();
  }

  private end(): void {
    if (!this.done) {
      this.done = true;
      this.out.durationMs = Math.round(now() - this.t0);
    }
    this.resolveDone();
  }

  private onData(d: Buffer): void {
    let buf = this.rx.length ? Buffer.concat([this.rx, d]) : d;
    let off = 0;
    for (;;) {
      const f = readServerFrame(buf, off);
      if (!f) break;
      off = f.next;
      switch (f.opcode) {
        case 0x1:
          counts.callerReceived++;
          if (!this.done) this.onMessage(f.payload.toString('utf8'));
          break;
        case 0x2:
          counts.callerReceived++;
          this.out.protocolViolations.push('binary frame');
          break;
        case 0x8:
          if (!this.hungUp && !this.sock.destroyed) this.sock.write(clientFrame(0x8, f.payload.subarray(0, 2)));
          this.end();
          this.sock.end();
          break;
        case 0x9:
          if (!this.sock.destroyed) this.sock.write(clientFrame(0xa, f.payload));
          break;
        default:
          break;
      }
    }
    buf = buf.subarray(off);
    this.rx = buf.length ? Buffer.from(buf) : Buffer.alloc(0);
  }

  private onMessage(text: string): void {
    const v = this.out.protocolViolations;
    let msg: any;
    try {
      msg = JSON.parse(text);
    } catch {
      return void v.push('non-JSON text frame');
    }
    if (msg?.streamSid !== this.ids.streamSid) v.push(`wrong or missing streamSid on ${String(msg?.event)}`);
    const t = now() - this.t0;
    switch (msg?.event) {
      case 'media': {
        const payload = msg.media?.payload;
        if (typeof payload !== 'string' || payload.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(payload)) return void v.push('media payload is not base64');
        const bytes = base64Bytes(payload);
        this.out.frameSizes[bytes] = (this.out.frameSizes[bytes] ?? 0) + 1;
        // The voice of received audio only matters until the first voiced buffer after an utterance (or the greeting).
        let voiced = false;
        if (!this.voicedQueued) {
          voiced = rmsDbfs(ulawDecode(Buffer.from(payload, 'base64'))) > VOICE_DBFS;
          if (voiced) {
            this.voicedQueued = true;
            if (this.awaitingTurnFromMs !== undefined) {
              this.out.turnLatenciesMs.push(t - this.awaitingTurnFromMs);
              this.awaitingTurnFromMs = undefined;
            }
          }
        }
        this.queue.push({ bytes, voiced });
        this.queuedBytes += bytes;
        this.receivedBytes += bytes;
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
        this.queue = [];
        this.queuedBytes = 0;
        for (const m of this.pendingMarks.splice(0)) this.echoMark(m.name);
        return;
      }
      default:
        v.push(`unknown event ${String(msg?.event)}`);
    }
  }
}

/** Signed webhook, then a raw WebSocket upgrade on the stream the TwiML names. */
async function open(job: WorkerJob, index: number): Promise<{ sock: net.Socket; rest: Buffer; ids: { streamSid: string; callSid: string; accountSid: string; customParameters: Record<string, string> } }> {
  const { baseUrl, publicUrl, authToken } = job.target;
  const callSid = `CA${hex(16)}`;
  const accountSid = `AC${hex(16)}`;
  const form: Record<string, string> = {
    CallSid: callSid,
    AccountSid: accountSid,
    From: `+1555${String(index).padStart(7, '0')}`,
    To: '+15550100999',
    CallStatus: 'ringing',
    Direction: 'inbound',
    ApiVersion: '2010-04-01',
  };
  const res = await fetch(`${baseUrl}/voice/incoming`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': twilioSignature(authToken, `${publicUrl}/voice/incoming`, form) },
    body: new URLSearchParams(form).toString(),
  });
  const twiml = await res.text();
  if (res.status !== 200) throw new Error(`/voice/incoming answered ${res.status}`);
  const stream = streamOfTwiml(twiml);
  if (!stream) throw new Error(`TwiML has no <Stream url>: ${twiml.slice(0, 200)}`);
  const parsed = new URL(stream.streamUrl);
  const base = new URL(baseUrl);
  const sock = net.connect({ host: base.hostname, port: Number(base.port) });
  sock.setNoDelay(true);
  const rest = await new Promise<Buffer>((resolve, reject) => {
    let acc = Buffer.alloc(0);
    const onData = (d: Buffer) => {
      acc = Buffer.concat([acc, d]);
      const end = acc.indexOf('\r\n\r\n');
      if (end < 0) return;
      sock.off('data', onData);
      sock.off('error', reject);
      const head = acc.subarray(0, end).toString('latin1');
      if (!/^HTTP\/1\.1 101/.test(head)) return reject(new Error(`stream upgrade answered ${head.split('\r\n')[0]}`));
      resolve(acc.subarray(end + 4));
    };
    sock.on('data', onData);
    sock.once('error', reject);
    sock.once('connect', () =>
      sock.write(
        `GET ${parsed.pathname}${parsed.search} HTTP/1.1\r\nHost: ${base.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n` +
          `x-twilio-signature: ${twilioSignature(authToken, stream.streamUrl, {})}\r\n\r\n`,
      ),
    );
  });
  return { sock, rest, ids: { streamSid: `MZ${hex(16)}`, callSid, accountSid, customParameters: stream.customParameters } };
}

async function run(job: WorkerJob): Promise<WorkerDone> {
  const cpu0 = process.cpuUsage();
  const { workers, worker, phases, epochMs } = job;
  const periodMs = TICK_MS / phases;
  const byPhase: LeanCall[][] = Array.from({ length: phases }, () => []);
  const calls: LeanCall[] = [];
  const errors: string[] = [];
  let pending = job.calls.length;
  // Phase p of this worker fires at epoch + offset(p) + k × 20 ms; one timer walks all phases in order.
  const offsets = Array.from({ length: phases }, (_, p) => phaseOffsetMs(worker, p, workers, phases));
  let k = 0;
  let stopped = false;
  const dueAt = (i: number) => epochMs + offsets[i % phases]! + Math.floor(i / phases) * TICK_MS;
  const step = (): void => {
    if (stopped) return;
    const at = now();
    // Every phase tick whose time has come (a late timer catches up in order; each call skips what it must).
    while (dueAt(k) <= at + 0.5) {
      const group = byPhase[k % phases]!;
      for (const c of group) c.tick(at);
      k++;
    }
    setTimeout(step, Math.max(0, dueAt(k) - now()));
  };
  setTimeout(step, Math.max(0, dueAt(0) - now()));
  await Promise.all(
    job.calls.map(async (slot) => {
      const startAt = epochMs + slot.startMs;
      await new Promise((r) => setTimeout(r, Math.max(0, startAt - now())));
      try {
        const { sock, rest, ids } = await open(job, slot.index);
        const c = new LeanCall(sock, ids, job.target.utterances, job.target.hangupAfterMs, job.target.maxCallMs);
        // Frames from the next tick of its phase on: frame n is due at t0 + n × 20 ms.
        const off = offsets[slot.phase]!;
        const t = now();
        const t0 = epochMs + off + Math.ceil((t - epochMs - off) / TICK_MS) * TICK_MS;
        c.begin(t0, rest);
        calls.push(c);
        byPhase[slot.phase]!.push(c);
        await c.finished;
      } catch (e) {
        errors.push(e instanceof Error ? e.message : String(e));
      } finally {
        pending--;
      }
    }),
  );
  stopped = pending === 0;
  const cpu = process.cpuUsage(cpu0);
  return { type: 'done', results: calls.map((c) => c.out), counts, cpuUs: cpu.user + cpu.system, framesSkippedLate: skippedLate, errors };
}

/** Whether this module is the forked worker's entry point (a test imports it for LeanCall only). */
function isEntryPoint(): boolean {
  try {
    return process.argv[1] !== undefined && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url);
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  process.on('message', (m: WorkerJob | { type: 'stop' }) => {
    if (m.type === 'stop') process.exit(0);
    if (m.type !== 'job') return;
    run(m).then(
      (done) => process.send!(done, () => process.exit(0)),
      (e: unknown) => {
        process.send!({ type: 'done', results: [], counts, cpuUs: 0, framesSkippedLate: skippedLate, errors: [e instanceof Error ? e.message : String(e)] } satisfies WorkerDone, () => process.exit(1));
      },
    );
  });
  process.send!({ type: 'ready' });
}
