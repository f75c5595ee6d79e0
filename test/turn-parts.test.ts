/**
 * Each turn's latency split into its parts (TurnLatency.parts: the caller's end
 * of speech, speech_stopped, the answer's first delta, its first frame sent,
 * that frame heard), and the live view of a call (CallSession's getters and
 * Relay.liveCalls). A CallSession is driven with a fake Twilio socket, a fake
 * model session, a manual clock and manual timers, so every figure is exact;
 * the relay is driven through its VoiceApp port with the same fakes.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { NO_RECORDING, type CallAgent } from '../src/call/agent.js';
import { noMetrics, type CallUrls, type StreamHandler } from '../src/call/ports.js';
import { Relay } from '../src/call/relay.js';
import { CallSession, type CallOptions } from '../src/call/session.js';
import type { ModelEvent, ModelProvider } from '../src/call/voice-model.js';
import { Transcoder } from '../src/dsp/index.js';
import { silentLogger } from '../src/log.js';
import { ToolRegistry } from '../src/tools/registry.js';
import type { VoiceWebhook } from '../src/twilio/webhooks.js';
import { FakeModel, FakeSocket, ManualClock, MemoryRecorder } from './helpers/call-fakes.js';
import { ManualTimers, flush } from './helpers/manual-timers.js';
import { relaySettings } from './helpers/settings.js';

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
  responseRetryMs: [250, 1000],
  prompts: { repeat: new Uint8Array(1600).fill(0x7f), hold: new Uint8Array(800).fill(0x7e), apology: new Uint8Array(800).fill(0x7d), goodbye: new Uint8Array(800).fill(0x7c) },
};

const AGENT: CallAgent = {
  name: 'front-desk',
  instructions: 'Be brief.',
  greeting: '',
  voice: 'alloy',
  tools: new ToolRegistry([]),
  policies: {
    transfer: undefined,
    endCall: { enabled: false, goodbyeWaitMs: 5000 },
    silence: { repromptAfterMs: undefined, reprompt: 'Ask if they are still there.', maxReprompts: 2, timeoutMs: 600_000 },
    maxDuration: { maxCallMs: 3_600_000, warnBeforeMs: undefined, warning: '' },
    recording: NO_RECORDING,
  },
};

const open: CallSession[] = [];
const relays: Relay[] = [];
afterEach(() => {
  for (const s of open.splice(0)) s.end('shutdown');
  for (const r of relays.splice(0)) r.shutdown();
});

const ulawB64 = (bytes: number, fill = 0x55) => Buffer.alloc(bytes, fill).toString('base64');

function startMessage(customParameters: Record<string, string>) {
  return JSON.stringify({
    event: 'start', sequenceNumber: '1', streamSid: STREAM,
    start: { accountSid: 'AC' + '0'.repeat(32), streamSid: STREAM, callSid: CALL, tracks: ['inbound'], customParameters,
      mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 } },
  });
}
const markMessage = (name: string) => JSON.stringify({ event: 'mark', sequenceNumber: '9', streamSid: STREAM, mark: { name } });

/** One call on a manual clock; the model attaches when `start` resolves. */
async function liveCall() {
  let t = 0;
  const socket = new FakeSocket();
  const model = new FakeModel('ulaw8k');
  const recorder = new MemoryRecorder();
  const clock = new ManualClock();
  const session = new CallSession({
    socket,
    options: OPTIONS,
    log: silentLogger,
    agent: AGENT,
    transfers: { saveTransfer: async () => {}, transfer: async () => undefined },
    from: '+15550100',
    clock,
    metrics: noMetrics,
    admit: () => ({ model: Promise.resolve(model), recorder }),
    openTranscoder: () => Transcoder.open(),
    onEnded: () => {},
    now: () => t,
    timers: new ManualTimers(),
  });
  open.push(session);
  expect(session.modelState).toBe('connecting');
  session.onText(startMessage({ token: 'good' }));
  expect(session.modelState).toBe('connecting'); // the stream started; the model is not attached yet
  await flush();
  expect(session.state).toBe('live');
  const at = (ms: number) => {
    t = ms;
    clock.tick(ms);
  };
  const emit = (ms: number, ev: ModelEvent) => {
    at(ms);
    model.emit(ev);
  };
  const echo = (ms: number, name: string) => {
    at(ms);
    session.onText(markMessage(name));
  };
  const marks = () => socket.of('mark').map((m) => m.mark.name as string);
  return { session, socket, model, recorder, at, emit, echo, marks };
}

