/**
 * CallSession unit tests: a fake Twilio socket, a fake model session, a
 * manual clock and manual timers, so every timing is exact and no test
 * waits on real time. The loopback end-to-end tests
 * (test/relay.e2e.test.ts) run the same code through real sockets.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { NO_RECORDING, type CallAgent, type CallPolicies } from '../src/call/agent.js';
import type { TransferStore } from '../src/call/ports.js';
import type { TransferDecision } from '../src/records.js';
import { noMetrics } from '../src/call/ports.js';
import { CallSession, type CallDeps, type CallOptions } from '../src/call/session.js';
import type { ModelSession } from '../src/call/voice-model.js';
import { DspError, Transcoder } from '../src/dsp/index.js';
import { createLogger, silentLogger } from '../src/log.js';
import { ToolRegistry, type Tool } from '../src/tools/registry.js';
import { ManualTimers, flush } from './helpers/manual-timers.js';
import { FakeModel, FakeSocket, ManualClock, MemoryRecorder } from './helpers/call-fakes.js';

const STREAM = 'MZ00000000000000000000000000000001';
const CALL = 'CA00000000000000000000000000000001';

/** CallOptions plus the agent's greeting and timers the tests set the same way. */
type TestOptions = CallOptions & { greeting: string; silenceTimeoutMs: number; maxCallMs: number };

const OPTIONS: TestOptions = {
  audioMode: 'passthrough',
  playoutLeadMs: 100,
  outboundChunkMs: 20,
  inboundBatchMs: 20,
  vadSilenceMs: 500,
  silenceTimeoutMs: 60_000,
  maxCallMs: 600_000,
  greeting: 'Say hello',
  toolTimeoutMs: 1000,
  toolFillerMs: 500,
  dtmfGapMs: 50,
  responseRetryMs: [250, 1000],
  prompts: { repeat: new Uint8Array(1600).fill(0x7f), hold: new Uint8Array(800).fill(0x7e), apology: new Uint8Array(800).fill(0x7d), goodbye: new Uint8Array(800).fill(0x7c) },
};

const open: CallSession[] = [];
afterEach(() => {
  for (const s of open.splice(0)) s.end('shutdown');
});

/** A transfer store in memory; `fail` makes saves reject. The socket's state is noted at each save. */
class MemoryTransfers implements TransferStore {
  saved: { callSid: string; decision: TransferDecision; socketClosed: boolean }[] = [];
  fail = false;
  socket: FakeSocket | undefined;
  async saveTransfer(callSid: string, decision: TransferDecision): Promise<void> {
    if (this.fail) throw new Error('store unreachable');
    this.saved.push({ callSid, decision, socketClosed: this.socket?.closed !== undefined });
  }
  async transfer(callSid: string): Promise<TransferDecision | undefined> {
    return this.saved.findLast((s) => s.callSid === callSid)?.decision;
  }
}

function agentFor(options: TestOptions, tools: Tool[], policies: Partial<CallPolicies> = {}): CallAgent {
  return {
    name: 'front-desk',
    instructions: 'Be brief.',
    greeting: options.greeting,
    voice: 'alloy',
    tools: new ToolRegistry(tools),
    policies: {
      transfer: undefined,
      endCall: { enabled: false, goodbyeWaitMs: 5000 },
      silence: { repromptAfterMs: undefined, reprompt: 'Ask if they are still there.', maxReprompts: 2, timeoutMs: options.silenceTimeoutMs },
      maxDuration: { maxCallMs: options.maxCallMs, warnBeforeMs: undefined, warning: 'Say the call will end soon.' },
      recording: NO_RECORDING,
      ...policies,
    },
  };
}

function setup(
  opts: Partial<TestOptions> = {},
  tools: Tool[] = [],
  deps: Partial<CallDeps> & { model?: () => Promise<ModelSession>; timers?: ManualTimers; policies?: Partial<CallPolicies> } = {},
) {
  let t = 0;
  const timers = deps.timers ?? new ManualTimers();
  const socket = new FakeSocket();
  const options = { ...OPTIONS, ...opts };
  const transfers = (deps.transfers as MemoryTransfers | undefined) ?? new MemoryTransfers();
  transfers.socket = socket;
  const model = new FakeModel(options.audioMode === 'transcode' ? 'pcm24k' : 'ulaw8k');
  const recorder = new MemoryRecorder();
  const clock = new ManualClock();
  let ended = 0;
  const session = new CallSession({
    socket,
    options,
    log: silentLogger,
    agent: agentFor(options, tools, deps.policies),
    transfers,
    clock,
    metrics: noMetrics,
    admit: (callSid, params) =>
      params.token === 'good' && callSid === CALL ? { model: deps.model?.() ?? Promise.resolve(model), recorder } : { refused: 'bad token' },
    openTranscoder: () => Transcoder.open(),
    onEnded: () => ended++,
    now: () => t,
    ...deps,
    timers,
  });
  open.push(session);
  const text = (m: object) => session.onText(JSON.stringify(m));
  const start = async (token = 'good') => {
    text({ event: 'connected', protocol: 'Call', version: '1.0.0' });
    text({
      event: 'start', sequenceNumber: '1', streamSid: STREAM,
      start: { accountSid: 'AC' + '0'.repeat(32), streamSid: STREAM, callSid: CALL, tracks: ['inbound'], customParameters: { token },
        mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 } },
    });
    await Promise.resolve();
    await Promise.resolve();
  };
  const media = (payload: string, sid = STREAM) =>
    text({ event: 'media', sequenceNumber: '2', streamSid: sid, media: { track: 'inbound', chunk: '1', timestamp: '0', payload } });
  return {
    session, socket, model, recorder, clock, text, start, media, transfers,
    /** Move the call's timers on by `ms` (the clock `now` is set apart, with setTime). */
    advance: (ms: number) => timers.advance(ms),
    setTime: (v: number) => (t = v),
    ended: () => ended,
  };
}

