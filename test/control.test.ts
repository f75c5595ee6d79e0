/**
 * The call's own control through a CallSession (src/call/control.ts):
 * transfer_call, end_call, the keypad escape, silence reprompts and the
 * maximum-duration warning. A fake Twilio socket, a fake model session, a
 * manual pacing clock and manual timers (as in test/session.test.ts), and a
 * transfer store in memory: every timing is exact and no test waits on real time.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { NO_RECORDING, type CallAgent, type CallPolicies, type TransferPolicy } from '../src/call/agent.js';
import { noMetrics, type TransferStore } from '../src/call/ports.js';
import { CallSession, type CallOptions } from '../src/call/session.js';
import { silentLogger } from '../src/log.js';
import type { TransferDecision } from '../src/records.js';
import { ToolRegistry } from '../src/tools/registry.js';
import { ManualTimers, flush } from './helpers/manual-timers.js';
import { FakeModel, FakeSocket, ManualClock, MemoryRecorder } from './helpers/call-fakes.js';

const STREAM = 'MZ00000000000000000000000000000002';
const CALL = 'CA00000000000000000000000000000002';

/** Decisions kept in memory, each with whether the stream was already closed when it was saved. */
class MemoryTransfers implements TransferStore {
  saved: { callSid: string; decision: TransferDecision; socketClosed: boolean }[] = [];
  fail = false;
  constructor(private readonly socket: FakeSocket) {}
  async saveTransfer(callSid: string, decision: TransferDecision): Promise<void> {
    if (this.fail) throw new Error('database unreachable');
    this.saved.push({ callSid, decision, socketClosed: this.socket.closed !== undefined });
  }
  async transfer(callSid: string): Promise<TransferDecision | undefined> {
    return this.saved.findLast((s) => s.callSid === callSid)?.decision;
  }
}

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
  prompts: { repeat: new Uint8Array(800), hold: new Uint8Array(800), apology: new Uint8Array(800), goodbye: new Uint8Array(800) },
};

const TRANSFER: TransferPolicy = {
  targets: [
    { name: 'billing', description: 'invoices and payments', to: { number: '+15550100001' }, whisper: undefined },
    { name: 'nurse', description: 'clinical questions', to: { sip: 'sip:nurse@example.invalid' }, whisper: 'A caller from the line.' },
  ],
  defaultTarget: 'nurse',
  keypadDigit: '0',
  dialTimeoutS: 20,
  onFailure: { action: 'agent' },
  handoffWaitMs: 4000,
};

const BASE_POLICIES: CallPolicies = {
  transfer: undefined,
  endCall: { enabled: false, goodbyeWaitMs: 5000 },
  silence: { repromptAfterMs: undefined, reprompt: 'Ask whether the caller is still there.', maxReprompts: 2, timeoutMs: 60_000 },
  maxDuration: { maxCallMs: 600_000, warnBeforeMs: undefined, warning: 'Tell the caller the call will end in a minute.' },
  recording: NO_RECORDING,
};

const open: CallSession[] = [];
afterEach(() => {
  for (const s of open.splice(0)) s.end('shutdown');
});