describe('TurnLatency.parts', () => {
  it('a turn answered and heard: every part on the call clock, in order, written when the first chunk\'s mark comes back', async () => {
    const c = await liveCall();
    c.emit(500, { type: 'speech_started', itemId: 'c1', audioStartMs: 420 });
    c.emit(1000, { type: 'speech_stopped', itemId: 'c1', audioEndMs: 900 });
    c.emit(1200, { type: 'response_started', responseId: 'r1' });
    c.emit(1300, { type: 'audio', responseId: 'r1', itemId: 'a1', audio: ulawB64(80) }); // half a frame: nothing goes yet
    expect(c.marks()).toEqual([]);
    c.emit(1350, { type: 'audio', responseId: 'r1', itemId: 'a1', audio: ulawB64(240) });
    expect(c.marks()).toEqual(['1', '2']);
    expect(c.session.lastTurnLatencyMs).toBe(350);
    expect(c.recorder.turns).toEqual([]); // not heard yet
    c.echo(1420, '1');
    expect(c.recorder.turns).toEqual([
      { turn: 1, latencyMs: 350, parts: { callerEndMs: 900, speechStoppedMs: 1000, firstDeltaMs: 1300, firstFrameMs: 1350, heardMs: 1420 } },
    ]);
    const p = c.recorder.turns[0]!.parts!;
    const order = [p.callerEndMs!, p.speechStoppedMs, p.firstDeltaMs!, p.firstFrameMs, p.heardMs!];
    expect([...order].sort((a, b) => a - b)).toEqual(order);
    expect(p.firstFrameMs - p.speechStoppedMs).toBe(c.recorder.turns[0]!.latencyMs); // latencyMs keeps its meaning
    c.echo(1440, '2');
    c.session.end('caller_hangup');
    expect(c.recorder.turns).toHaveLength(1); // written once
  });

  it('a later mark echoed first acknowledges the first chunk too; a delta of another response does not count as the answer\'s', async () => {
    const c = await liveCall();
    c.emit(100, { type: 'response_started', responseId: 'r0' }); // still going when the caller's turn ends
    c.emit(200, { type: 'speech_stopped', itemId: 'c1', audioEndMs: 150 });
    c.emit(250, { type: 'audio', responseId: 'r0', itemId: 'a0', audio: ulawB64(160) }); // not an answer to the turn
    c.emit(300, { type: 'response_started', responseId: 'r1' });
    c.emit(330, { type: 'audio', responseId: 'r1', itemId: 'a1', audio: ulawB64(320) });
    expect(c.marks()).toEqual(['1', '2', '3']);
    c.echo(400, '3');
    expect(c.recorder.turns).toEqual([
      { turn: 1, latencyMs: 130, parts: { callerEndMs: 150, speechStoppedMs: 200, firstDeltaMs: 330, firstFrameMs: 330, heardMs: 400 } },
    ]);
  });

  it('a turn whose mark never comes (the caller barges in first) is written at the barge-in without heardMs; its late echo adds nothing', async () => {
    const c = await liveCall();
    c.emit(1000, { type: 'speech_stopped', itemId: 'c1', audioEndMs: 900 });
    c.emit(1100, { type: 'response_started', responseId: 'r1' });
    c.emit(1150, { type: 'audio', responseId: 'r1', itemId: 'a1', audio: ulawB64(800) });
    expect(c.recorder.turns).toEqual([]);
    c.emit(1160, { type: 'speech_started', itemId: 'c2', audioStartMs: 1100 });
    expect(c.socket.of('clear')).toHaveLength(1);
    expect(c.recorder.turns).toEqual([{ turn: 1, latencyMs: 150, parts: { callerEndMs: 900, speechStoppedMs: 1000, firstDeltaMs: 1150, firstFrameMs: 1150 } }]);
    c.echo(1170, '1'); // Twilio echoes pending marks on clear: proves nothing
    c.session.end('caller_hangup');
    expect(c.recorder.turns).toHaveLength(1);
    expect(c.recorder.turns[0]!.parts!.heardMs).toBeUndefined();
  });

  it('an answered turn still unheard when the call ends is written at the end, without heardMs', async () => {
    const c = await liveCall();
    c.emit(1000, { type: 'speech_stopped', itemId: 'c1', audioEndMs: 940 });
    c.emit(1100, { type: 'response_started', responseId: 'r1' });
    c.emit(1400, { type: 'audio', responseId: 'r1', itemId: 'a1', audio: ulawB64(160) });
    expect(c.recorder.turns).toEqual([]);
    c.at(1500);
    c.session.end('caller_hangup');
    expect(c.recorder.turns).toEqual([{ turn: 1, latencyMs: 400, parts: { callerEndMs: 940, speechStoppedMs: 1000, firstDeltaMs: 1400, firstFrameMs: 1400 } }]);
    expect(c.recorder.endedWith).toBe('caller_hangup');
  });

  it('an unanswered turn writes nothing; the next answered one is counted under its own number', async () => {
    const c = await liveCall();
    c.emit(1000, { type: 'speech_stopped', itemId: 'c1', audioEndMs: 900 });
    c.emit(1500, { type: 'speech_started', itemId: 'c2', audioStartMs: 1400 });
    c.emit(2000, { type: 'speech_stopped', itemId: 'c2', audioEndMs: 1900 });
    c.emit(2100, { type: 'response_started', responseId: 'r1' });
    c.emit(2200, { type: 'audio', responseId: 'r1', itemId: 'a1', audio: ulawB64(160) });
    c.echo(2260, '1');
    expect(c.recorder.turns).toEqual([
      { turn: 2, latencyMs: 200, parts: { callerEndMs: 1900, speechStoppedMs: 2000, firstDeltaMs: 2200, firstFrameMs: 2200, heardMs: 2260 } },
    ]);
  });

  it('the caller\'s end is left out when the model\'s audio position cannot be placed: after a reconnect, or past the event\'s arrival', async () => {
    const c = await liveCall();
    c.emit(1000, { type: 'speech_stopped', itemId: 'c1', audioEndMs: 1200 }); // after speech_stopped arrived: not on our clock
    c.emit(1100, { type: 'response_started', responseId: 'r1' });
    c.emit(1200, { type: 'audio', responseId: 'r1', itemId: 'a1', audio: ulawB64(160) });
    c.echo(1250, '1');
    c.emit(2000, { type: 'link_lost', cause: 'socket closed' });
    c.emit(3000, { type: 'link_restored', attempts: 1, gapMs: 1000, unansweredTurn: false });
    c.emit(4000, { type: 'speech_stopped', itemId: 'c2', audioEndMs: 700 }); // the new session's own positions
    c.emit(4100, { type: 'response_started', responseId: 'r2' });
    c.emit(4150, { type: 'audio', responseId: 'r2', itemId: 'a2', audio: ulawB64(160) });
    c.session.end('caller_hangup');
    expect(c.recorder.turns).toEqual([
      { turn: 1, latencyMs: 200, parts: { speechStoppedMs: 1000, firstDeltaMs: 1200, firstFrameMs: 1200, heardMs: 1250 } },
      { turn: 2, latencyMs: 150, parts: { speechStoppedMs: 4000, firstDeltaMs: 4150, firstFrameMs: 4150 } },
    ]);
  });
});