const ulawB64 = (bytes: number, fill = 0x55) => Buffer.alloc(bytes, fill).toString('base64');

describe('CallSession start and admission', () => {
  it('refuses a stream whose token does not match and closes it with 1008', async () => {
    const h = setup();
    await h.start('forged');
    expect(h.socket.closed?.code).toBe(1008);
    expect(h.session.endReason).toBe('unauthorized');
    expect(h.ended()).toBe(1);
  });

  it('closes a stream whose media format is not µ-law 8 kHz mono', async () => {
    const h = setup();
    h.text({
      event: 'start', sequenceNumber: '1', streamSid: STREAM,
      start: { accountSid: 'AC' + '0'.repeat(32), streamSid: STREAM, callSid: CALL, tracks: ['inbound'], customParameters: { token: 'good' },
        mediaFormat: { encoding: 'audio/x-l16', sampleRate: 16000, channels: 1 } },
    });
    expect(h.socket.closed?.code).toBe(1003);
    expect(h.session.state).toBe('ended');
    expect(h.ended()).toBe(1);
  });

  it('greets the caller first once the model is ready', async () => {
    const h = setup();
    await h.start();
    expect(h.session.state).toBe('live');
    expect(h.model.named('createResponse')).toEqual([['createResponse', 'Say hello']]);
  });

  it('counts media before start, wrong streamSid and garbage, and keeps going', async () => {
    const h = setup();
    h.media(ulawB64(160));
    h.session.onText('{not json');
    h.session.onBinary(12);
    await h.start();
    h.media(ulawB64(160), 'MZ-someone-else');
    expect(h.session.protocolErrors).toBe(4);
    expect(h.model.named('append')).toHaveLength(0);
    h.media(ulawB64(160));
    expect(h.model.named('append')).toHaveLength(1);
    expect(h.session.state).toBe('live');
  });
});

describe('CallSession audio', () => {
  it('passthrough: forwards the caller payload untouched and frames the model audio in 20 ms with marks', async () => {
    const h = setup();
    await h.start();
    const payload = ulawB64(160, 0x12);
    h.media(payload);
    expect(h.model.named('append')[0]![1]).toBe(payload);
    h.model.emit({ type: 'response_started', responseId: 'r1' });
    h.model.emit({ type: 'audio', responseId: 'r1', itemId: 'i1', audio: ulawB64(1000, 0x33) });
    const media = h.socket.of('media');
    expect(media).toHaveLength(5); // 100 ms lead
    for (const m of media) {
      expect(m.streamSid).toBe(STREAM);
      expect(Buffer.from(m.media.payload, 'base64')).toHaveLength(160);
    }
    expect(h.socket.of('mark')).toHaveLength(5);
    h.model.emit({ type: 'audio_done', responseId: 'r1', itemId: 'i1' });
    h.setTime(1000);
    h.clock.tick(1000);
    const all = h.socket.of('media');
    expect(all).toHaveLength(7); // 1000 bytes → 6 full frames + 1 padded
    const last = Buffer.from(all.at(-1)!.media.payload, 'base64');
    expect(last.subarray(40).every((b) => b === 0xff)).toBe(true);
  });

  it('transcode: 160 µ-law bytes in become 960 bytes of 24 kHz PCM to the model; PCM out becomes µ-law frames', async () => {
    const h = setup({ audioMode: 'transcode' });
    await h.start();
    h.media(ulawB64(160, 0xff));
    expect(Buffer.from(h.model.named('append')[0]![1] as string, 'base64')).toHaveLength(960);
    h.model.emit({ type: 'audio', responseId: 'r', itemId: 'i', audio: Buffer.alloc(961).toString('base64') });
    // 961 bytes = 480 samples + 1 odd byte carried → 160 µ-law bytes = one frame
    expect(h.socket.of('media')).toHaveLength(1);
  });
});