function setup(policies: Partial<CallPolicies>, opts: { leg?: number; greeting?: string } = {}) {
  let t = 0;
  const timers = new ManualTimers();
  const socket = new FakeSocket();
  const model = new FakeModel('ulaw8k');
  const recorder = new MemoryRecorder();
  const clock = new ManualClock();
  const transfers = new MemoryTransfers(socket);
  const agent: CallAgent = {
    name: 'front-desk',
    instructions: 'Be brief.',
    greeting: opts.greeting ?? '',
    voice: 'alloy',
    tools: new ToolRegistry([]),
    policies: { ...BASE_POLICIES, ...policies },
  };
  const session = new CallSession({
    socket,
    options: OPTIONS,
    log: silentLogger,
    agent,
    transfers,
    leg: opts.leg,
    clock,
    metrics: noMetrics,
    admit: () => ({ model: Promise.resolve(model), recorder }),
    openTranscoder: () => {
      throw new Error('passthrough only');
    },
    onEnded: () => {},
    now: () => t,
    timers,
  });
  open.push(session);
  const text = (m: object) => session.onText(JSON.stringify(m));
  text({
    event: 'start', sequenceNumber: '1', streamSid: STREAM,
    start: { accountSid: 'AC' + '0'.repeat(32), streamSid: STREAM, callSid: CALL, tracks: ['inbound'], customParameters: {},
      mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 } },
  });
  const echoed = new Set<string>();
  const h = {
    session, socket, model, recorder, transfers, timers,
    /** Set the call's clock and pump the playout at that time. */
    at(ms: number) {
      t = ms;
      clock.tick(ms);
    },
    /** Play on to `toMs` in 20 ms steps; Twilio echoes a chunk's mark one step after it was sent (the last one stays unechoed). */
    playTo(fromMs: number, toMs: number) {
      for (let ms = fromMs; ms <= toMs; ms += 20) {
        h.at(ms);
        for (const m of socket.of('mark').slice(0, -1)) h.echo(m.mark.name);
      }
    },
    echo(name: string) {
      if (echoed.has(name) || h.session.state === 'ended') return;
      echoed.add(name);
      text({ event: 'mark', sequenceNumber: '9', streamSid: STREAM, mark: { name } });
    },
    echoAll() {
      for (const m of socket.of('mark')) h.echo(m.mark.name);
    },
    press(digit: string) {
      text({ event: 'dtmf', sequenceNumber: '3', streamSid: STREAM, dtmf: { track: 'inbound_track', digit } });
    },
    /** The model says `ms` of audio as item `itemId` of `responseId` (audio and audio_done). */
    say(responseId: string, itemId: string, ms: number) {
      model.emit({ type: 'audio', responseId, itemId, audio: Buffer.alloc(8 * ms, 0x55).toString('base64') });
      model.emit({ type: 'audio_done', responseId, itemId });
    },
    tool(responseId: string, callId: string, name: string, args: object) {
      model.emit({ type: 'tool_call', responseId, callId, name, arguments: JSON.stringify(args) });
    },
    started(responseId: string) {
      model.emit({ type: 'response_started', responseId });
    },
    done(responseId: string) {
      model.emit({ type: 'response_done', responseId, status: 'completed', usage: undefined });
    },
    events: (type: string) => recorder.events.filter((e) => e.type === type),
  };
  return h;
}

/** Wait for the session to be live (the model promise resolved). */
async function live(h: ReturnType<typeof setup>) {
  await flush();
  expect(h.session.state).toBe('live');
  return h;
}

describe('end_call', () => {
  const ENDS = { endCall: { enabled: true, goodbyeWaitMs: 5000 } };

  it('answers the model at once, waits for the goodbye\'s last mark, then closes the stream and records agent_hangup', async () => {
    const h = await live(setup(ENDS));
    h.started('r1');
    h.say('r1', 'bye', 400);
    h.tool('r1', 'c1', 'end_call', {});
    h.done('r1');
    const [result] = h.model.named('toolResult');
    expect(result).toEqual(['toolResult', 'c1', expect.stringContaining('"ok":true'), false]);
    expect(h.events('agent_hangup_requested')).toHaveLength(1);
    h.playTo(0, 600); // every chunk sent; all but the last mark echoed
    expect(h.socket.of('media')).toHaveLength(20);
    expect(h.socket.closed).toBeUndefined();
    expect(h.session.state).toBe('live');
    h.echoAll();
    expect(h.socket.closed).toEqual({ code: 1000, reason: 'agent_hangup' });
    expect(h.recorder.endedWith).toBe('agent_hangup');
    expect(h.model.named('createResponse')).toHaveLength(0); // no follow-up after the goodbye
    expect(h.recorder.tools).toMatchObject([{ callId: 'c1', name: 'end_call', ok: true }]);
    expect(h.recorder.lines.filter((l) => l.speaker === 'tool').map((l) => l.text)).toEqual(['end_call called']);
  });

  it('goodbye audio that comes after the tool call in the same response is heard whole before the close', async () => {
    const h = await live(setup(ENDS));
    h.started('r1');
    h.tool('r1', 'c1', 'end_call', {}); // nothing queued yet: the response is still being made
    await h.timers.advance(10);
    expect(h.socket.closed).toBeUndefined();
    h.say('r1', 'bye', 200);
    h.playTo(0, 300);
    h.echoAll(); // heard so far, but the response is not done
    expect(h.socket.closed).toBeUndefined();
    h.say('r1', 'bye2', 200); // a second part of the goodbye
    h.done('r1');
    h.playTo(320, 700);
    expect(h.socket.closed).toBeUndefined(); // its last chunk is still playing
    const marks = h.socket.of('mark');
    h.echo(marks.at(-1)!.mark.name);
    expect(h.session.endReason).toBe('agent_hangup');
  });

  it('the caller speaking over the goodbye calls the hang-up off: the conversation goes on', async () => {
    const h = await live(setup(ENDS));
    h.started('r1');
    h.say('r1', 'bye', 1000);
    h.tool('r1', 'c1', 'end_call', {});
    h.done('r1');
    h.playTo(0, 200);
    h.model.emit({ type: 'speech_started', itemId: 'u1', audioStartMs: 200 });
    expect(h.socket.of('clear')).toHaveLength(1);
    expect(h.events('hangup_called_off')).toHaveLength(1);
    h.echoAll();
    await h.timers.advance(10_000); // far past goodbyeWaitMs
    expect(h.session.state).toBe('live');
    expect(h.socket.closed).toBeUndefined();
    // The caller's turn is answered as usual.
    h.model.emit({ type: 'speech_stopped', itemId: 'u1', audioEndMs: 900 });
    h.started('r2');
    h.say('r2', 'a2', 100);
    h.done('r2');
    h.playTo(220, 500);
    h.echoAll();
    expect(h.session.state).toBe('live');
  });

  it('marks that never come: the call ends at goodbyeWaitMs, not before', async () => {
    const h = await live(setup(ENDS));
    h.started('r1');
    h.say('r1', 'bye', 400);
    h.tool('r1', 'c1', 'end_call', {});
    h.done('r1');
    h.at(0);
    await h.timers.advance(4999);
    expect(h.session.state).toBe('live');
    await h.timers.advance(1);
    expect(h.session.endReason).toBe('agent_hangup');
    expect(h.socket.closed?.code).toBe(1000);
  });

  it('not enabled: end_call is an unknown tool like any other, and the call goes on', async () => {
    const h = await live(setup({}));
    h.started('r1');
    h.tool('r1', 'c1', 'end_call', {});
    h.done('r1');
    await h.timers.advance(10);
    expect(h.model.named('toolResult')[0]![2]).toContain('unknown tool end_call');
    expect(h.model.named('createResponse')).toHaveLength(1);
    expect(h.session.state).toBe('live');
    expect(h.events('agent_hangup_requested')).toHaveLength(0);
  });
});

