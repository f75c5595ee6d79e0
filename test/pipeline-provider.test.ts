// The pipeline session (src/pipeline/pipeline-provider.ts) with the Deepgram and ElevenLabs stand-ins on
// loopback and a scripted in-memory language model at the LLM port.
import { afterEach, describe, expect, it } from 'vitest';
import { PipelineProvider, wordsFromChars, type PipelineSession } from '../src/pipeline/pipeline-provider.js';
import { DeepgramStt } from '../src/pipeline/stt-deepgram.js';
import { ElevenLabsTts } from '../src/pipeline/tts-elevenlabs.js';
import { LlmError, type LanguageModel, type LlmEvent, type LlmRequest, type LlmStream } from '../src/pipeline/llm.js';
import type { TextToSpeech, TtsEvent, TtsFormat, TtsStream } from '../src/pipeline/tts.js';
import { ModelConnectError, type ConversationItem, type ModelEvent, type ModelSession } from '../src/call/voice-model.js';
import { startDeepgramStandIn, type DeepgramStandIn, type DeepgramStandInOptions } from '../src/sim/deepgram-server.js';
import { elevenAudioBytes, startElevenLabsStandIn, type ElevenStandIn, type ElevenStandInOptions } from '../src/sim/elevenlabs-server.js';
import { speechLike, ulawEncode } from '../src/sim/audio.js';
import { sleep, until } from './helpers/until.js';

const FRAME_BYTES = 160;

/** One scripted completion: events with a pause before each (ms). */
type Script = { events: LlmEvent[]; gapMs?: number };

/** A LanguageModel that plays scripts in order (the last repeats) and records every request. */
class ScriptedLlm implements LanguageModel {
  readonly name = 'scripted';
  readonly model = 'scripted-1';
  readonly requests: LlmRequest[] = [];
  live = 0;
  constructor(private readonly scripts: Script[]) {}

  stream(req: LlmRequest): LlmStream {
    const script = this.scripts[Math.min(this.requests.length, this.scripts.length - 1)]!;
    this.requests.push(structuredClone(req));
    const listeners = new Set<(ev: LlmEvent) => void>();
    let timer: NodeJS.Timeout | undefined;
    let i = 0;
    this.live++;
    const end = () => {
      if (timer) clearTimeout(timer);
      timer = undefined;
      if (i <= script.events.length) this.live--;
      i = script.events.length + 1;
    };
    const step = () => {
      const ev = script.events[i++];
      if (!ev) return end();
      for (const l of listeners) l(ev);
      if (ev.type === 'done' || ev.type === 'error') return end();
      timer = setTimeout(step, script.gapMs ?? 2);
    };
    timer = setTimeout(step, script.gapMs ?? 2);
    return {
      onEvent: (l) => (listeners.add(l), () => listeners.delete(l)),
      cancel: end,
    };
  }
}

const usage = { inputTokens: 10, cachedInputTokens: 0, outputTokens: 5, reported: true };
const say = (...deltas: string[]): Script => ({ events: [...deltas.map((delta) => ({ type: 'text_delta' as const, delta })), { type: 'done', finishReason: 'stop', usage }] });
const fail = (error: LlmError): Script => ({ events: [{ type: 'error', error }] });

let dg: DeepgramStandIn | undefined;
let xi: ElevenStandIn | undefined;
const sessions: ModelSession[] = [];

afterEach(async () => {
  for (const s of sessions.splice(0)) s.close();
  await dg?.close();
  await xi?.close();
  dg = xi = undefined;
});

interface Setup {
  llm?: Script[];
  dg?: DeepgramStandInOptions;
  xi?: ElevenStandInOptions;
  format?: TtsFormat;
  history?: ConversationItem[];
}