describe('CallSession barge-in', () => {
  it('clears at once, truncates at what the caller heard, and drops late audio of the interrupted response', async () => {
    const h = setup();
    await h.start();
    h.model.emit({ type: 'response_started', responseId: 'r1' });
    h.model.emit({ type: 'audio', responseId: 'r1', itemId: 'i1', audio: ulawB64(160 * 50) });
    h.model.emit({ type: 'assistant_transcript', responseId: 'r1', itemId: 'i1', text: 'one two three four five six seven eight nine ten' });
    h.setTime(60);
    h.clock.tick(60);
    const marks = h.socket.of('mark').map((m) => m.mark.name);
    for (const name of marks.slice(0, 3)) h.text({ event: 'mark', sequenceNumber: '9', streamSid: STREAM, mark: { name } });
    const before = h.socket.sent.length;
    h.model.emit({ type: 'speech_started', itemId: 'c1', audioStartMs: 500 });
    expect(h.socket.sent[before]).toEqual({ event: 'clear', streamSid: STREAM });
    expect(h.model.named('truncate')).toEqual([['truncate', 'i1', 60]]);
    // late audio of r1 is dropped; nothing more goes out
    h.model.emit({ type: 'audio', responseId: 'r1', itemId: 'i1', audio: ulawB64(1600) });
    h.clock.tick(200);
    expect(h.socket.sent.length).toBe(before + 1);
    // marks echoed by the clear prove nothing
    for (const name of marks.slice(3)) h.text({ event: 'mark', sequenceNumber: '10', streamSid: STREAM, mark: { name } });
    const line = h.recorder.lines.find((l) => l.speaker === 'assistant')!;
    expect(line.interrupted).toBe(true);
    expect(line.text).toBe('one…'); // 60 of 1000 ms heard: 0.6 of 10 words rounds to one
  });

  it('does not clear when the caller speaks while nothing is playing', async () => {
    const h = setup();
    await h.start();
    h.model.emit({ type: 'speech_started', itemId: 'c1', audioStartMs: 0 });
    expect(h.socket.of('clear')).toHaveLength(0);
    expect(h.model.named('truncate')).toHaveLength(0);
  });
});

describe('CallSession turns, tools and DTMF', () => {
  it('measures per-turn latency from speech_stopped to the first frame of the answer', async () => {
    const h = setup({ greeting: '' });
    await h.start();
    h.setTime(1000);
    h.model.emit({ type: 'speech_stopped', itemId: 'c1', audioEndMs: 900 });
    h.setTime(1200);
    h.model.emit({ type: 'response_started', responseId: 'r2' });
    h.setTime(1350);
    h.model.emit({ type: 'audio', responseId: 'r2', itemId: 'i2', audio: ulawB64(320) });
    expect(h.session.turnLatency.count).toBe(1);
    expect(h.session.lastTurnLatencyMs).toBe(350);
    expect(h.recorder.turns).toEqual([]); // the record waits for the first chunk's mark (test/turn-parts.test.ts)
    h.session.end('caller_hangup');
    expect(h.recorder.turns).toEqual([{ turn: 1, latencyMs: 350, parts: { callerEndMs: 900, speechStoppedMs: 1000, firstDeltaMs: 1350, firstFrameMs: 1350 } }]);
  });

  it('counts a tool turn to the first audio of the answer, not to the tool-call response', async () => {
    const h = setup({ greeting: '' });
    await h.start();
    h.setTime(1000);
    h.model.emit({ type: 'speech_stopped', itemId: 'c1', audioEndMs: 900 });
    h.model.emit({ type: 'response_started', responseId: 'r-tool' });
    h.model.emit({ type: 'response_done', responseId: 'r-tool', status: 'completed', usage: undefined });
    h.setTime(1600);
    h.model.emit({ type: 'response_started', responseId: 'r-answer' });
    h.setTime(1700);
    h.model.emit({ type: 'audio', responseId: 'r-answer', itemId: 'i9', audio: ulawB64(320) });
    h.session.end('caller_hangup');
    expect(h.recorder.turns).toEqual([{ turn: 1, latencyMs: 700, parts: { callerEndMs: 900, speechStoppedMs: 1000, firstDeltaMs: 1700, firstFrameMs: 1700 } }]);
  });

  it('orders the caller transcript by when the caller spoke, even when it arrives late', async () => {
    const h = setup({ greeting: '' });
    await h.start();
    h.setTime(2000);
    h.model.emit({ type: 'speech_started', itemId: 'c1', audioStartMs: 1900 });
    h.setTime(5000);
    h.model.emit({ type: 'caller_transcript', itemId: 'c1', text: 'I want to check my coverage' });
    expect(h.recorder.lines).toEqual([{ atMs: 2000, speaker: 'caller', text: 'I want to check my coverage' }]);
  });

  it('runs a tool off the audio path and asks for a response only after the current one is done', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const tool: Tool = {
      name: 'lookup', description: 'test', parameters: { type: 'object' },
      run: async (args) => {
        await gate;
        return { ok: true, output: JSON.stringify({ echo: args }), record: { echo: args } };
      },
    };
    const h = setup({ greeting: '' }, [tool]);
    await h.start();
    h.model.emit({ type: 'response_started', responseId: 'r1' });
    h.model.emit({ type: 'tool_call', responseId: 'r1', callId: 'call_1', name: 'lookup', arguments: '{"x":1}' });
    // audio keeps flowing while the tool runs
    h.media(ulawB64(160));
    expect(h.model.named('append')).toHaveLength(1);
    release();
    await flush();
    expect(h.model.named('toolResult')).toEqual([['toolResult', 'call_1', '{"echo":{"x":1}}', false]]);
    expect(h.model.named('createResponse')).toHaveLength(0); // r1 still active
    h.model.emit({ type: 'response_done', responseId: 'r1', status: 'completed', usage: undefined });
    expect(h.model.named('createResponse')).toHaveLength(1);
    expect(h.recorder.tools[0]).toMatchObject({ callId: 'call_1', name: 'lookup', ok: true });
  });

  it('a tool that never answers yields the trouble path, not silence', async () => {
    const tool: Tool = { name: 'stuck', description: 't', parameters: {}, run: () => new Promise(() => {}) };
    const h = setup({ greeting: '', toolTimeoutMs: 30, toolFillerMs: 10_000 }, [tool]);
    await h.start();
    h.model.emit({ type: 'response_started', responseId: 'r1' });
    h.model.emit({ type: 'tool_call', responseId: 'r1', callId: 'c', name: 'stuck', arguments: '{}' });
    h.model.emit({ type: 'response_done', responseId: 'r1', status: 'completed', usage: undefined });
    await h.advance(80);
    const [result] = h.model.named('toolResult');
    expect(result![2]).toContain('trouble accessing the system');
    expect(h.model.named('createResponse')).toHaveLength(1);
  });

  it('sends DTMF digits to the model as text', async () => {
    const h = setup({ greeting: '' });
    await h.start();
    for (const digit of ['4', '2', '#']) {
      h.text({ event: 'dtmf', sequenceNumber: '3', streamSid: STREAM, dtmf: { track: 'inbound_track', digit } });
    }
    expect(h.model.named('userText')[0]![1]).toContain('42#');
    expect(h.model.named('createResponse')).toHaveLength(1);
    expect(h.recorder.lines.filter((l) => l.speaker === 'dtmf').map((l) => l.text)).toEqual(['4', '2', '#']);
  });
});

