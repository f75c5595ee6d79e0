/**
 * CallSession's recording wiring (issue 17), with a fake tap: caller frames
 * reach it at their media timestamps, each chunk sent to Twilio with when it
 * plays, a barge-in's clear at its time; the disclosure plays before the
 * greeting; the opt-out digit drops the recording and never reaches the
 * model; the outcome reaches the record and the metrics once settled. The
 * tap itself (timeline, bounds, failures) is test/call-recording.test.ts.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { CallAgent, RecordingPolicy } from '../src/call/agent.js';
import { noMetrics, type CallMetrics, type OpenRecording } from '../src/call/ports.js';
import { CallSession, type CallOptions } from '../src/call/session.js';
import type { CallRecordingTap, RecordingInfo } from '../src/recording/types.js';
import { silentLogger } from '../src/log.js';
import { ToolRegistry } from '../src/tools/registry.js';
import { ManualTimers } from './helpers/manual-timers.js';
import { FakeModel, FakeSocket, ManualClock, MemoryRecorder } from './helpers/call-fakes.js';

const STREAM = 'MZ00000000000000000000000000000001';
const CALL = 'CA00000000000000000000000000000001';

const OPTIONS: CallOptions = {
  audioMode: 'passthrough',
  playoutLeadMs: 100,
  outboundChunkMs: 20,
  inboundBatchMs: 20,
  vadSilenceMs: 500,
  toolTimeoutMs: 1000,
  toolFillerMs: 500,
  dtmfGapMs: 50,
  responseRetryMs: [250],
  prompts: { repeat: new Uint8Array(160), hold: new Uint8Array(160), apology: new Uint8Array(160), goodbye: new Uint8Array(160) },
};

class FakeTap implements CallRecordingTap {
  callerFrames: { bytes: number[]; atMs: number }[] = [];
  heardChunks: { bytes: number[]; playAtMs: number }[] = [];
  clears: number[] = [];
  optedOut = false;
  finishedAt: number | undefined;
  constructor(private readonly info: RecordingInfo) {}
  caller(ulaw: Uint8Array, atMs: number): void {
    this.callerFrames.push({ bytes: [...ulaw], atMs });
  }
  heard(buf: Uint8Array, start: number, end: number, playAtMs: number): void {
    this.heardChunks.push({ bytes: [...buf.subarray(start, end)], playAtMs });
  }
  cleared(atMs: number): void {
    this.clears.push(atMs);
  }
  optOut(): void {
    this.optedOut = true;
  }
  async finish(atMs: number): Promise<RecordingInfo> {
    this.finishedAt = atMs;
    return this.optedOut ? { ...this.info, status: 'opted_out', object: null } : this.info;
  }
}

const open: CallSession[] = [];
afterEach(() => {
  for (const s of open.splice(0)) s.end('shutdown');
});

const STORED: RecordingInfo = { status: 'complete', object: '2026/12/06/CA1.cbrec', storage: 'dir', keyId: 'ab12cd34', durationMs: 1000, bytes: 16_200 };

function setup(recording: Partial<RecordingPolicy>, opts: { openRecording?: OpenRecording | null; greeting?: string } = {}) {
  let t = 1000; // the relay's clock when the stream starts: tap times count from there
  const socket = new FakeSocket();
  const model = new FakeModel('ulaw8k');
  const recorder = new MemoryRecorder();
  const clock = new ManualClock();
  const timers = new ManualTimers();
  const taps: { tap: FakeTap; call: Parameters<OpenRecording>[0] }[] = [];
  const metricsSeen: Pick<RecordingInfo, 'status' | 'reason'>[] = [];
  const metrics: CallMetrics = { ...noMetrics, recording: (i) => metricsSeen.push(i) };
  const agent: CallAgent = {
    name: 'rec',
    instructions: 'x',
    greeting: opts.greeting ?? '',
    voice: 'marin',
    tools: new ToolRegistry([]),
    policies: {
      transfer: undefined,
      endCall: { enabled: false, goodbyeWaitMs: 5000 },
      silence: { repromptAfterMs: undefined, reprompt: 'r', maxReprompts: 1, timeoutMs: 60_000 },
      maxDuration: { maxCallMs: 600_000, warnBeforeMs: undefined, warning: 'w' },
      recording: { enabled: true, disclosure: undefined, optOutDigit: undefined, ...recording },
    },
  };
  const openRecording: OpenRecording = (call) => {
    const tap = new FakeTap(STORED);
    taps.push({ tap, call });
    return tap;
  };
  const session = new CallSession({
    socket,
    options: OPTIONS,
    log: silentLogger,
    agent,
    transfers: { saveTransfer: async () => {}, transfer: async () => undefined },
    clock,
    metrics,
    admit: () => ({ model: Promise.resolve(model), recorder }),
    openTranscoder: () => {
      throw new Error('passthrough');
    },
    ...(opts.openRecording === null ? {} : { openRecording: opts.openRecording ?? openRecording }),
    onEnded: () => {},
    now: () => t,
    timers,
  });
  open.push(session);
  const text = (m: object) => session.onText(JSON.stringify(m));
  const start = async () => {
    text({
      event: 'start', sequenceNumber: '1', streamSid: STREAM,
      start: { accountSid: 'AC' + '0'.repeat(32), streamSid: STREAM, callSid: CALL, tracks: ['inbound'], customParameters: {},
        mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 } },
    });
    await Promise.resolve();
    await Promise.resolve();
  };
  const media = (bytes: Uint8Array, timestamp: number) =>
    text({ event: 'media', sequenceNumber: '2', streamSid: STREAM, media: { track: 'inbound', chunk: '1', timestamp: String(timestamp), payload: Buffer.from(bytes).toString('base64') } });
  const dtmf = (digit: string) => text({ event: 'dtmf', sequenceNumber: '3', streamSid: STREAM, dtmf: { track: 'inbound_track', digit } });
  return { session, socket, model, recorder, clock, taps, metricsSeen, start, media, dtmf, setTime: (v: number) => (t = v) };
}

describe('CallSession recording', () => {
  it('feeds the tap: caller frames at their media timestamp, each chunk sent with its play time, a clear at its time', async () => {
    const h = setup({});
    await h.start();
    expect(h.taps).toHaveLength(1);
    expect(h.taps[0]!.call).toMatchObject({ callSid: CALL, leg: 1 });
    const tap = h.taps[0]!.tap;
    h.media(new Uint8Array(160).fill(0x21), 0);
    h.media(new Uint8Array(160).fill(0x22), 20);
    expect(tap.callerFrames.map((f) => [f.atMs, f.bytes.length, f.bytes[0]])).toEqual([[0, 160, 0x21], [20, 160, 0x22]]);

    // 60 ms of model audio: sent up to the lead ahead; each chunk plays right after the one before.
    h.setTime(1040);
    h.model.emit({ type: 'audio', responseId: 'r1', itemId: 'i1', audio: Buffer.alloc(480, 0x33).toString('base64') });
    h.model.emit({ type: 'audio_done', responseId: 'r1', itemId: 'i1' });
    h.clock.tick(1040);
    expect(tap.heardChunks.map((c) => [c.playAtMs, c.bytes.length, c.bytes[0]])).toEqual([[40, 160, 0x33], [60, 160, 0x33], [80, 160, 0x33]]);
    // The caller barges in at 1050: the clear is at 50 ms into the call.
    h.setTime(1050);
    h.model.emit({ type: 'speech_started', itemId: 'c1', audioStartMs: 50 });
    expect(tap.clears).toEqual([50]);

    h.setTime(3000);
    h.session.end('caller_hangup');
    expect(tap.finishedAt).toBe(2000);
    await Promise.resolve();
    await Promise.resolve();
    expect(h.recorder.recordings).toEqual([STORED]);
    expect(h.metricsSeen).toEqual([STORED]);
  });

  it('plays the disclosure before the greeting', async () => {
    const notice = new Uint8Array(320).fill(0x44);
    const h = setup({ disclosure: notice }, { greeting: 'Say hello' });
    await h.start();
    h.model.emit({ type: 'audio', responseId: 'r1', itemId: 'i1', audio: Buffer.alloc(160, 0x55).toString('base64') });
    h.model.emit({ type: 'audio_done', responseId: 'r1', itemId: 'i1' });
    for (let t = 1000; t <= 1200; t += 20) {
      h.setTime(t);
      h.clock.tick(t);
    }
    const firstBytes = h.taps[0]!.tap.heardChunks.map((c) => c.bytes[0]);
    expect(firstBytes).toEqual([0x44, 0x44, 0x55]);
    expect(h.model.named('createResponse')).toHaveLength(1); // the greeting was asked for; it plays after the notice
  });

  it('the opt-out digit drops the recording, is never sent to the model, and the record says so', async () => {
    const h = setup({ optOutDigit: '9' });
    await h.start();
    h.dtmf('9');
    const tap = h.taps[0]!.tap;
    expect(tap.optedOut).toBe(true);
    expect(h.recorder.events.map((e) => e.type)).toContain('recording_opted_out');
    await new Promise((r) => setTimeout(r, 120)); // past the DTMF gap: nothing was pending
    expect(h.model.named('sendUserText')).toHaveLength(0);
    h.session.end('caller_hangup');
    await Promise.resolve();
    await Promise.resolve();
    expect(h.recorder.recordings.map((r) => r.status)).toEqual(['opted_out']);
    // Another digit is the model's as before.
    const other = setup({ optOutDigit: '9' });
    await other.start();
    other.dtmf('5');
    expect(other.taps[0]!.tap.optedOut).toBe(false);
  });

  it('an agent that does not record opens no tap; a relay that cannot record says so in the record and the call goes on', async () => {
    const off = setup({ enabled: false });
    await off.start();
    expect(off.taps).toHaveLength(0);
    const cannot = setup({}, { openRecording: null });
    await cannot.start();
    expect(cannot.recorder.events.map((e) => e.type)).toContain('recording_unavailable');
    expect(cannot.session.state).toBe('live');
    const throws = setup({}, { openRecording: () => { throw new Error('storage offline'); } });
    await throws.start();
    expect(throws.recorder.events.find((e) => e.type === 'recording_unavailable')?.detail).toBe('storage offline');
    expect(throws.session.state).toBe('live');
  });
});