async function setup(o: Setup = {}) {
  dg = await startDeepgramStandIn({ firstResultMs: 40, interimEveryMs: 60, finalDelayMs: 10, texts: ['what is my copay'], ...o.dg });
  xi = await startElevenLabsStandIn({ firstAudioDelayMs: 10, frameGapMs: 2, msPerChar: 20, ...o.xi });
  const llm = new ScriptedLlm(o.llm ?? [say('You pay ', 'twenty dollars. ', 'Anything else?')]);
  const provider = new PipelineProvider({
    stt: new DeepgramStt({ apiKey: 'test-key', url: dg.url }),
    llm,
    tts: new ElevenLabsTts({ apiKey: 'xi', voiceId: 'v1', baseUrl: xi.url }),
    ttsFormat: o.format ?? 'ulaw_8000',
    timings: { finalWaitMs: 500, llmBackoffMs: 10 },
  });
  const session = (await provider.connect({ instructions: 'Be brief.', voice: 'v1', tools: [], ...(o.history ? { history: o.history } : {}) })) as PipelineSession;
  sessions.push(session);
  const events: ModelEvent[] = [];
  session.onEvent((ev) => events.push(ev));
  return { session, events, llm };
}

const speech = (ms: number, seed = 1): Uint8Array => ulawEncode(speechLike(ms, 8000, seed));
const silence = (ms: number): Uint8Array => new Uint8Array(ms * 8).fill(0xff);

/** Sends µ-law in 20 ms frames, one every `paceMs`. */
async function feed(session: ModelSession, audio: Uint8Array, paceMs = 5): Promise<void> {
  for (let off = 0; off < audio.length; off += FRAME_BYTES) {
    session.appendAudio(Buffer.from(audio.subarray(off, off + FRAME_BYTES)).toString('base64'));
    await sleep(paceMs);
  }
}

const utterance = (speechMs = 800, seed = 1) => {
  const a = new Uint8Array(speechMs * 8 + 1400 * 8);
  a.set(silence(200));
  a.set(speech(speechMs, seed), 1600);
  a.set(silence(1200), 1600 + speechMs * 8);
  return a;
};

const types = (events: ModelEvent[]) => events.map((e) => e.type).filter((t) => t !== 'assistant_transcript_delta' && t !== 'audio');
const ofType = <T extends ModelEvent['type']>(events: ModelEvent[], type: T) => events.filter((e): e is Extract<ModelEvent, { type: T }> => e.type === type);
const audioBytes = (events: ModelEvent[]) => ofType(events, 'audio').reduce((n, e) => n + Buffer.from(e.audio, 'base64').length, 0);
const done = (events: ModelEvent[]) => until(() => events.some((e) => e.type === 'usage'), { timeoutMs: 8000, what: 'the answer to end' });

describe('wordsFromChars', () => {
  it('pieces keep the whitespace after them, so that joined they are the text; spans cover the letters', () => {
    const chars = [...'Hi  there. Bye '].map((ch, i) => ({ ch, startMs: i * 10, endMs: i * 10 + 10 }));
    const words = wordsFromChars(chars);
    expect(words.map((w) => w.text)).toEqual(['Hi  ', 'there. ', 'Bye ']);
    expect(words.map((w) => [w.startMs, w.endMs])).toEqual([[0, 20], [40, 100], [110, 140]]);
  });
});