describe('CallSession timers', () => {
  it('ends a call nobody speaks on after the silence timeout', async () => {
    const h = setup({ greeting: '', silenceTimeoutMs: 40 });
    await h.start();
    h.setTime(100); // 100 ms of no speech on either side, by the call's clock
    await h.advance(120); // the silence check runs every min(1 s, timeout)
    expect(h.session.endReason).toBe('silence_timeout');
    expect(h.recorder.endedWith).toBe('silence_timeout');
  });

  it('does not count a call as silent while the assistant is still speaking', async () => {
    const h = setup({ greeting: '', silenceTimeoutMs: 40 });
    await h.start();
    h.model.emit({ type: 'response_started', responseId: 'r' });
    h.setTime(100);
    await h.advance(120);
    expect(h.session.state).toBe('live');
  });

  it('ends a call at the maximum duration', async () => {
    const h = setup({ greeting: '', maxCallMs: 30 });
    await h.start();
    await h.advance(80);
    expect(h.session.endReason).toBe('max_duration');
    expect(h.socket.closed?.code).toBe(1000);
  });
});

describe('CallSession end', () => {
  it('ends cleanly when the model socket closes: record written, stream closed, model closed once', async () => {
    const h = setup();
    await h.start();
    h.model.emit({ type: 'closed', reason: 'socket closed', retryable: true });
    expect(h.session.state).toBe('ended');
    expect(h.recorder.endedWith).toBe('model_disconnected');
    expect(h.socket.closed?.code).toBe(1000);
    expect(h.model.named('close')).toHaveLength(1);
    h.session.onClose(1000, '');
    expect(h.ended()).toBe(1);
  });

  it('Twilio stop ends the call as a hang-up', async () => {
    const h = setup();
    await h.start();
    h.text({ event: 'stop', sequenceNumber: '5', streamSid: STREAM, stop: { accountSid: 'AC' + '0'.repeat(32), callSid: CALL } });
    expect(h.session.endReason).toBe('caller_hangup');
    expect(h.recorder.endedWith).toBe('caller_hangup');
  });
});