describe('CallSession live view getters', () => {
  it('speaking, model state, turns and last latency follow the call', async () => {
    const c = await liveCall();
    const s = c.session;
    expect([s.speaking, s.modelState, s.turnCount, s.lastTurnLatencyMs]).toEqual(['none', 'up', 0, null]);
    expect([s.from, s.agentName, s.audioMode]).toEqual(['+15550100', 'front-desk', 'passthrough']);
    c.emit(500, { type: 'speech_started', itemId: 'c1', audioStartMs: 400 });
    expect(s.speaking).toBe('caller');
    c.emit(1000, { type: 'speech_stopped', itemId: 'c1', audioEndMs: 900 });
    expect([s.speaking, s.turnCount]).toEqual(['none', 1]);
    c.emit(1100, { type: 'response_started', responseId: 'r1' });
    c.emit(1300, { type: 'audio', responseId: 'r1', itemId: 'a1', audio: ulawB64(160) });
    expect([s.speaking, s.lastTurnLatencyMs, s.durationMs]).toEqual(['assistant', 300, 1300]);
    c.echo(1320, '1');
    expect(s.speaking).toBe('none'); // its only chunk was heard
    c.emit(1400, { type: 'speech_started', itemId: 'c2', audioStartMs: 1300 });
    c.emit(2000, { type: 'link_lost', cause: 'socket closed' }); // no speech_stopped will come from that session
    expect([s.speaking, s.modelState]).toEqual(['assistant', 'reconnecting']); // the hold prompt plays
    c.emit(3000, { type: 'link_restored', attempts: 1, gapMs: 1000, unansweredTurn: false });
    expect(s.modelState).toBe('reconnecting'); // still holding until the model speaks again
    c.emit(3100, { type: 'response_started', responseId: 'r2' });
    c.emit(3100, { type: 'audio', responseId: 'r2', itemId: 'a2', audio: ulawB64(160) });
    expect([s.speaking, s.modelState]).toEqual(['assistant', 'up']);
  });
});