describe('transfer_call', () => {
  it('saves the decision before the stream closes, waits for the handoff sentence\'s last mark, then ends transferred', async () => {
    const h = await live(setup({ transfer: TRANSFER }, { leg: 2 }));
    h.started('r1');
    h.say('r1', 'handoff', 300);
    h.tool('r1', 'c1', 'transfer_call', { target: 'billing' });
    h.done('r1');
    await flush();
    expect(h.transfers.saved).toEqual([
      { callSid: CALL, decision: { agent: 'front-desk', target: 'billing', requestedBy: 'model', leg: 2, at: expect.any(String) }, socketClosed: false },
    ]);
    expect(h.model.named('toolResult')).toEqual([['toolResult', 'c1', expect.stringContaining('"ok":true'), false]]);
    expect(h.events('transfer_requested')).toEqual([{ atMs: 0, type: 'transfer_requested', detail: 'billing by model' }]);
    h.playTo(0, 500);
    expect(h.socket.closed).toBeUndefined(); // the sentence's last chunk is still playing
    h.echoAll();
    expect(h.socket.closed).toEqual({ code: 1000, reason: 'transferred' });
    expect(h.recorder.endedWith).toBe('transferred');
    expect(h.model.named('createResponse')).toHaveLength(0);
  });

  it('the handoff wait is bounded by handoffWaitMs', async () => {
    const h = await live(setup({ transfer: TRANSFER }));
    h.started('r1');
    h.say('r1', 'handoff', 300);
    h.tool('r1', 'c1', 'transfer_call', { target: 'nurse' });
    h.done('r1');
    h.at(0);
    await h.timers.advance(3999);
    expect(h.session.state).toBe('live');
    await h.timers.advance(1);
    expect(h.session.endReason).toBe('transferred');
    expect(h.transfers.saved).toHaveLength(1);
  });

  it('caller speech does not call a transfer off: playback is cut and the call is transferred', async () => {
    const h = await live(setup({ transfer: TRANSFER }));
    h.started('r1');
    h.say('r1', 'handoff', 1000);
    h.tool('r1', 'c1', 'transfer_call', { target: 'billing' });
    await flush();
    h.playTo(0, 200);
    h.model.emit({ type: 'speech_started', itemId: 'u1', audioStartMs: 200 });
    expect(h.socket.of('clear')).toHaveLength(1);
    expect(h.session.endReason).toBe('transferred');
    expect(h.transfers.saved).toHaveLength(1);
  });

  it('an unknown target: nothing is saved, the model is told the valid targets and asked to respond', async () => {
    const h = await live(setup({ transfer: TRANSFER }));
    h.started('r1');
    h.tool('r1', 'c1', 'transfer_call', { target: '+15550199999' });
    h.done('r1');
    await h.timers.advance(10);
    expect(h.transfers.saved).toEqual([]);
    const [result] = h.model.named('toolResult');
    expect(result![2]).toContain('valid targets: billing, nurse');
    expect(h.model.named('createResponse')).toEqual([['createResponse', undefined]]);
    expect(h.events('transfer_requested')).toHaveLength(0);
    await h.timers.advance(10_000);
    expect(h.session.state).toBe('live');
  });

  it('arguments without a target are refused the same way', async () => {
    const h = await live(setup({ transfer: TRANSFER }));
    h.started('r1');
    h.model.emit({ type: 'tool_call', responseId: 'r1', callId: 'c1', name: 'transfer_call', arguments: 'not json' });
    h.done('r1');
    await flush();
    expect(h.transfers.saved).toEqual([]);
    expect(h.model.named('toolResult')[0]![2]).toContain('valid targets');
    expect(h.model.named('createResponse')).toHaveLength(1);
  });

  it('a save that rejects: the model is told transfer is not available and answers; the call goes on', async () => {
    const h = await live(setup({ transfer: TRANSFER }));
    h.transfers.fail = true;
    h.started('r1');
    h.say('r1', 'handoff', 100);
    h.tool('r1', 'c1', 'transfer_call', { target: 'billing' });
    h.done('r1');
    await flush();
    const [result] = h.model.named('toolResult');
    expect(result![2]).toContain('transfer is not available right now');
    expect(h.model.named('createResponse')).toEqual([['createResponse', undefined]]);
    expect(h.events('transfer_failed')).toHaveLength(1);
    expect(h.events('transfer_failed')[0]!.detail).toContain('billing by model');
    h.playTo(0, 300);
    h.echoAll();
    await h.timers.advance(10_000);
    expect(h.session.state).toBe('live');
    expect(h.socket.closed).toBeUndefined();
  });

  it('without a transfer policy, transfer_call is an unknown tool: nothing is saved', async () => {
    const h = await live(setup({}));
    h.started('r1');
    h.tool('r1', 'c1', 'transfer_call', { target: 'billing' });
    h.done('r1');
    await h.timers.advance(10);
    expect(h.transfers.saved).toEqual([]);
    expect(h.model.named('toolResult')[0]![2]).toContain('unknown tool transfer_call');
  });
});