describe('PipelineSession', () => {
  it('answers a caller turn with the events of a server-VAD session, in order', async () => {
    const { session, events, llm } = await setup();
    expect(events[0]).toEqual({ type: 'ready' });
    await feed(session, utterance());
    await done(events);
    const seq = types(events);
    expect(seq).toEqual(['ready', 'speech_started', 'speech_stopped', 'caller_transcript', 'response_started', 'turn_stages', 'audio_done', 'assistant_transcript', 'response_done', 'usage']);
    const all = events.map((e) => e.type);
    expect(all.indexOf('turn_stages')).toBeLessThan(all.indexOf('audio'));
    expect(all.lastIndexOf('audio')).toBeLessThan(all.indexOf('audio_done'));
    expect(ofType(events, 'caller_transcript')[0]!.text).toBe('what is my copay');
    const [stages] = ofType(events, 'turn_stages');
    expect(stages!.finalTranscriptMs).toBeGreaterThanOrEqual(0);
    expect(stages!.firstTokenMs).toBeGreaterThanOrEqual(stages!.finalTranscriptMs!);
    expect(stages!.firstTtsAudioMs).toBeGreaterThanOrEqual(stages!.firstTokenMs!);
    const said = 'You pay twenty dollars. Anything else?';
    const [tr] = ofType(events, 'assistant_transcript');
    expect(tr!.text).toBe(said);
    expect(tr!.words?.map((w) => w.text.trim())).toEqual(said.split(' '));
    // The pieces joined are the text (a cut of the call's line joins the pieces heard).
    expect(tr!.words?.map((w) => w.text).join('').trim()).toBe(said);
    // One item per answer, every audio event whole 20 ms frames except possibly the last.
    const audio = ofType(events, 'audio');
    expect(new Set(audio.map((e) => e.itemId)).size).toBe(1);
    for (const e of audio.slice(0, -1)) expect(Buffer.from(e.audio, 'base64').length % FRAME_BYTES).toBe(0);
    expect(audioBytes(events)).toBe(xi!.sessions.reduce((n, s) => n + s.audioBytesSent, 0));
    expect(ofType(events, 'response_done')[0]).toMatchObject({ status: 'completed', usage: undefined });
    const u = ofType(events, 'usage')[0]!.usage;
    expect(u.pipeline).toMatchObject({ llmInputTokens: 10, llmOutputTokens: 5, ttsCharacters: said.length });
    expect(u.pipeline!.sttAudioSeconds).toBeGreaterThan(0.5);
    expect(u.inputTextTokens + u.outputTextTokens).toBe(0);
    expect(llm.requests[0]!.messages).toEqual([
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'what is my copay' },
    ]);
  });

  it('a tool round: both calls, then one LLM request carrying the calls and both outputs', async () => {
    const calls: Script = {
      events: [
        { type: 'tool_call', call: { callId: 'c1', name: 'lookup', arguments: '{"id":1}' } },
        { type: 'tool_call', call: { callId: 'c2', name: 'lookup', arguments: '{"id":2}' } },
        { type: 'done', finishReason: 'tool_calls', usage },
      ],
    };
    const { session, events, llm } = await setup({ llm: [calls, say('Both found.')] });
    session.createResponse('Greet.');
    await until(() => events.some((e) => e.type === 'response_done'));
    expect(ofType(events, 'tool_call').map((e) => e.callId)).toEqual(['c1', 'c2']);
    expect(ofType(events, 'response_done')[0]!.status).toBe('completed');
    expect(llm.requests[0]!.messages[0]).toEqual({ role: 'system', content: 'Be brief.\n\nGreet.' });
    session.sendToolResult('c1', 'one', false);
    session.sendToolResult('c2', 'two', false);
    session.createResponse();
    await until(() => ofType(events, 'response_done').length === 2, { timeoutMs: 8000 });
    expect(llm.requests).toHaveLength(2);
    expect(llm.requests[1]!.messages.slice(1)).toEqual([
      { role: 'assistant', content: '', toolCalls: [{ callId: 'c1', name: 'lookup', arguments: '{"id":1}' }, { callId: 'c2', name: 'lookup', arguments: '{"id":2}' }] },
      { role: 'tool', callId: 'c1', content: 'one' },
      { role: 'tool', callId: 'c2', content: 'two' },
    ]);
    expect(ofType(events, 'assistant_transcript').map((e) => e.text)).toEqual(['Both found.']);
  });

  it('a preamble with calls: outputs back while the preamble still plays follow the message that made the calls', async () => {
    const preamble: Script = {
      events: [
        { type: 'text_delta', delta: 'Let me check both of those for you. ' },
        { type: 'tool_call', call: { callId: 'c1', name: 'lookup', arguments: '{"id":1}' } },
        { type: 'tool_call', call: { callId: 'c2', name: 'lookup', arguments: '{"id":2}' } },
        { type: 'done', finishReason: 'tool_calls', usage },
      ],
    };
    const { session, events, llm } = await setup({ llm: [preamble, say('Both found.')], xi: { frameGapMs: 40 } });
    session.createResponse();
    await until(() => ofType(events, 'tool_call').length === 2);
    // The relay runs the tools at once: their outputs come back while the preamble is still being spoken.
    expect(events.some((e) => e.type === 'response_done')).toBe(false);
    session.sendToolResult('c1', 'one', false);
    session.sendToolResult('c2', 'two', false);
    await until(() => events.some((e) => e.type === 'response_done'), { timeoutMs: 8000 });
    session.createResponse();
    await until(() => ofType(events, 'response_done').length === 2, { timeoutMs: 8000 });
    expect(llm.requests[1]!.messages.slice(1)).toEqual([
      {
        role: 'assistant',
        content: 'Let me check both of those for you. ',
        toolCalls: [{ callId: 'c1', name: 'lookup', arguments: '{"id":1}' }, { callId: 'c2', name: 'lookup', arguments: '{"id":2}' }],
      },
      { role: 'tool', callId: 'c1', content: 'one' },
      { role: 'tool', callId: 'c2', content: 'two' },
    ]);
  });

  it("a caller turn answered by a tool round: the follow-up that speaks carries the turn's stages", async () => {
    const call: Script = { events: [{ type: 'tool_call', call: { callId: 'c1', name: 'lookup', arguments: '{}' } }, { type: 'done', finishReason: 'tool_calls', usage }] };
    const { session, events } = await setup({ llm: [call, say('Found it.')] });
    await feed(session, utterance());
    await until(() => events.some((e) => e.type === 'tool_call'));
    await until(() => ofType(events, 'response_done').length === 1);
    expect(ofType(events, 'turn_stages')).toEqual([]);
    session.sendToolResult('c1', 'ok', false);
    session.createResponse();
    await until(() => ofType(events, 'response_done').length === 2, { timeoutMs: 8000 });
    const [stages] = ofType(events, 'turn_stages');
    expect(stages!.responseId).toBe(ofType(events, 'response_started')[1]!.responseId);
    expect(stages!.finalTranscriptMs).toBeGreaterThanOrEqual(0);
    expect(stages!.firstTokenMs).toBeGreaterThanOrEqual(stages!.finalTranscriptMs!);
    expect(stages!.firstTtsAudioMs).toBeGreaterThanOrEqual(stages!.firstTokenMs!);
    // A later one-off answer (no caller turn) has none.
    session.createResponse('Say more.');
    await until(() => ofType(events, 'response_done').length === 3, { timeoutMs: 8000 });
    expect(ofType(events, 'turn_stages')).toHaveLength(1);
  });

  it('barge-in during the answer cancels it at once; truncate cuts its text in the conversation', async () => {
    const long = 'Your plan covers visits to any doctor in the network. The copay is twenty dollars. Specialists cost more. ';
    const { session, events, llm } = await setup({ llm: [say(long), say('OK.')], xi: { frameGapMs: 60, frameMs: 100 } });
    session.createResponse();
    await until(() => audioBytes(events) >= 800 * 8, { what: 'some audio' });
    await feed(session, speech(400, 3), 5);
    await until(() => events.some((e) => e.type === 'response_done'));
    const all = events.map((e) => e.type);
    const onset = all.indexOf('speech_started');
    expect(onset).toBeGreaterThan(0);
    expect(all.slice(onset + 1).includes('audio')).toBe(false);
    expect(ofType(events, 'response_done')[0]).toMatchObject({ status: 'cancelled', reason: 'turn_detected' });
    await sleep(150);
    expect(events.map((e) => e.type).slice(onset + 1).includes('audio')).toBe(false);
    const itemId = ofType(events, 'assistant_transcript')[0]!.itemId;
    session.truncate(itemId, 600);
    session.sendUserText('go on');
    await until(() => llm.live === 0);
    session.createResponse();
    await until(() => llm.requests.length === 2);
    const assistant = llm.requests[1]!.messages.find((m) => m.role === 'assistant')!;
    expect(assistant.content.length).toBeGreaterThan(0);
    expect(long.startsWith(assistant.content)).toBe(true);
    expect(assistant.content.length).toBeLessThan(long.trim().length);
  });

  it('an LLM 429 is retried after its Retry-After: one answer', async () => {
    const { session, events, llm } = await setup({ llm: [fail(new LlmError('rate limited', true, 429, 30)), say('Hello.')] });
    session.createResponse();
    await done(events);
    expect(llm.requests).toHaveLength(2);
    expect(ofType(events, 'response_started')).toHaveLength(1);
    expect(ofType(events, 'response_done')[0]!.status).toBe('completed');
    expect(audioBytes(events)).toBeGreaterThan(0);
  });

  it('an LLM 500 three times ends the response failed with the code', async () => {
    const { session, events, llm } = await setup({ llm: [fail(new LlmError('boom', true, 500))] });
    session.createResponse();
    await done(events);
    expect(llm.requests).toHaveLength(3);
    expect(ofType(events, 'response_done')[0]).toMatchObject({ status: 'failed', reason: '500' });
  });

  it('a non-retryable LLM error fails at once', async () => {
    const { session, events, llm } = await setup({ llm: [fail(new LlmError('bad key', false, 401))] });
    session.createResponse();
    await done(events);
    expect(llm.requests).toHaveLength(1);
    expect(ofType(events, 'response_done')[0]).toMatchObject({ status: 'failed', reason: '401' });
  });

  it('a TTS stream that fails is reopened once for the rest of the text', async () => {
    const { session, events } = await setup({ xi: { faults: [{ session: 0, afterFrames: 2, kind: 'close' }] } });
    session.createResponse();
    await done(events);
    expect(xi!.sessions).toHaveLength(2);
    expect(ofType(events, 'response_done')[0]!.status).toBe('completed');
    // The second stream was given only what the first had not spoken.
    const said = 'You pay twenty dollars. Anything else?';
    const [first, second] = xi!.sessions.map((s) => s.messages.map((m) => m.text).join(''));
    expect(second!.length).toBeGreaterThan(0);
    expect(second!.length).toBeLessThan(said.length);
    expect(said.endsWith(second!.trim())).toBe(true);
    expect(first!.length).toBeGreaterThan(0);
    expect(audioBytes(events)).toBeGreaterThan(0);
  });

  it('a TTS that keeps failing ends the response failed', async () => {
    const { session, events } = await setup({ xi: { faults: [{ afterFrames: 1, kind: 'close' }] } });
    session.createResponse();
    await done(events);
    expect(xi!.sessions).toHaveLength(2);
    expect(ofType(events, 'response_done')[0]!.status).toBe('failed');
  });

  it('an STT stream dropped under it is reopened quietly and the next turn is answered', async () => {
    const { session, events } = await setup({ dg: { faults: [{ session: 0, afterAudioMs: 100, kind: 'drop' }] } });
    await feed(session, silence(200));
    await until(() => dg!.sessions.length === 2, { what: 'the STT reconnect' });
    await feed(session, utterance());
    await done(events);
    expect(events.some((e) => e.type === 'closed')).toBe(false);
    expect(ofType(events, 'caller_transcript')[0]!.text).toBe('what is my copay');
    expect(ofType(events, 'response_done')[0]!.status).toBe('completed');
  });

  it('an STT that keeps dropping closes the session retryable, so the link redials', async () => {
    const { session, events } = await setup({ dg: { faults: [{ afterAudioMs: 60, kind: 'drop' }] } });
    for (let i = 0; i < 40 && !events.some((e) => e.type === 'closed'); i++) await feed(session, silence(100), 10);
    await until(() => events.some((e) => e.type === 'closed'), { what: 'closed' });
    expect(ofType(events, 'closed')[0]!.retryable).toBe(true);
    expect(dg!.sessions).toHaveLength(4);
    const n = events.length;
    await feed(session, silence(100));
    expect(events.length).toBe(n);
  });

  it('loads the history into the first LLM request', async () => {
    const history: ConversationItem[] = [
      { type: 'user_text', text: 'hi' },
      { type: 'assistant_text', text: 'Hello, how can I help?' },
      { type: 'function_call', callId: 'c9', name: 'lookup', arguments: '{}' },
      { type: 'function_call_output', callId: 'c9', output: 'found' },
    ];
    const { session, llm, events } = await setup({ history });
    session.createResponse();
    await done(events);
    expect(llm.requests[0]!.messages.slice(1)).toEqual([
      { role: 'user', content: 'hi' },
      { role: 'assistant', content: 'Hello, how can I help?', toolCalls: [{ callId: 'c9', name: 'lookup', arguments: '{}' }] },
      { role: 'tool', callId: 'c9', content: 'found' },
    ]);
  });

  it('µ-law TTS audio in pieces of any size comes out as whole 20 ms frames, byte for byte, the rest at the end', async () => {
    const sizes = [100, 100, 160, 333, 7, 320, 45];
    const pieces = sizes.map((n, k) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 13 + k * 31) & 0xff)));
    // A TTS at the vendor edge that speaks `pieces` once its input ends.
    const tts: TextToSpeech = {
      name: 'pieces',
      formats: ['ulaw_8000'],
      open: async (): Promise<TtsStream> => {
        const listeners = new Set<(ev: TtsEvent) => void>();
        const emit = (ev: TtsEvent) => listeners.forEach((l) => l(ev));
        return {
          format: 'ulaw_8000',
          usage: { characters: 0 },
          push: () => {},
          flush: () => {},
          end: () =>
            setTimeout(() => {
              for (const audio of pieces) emit({ type: 'audio', audio });
              emit({ type: 'done', usage: { characters: 0 } });
            }, 1),
          cancel: () => listeners.clear(),
          onEvent: (l) => (listeners.add(l), () => listeners.delete(l)),
        };
      },
    };
    dg = await startDeepgramStandIn({});
    const provider = new PipelineProvider({ stt: new DeepgramStt({ apiKey: 'test-key', url: dg.url }), llm: new ScriptedLlm([say('Hello there.')]), tts, ttsFormat: 'ulaw_8000' });
    const session = await provider.connect({ instructions: 'Be brief.', voice: 'v1', tools: [] });
    sessions.push(session);
    const events: ModelEvent[] = [];
    session.onEvent((ev) => events.push(ev));
    session.createResponse();
    await done(events);
    const audio = ofType(events, 'audio').map((e) => Buffer.from(e.audio, 'base64'));
    expect(Buffer.concat(audio).equals(Buffer.concat(pieces))).toBe(true);
    for (const a of audio.slice(0, -1)) expect(a.length % FRAME_BYTES).toBe(0);
    expect(audio.at(-1)!.length).toBe(sizes.reduce((n, x) => n + x, 0) % FRAME_BYTES);
  });

  it('PCM TTS audio arrives as µ-law 8 kHz of the right length', async () => {
    const { session, events } = await setup({ format: 'pcm_24000' });
    session.createResponse();
    await done(events);
    const pcmBytes = xi!.sessions[0]!.audioBytesSent;
    expect(pcmBytes).toBe(xi!.sessions[0]!.generations.reduce((n, g) => n + elevenAudioBytes(g.text.length, 'pcm_24000', 20), 0));
    // 24 kHz PCM16 → 8 kHz µ-law: a third of the samples, one byte each (a few samples of filter delay).
    expect(Math.abs(audioBytes(events) - pcmBytes / 2 / 3)).toBeLessThanOrEqual(4);
  });

  it('a refused STT rejects connect with ModelConnectError (not retryable for 401)', async () => {
    dg = await startDeepgramStandIn({ refuseStatus: 401 });
    const provider = new PipelineProvider({
      stt: new DeepgramStt({ apiKey: 'test-key', url: dg.url }),
      llm: new ScriptedLlm([say('x')]),
      tts: new ElevenLabsTts({ apiKey: 'xi', voiceId: 'v1', baseUrl: 'ws://127.0.0.1:9' }),
      ttsFormat: 'ulaw_8000',
    });
    const err = await provider.connect({ instructions: '', voice: 'v', tools: [] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelConnectError);
    expect((err as ModelConnectError).retryable).toBe(false);
  });

  it('close() mid-answer closes every stage and emits nothing after', async () => {
    const { session, events, llm } = await setup({ xi: { frameGapMs: 60 } });
    session.createResponse();
    await until(() => events.some((e) => e.type === 'audio'));
    session.close();
    const n = events.length;
    await until(() => dg!.sessions[0]!.closedAt !== undefined && xi!.sessions[0]!.closedBy !== undefined, { what: 'both stand-ins to see the close' });
    await sleep(200);
    expect(events.length).toBe(n);
    expect(llm.live).toBe(0);
    expect(xi!.sessions[0]!.closedBy).toBe('client');
  });
});