describe('CallSession with 2026 Realtime shapes (preambles, parallel calls, failed responses)', () => {
  const fast = (name: string): Tool => ({ name, description: 't', parameters: {}, run: async () => ({ ok: true, output: '{"status":"active"}', record: {} }) });
  /** A tool that answers `ms` after it is called, on the call's timers. */
  const slow = (name: string, ms: number, timers: ManualTimers): Tool => ({
    name, description: 't', parameters: {},
    run: () => new Promise((r) => timers.setTimeout(() => r({ ok: true, output: '{"status":"active"}', record: {} }), ms)),
  });

  for (const speed of ['fast', 'slow'] as const) {
    it(`preamble + two parallel calls (${speed} tools): one response.create, after response.done and both outputs`, async () => {
      const timers = new ManualTimers();
      const tool = speed === 'fast' ? fast('check') : slow('check', 40, timers);
      const h = setup({ greeting: '', toolFillerMs: speed === 'slow' ? 10 : 10_000 }, [tool], { timers });
      await h.start();
      h.model.emit({ type: 'speech_stopped', itemId: 'c1', audioEndMs: 900 });
      h.model.emit({ type: 'response_started', responseId: 'r1' });
      h.model.emit({ type: 'audio', responseId: 'r1', itemId: 'pre', audio: ulawB64(1600) });
      h.model.emit({ type: 'audio_done', responseId: 'r1', itemId: 'pre' });
      h.model.emit({ type: 'assistant_transcript', responseId: 'r1', itemId: 'pre', text: 'Let me check both of those for you.' });
      h.model.emit({ type: 'tool_call', responseId: 'r1', callId: 'a', name: 'check', arguments: '{}' });
      await h.advance(speed === 'fast' ? 5 : 60); // the first call finishes while the second's arguments stream
      h.model.emit({ type: 'tool_call', responseId: 'r1', callId: 'b', name: 'check', arguments: '{}' });
      h.model.emit({ type: 'response_done', responseId: 'r1', status: 'completed', usage: undefined });
      await h.advance(speed === 'fast' ? 5 : 80);
      expect(h.model.named('toolResult').map((c) => c[1])).toEqual(['a', 'b']);
      expect(h.model.named('createResponse')).toEqual([['createResponse', undefined]]);
      h.model.emit({ type: 'response_started', responseId: 'r2' });
      h.model.emit({ type: 'audio', responseId: 'r2', itemId: 'ans', audio: ulawB64(800) });
      h.model.emit({ type: 'response_done', responseId: 'r2', status: 'completed', usage: undefined });
      await h.advance(20);
      expect(h.model.named('createResponse')).toHaveLength(1); // the follow-up is heard once
    });
  }

  it('a filler while a slow parallel round runs never overlaps the round: the answer waits for the filler to end', async () => {
    const timers = new ManualTimers();
    const h = setup({ greeting: '', toolFillerMs: 10 }, [slow('check', 50, timers)], { timers });
    await h.start();
    h.model.emit({ type: 'response_started', responseId: 'r1' });
    h.model.emit({ type: 'tool_call', responseId: 'r1', callId: 'a', name: 'check', arguments: '{}' });
    h.model.emit({ type: 'tool_call', responseId: 'r1', callId: 'b', name: 'check', arguments: '{}' });
    h.model.emit({ type: 'response_done', responseId: 'r1', status: 'completed', usage: undefined });
    await h.advance(25);
    expect(h.model.named('createResponse')).toHaveLength(1); // the filler
    h.model.emit({ type: 'response_started', responseId: 'f' });
    await h.advance(60); // both tools done while the filler speaks
    expect(h.model.named('createResponse')).toHaveLength(1);
    h.model.emit({ type: 'response_done', responseId: 'f', status: 'completed', usage: undefined });
    expect(h.model.named('createResponse')).toHaveLength(2);
    expect(h.model.named('createResponse')[1]![1]).toBeUndefined();
  });

  it('a tool failing in a parallel round still answers every call and asks once', async () => {
    const broken: Tool = { name: 'broken', description: 't', parameters: {}, run: async () => { throw new Error('boom'); } };
    const h = setup({ greeting: '' }, [fast('check'), broken]);
    await h.start();
    h.model.emit({ type: 'response_started', responseId: 'r1' });
    h.model.emit({ type: 'tool_call', responseId: 'r1', callId: 'a', name: 'check', arguments: '{}' });
    h.model.emit({ type: 'tool_call', responseId: 'r1', callId: 'b', name: 'broken', arguments: '{}' });
    h.model.emit({ type: 'response_done', responseId: 'r1', status: 'completed', usage: undefined });
    await h.advance(10);
    const results = h.model.named('toolResult');
    expect(results.map((c) => c[1]).sort()).toEqual(['a', 'b']);
    expect(results.find((c) => c[1] === 'b')![2]).toContain('trouble');
    expect(h.model.named('createResponse')).toHaveLength(1);
  });

  it('a failed response after the caller turn is asked again after the back-off, then apologised for', async () => {
    const h = setup({ greeting: '', responseRetryMs: [10, 20] });
    await h.start();
    const fail = (id: string) => {
      h.model.emit({ type: 'response_started', responseId: id });
      h.model.emit({ type: 'response_done', responseId: id, status: 'failed', reason: 'server_error', usage: undefined });
    };
    h.model.emit({ type: 'speech_stopped', itemId: 'c1', audioEndMs: 900 });
    fail('r1');
    expect(h.model.named('createResponse')).toHaveLength(0);
    await h.advance(20);
    expect(h.model.named('createResponse')).toHaveLength(1);
    fail('r2');
    await h.advance(30);
    expect(h.model.named('createResponse')).toHaveLength(2);
    fail('r3');
    // Retries used up: the recorded apology plays (1600 bytes = 10 frames, paced), nothing more is asked.
    h.setTime(10_000);
    h.clock.tick(10_000);
    expect(h.socket.of('media').length).toBeGreaterThan(0);
    expect(h.model.named('createResponse')).toHaveLength(2);
    expect(h.session.responses).toMatchObject({ failed: 3, retried: 2, apologies: 1 });
    expect(h.recorder.events.map((e) => e.detail)).toEqual([
      'failed (server_error) → retry',
      'failed (server_error) → retry',
      'failed (server_error) → apologize',
    ]);
  });

  it('a retry waits for the rate limit to reset', async () => {
    const h = setup({ greeting: '', responseRetryMs: [5] });
    await h.start();
    h.model.emit({ type: 'rate_limits', limits: [{ name: 'requests', remaining: 0, resetMs: 60 }] });
    h.model.emit({ type: 'response_started', responseId: 'r1' });
    h.model.emit({ type: 'response_done', responseId: 'r1', status: 'failed', reason: 'rate_limit_exceeded', usage: undefined });
    // The session's clock is manual (t = 0): the wait is the reset time, not the 5 ms back-off.
    await h.advance(30);
    expect(h.model.named('createResponse')).toHaveLength(0);
    await h.advance(60);
    expect(h.model.named('createResponse')).toHaveLength(1);
  });

  it('barge-in during a preamble truncates the preamble at what was heard; a message queued behind it is cut to nothing', async () => {
    const h = setup({ greeting: '' });
    await h.start();
    h.model.emit({ type: 'response_started', responseId: 'r1' });
    h.model.emit({ type: 'audio', responseId: 'r1', itemId: 'pre', audio: ulawB64(160 * 25) }); // 500 ms
    h.model.emit({ type: 'audio_done', responseId: 'r1', itemId: 'pre' });
    h.model.emit({ type: 'assistant_transcript', responseId: 'r1', itemId: 'pre', text: 'one two three four five six seven eight nine ten' });
    h.model.emit({ type: 'audio', responseId: 'r1', itemId: 'second', audio: ulawB64(160 * 25) });
    h.model.emit({ type: 'assistant_transcript', responseId: 'r1', itemId: 'second', text: 'never heard at all' });
    // 200 ms of the preamble are played and acknowledged.
    for (let ms = 0; ms <= 200; ms += 20) {
      h.setTime(ms);
      h.clock.tick(ms);
    }
    const marks = h.socket.of('mark').map((m) => m.mark.name);
    for (const name of marks.slice(0, 10)) h.text({ event: 'mark', sequenceNumber: '9', streamSid: STREAM, mark: { name } });
    h.model.emit({ type: 'speech_started', itemId: 'c2', audioStartMs: 3000 });
    expect(h.socket.of('clear')).toHaveLength(1);
    const truncs = h.model.named('truncate');
    expect(truncs).toContainEqual(['truncate', 'pre', 200]);
    expect(truncs).toContainEqual(['truncate', 'second', 0]);
    const said = h.recorder.lines.filter((l) => l.speaker === 'assistant');
    expect(said).toEqual([{ atMs: expect.any(Number), speaker: 'assistant', text: 'one two three four…', interrupted: true }]);
  });

  it('a model that yields itself (GPT-Live): the item arrives ended after speech_started, with timed words; the line keeps the words heard', async () => {
    const h = setup({ greeting: '' });
    await h.start();
    h.model.emit({ type: 'response_started', responseId: 'l1' });
    h.model.emit({ type: 'audio', responseId: 'l1', itemId: 'li1', audio: ulawB64(160 * 50) }); // 1 s
    for (let ms = 0; ms <= 340; ms += 20) {
      h.setTime(ms);
      h.clock.tick(ms);
    }
    const marks = h.socket.of('mark').map((m) => m.mark.name);
    for (const name of marks.slice(0, 17)) h.text({ event: 'mark', sequenceNumber: '9', streamSid: STREAM, mark: { name } }); // 340 ms heard
    h.model.emit({ type: 'speech_started', itemId: 'lin1', audioStartMs: 2000 });
    expect(h.socket.of('clear')).toHaveLength(1);
    // 340 ms heard: the timings say three words were said; an even share of the text (34 % of 5 words) would keep two.
    const words = [
      { text: 'Your', startMs: 0, endMs: 100 },
      { text: ' plan', startMs: 100, endMs: 250 },
      { text: ' is', startMs: 250, endMs: 320 },
      { text: ' still', startMs: 320, endMs: 600 },
      { text: ' active', startMs: 600, endMs: 1000 },
    ];
    h.model.emit({ type: 'audio_done', responseId: 'l1', itemId: 'li1' });
    h.model.emit({ type: 'assistant_transcript', responseId: 'l1', itemId: 'li1', text: 'Your plan is still active', words });
    h.model.emit({ type: 'response_done', responseId: 'l1', status: 'cancelled', reason: 'turn_detected', usage: undefined });
    const said = h.recorder.lines.filter((l) => l.speaker === 'assistant');
    expect(said).toEqual([{ atMs: expect.any(Number), speaker: 'assistant', text: 'Your plan is…', interrupted: true }]);
  });
});