describe('keypad escape', () => {
  it('the keypad digit transfers to the default target without the model: playback cut, response cancelled, digit not sent', async () => {
    const h = await live(setup({ transfer: TRANSFER }));
    h.started('r1');
    h.say('r1', 'talk', 1000);
    h.playTo(0, 100);
    h.press('0');
    expect(h.socket.of('clear')).toHaveLength(1);
    expect(h.model.named('cancel')).toHaveLength(1);
    await flush();
    expect(h.transfers.saved).toEqual([
      { callSid: CALL, decision: { agent: 'front-desk', target: 'nurse', requestedBy: 'keypad', leg: 1, at: expect.any(String) }, socketClosed: false },
    ]);
    expect(h.socket.closed).toEqual({ code: 1000, reason: 'transferred' });
    expect(h.events('transfer_requested')[0]!.detail).toBe('nurse by keypad');
    expect(h.model.named('userText')).toEqual([]);
  });

  it('the digit pressed inside a digit entry is part of it, not an escape', async () => {
    const h = await live(setup({ transfer: TRANSFER }));
    h.press('1');
    h.press('0');
    h.press('#');
    expect(h.model.named('userText')[0]![1]).toContain('10#');
    expect(h.transfers.saved).toEqual([]);
    expect(h.session.state).toBe('live');
  });

  it('other digits reach the model as before; no keypad escape without a transfer policy', async () => {
    const h = await live(setup({}));
    h.press('0');
    await h.timers.advance(60);
    expect(h.model.named('userText')[0]![1]).toContain('0');
    expect(h.transfers.saved).toEqual([]);
  });

  it('a keypad transfer that cannot be saved: the model is told, and the call goes on', async () => {
    const h = await live(setup({ transfer: TRANSFER }));
    h.transfers.fail = true;
    h.press('0');
    await flush();
    expect(h.session.state).toBe('live');
    expect(h.events('transfer_failed')).toHaveLength(1);
    expect(h.model.named('userText')[0]![1]).toContain('not available');
    expect(h.model.named('createResponse')).toHaveLength(1);
  });
});