describe('Relay.liveCalls', () => {
  const URLS: CallUrls = {
    streamUrl: 'wss://relay.example/voice/stream',
    actionUrl: 'https://relay.example/voice/action',
    dialActionUrl: 'https://relay.example/voice/dial-action',
    whisperUrl: 'https://relay.example/voice/whisper',
  };
  const webhook: VoiceWebhook = { callSid: CALL, accountSid: 'AC' + '0'.repeat(32), from: '+15550199', to: '+15550100', direction: 'inbound', callStatus: 'ringing' };

  it('lists a call from its stream\'s start to its end, with who speaks and the model\'s state', async () => {
    const model = new FakeModel('ulaw8k');
    let connect!: () => void;
    const provider: ModelProvider = { name: 'fake', connect: () => new Promise((resolve) => (connect = () => resolve(model))) };
    const clock = new ManualClock();
    const relay = new Relay({
      settings: relaySettings({ audioMode: 'passthrough', outboundChunkMs: 20, greeting: '' }),
      log: silentLogger,
      provider,
      openTranscoder: () => Transcoder.open(),
      clock,
    });
    relays.push(relay);
    const answer = relay.incoming(webhook, URLS);
    if (!answer.ok) throw new Error(answer.message);
    const params = Object.fromEntries([...answer.twiml.matchAll(/<Parameter name="([^"]+)" value="([^"]+)"/g)].map((m) => [m[1]!, m[2]!]));
    expect(params.token).toBeTruthy();
    const socket = new FakeSocket();
    const handler = relay.openStream(socket, { remoteAddress: '127.0.0.1', headers: {} }) as StreamHandler;
    expect(relay.liveCalls()).toEqual([]); // no `start` yet: not a call
    handler.onText(startMessage(params));
    await flush();
    const [connecting] = relay.liveCalls();
    expect(connecting).toMatchObject({ callSid: CALL, from: '+15550199', agent: 'default', speaking: 'none', turns: 0, lastTurnMs: null, model: 'connecting', audioMode: 'passthrough' });
    expect(Number.isNaN(Date.parse(connecting!.startedAt))).toBe(false);
    expect(connecting!.durationMs).toBeGreaterThanOrEqual(0);
    connect();
    await flush();
    expect(relay.liveCalls()[0]!.model).toBe('up');
    model.emit({ type: 'speech_started', itemId: 'c1', audioStartMs: 0 });
    expect(relay.liveCalls()[0]!.speaking).toBe('caller');
    model.emit({ type: 'speech_stopped', itemId: 'c1', audioEndMs: 500 });
    expect(relay.liveCalls()[0]).toMatchObject({ speaking: 'none', turns: 1, lastTurnMs: null });
    model.emit({ type: 'response_started', responseId: 'r1' });
    model.emit({ type: 'audio', responseId: 'r1', itemId: 'a1', audio: ulawB64(320) });
    const answering = relay.liveCalls()[0]!;
    expect(answering.speaking).toBe('assistant');
    expect(answering.lastTurnMs).toBeGreaterThanOrEqual(0);
    model.emit({ type: 'link_lost', cause: 'socket closed' });
    expect(relay.liveCalls()[0]!.model).toBe('reconnecting');
    handler.onClose(1000, 'bye');
    expect(relay.liveCalls()).toEqual([]);
  });
});