describe('CallSession assistant lines are recorded once heard (issue 22, item 7)', () => {
  /** Play the clock forward to `toMs` in 20 ms steps, echoing every mark Twilio has played by then. */
  function playTo(h: ReturnType<typeof setup>, fromMs: number, toMs: number) {
    const echoed = new Set<string>();
    for (let ms = fromMs; ms <= toMs; ms += 20) {
      h.setTime(ms);
      h.clock.tick(ms);
      // Twilio echoes a chunk's mark once it has played: here, one tick after it was sent.
      for (const m of h.socket.of('mark').slice(0, -1)) {
        if (echoed.has(m.mark.name)) continue;
        echoed.add(m.mark.name);
        h.text({ event: 'mark', sequenceNumber: '9', streamSid: STREAM, mark: { name: m.mark.name } });
      }
    }
    return (name: string) => h.text({ event: 'mark', sequenceNumber: '9', streamSid: STREAM, mark: { name } });
  }
  const assistant = (h: ReturnType<typeof setup>) => h.recorder.lines.filter((l) => l.speaker === 'assistant');

  it('in a live call the line is in the record once its last mark is echoed, not at the call end, and only once', async () => {
    const h = setup({ greeting: '' });
    await h.start();
    h.model.emit({ type: 'response_started', responseId: 'r1' });
    h.model.emit({ type: 'audio', responseId: 'r1', itemId: 'i1', audio: ulawB64(160 * 10) }); // 200 ms
    h.model.emit({ type: 'audio_done', responseId: 'r1', itemId: 'i1' });
    h.model.emit({ type: 'assistant_transcript', responseId: 'r1', itemId: 'i1', text: 'Thanks for calling.' });
    const echo = playTo(h, 0, 400);
    expect(h.socket.of('media')).toHaveLength(10);
    expect(assistant(h)).toEqual([]); // the last chunk is still playing at Twilio
    echo(h.socket.of('mark').at(-1)!.mark.name);
    expect(assistant(h)).toEqual([{ atMs: 0, speaker: 'assistant', text: 'Thanks for calling.' }]);
    expect(h.session.state).toBe('live');
    h.session.end('caller_hangup');
    expect(assistant(h)).toHaveLength(1);
  });

  it('a text that arrives after the audio was heard is written on arrival', async () => {
    const h = setup({ greeting: '' });
    await h.start();
    h.model.emit({ type: 'response_started', responseId: 'r1' });
    h.model.emit({ type: 'audio', responseId: 'r1', itemId: 'i1', audio: ulawB64(160 * 5) });
    h.model.emit({ type: 'audio_done', responseId: 'r1', itemId: 'i1' });
    const echo = playTo(h, 0, 200);
    echo(h.socket.of('mark').at(-1)!.mark.name);
    expect(assistant(h)).toEqual([]);
    h.model.emit({ type: 'assistant_transcript', responseId: 'r1', itemId: 'i1', text: 'Hello there.' });
    expect(assistant(h).map((l) => l.text)).toEqual(['Hello there.']);
    h.session.end('caller_hangup');
    expect(assistant(h)).toHaveLength(1);
  });

  it('a heard line is not written again by a later barge-in; the cut item is written cut, once', async () => {
    const h = setup({ greeting: '' });
    await h.start();
    h.model.emit({ type: 'response_started', responseId: 'r1' });
    h.model.emit({ type: 'audio', responseId: 'r1', itemId: 'pre', audio: ulawB64(160 * 5) }); // 100 ms
    h.model.emit({ type: 'audio_done', responseId: 'r1', itemId: 'pre' });
    h.model.emit({ type: 'assistant_transcript', responseId: 'r1', itemId: 'pre', text: 'Let me check.' });
    h.model.emit({ type: 'audio', responseId: 'r1', itemId: 'ans', audio: ulawB64(160 * 50) }); // 1000 ms
    playTo(h, 0, 300); // the preamble is heard in full, then 200 ms of the answer (one chunk still unechoed)
    expect(assistant(h).map((l) => l.text)).toEqual(['Let me check.']);
    h.model.emit({ type: 'speech_started', itemId: 'c1', audioStartMs: 300 });
    expect(h.model.named('truncate').map((c) => c[1])).toEqual(['ans']);
    expect(assistant(h)).toHaveLength(1); // the answer's text has not come yet
    // Its text arrives after the cut: written at once, cut to the heard share.
    h.model.emit({ type: 'assistant_transcript', responseId: 'r1', itemId: 'ans', text: 'one two three four five six seven eight nine ten' });
    const lines = assistant(h);
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatchObject({ interrupted: true });
    expect(lines[1]!.text).toMatch(/^one( two)?( three)?…$/);
    h.session.end('caller_hangup');
    expect(assistant(h)).toHaveLength(2);
  });

  it('an item queued behind the one playing at barge-in gets no line, even if its text comes later', async () => {
    const h = setup({ greeting: '' });
    await h.start();
    h.model.emit({ type: 'response_started', responseId: 'r1' });
    h.model.emit({ type: 'audio', responseId: 'r1', itemId: 'a', audio: ulawB64(160 * 50) });
    h.model.emit({ type: 'audio_done', responseId: 'r1', itemId: 'a' });
    h.model.emit({ type: 'audio', responseId: 'r1', itemId: 'b', audio: ulawB64(160 * 50) });
    h.model.emit({ type: 'assistant_transcript', responseId: 'r1', itemId: 'a', text: 'one two three four five' });
    playTo(h, 0, 200);
    h.model.emit({ type: 'speech_started', itemId: 'c1', audioStartMs: 200 });
    h.model.emit({ type: 'assistant_transcript', responseId: 'r1', itemId: 'b', text: 'never heard' });
    h.session.end('caller_hangup');
    expect(assistant(h)).toHaveLength(1); // 'a', cut; nothing for 'b' (not even an ellipsis)
    expect(assistant(h)[0]).toMatchObject({ interrupted: true });
  });
});