describe('silence reprompt', () => {
  const SILENCE = { silence: { repromptAfterMs: 3000, reprompt: 'Ask whether the caller is still there.', maxReprompts: 2, timeoutMs: 60_000 } };

  it('asks the model after repromptAfterMs of silence, at most maxReprompts times, and caller speech resets the count', async () => {
    const h = await live(setup(SILENCE));
    const reprompts = () => h.model.named('createResponse').filter((c) => c[1] === SILENCE.silence.reprompt).length;
    h.at(2999);
    await h.timers.advance(2999);
    expect(reprompts()).toBe(0);
    h.at(3000);
    await h.timers.advance(1001);
    expect(reprompts()).toBe(1);
    expect(h.events('silence_reprompt')).toHaveLength(1);
    // The model asks; its words are heard.
    h.started('p1');
    h.say('p1', 'p1a', 100);
    h.done('p1');
    h.playTo(3000, 3200);
    h.echoAll();
    h.at(5000);
    await h.timers.advance(2000);
    expect(reprompts()).toBe(1); // 3 s have not passed since the reprompt was heard
    h.at(6500);
    await h.timers.advance(1500);
    expect(reprompts()).toBe(2);
    h.started('p2');
    h.done('p2');
    h.at(20_000);
    await h.timers.advance(14_000);
    expect(reprompts()).toBe(2); // at most two per silence
    // The caller speaks: the count starts over.
    h.model.emit({ type: 'speech_started', itemId: 'u1', audioStartMs: 20_000 });
    h.model.emit({ type: 'speech_stopped', itemId: 'u1', audioEndMs: 20_500 });
    h.started('r1');
    h.done('r1');
    h.at(24_000);
    await h.timers.advance(4000);
    expect(reprompts()).toBe(3);
  });

  it('no reprompt while the assistant is speaking; the silence timeout still ends the call afterwards', async () => {
    const h = await live(setup({ silence: { repromptAfterMs: 3000, reprompt: 'Still there?', maxReprompts: 1, timeoutMs: 8000 } }));
    h.started('r1');
    h.at(4000);
    await h.timers.advance(4000);
    expect(h.model.named('createResponse')).toHaveLength(0); // r1 is still active
    h.done('r1');
    await h.timers.advance(1000);
    expect(h.model.named('createResponse')).toEqual([['createResponse', 'Still there?']]);
    h.started('p1');
    h.done('p1');
    h.at(8000);
    await h.timers.advance(1000);
    expect(h.session.endReason).toBe('silence_timeout');
  });
});

describe('maximum-duration warning', () => {
  const DURATION = { maxDuration: { maxCallMs: 10_000, warnBeforeMs: 2000, warning: 'Tell the caller the call will end in a minute.' } };

  it('asks the model for the warning at maxCallMs - warnBeforeMs; the call still ends max_duration at maxCallMs', async () => {
    const h = await live(setup(DURATION));
    await h.timers.advance(7999);
    expect(h.model.named('createResponse')).toHaveLength(0);
    await h.timers.advance(1);
    expect(h.model.named('createResponse')).toEqual([['createResponse', DURATION.maxDuration.warning]]);
    expect(h.events('max_duration_warning')).toHaveLength(1);
    h.started('w1');
    h.done('w1');
    await h.timers.advance(1999);
    expect(h.session.state).toBe('live');
    await h.timers.advance(1);
    expect(h.session.endReason).toBe('max_duration');
  });

  it('the warning waits for the response in progress', async () => {
    const h = await live(setup(DURATION));
    h.started('r1');
    await h.timers.advance(8500);
    expect(h.events('max_duration_warning')).toHaveLength(1);
    expect(h.model.named('createResponse')).toHaveLength(0);
    h.done('r1');
    expect(h.model.named('createResponse')).toEqual([['createResponse', DURATION.maxDuration.warning]]);
  });

  it('no warning once the call is ending', async () => {
    const h = await live(setup({ ...DURATION, endCall: { enabled: true, goodbyeWaitMs: 5000 } }));
    h.started('r1');
    h.say('r1', 'bye', 200);
    h.tool('r1', 'c1', 'end_call', {});
    h.done('r1');
    await h.timers.advance(8000); // marks never come: the goodbye's bound (5 s) ends it first
    expect(h.session.endReason).toBe('agent_hangup');
    expect(h.events('max_duration_warning')).toHaveLength(0);
  });
});