describe('CallSession faults end the call, never the process (issue 22, item 8)', () => {
  /** A logger whose lines (parsed) are kept. */
  function capturing() {
    const lines: Record<string, any>[] = [];
    return { lines, log: createLogger('debug', { write: (s: string) => void lines.push(JSON.parse(s)) }) };
  }
  /** Unhandled rejections while `fn` runs (and a few turns after). */
  async function unhandledDuring(fn: () => Promise<void>): Promise<unknown[]> {
    const seen: unknown[] = [];
    const on = (reason: unknown) => void seen.push(reason);
    process.on('unhandledRejection', on);
    try {
      await fn();
      await flush(); // unhandled rejections are reported before the next macrotask
      await flush();
    } finally {
      process.off('unhandledRejection', on);
    }
    return seen;
  }

  it('no DSP slot for the transcoder: the call ends `error` (logged, recorded), the admitted model is closed once', async () => {
    const { lines, log } = capturing();
    const h = setup({ audioMode: 'transcode' }, [], {
      log,
      openTranscoder: () => {
        throw new DspError('no_slots', 'all 4096 DSP channel slots are in use');
      },
    });
    await h.start();
    await flush();
    expect(h.session.endReason).toBe('error');
    expect(h.recorder.endedWith).toBe('error');
    expect(h.recorder.events).toEqual([{ atMs: 0, type: 'error', detail: 'transcoder: all 4096 DSP channel slots are in use' }]);
    expect(h.socket.closed?.code).toBe(1011);
    expect(h.ended()).toBe(1);
    expect(h.model.named('close')).toHaveLength(1);
    expect(lines.find((l) => l.level === 50)?.msg).toBe('cannot open a transcoder for this call: ending it');
  });

  it('a call ended while its model session is still connecting closes that session once it arrives', async () => {
    let resolve!: (m: ModelSession) => void;
    const h = setup({}, [], { model: () => new Promise((r) => (resolve = r)) });
    await h.start();
    expect(h.session.state).toBe('connecting');
    h.session.onClose(1000, '');
    resolve(h.model);
    await flush();
    expect(h.model.named('close')).toHaveLength(1);
  });

  it('a throw while attaching the model ends this call `error` and is no unhandled rejection', async () => {
    const h = setup();
    h.model.onEvent = () => {
      throw new Error('listener refused');
    };
    const seen = await unhandledDuring(() => h.start());
    expect(seen).toEqual([]);
    expect(h.session.endReason).toBe('error');
    expect(h.model.named('close')).toHaveLength(1);
    expect(h.ended()).toBe(1);
  });

  it('a model that never comes and a record that cannot be ended: logged, the call still ends and frees its slot', async () => {
    const { lines, log } = capturing();
    const h = setup({}, [], { log, model: () => Promise.reject(new Error('connect refused')) });
    h.recorder.ended = () => {
      throw new Error('store gone');
    };
    const seen = await unhandledDuring(() => h.start());
    expect(seen).toEqual([]);
    expect(h.session.endReason).toBe('model_unavailable');
    expect(h.ended()).toBe(1);
    expect(h.socket.closed?.code).toBe(1000);
    expect(lines.filter((l) => l.level === 50).map((l) => l.msg)).toEqual(['model session unavailable', 'writing the end of the call record failed']);
  });
});

describe('CallSession keeps keypad digits out of the log (issue 22, item 11)', () => {
  it('a keypad overflow logs how many digits are pending, never which', async () => {
    const lines: Record<string, any>[] = [];
    const log = createLogger('debug', { write: (s: string) => void lines.push(JSON.parse(s)) });
    const h = setup({ greeting: '', dtmfGapMs: 60_000 }, [], { log });
    await h.start();
    const press = (digit: string) => h.text({ event: 'dtmf', sequenceNumber: '3', streamSid: STREAM, dtmf: { track: 'inbound_track', digit } });
    for (let i = 0; i < 32; i++) press('7');
    for (const d of ['9', '8', '*', '6']) press(d);
    const overflow = lines.filter((l) => l.reason === 'dtmf_overflow');
    expect(overflow.map((l) => l.detail)).toEqual(['32 digits pending', '32 digits pending', '32 digits pending', '32 digits pending']);
    for (const l of lines) {
      const text = JSON.stringify(l);
      for (const d of ['"9"', '"8"', '"*"', '"6"', '"7"', '7777']) expect(text).not.toContain(d);
    }
  });
});
